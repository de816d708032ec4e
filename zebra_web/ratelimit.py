"""Sign-in throttling (in memory) and the server-wide cap on password checks running at once.

:class:`LoginThrottle` counts failed sign-ins under three keys, each with exponential backoff once its free
failures are used up:

- the pair (user name, client address): the tight limit, and the only one that always applies;
- the user name, from any address: a looser limit that applies only to attempts from an address that has
  failures of its own (an address with no failures, such as the real user's, is never locked out by
  others' failures), and not to a pair that signed in successfully before;
- the client address, for any name (password spraying): applies except to pairs (name, address) that signed
  in successfully before, so behind a reverse proxy, where every client shares one address, random names
  cannot lock out the users who sign in through it.

Attempts are counted while in flight: :meth:`LoginThrottle.begin` reserves a slot before the (slow) password
check and the outcome is recorded after it, and a key admits at most as many attempts at once as it has free
failures left (at least one at a time), so concurrent attempts cannot all pass the check before any failure
is recorded. :class:`PasswordCheckSlots` caps the password checks running at once for the whole server (each
Argon2 check takes 64 MiB and a CPU core for ~0.1 s): beyond the cap, an attempt waits a little for a slot
and then gets 503.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from zebra_web.errors import RateLimitedError, ServerBusyError
from zebra_web.inflight import AsyncSlots

#: Default free failures per (user name, address) pair before backoff.
FREE_FAILURES = 5
#: Default free failures per user name, from addresses that have failures themselves.
FREE_FAILURES_PER_USER = 20
#: Default free failures per client address, for any names.
FREE_FAILURES_PER_IP = 20
#: Default password checks running at once, server-wide.
PASSWORD_CHECK_SLOTS = 4
#: Default seconds an attempt waits for a password-check slot before it gets 503.
PASSWORD_CHECK_WAIT_S = 10.0


@dataclass
class _Entry:
    failures: int = 0
    blocked_until: float = 0.0
    last_seen: float = 0.0
    in_flight: int = 0


_Key = tuple[str, ...]


def _keys(ip: str, name: str) -> tuple[_Key, ...]:
    # Every attempt counts under the three keys (so failures accumulate everywhere); whether the per-name and
    # per-address keys can refuse an attempt is decided by LoginThrottle._judged.
    return (("pair", name, ip), ("user", name), ("ip", ip))


class LoginAttempt:
    """A reserved sign-in attempt: call exactly one of :meth:`failure`, :meth:`success` or :meth:`cancel`.

    Further calls do nothing, so ``cancel`` in a ``finally`` is safe.
    """

    def __init__(self, throttle: LoginThrottle, ip: str, username: str, keys: tuple[_Key, ...]) -> None:
        self._throttle = throttle
        self.ip = ip
        self.username = username
        self._keys = keys
        self._done = False

    def failure(self) -> None:
        """The password was wrong: the failure counts under every key."""
        if not self._done:
            self._done = True
            self._throttle._finish(self._keys, self.ip, self.username, failed=True)

    def success(self) -> None:
        """The password was right: clears the pair's failures and remembers the pair."""
        if not self._done:
            self._done = True
            self._throttle._finish(self._keys, self.ip, self.username, failed=False)

    def cancel(self) -> None:
        """No password was checked (the server was busy): releases the reservation, records nothing."""
        if not self._done:
            self._done = True
            self._throttle._finish(self._keys, self.ip, self.username, failed=None)


