"""Test doubles, for what the real parts cannot be made to do on demand.

``FakeBackend`` implements ``backends.base.Backend`` with sandboxes that only answer
``ping``; a test makes its starts fail, or kills a sandbox while it waits, to check how
the pool copes. It is never registered as a backend of the service.
"""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

from infra_operator.backends import Capabilities, HostOutcome, Listener, MemoryUse, SandboxSpec, SnapshotFiles, State
from infra_operator.backends.base import Isolation
from infra_operator.errors import AgentError, InvalidRequest, SandboxError
from infra_operator.guest.messages import PingReply, Request


class FakeSandbox:
    def __init__(self, sandbox_id: str, pss_mb: float | None = None) -> None:
        self.id = sandbox_id
        self.pss_mb = pss_mb
        """What ``memory`` reports; None: cannot be measured (like a jail)."""
        self.state = State.READY
        self.dead = False
        self.calls = 0
        self.destroyed = 0

    def call(self, message: Request, deadline: float, listener: Listener | None = None) -> PingReply:
        if self.state is not State.READY:
            raise SandboxError(f"sandbox {self.id} is {self.state.value}, not ready")
        if self.dead:
            raise AgentError(f"sandbox {self.id}: the sandbox went away during the call")
        self.calls += 1
        return {"ok": True, "op": "ping", "pid": 0, "uid": 0}

    def outcome(self) -> HostOutcome:
        return HostOutcome()

    def alive(self) -> bool:
        return self.state is State.READY and not self.dead

    def memory(self) -> MemoryUse | None:
        if self.pss_mb is None or self.state is State.DESTROYED:
            return None
        return MemoryUse(pss_mb=self.pss_mb, rss_mb=self.pss_mb, shared_mb=0.0)

    def destroy(self) -> None:
        self.destroyed += 1
        self.state = State.DESTROYED

    def pause(self, directory: Path) -> None:
        """Save nothing but a name: the fake's sandboxes hold no state worth saving."""
        (directory / "fake").write_text(self.id)
        self.destroy()


class FakeBackend:
    name = "fake"
    isolation: Isolation = "namespace"

    def __init__(self) -> None:
        self.started: list[FakeSandbox] = []
        self.failures_to_come = 0
        self.start_attempts = 0
        self.ahead_starts = 0
        """Starts made ahead of their use (``Backend.start(ahead=True)``): the pool's."""
        self.gate = threading.Event()
        """Starts wait for this; clear it to hold them."""
        self.gate.set()
        self.pss_mb: float | None = None
        """What the sandboxes it starts from now on report as measured (``FakeSandbox.memory``)."""
        self._ids = itertools.count()
        self._lock = threading.Lock()

    def capabilities(self) -> Capabilities:
        return Capabilities(name=self.name, isolation=self.isolation, usable=True, evidence=("a test double",))

    def prepare(self, spec: SandboxSpec) -> SandboxSpec:
        return spec

    def start(self, spec: SandboxSpec, ahead: bool = False) -> FakeSandbox:
        self.gate.wait()
        with self._lock:
            self.start_attempts += 1
            self.ahead_starts += ahead
            if self.failures_to_come > 0:
                self.failures_to_come -= 1
                raise SandboxError("fake start failure")
            sandbox = FakeSandbox(f"fake-{next(self._ids)}", self.pss_mb)
            self.started.append(sandbox)
            return sandbox

    def ready_memory_mb(self, spec: SandboxSpec) -> int:
        return spec.memory_mb

    def create_snapshot(self, spec: SandboxSpec, directory: Path) -> SnapshotFiles:
        raise InvalidRequest("the fake backend makes no snapshots")

    def resume(self, spec: SandboxSpec, directory: Path) -> FakeSandbox:
        if not (directory / "fake").is_file():
            raise SandboxError(f"nothing paused in {directory}")
        return self.start(spec)

    def sweep(self) -> list[str]:
        return []

    def close(self) -> None:
        """Nothing is held for the whole server; sandboxes left alive stay visible to ``alive``."""

    def alive(self) -> list[FakeSandbox]:
        """Sandboxes started and not destroyed."""
        with self._lock:
            return [sandbox for sandbox in self.started if sandbox.state is not State.DESTROYED]


class FakeClock:
    """A monotonic clock that moves only when the test moves it, for ``Pool(clock=...)``.
    It counts its reads: the pool's manager reads it on every tick, so a test can wait for
    ticks to have happened instead of sleeping through them."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.reads = 0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            self.reads += 1
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds
