"""The one interface every isolation backend implements.

The executor and the pool import only this module: they hold a ``Backend`` and
never know which. A backend starts a ``Sandbox`` from a ``SandboxSpec`` (a rootfs,
and for microVMs a kernel and maybe a snapshot), and a sandbox answers agent calls
until it is destroyed. Backends keep their tools (bubblewrap, QEMU, Firecracker)
and their exceptions to themselves: what leaves them is an ``errors.OperatorError``.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from ..guest.messages import Reply, Request

Isolation = Literal["vm", "namespace"]
Accelerator = Literal["kvm", "tcg"]
RootfsFormat = Literal["ext4", "squashfs"]
"""The file systems a rootfs image may hold; every backend runs from each, read-only."""

_SQUASHFS_MAGIC = b"hsqs"  # the first four bytes of a (little-endian) squashfs image


def rootfs_format(image: Path) -> RootfsFormat:
    """What ``image`` holds, read from its first bytes rather than from its name or record:
    images built before the store recorded a format are ext4, and so is anything not squashfs."""
    with image.open("rb") as handle:
        return "squashfs" if handle.read(4) == _SQUASHFS_MAGIC else "ext4"


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
    vmm_version: str | None = None
    """The VMM's version as it reports it (``qemu-system-x86_64 --version``): a snapshot is
    restored only by the version that saved it. None where the backend has none or does not tell."""


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


def _no_snapshot(
    backend: str, image: str, rootfs_sha256: str, kernel_sha256: str, vmm_version: str | None
) -> SnapshotFiles | None:
    return None


@dataclass(frozen=True)
class GuestImages:
    """Where a microVM backend finds what it boots: the current guest kernel, and the
    snapshot of an image for this backend made from that rootfs and kernel. The image
    store's lookups, handed in by whoever builds the backends (backends do not import
    ``images``); asked at each start, so a rebuilt kernel takes effect at once."""

    kernel: Callable[[], KernelFiles | None]
    snapshot: Callable[[str, str, str, str, str | None], SnapshotFiles | None] = _no_snapshot
    """``(backend, image, rootfs_sha256, kernel_sha256, vmm_version)`` to the snapshot, or None."""

    @classmethod
    def fixed(cls, kernel: KernelFiles | None) -> GuestImages:
        """One kernel and no snapshots: for a backend driven by hand."""
        return cls(kernel=lambda: kernel)


@dataclass(frozen=True)
class Warmup:
    """A throwaway program a backend may run in a sandbox it starts ahead of its use, to make
    that use faster: under QEMU's TCG the interpreter's code is translated once, here, instead
    of in the user's execution. What it leaves behind is wiped before the sandbox is handed
    out. The backend sets its limits, from the spec's. Tuples, not dicts: it is part of the
    spec, which keys the pool."""

    files: tuple[tuple[str, str], ...]
    """Working-folder file name and its content, base64, as an ``execute`` request carries them."""
    compile: tuple[str, ...] | None
    run: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    prestart: str | None = None
    """The program's file name, when the backend may then start ``run`` again, ahead, to wait
    for the next execution's program at that name (an interpreted language: no ``compile``)."""


@dataclass(frozen=True)
class SandboxSpec:
    """Everything a backend needs to start one sandbox; nothing about languages."""

    rootfs: Path
    rootfs_sha256: str
    image: str | None = None
    """The image's name in the store (a language): a microVM backend finds its snapshot by it."""
    memory_mb: int = 256
    vcpus: int = 1
    processes: int = 128
    disk_mb: int = 64
    """The size of each writable filesystem the sandbox gets (a jail's /work, /tmp and /dev/shm)."""
    kernel: KernelFiles | None = None
    snapshot: SnapshotFiles | None = None
    labels: dict[str, str] = field(default_factory=dict)
    """Free-form tags (the language, for one) shown in logs and process lists."""
    warmup: Warmup | None = None
    """What a backend may run in a sandbox started ahead (``Backend.start(ahead=True)``)."""


class State(enum.Enum):
    CREATED = "created"
    READY = "ready"
    RUNNING = "running"
    DESTROYED = "destroyed"


@dataclass(frozen=True)
class HostOutcome:
    """What the host saw of a sandbox's last call that its agent cannot report."""

    oom_killed: bool = False
    """The sandbox's host cgroup ran out of memory: the agent itself may have been killed."""


