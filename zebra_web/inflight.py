"""Work that waits does so on the event loop, and one user cannot queue without bound.

Questions and uploads are slow (the agent, the de-identifying parser) and run a few at a time. Before issue
15 each waiting one held a worker thread of the shared pool, the same pool that checks every request's
token, so one user with 60 questions queued made ``GET /api/me`` take seconds for everybody.
:class:`AsyncSlots` makes the waiting happen on the event loop (a worker thread is taken only once a slot
is free), and :class:`UserInflight` caps what one user may have queued or running at once (429 beyond).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from zebra_web.errors import RateLimitedError


class AsyncSlots:
    """At most ``slots`` holders at once; waiting polls on the event loop and holds no thread.

    The count is guarded by a lock, so one instance serves any thread and any event loop (a test client and
    a server may run the same app on different loops).

    Args:
        slots: Holders at once.
    """

    #: Seconds between tries while waiting.
    POLL_S = 0.02

    def __init__(self, slots: int = 1) -> None:
        self.slots = max(1, int(slots))
        self._busy = 0
        self._waiting = 0
        self._lock = threading.Lock()

    def _try(self) -> bool:
        with self._lock:
            if self._busy < self.slots:
                self._busy += 1
                return True
            return False

    @property
    def waiting(self) -> int:
        """How many wait for a slot now."""
        with self._lock:
            return self._waiting

    @property
    def busy(self) -> int:
        """How many slots are held now."""
        with self._lock:
            return self._busy

    #: Longest wait for a slot (``None``: as long as it takes) and most holders waiting at once (``None``: no
    #: limit); beyond either, :meth:`_busy_error` is raised. Subclasses set them (sign-in checks, issue 15).
    wait_s: float | None = None
    max_waiting: int | None = None

    def _busy_error(self) -> Exception:
        return RuntimeError("no slot came free")  # unreachable without wait_s / max_waiting

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Holds one slot for the ``async with`` block, waiting on the event loop for it.

        Raises:
            The :meth:`_busy_error` when ``wait_s`` passes or ``max_waiting`` others wait already.
        """
        if not self._try():
            with self._lock:
                full = self.max_waiting is not None and self._waiting >= self.max_waiting
                if not full:
                    self._waiting += 1
            if full:
                raise self._busy_error()
            try:
                deadline = None if self.wait_s is None else time.monotonic() + self.wait_s
                while not self._try():
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise self._busy_error()
                    await asyncio.sleep(self.POLL_S if left is None else min(self.POLL_S, left))
            finally:
                with self._lock:
                    self._waiting -= 1
        try:
            yield
        finally:
            with self._lock:
                self._busy -= 1


class UserInflight:
    """Counts each user's questions and uploads in flight (queued or running) and refuses past ``limit``.

    Args:
        limit: Most at once per user (``0``: no limit).
    """

    def __init__(self, limit: int) -> None:
        self.limit = max(0, int(limit))
        self._counts: dict[int, int] = {}
        self._lock = threading.Lock()

    def count(self, user_id: int) -> int:
        """What ``user_id`` has in flight now."""
        with self._lock:
            return self._counts.get(int(user_id), 0)

    def acquire(self, user_id: int) -> None:
        """Counts one more piece of work of ``user_id``; pair with :meth:`release`.

        Raises:
            RateLimitedError: The user already has ``limit`` in flight (429).
        """
        key = int(user_id)
        with self._lock:
            now = self._counts.get(key, 0)
            if self.limit and now >= self.limit:
                raise RateLimitedError(
                    f"You already have {now} questions or uploads in progress.",
                    hint="Wait for an answer (or an upload) to finish, then try again.",
                    retry_after=2,
                )
            self._counts[key] = now + 1

    def release(self, user_id: int) -> None:
        """Counts one piece of work of ``user_id`` as done."""
        key = int(user_id)
        with self._lock:
            left = self._counts.get(key, 0) - 1
            if left > 0:
                self._counts[key] = left
            else:
                self._counts.pop(key, None)

    @contextmanager
    def hold(self, user_id: int) -> Iterator[None]:
        """:meth:`acquire` for the ``with`` block, then :meth:`release`."""
        self.acquire(user_id)
        try:
            yield
        finally:
            self.release(user_id)
