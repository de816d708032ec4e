"""Who is really asking, and over what: forwarded headers from trusted proxies, and the Host allow-list.

Behind a reverse proxy every request comes from the proxy's address over plain HTTP, so the client's
address and scheme are only known from ``X-Forwarded-For`` and ``X-Forwarded-Proto``. Anyone can send those
headers, so they are believed only when the peer itself is one of ``server.trusted_proxies``; then the
client is the rightmost address in ``X-Forwarded-For`` that is not a trusted proxy (each proxy appends the
address it saw, so everything left of that may be made up by the client).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from zebra.errors import ConfigError

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """Networks from addresses or CIDR blocks (``10.0.0.5``, ``10.0.0.0/24``, ``::1``).

    Raises:
        ConfigError: For a value that is neither.
    """
    out: list[Network] = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(str(value).strip(), strict=False))
        except ValueError as exc:
            raise ConfigError(
                f"server.trusted_proxies: {value!r} is not an address or network.",
                hint="Use addresses or CIDR blocks, e.g. ['127.0.0.1', '10.0.0.0/24'].",
            ) from exc
    return tuple(out)


def _address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    value = value.strip().strip('"')
    if value.startswith("[") and "]" in value:  # [v6]:port
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # v4:port
        value = value.split(":", 1)[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class ForwardedResolver:
    """Resolves the client address and scheme of a request (module docstring).

    Args:
        trusted: Networks of the proxies whose forwarded headers are believed.
    """

    trusted: tuple[Network, ...] = ()

    @classmethod
    def from_settings(cls, trusted_proxies: Iterable[str]) -> ForwardedResolver:
        """A resolver for ``server.trusted_proxies``."""
        return cls(parse_networks(trusted_proxies))

    def is_trusted(self, host: str | None) -> bool:
        """Whether ``host`` (the peer address) is a trusted proxy."""
        if not host or not self.trusted:
            return False
        address = _address(host)
        return address is not None and any(address in net for net in self.trusted)

    def resolve(
        self, peer: str | None, scheme: str, forwarded_for: str | None, forwarded_proto: str | None
    ) -> tuple[str | None, str]:
        """The client address and scheme.

        Args:
            peer: The address the connection comes from.
            scheme: ``http`` or ``https`` as the server sees the connection.
            forwarded_for: The ``X-Forwarded-For`` header, if any.
            forwarded_proto: The ``X-Forwarded-Proto`` header, if any.

        Returns:
            ``(address, scheme)``: from the headers when ``peer`` is trusted, otherwise the connection's.
        """
        if not self.is_trusted(peer):
            return peer, scheme
        client = peer
        if forwarded_for:
            for hop in reversed([h for h in forwarded_for.split(",") if h.strip()]):
                address = _address(hop)
                if address is None:
                    break  # garbage from the client side: stop at the last good hop
                client = str(address)
                if not any(address in net for net in self.trusted):
                    break
        if forwarded_proto:
            # The nearest proxy's value (rightmost): what the client side may have sent comes before it.
            proto = forwarded_proto.split(",")[-1].strip().lower()
            if proto in ("http", "https"):
                scheme = proto
        return client, scheme


def host_name(host_header: str) -> str:
    """The host of a ``Host`` header, lower case, without port or IPv6 brackets."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1 : host.index("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


@dataclass(frozen=True)
class HostAllowList:
    """The ``Host`` values a server answers to (``*`` for any).

    Args:
        hosts: Allowed host names or addresses, without ports.
    """

    hosts: frozenset[str]

    @classmethod
    def of(cls, hosts: Iterable[str]) -> HostAllowList:
        """An allow-list of ``hosts`` (brackets and ports dropped, case ignored)."""
        return cls(frozenset(host_name(h) for h in hosts if str(h).strip()))

    def allows(self, host_header: str | None) -> bool:
        """Whether a request with this ``Host`` header is served."""
        if "*" in self.hosts:
            return True
        if not host_header:
            return False
        return host_name(host_header) in self.hosts
