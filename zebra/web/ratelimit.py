"""In-memory sign-in throttling: per client address and per user name, with exponential backoff."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from zebra.web.errors import RateLimitedError


@dataclass
class _Entry:
    failures: int = 0
    blocked_until: float = 0.0
    last_seen: float = 0.0


class LoginThrottle:
    """Counts failed sign-ins and blocks further attempts with exponential backoff.

    After ``free_failures`` failures for a key, each further failure blocks that key for
    ``base_delay_s * 2**(extra failures)`` seconds, at most ``max_delay_s``. A success clears the user-name key
    (not the address key: one correct password must not reset an address that guesses many names).

    Args:
        free_failures: Failures allowed per user name before blocking.
        free_failures_per_ip: Failures allowed per client address before blocking.
        base_delay_s: First block duration.
        max_delay_s: Longest block.
        forget_after_s: Entries idle this long are forgotten.
        clock: Time source (tests pass a fake).
    """

    def __init__(
        self,
        *,
        free_failures: int = 5,
        free_failures_per_ip: int = 20,
        base_delay_s: float = 1.0,
        max_delay_s: float = 300.0,
        forget_after_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._free = {"user": free_failures, "ip": free_failures_per_ip}
        self._base = base_delay_s
        self._max = max_delay_s
        self._forget = forget_after_s
        self._clock = clock
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._lock = threading.Lock()

    def check(self, ip: str, username: str) -> None:
        """Raises when the address or the user name is blocked now.

        Raises:
            RateLimitedError: With the seconds left in ``retry_after``.
        """
        now = self._clock()
        with self._lock:
            waits = [
                entry.blocked_until - now
                for key in (("ip", ip), ("user", username.lower()))
                if (entry := self._entries.get(key)) is not None and entry.blocked_until > now
            ]
        if waits:
            wait = max(waits)
            raise RateLimitedError(
                "Too many failed sign-in attempts.",
                hint=f"Wait {int(wait) + 1} s before trying again.",
                retry_after=int(wait) + 1,
            )

    def failure(self, ip: str, username: str) -> None:
        """Records a failed attempt."""
        now = self._clock()
        with self._lock:
            self._prune(now)
            for kind, value in (("ip", ip), ("user", username.lower())):
                entry = self._entries.setdefault((kind, value), _Entry())
                entry.failures += 1
                entry.last_seen = now
                extra = entry.failures - self._free[kind]
                if extra >= 0:
                    entry.blocked_until = now + min(self._max, self._base * (2.0 ** min(extra, 30)))

    def success(self, username: str) -> None:
        """Clears the user name's failures after a correct password."""
        with self._lock:
            self._entries.pop(("user", username.lower()), None)

    def _prune(self, now: float) -> None:
        if len(self._entries) < 10_000:
            return
        stale = [
            k for k, e in self._entries.items() if now - e.last_seen > self._forget and e.blocked_until < now
        ]
        for key in stale:
            del self._entries[key]
