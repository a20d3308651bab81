"""How many executions run at once, how many may wait, and refusing the rest cleanly.

A full queue is answered at once with ``Overloaded`` (503 with Retry-After), so a
burst degrades into fast refusals instead of a pile of stalled connections. On
shutdown no new work is admitted and ``drain`` waits for what is running.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import Overloaded


class Admission:
    def __init__(self, max_running: int, max_waiting: int, max_wait_seconds: float = 30.0) -> None:
        self.max_running = max_running
        self.max_waiting = max_waiting
        self.max_wait_seconds = max_wait_seconds
        self._slots = threading.Semaphore(max_running)
        self._lock = threading.Condition()
        self._waiting = 0
        self._running = 0
        self._closed = False

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._lock:
            if self._closed:
                raise Overloaded("the server is shutting down", retry_after=5)
            if self._waiting >= self.max_waiting:
                raise Overloaded(f"too many executions waiting ({self._waiting}): try again shortly")
            self._waiting += 1
        acquired = self._slots.acquire(timeout=self.max_wait_seconds)
        with self._lock:
            self._waiting -= 1
            if acquired:
                self._running += 1
        if not acquired:
            raise Overloaded(f"no sandbox slot became free within {self.max_wait_seconds:.0f}s")
        try:
            yield
        finally:
            self._slots.release()
            with self._lock:
                self._running -= 1
                self._lock.notify_all()

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"running": self._running, "waiting": self._waiting,
                    "max_running": self.max_running, "max_waiting": self.max_waiting}

    def drain(self, timeout: float) -> bool:
        """Stop admitting work and wait for what runs; True when all finished in time."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closed = True
            while self._running or self._waiting:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
        return True
