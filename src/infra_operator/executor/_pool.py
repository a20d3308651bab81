"""Ready sandboxes, kept per (backend, sandbox spec), so a request does not wait for a start.

Rules:

- A pooled sandbox was started by its backend and its agent answered ``ping``. It is
  handed out once, by ``take``, and is never put back: every execution still gets a
  fresh sandbox, the pool only starts it earlier.
- The key is the backend's name and every field of the ``SandboxSpec`` (rootfs and its
  checksum, memory, processes, kernel, snapshot, labels), so a request with other
  limits never gets a sandbox made for different ones: it misses and starts its own.
- ``take`` checks the sandbox is alive first (``Sandbox.alive``, without a round trip to
  its agent); one that died while waiting is destroyed and the next one is tried, and the
  pool starts a replacement. With none ready but one already
  starting for that key, ``take`` waits for it rather than start another from scratch.
- Sizes adapt: a miss raises the key's target (up to ``max_size``), a quiet period
  lowers it again, and a key not asked for in ``idle_seconds`` is emptied. Ready and
  starting sandboxes together stay within ``memory_budget_mb``. A ready sandbox counts at
  what it was measured to hold (``Sandbox.memory``: its PSS, so the pages clones of one
  snapshot share count once in all), measured when it is ready and again every
  ``MEASURE_SECONDS``; a starting one, or one that cannot be measured, at its key's
  estimate: the median of its measured ones, or before any, what the backend expects
  (``Backend.ready_memory_mb``: a microVM its RAM, a jail about a megabyte).
- Starts are made ``ahead`` (``Backend.start(spec, ahead=True)``): off any request's path,
  so a backend may spend time making the sandbox's one use faster (qemu under TCG runs the
  spec's warm-up in it, then puts it back as it was). The pool does not know what that is.
- Destroying happens in the background (``dispose``), off the request's path.
- ``close`` stops refilling, waits for starts under way and destroys everything. Close
  only once taken sandboxes are done with: a backend may tie a sandbox's life to the
  thread that started it, and the pool's threads end.

The pool knows only ``backends.base``: the jail today, microVMs restored from a
snapshot tomorrow.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import OperatorError

if TYPE_CHECKING:
    from ..backends import Backend, Sandbox, SandboxSpec
    from ..config import PoolSettings

log = logging.getLogger(__name__)

START_WAIT_SECONDS = 10.0
"""The longest a request waits for a start under way before it starts its own."""
MEASURE_SECONDS = 5.0
"""How often ready sandboxes are measured again: a clone's share of pages it maps with
others falls as more clones come, and rises as they go."""
_TICK_SECONDS = 0.5
_FAILURE_BACKOFF_SECONDS = (0.5, 30.0)


def spec_key(backend: Backend, spec: SandboxSpec) -> tuple[Hashable, ...]:
    """Everything that makes two sandboxes interchangeable. Built from the dataclass's
    fields, so a field added to ``SandboxSpec`` later is part of the key without a change here."""
    values: list[Hashable] = [backend.name]
    for spec_field in dataclasses.fields(spec):
        value = getattr(spec, spec_field.name)
        values.append(tuple(sorted(value.items())) if isinstance(value, dict) else value)
    return tuple(values)


@dataclass
class _Entry:
    """One key's sandboxes and its demand."""

    backend: Backend
    spec: SandboxSpec
    base: int
    """The size it returns to after a burst; 0 for keys created by demand alone."""
    memory_mb: int
    """What each of its sandboxes is expected to hold while ready: ``Backend.ready_memory_mb``
    until one is measured, then the median of the measured ones."""
    target: int
    ready: deque[Sandbox] = field(default_factory=deque)
    measured: dict[str, float] = field(default_factory=dict)
    """Sandbox id to the MiB it held when last measured, for the ready ones that could be."""
    starting: int = 0
    waiting: int = 0
    """Takers waiting for a start under way, each counting on one of ``starting``."""
    last_take: float = 0.0
    last_miss: float = 0.0
    last_resize: float = 0.0
    failures: int = 0
    retry_at: float = 0.0
    takes: int = 0
    misses: int = 0

    @property
    def label(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.spec.labels.items()) or self.spec.rootfs.name

    @property
    def held(self) -> int:
        return len(self.ready) + self.starting

    @property
    def memory_held(self) -> float:
        ready = sum(self.measured.get(sandbox.id, self.memory_mb) for sandbox in self.ready)
        return ready + self.starting * self.memory_mb

    def record(self, measured: dict[str, float | None]) -> None:
        """Keep the readings of sandboxes still ready, and re-estimate from them."""
        ready = {sandbox.id for sandbox in self.ready}
        for sandbox_id, value in measured.items():
            if sandbox_id in ready and value is not None:
                self.measured[sandbox_id] = value
        for gone in self.measured.keys() - ready:
            del self.measured[gone]
        if self.measured:
            self.memory_mb = max(1, math.ceil(statistics.median(self.measured.values())))