class LoginThrottle:
    """Counts failed sign-ins and attempts in flight, and refuses attempts over the limits (module docstring).

    After a key's free failures, each further failure blocks it for ``base_delay_s * 2**(extra failures)``
    seconds, at most ``max_delay_s``.

    Args:
        free_failures: Failures allowed per (user name, address) pair before blocking.
        free_failures_per_user: Failures allowed per user name (all addresses) before blocking addresses
            that have failures of their own.
        free_failures_per_ip: Failures allowed per client address (all names) before blocking it for names
            that have not signed in from it before.
        base_delay_s: First block duration.
        max_delay_s: Longest block.
        forget_after_s: Entries idle this long are forgotten.
        remember_success_s: How long a successful (name, address) pair stays exempt from the per-name and
            per-address limits.
        clock: Time source (tests pass a fake).
    """

    def __init__(
        self,
        *,
        free_failures: int = FREE_FAILURES,
        free_failures_per_user: int = FREE_FAILURES_PER_USER,
        free_failures_per_ip: int = FREE_FAILURES_PER_IP,
        base_delay_s: float = 1.0,
        max_delay_s: float = 300.0,
        forget_after_s: float = 3600.0,
        remember_success_s: float = 30 * 86400.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._free = {"pair": free_failures, "user": free_failures_per_user, "ip": free_failures_per_ip}
        self._base = base_delay_s
        self._max = max_delay_s
        self._forget = forget_after_s
        self._remember = remember_success_s
        self._clock = clock
        self._entries: dict[_Key, _Entry] = {}
        self._known: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def begin(self, ip: str, username: str) -> LoginAttempt:
        """Reserves an attempt for ``username`` from ``ip`` before its password is checked.

        Raises:
            RateLimitedError: When a key that applies is blocked, or has as many attempts in flight as it
                has free failures left; ``retry_after`` holds the seconds to wait.
        """
        name = username.lower()
        now = self._clock()
        keys = _keys(ip, name)
        with self._lock:
            wait = 0.0
            for key in keys:
                entry = self._entries.get(key)
                if entry is None or not self._judged(key, ip, name, now):
                    continue
                if entry.blocked_until > now:
                    wait = max(wait, entry.blocked_until - now)
                elif entry.in_flight >= max(1, self._free[key[0]] - entry.failures):
                    wait = max(wait, 1.0)
            if wait <= 0:
                self._prune(now)
                for key in keys:
                    entry = self._entries.setdefault(key, _Entry())
                    entry.in_flight += 1
                    entry.last_seen = now
                return LoginAttempt(self, ip, name, keys)
        raise RateLimitedError(
            "Too many failed sign-in attempts.",
            hint=f"Wait {int(wait) + 1} s before trying again.",
            retry_after=int(wait) + 1,
        )

    def check(self, ip: str, username: str) -> None:
        """Raises :class:`RateLimitedError` when an attempt would be refused now (reserves nothing)."""
        self.begin(ip, username).cancel()

    def failure(self, ip: str, username: str) -> None:
        """Records a failed attempt that was not reserved with :meth:`begin`."""
        name = username.lower()
        self._finish(_keys(ip, name), ip, name, failed=True, reserved=False)

    def success(self, ip: str, username: str) -> None:
        """Records a successful attempt that was not reserved with :meth:`begin`."""
        name = username.lower()
        self._finish(_keys(ip, name), ip, name, failed=False, reserved=False)

    def _judged(self, key: _Key, ip: str, name: str, now: float) -> bool:
        """Whether ``key`` may refuse an attempt for ``name`` from ``ip`` (call with the lock held)."""
        if key[0] == "pair":
            return True
        known = self._known.get((name, ip))
        if known is not None and now - known <= self._remember:
            return False
        if key[0] == "user":
            ip_entry = self._entries.get(("ip", ip))
            return ip_entry is not None and ip_entry.failures > 0
        return True

    def _finish(
        self, keys: tuple[_Key, ...], ip: str, name: str, *, failed: bool | None, reserved: bool = True
    ) -> None:
        now = self._clock()
        with self._lock:
            for key in keys:
                entry = self._entries.setdefault(key, _Entry())
                if reserved:
                    entry.in_flight = max(0, entry.in_flight - 1)
                entry.last_seen = now
                if failed:
                    entry.failures += 1
                    extra = entry.failures - self._free[key[0]]
                    if extra >= 0:
                        entry.blocked_until = now + min(self._max, self._base * (2.0 ** min(extra, 30)))
            if failed is False:
                pair = self._entries.get(("pair", name, ip))
                if pair is not None and pair.in_flight == 0:
                    del self._entries[("pair", name, ip)]
                elif pair is not None:
                    pair.failures, pair.blocked_until = 0, 0.0
                self._known[(name, ip)] = now

    def _prune(self, now: float) -> None:
        if len(self._entries) >= 10_000:
            stale = [
                k
                for k, e in self._entries.items()
                if now - e.last_seen > self._forget and e.blocked_until < now and e.in_flight == 0
            ]
            for key in stale:
                del self._entries[key]
        if len(self._known) >= 100_000:
            old = sorted(self._known.items(), key=lambda kv: kv[1])
            for pair, _ in old[: len(old) // 2]:
                del self._known[pair]


class PasswordCheckSlots(AsyncSlots):
    """At most ``slots`` password checks at once for the whole server; others wait up to ``wait_s``.

    Waiting polls on the event loop (no thread held) and the count is guarded by a lock, so one instance
    serves any thread or event loop. At most ``max_waiting`` attempts wait; more get 503 at once.

    Args:
        slots: Password checks running at once.
        wait_s: Longest wait for a slot before :class:`ServerBusyError` (503).
        max_waiting: Most attempts waiting at once.
    """

    #: Seconds between tries while waiting for a slot.
    POLL_S = 0.01

    def __init__(
        self, slots: int = PASSWORD_CHECK_SLOTS, wait_s: float = PASSWORD_CHECK_WAIT_S, max_waiting: int = 64
    ) -> None:
        super().__init__(slots)
        self.wait_s = max(0.0, float(wait_s))
        self.max_waiting = max(0, int(max_waiting))

    def _busy_error(self) -> ServerBusyError:
        return ServerBusyError(
            "The server is busy checking other sign-ins.", hint="Try again in a moment.", retry_after=1
        )