@dataclass(frozen=True)
class MemoryUse:
    """What a sandbox's processes hold in host memory, in MiB (``backends.measure_memory``)."""

    pss_mb: float
    """Proportional: each page shared with other processes counts as its share. The cost."""
    rss_mb: float
    """Resident: every page it maps, shared or not."""
    shared_mb: float
    """Of ``rss_mb``, the pages other processes map too (clones of one snapshot, libraries)."""


@dataclass(frozen=True)
class Listener:
    """Who hears a streaming call (an ``execute`` or ``cell`` sent with ``stream``): its output
    as the program writes it, and, through ``cancel``, when to stop it (its client went away)."""

    on_output: Callable[[str, bytes], None]
    """Called with ``"stdout"`` or ``"stderr"`` and the bytes, in the calling thread."""
    cancel: threading.Event = field(default_factory=threading.Event)


class Sandbox(Protocol):
    """One started sandbox with its agent waiting: used for one execution, then destroyed,
    or kept as a session's for many calls."""

    id: str
    state: State

    def call(self, message: Request, deadline: float, listener: Listener | None = None) -> Reply:
        """Send one request to the agent and return its reply, which names the request's
        ``op``; ``deadline`` is monotonic time. With a ``listener``, output frames the agent
        sends first go to it, and setting its ``cancel`` interrupts the call.

        Raises ``errors.AgentTimeout`` when the deadline passes and ``errors.AgentError``
        when the sandbox dies, answers nonsense or refuses the request.
        """
        ...

    def outcome(self) -> HostOutcome:
        """What the host saw of the last call (an OOM kill in a host cgroup, for example)."""
        ...

    def alive(self) -> bool:
        """Whether it can still take a request, known without asking its agent: it is ready, and
        its agent's channel is open with nothing on it (a sandbox that died has closed it). No
        round trip: under TCG one costs a waiting VM about 10 ms, on the request's path."""
        ...

    def memory(self) -> MemoryUse | None:
        """What the sandbox holds in host memory now, measured; None when it cannot be
        measured (no process of its own to read, or it is gone)."""
        ...

    def destroy(self) -> None:
        """Release everything; safe to call twice, logs what was already gone."""
        ...

    def pause(self, directory: Path) -> None:
        """Save this sandbox, as it is between two calls, into ``directory`` (which exists and
        is empty), then destroy it: its backend's ``resume`` brings it back there, also in another
        server process. Raises ``errors.Conflict`` when the backend cannot pause (the jail shares
        the host's kernel: there is no machine to save)."""
        ...


class Backend(Protocol):
    name: str
    isolation: Isolation
    """Static per backend: the executor reads it on every request without probing the host."""

    def capabilities(self) -> Capabilities: ...

    def prepare(self, spec: SandboxSpec) -> SandboxSpec:
        """``spec`` completed with what this backend needs to start it: for a microVM its
        guest kernel, its snapshot if one matches, and the VM's RAM (the request's memory
        limit then applies inside the guest). Raises ``errors.BackendUnavailable`` when
        something it needs is not built."""
        ...

    def start(self, spec: SandboxSpec, ahead: bool = False) -> Sandbox:
        """Boot (or restore from ``spec.snapshot``) a sandbox whose agent answers ``ping``.

        ``ahead``: it will wait in the pool before its one use, so time spent now is off the
        request's path; a backend may run ``spec.warmup`` in it to make that use faster, and
        must then leave nothing of it the program could see (files, processes, random state)."""
        ...

    def ready_memory_mb(self, spec: SandboxSpec) -> int:
        """What one started sandbox of ``spec`` is expected to hold while it waits to be used,
        before any is measured: the pool budgets by this until ``Sandbox.memory`` says more."""
        ...

    def create_snapshot(self, spec: SandboxSpec, directory: Path) -> SnapshotFiles:
        """Boot a sandbox to a ready agent and save it into ``directory`` (which exists and is empty).

        Raises ``errors.InvalidRequest`` when this backend cannot make snapshots.
        """
        ...

    def resume(self, spec: SandboxSpec, directory: Path) -> Sandbox:
        """The sandbox a ``Sandbox.pause`` saved into ``directory``, running again where it was,
        its clock set to now. ``directory`` is left as it was; the caller removes it."""
        ...

    def sweep(self) -> list[str]:
        """Remove what a crashed server left behind; return a line per thing removed."""
        ...

    def close(self) -> None:
        """Release what this backend holds for the whole server (mounts, say); sandboxes are gone by now."""
        ...
