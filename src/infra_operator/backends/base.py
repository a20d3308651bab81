"""The one interface every isolation backend implements.

The executor and the pool import only this module: they hold a ``Backend`` and
never know which. A backend starts a ``Sandbox`` from a ``SandboxSpec`` (a rootfs,
and for microVMs a kernel and maybe a snapshot), and a sandbox answers agent calls
until it is destroyed. Backends keep their tools (bubblewrap, QEMU, Firecracker)
and their exceptions to themselves: what leaves them is an ``errors.OperatorError``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

Isolation = Literal["vm", "namespace"]
Accelerator = Literal["kvm", "tcg"]


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do on this host, and the evidence for each answer."""

    name: str
    isolation: Isolation
    usable: bool
    accelerator: Accelerator | None = None
    snapshots: bool = False
    evidence: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    """What to install or change for the backend to work here, when it does not."""


@dataclass(frozen=True)
class KernelFiles:
    """The guest kernel and initramfs a microVM boots (see ``images.kernel``)."""

    bzimage: Path
    vmlinux: Path
    initramfs: Path
    sha256: str
    """One checksum over kernel and initramfs: a snapshot is valid only for the same one."""


@dataclass(frozen=True)
class SnapshotFiles:
    """The files of one saved microVM; ``vmstate`` is device state, ``memory`` the guest's RAM."""

    directory: Path
    vmstate: Path
    memory: Path | None


@dataclass(frozen=True)
class SandboxSpec:
    """Everything a backend needs to start one sandbox; nothing about languages."""

    rootfs: Path
    rootfs_sha256: str
    memory_mb: int = 256
    vcpus: int = 1
    processes: int = 128
    disk_mb: int = 64
    """The size of each writable filesystem the sandbox gets (a jail's /work, /tmp and /dev/shm)."""
    kernel: KernelFiles | None = None
    snapshot: SnapshotFiles | None = None
    labels: dict[str, str] = field(default_factory=dict)
    """Free-form tags (the language, for one) shown in logs and process lists."""


class State(enum.Enum):
    CREATED = "created"
    READY = "ready"
    RUNNING = "running"
    DESTROYED = "destroyed"


class Sandbox(Protocol):
    """One started sandbox with its agent waiting. Used for one execution, then destroyed."""

    id: str
    state: State

    def call(self, message: dict[str, Any], deadline: float) -> dict[str, Any]:
        """Send one request to the agent and return its reply; ``deadline`` is monotonic time.

        Raises ``errors.AgentTimeout`` when the deadline passes and ``errors.AgentError``
        when the sandbox dies or answers nonsense.
        """
        ...

    def outcome(self) -> dict[str, Any]:
        """What the host saw of the last call that the agent cannot report (an OOM kill in a
        host cgroup, for example); keys as in the agent's step result."""
        ...

    def destroy(self) -> None:
        """Release everything; safe to call twice, logs what was already gone."""
        ...


class Backend(Protocol):
    name: str
    isolation: Isolation
    """Static per backend: the executor reads it on every request without probing the host."""

    def capabilities(self) -> Capabilities: ...

    def start(self, spec: SandboxSpec) -> Sandbox:
        """Boot (or restore from ``spec.snapshot``) a sandbox whose agent answers ``ping``."""
        ...

    def ready_memory_mb(self, spec: SandboxSpec) -> int:
        """What one started sandbox of ``spec`` holds while it waits to be used: the pool
        keeps ready sandboxes within a memory budget by this measure."""
        ...

    def create_snapshot(self, spec: SandboxSpec, directory: Path) -> SnapshotFiles:
        """Boot a sandbox to a ready agent and save it into ``directory`` (which exists and is empty).

        Raises ``errors.InvalidRequest`` when this backend cannot make snapshots.
        """
        ...

    def sweep(self) -> list[str]:
        """Remove what a crashed server left behind; return a line per thing removed."""
        ...

    def close(self) -> None:
        """Release what this backend holds for the whole server (mounts, say); sandboxes are gone by now."""
        ...