class Pool:
    """``clock`` times demand, idleness and the back-off after failed starts (a test hands in
    one it moves); waiting on the lock and agent deadlines are real time, as threads see it."""

    def __init__(self, settings: PoolSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._lock = threading.Condition()
        self._entries: dict[tuple[Hashable, ...], _Entry] = {}
        self._running = False
        self._closed = False
        self._manager: threading.Thread | None = None
        self._starter: ThreadPoolExecutor | None = None
        self._reaper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pool-reaper")

    # -- lifecycle

    def start(self) -> None:
        """Begin keeping sandboxes ready. Until then ``take`` always misses and nothing runs
        in the background, which suits one-shot commands such as ``infra.operator run``."""
        with self._lock:
            if self._running or self._closed:
                return
            self._running = True
            self._starter = ThreadPoolExecutor(
                max_workers=max(1, self.settings.workers), thread_name_prefix="pool-start"
            )
            self._manager = threading.Thread(target=self._manage, name="pool-manager", daemon=True)
            self._manager.start()

    def close(self) -> None:
        """Stop refilling, wait for starts under way, destroy every ready sandbox and wait
        until every destroy has finished: afterwards nothing the pool started is running."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._running = False
            self._lock.notify_all()
            manager, starter = self._manager, self._starter
        if manager is not None:
            manager.join()
        if starter is not None:
            starter.shutdown(wait=True)  # each start finishing now sees _closed and destroys its sandbox
        with self._lock:
            leftovers = [sandbox for entry in self._entries.values() for sandbox in entry.ready]
            for entry in self._entries.values():
                entry.ready.clear()
        self._reaper.shutdown(wait=True)
        for sandbox in leftovers:
            self._destroy(sandbox)

    def __enter__(self) -> Pool:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- what the executor calls

    def warm(self, backend: Backend, spec: SandboxSpec, size: int) -> None:
        """Keep ``size`` sandboxes of this spec ready from now on (the start-up pre-warm)."""
        with self._lock:
            entry = self._entry(backend, spec, base=size)
            entry.base = max(entry.base, size)
            entry.target = max(entry.target, size)
            entry.last_take = entry.last_resize = self._clock()
            self._lock.notify_all()

    def take(self, backend: Backend, spec: SandboxSpec) -> Sandbox | None:
        """A ready sandbox of exactly this spec, alive, removed from the pool for good; or
        None, and the caller starts one itself.

        When none is ready but one is already starting for this key (and not promised to an
        earlier waiter), waiting for it beats starting another: it is further along."""
        while True:
            with self._lock:
                if not self._running:
                    return None
                entry = self._entry(backend, spec, base=0)
                now = self._clock()
                entry.last_take = now
                if not entry.ready:
                    # A one-off request (its own limits, a rarely used backend) must not pin a
                    # sandbox for long: a key grows from its second miss in a short while.
                    again = entry.misses > 0 and now - entry.last_miss < self.settings.idle_seconds / 4
                    entry.misses += 1
                    entry.last_miss = now
                    if entry.base > 0 or again:
                        entry.target = min(max(entry.target + 1, entry.base), self.settings.max_size)
                    self._lock.notify_all()
                    if not self._wait_for_start(entry):
                        return None
                sandbox = entry.ready.popleft()
                entry.measured.pop(sandbox.id, None)
                entry.takes += 1
                self._lock.notify_all()  # its place can be refilled now
            if sandbox.alive():
                return sandbox
            log.warning("pool: sandbox %s of %s died while waiting; replacing it", sandbox.id, entry.label)
            self.dispose(sandbox)

    def _wait_for_start(self, entry: _Entry) -> bool:
        """With the lock held: wait for a start under way; True when a sandbox is ready."""
        if entry.starting <= entry.waiting:
            return False
        entry.waiting += 1
        deadline = time.monotonic() + START_WAIT_SECONDS
        try:
            while self._running and not entry.ready and entry.starting > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._lock.wait(remaining)
        finally:
            entry.waiting -= 1
        return self._running and bool(entry.ready)

    def dispose(self, sandbox: Sandbox) -> None:
        """Destroy a used (or dead) sandbox: in the background while the pool runs, so the
        answer does not wait for it; here and now otherwise (a one-shot command, or closing)."""
        if self._running:
            self._reaper.submit(self._destroy, sandbox)
        else:
            self._destroy(sandbox)

    def stats(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {
                    "backend": e.backend.name,
                    "key": e.label,
                    "ready": len(e.ready),
                    "starting": e.starting,
                    "target": e.target,
                    "base": e.base,
                    "takes": e.takes,
                    "misses": e.misses,
                    "memory_mb": e.memory_mb,
                }
                for e in self._entries.values()
            ]

    # -- inside

    def _entry(self, backend: Backend, spec: SandboxSpec, base: int) -> _Entry:
        key = spec_key(backend, spec)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(
                backend=backend, spec=spec, base=base, memory_mb=backend.ready_memory_mb(spec),
                target=base, last_resize=self._clock(),
            )
        return entry

    def _destroy(self, sandbox: Sandbox) -> None:
        try:
            sandbox.destroy()
        except Exception:  # one failed destroy must not stop the reaper
            log.exception("pool: destroying sandbox %s failed", sandbox.id)

    def _memory_held(self) -> float:
        return sum(entry.memory_held for entry in self._entries.values())

    @staticmethod
    def _measure(sandbox: Sandbox) -> float | None:
        """Its PSS in MiB, or None; reads /proc, so never called with the lock held."""
        try:
            use = sandbox.memory()
        except Exception:  # a failed reading costs the estimate, never the pool
            log.exception("pool: measuring sandbox %s failed", sandbox.id)
            return None
        return None if use is None else use.pss_mb

    def _manage(self) -> None:
        next_measure = time.monotonic() + MEASURE_SECONDS
        while True:
            with self._lock:
                if not self._running:
                    return
                self._resize(self._clock())
                self._refill(self._clock())
                self._lock.wait(_TICK_SECONDS)
                if time.monotonic() < next_measure:
                    continue
                ready = [(entry, list(entry.ready)) for entry in self._entries.values()]
            next_measure = time.monotonic() + MEASURE_SECONDS
            readings = [(entry, {sandbox.id: self._measure(sandbox) for sandbox in sandboxes})
                        for entry, sandboxes in ready]
            with self._lock:
                for entry, measured in readings:
                    entry.record(measured)

    def _resize(self, now: float) -> None:
        """Shrink after quiet periods: a burst's extra sandboxes go, an unused key empties."""
        quiet = self.settings.idle_seconds
        for entry in self._entries.values():
            if now - entry.last_take >= quiet:
                entry.target = 0
            elif entry.target > entry.base and now - max(entry.last_miss, entry.last_resize) >= quiet / 4:
                entry.target -= 1
                entry.last_resize = now
            while len(entry.ready) > entry.target:
                self._discard_newest(entry)  # the newest goes; the oldest are served first

    def _refill(self, now: float) -> None:
        assert self._starter is not None
        budget = self.settings.memory_budget_mb
        in_flight = sum(entry.starting for entry in self._entries.values())
        # Neediest first: the key with the largest share of its target missing.
        for entry in sorted(self._entries.values(), key=lambda e: e.held / e.target if e.target else 1.0):
            while entry.held < entry.target and now >= entry.retry_at and in_flight < self.settings.workers:
                if self._memory_held() + entry.memory_mb > budget:
                    if entry.held >= entry.base or not self._evict_surplus(entry):
                        break
                    continue
                entry.starting += 1
                in_flight += 1
                self._starter.submit(self._start_one, entry)

    def _evict_surplus(self, needy: _Entry) -> bool:
        """Base targets come before demand: free one ready sandbox that another key holds
        beyond its base, so a pre-warmed language is never starved by a burst elsewhere."""
        for other in self._entries.values():
            if other is not needy and len(other.ready) > other.base:
                other.target = max(other.base, other.target - 1)
                self._discard_newest(other)
                return True
        return False

    def _discard_newest(self, entry: _Entry) -> None:
        sandbox = entry.ready.pop()
        entry.measured.pop(sandbox.id, None)
        self.dispose(sandbox)

    def _start_one(self, entry: _Entry) -> None:
        try:
            # Ahead of its use: the backend may spend time now (a throwaway warm-up) to make it faster.
            sandbox = entry.backend.start(entry.spec, ahead=True)
        except Exception as exc:  # a start that fails is retried later, never fatal to the pool
            with self._lock:
                entry.starting -= 1
                entry.failures += 1
                low, high = _FAILURE_BACKOFF_SECONDS
                entry.retry_at = self._clock() + min(high, low * 2 ** (entry.failures - 1))
                self._lock.notify_all()
            message = exc.message if isinstance(exc, OperatorError) else repr(exc)
            log.warning(
                "pool: starting a sandbox for %s failed (%d in a row): %s",
                entry.label,
                entry.failures,
                message,
            )
            return
        # Measured before it joins the others, so the budget counts it at once at its cost.
        cost = self._measure(sandbox)
        with self._lock:
            entry.starting -= 1
            entry.failures = 0
            keep = self._running and entry.held < entry.target
            if keep:
                entry.ready.append(sandbox)
                entry.record({sandbox.id: cost})
            self._lock.notify_all()
        if not keep:
            self.dispose(sandbox)
