"""Per-API-key rate limits: so many submissions per minute, in fixed one-minute windows."""

from __future__ import annotations

import threading
import time
from typing import Protocol

from ..errors import RateLimited

WINDOW_SECONDS = 60


class Limiter(Protocol):
    def take(self, owner: str, count: int) -> None:
        """Count ``count`` submissions of ``owner``; RateLimited (429, Retry-After) past the rate."""


def refuse(rate: int, window: int, now: float) -> RateLimited:
    return RateLimited(f"rate limit: at most {rate} submissions per minute for this API key",
                       retry_after=max(1, int(window * WINDOW_SECONDS + WINDOW_SECONDS - now) + 1))


class MemoryLimiter:
    """The limiter of a single process: its counts die with it, which a rate limit may."""

    def __init__(self, rate_per_minute: int) -> None:
        self.rate = rate_per_minute
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, int], int] = {}

    def take(self, owner: str, count: int) -> None:
        if not self.rate:
            return
        now = time.time()
        window = int(now // WINDOW_SECONDS)
        with self._lock:
            self._counts = {key: n for key, n in self._counts.items() if key[1] == window}
            taken = self._counts.get((owner, window), 0) + count
            if taken > self.rate:
                raise refuse(self.rate, window, now)
            self._counts[(owner, window)] = taken
