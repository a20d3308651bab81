"""The QEMU microVM backend: a fresh ``-M microvm`` per sandbox, the rootfs as a
read-only virtio-blk disk, the agent over a virtio-serial port, snapshots as a
migration stream saved to a file and restored with ``-incoming``.

Every QEMU runs jailed (``_jail``): as an unprivileged uid, in namespaces whose root
holds only its kernel, initramfs and run folder (the rootfs is an inherited read-only
descriptor), in a cgroup with memory, task and CPU limits, and under its own seccomp
filter (``-sandbox on``). The server keeps root's side: it opens the files, connects
to the VM's sockets, and passes snapshot files to QEMU as descriptors over QMP
(``getfd`` and ``fd:`` migration URIs), so QEMU never opens one by name."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ...errors import (
    AgentError,
    AgentTimeout,
    BackendUnavailable,
    BootFailed,
    Conflict,
    SandboxError,
    SnapshotNotFound,
)
from ...guest import b64encode
from .. import _channel, _memory, _microvm
from ..base import (
    Accelerator,
    Capabilities,
    GuestImages,
    HostOutcome,
    Isolation,
    Listener,
    MemoryUse,
    SandboxSpec,
    SnapshotFiles,
    State,
    Warmup,
)
from . import _command, _jail, _pause, _probe, _process, _stub
from ._qmp import Monitor

if TYPE_CHECKING:
    from ...config import Settings
    from ...guest.messages import Reply, Request, WarmRequest

log = logging.getLogger(__name__)

SnapshotMemory = Literal["stream", "file"]

VMSTATE_NAME = "vmstate"
MEMORY_NAME = "memory"
MACHINE_NAME = "qemu-machine.json"
KERNEL_STUB_NAME = "kernel-stub"
"""What a clone is started with instead of the full kernel (see ``_stub``)."""
WARMUP_SECONDS = 60
"""The longest a warm-up may run (a compiler under TCG is slow); past it, it is cut short."""
_WARMUP_OUTPUT_BYTES = 1 << 16  # its output is dropped: kept small


def _tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def _ignore_shared(monitor: Monitor) -> None:
    """Leave file-backed RAM out of the stream: the memory file carries it."""
    capability = {"capability": "x-ignore-shared", "state": True}
    monitor.command("migrate-set-capabilities", capabilities=[capability])


class QemuSandbox:
    """One running QEMU microVM with its agent channel."""

    def __init__(self, sandbox_id: str, folder: Path, vmm: _jail.Vmm, machine: _command.Machine) -> None:
        self.id = sandbox_id
        self.machine = machine
        self.state = State.CREATED
        self.folder = folder
        self.vmm = vmm
        self.process = vmm.process
        """bwrap, which exits with QEMU's status when QEMU ends."""
        self.pid = vmm.pid
        """QEMU's own pid (as the host numbers it)."""
        self._folder_fd: int | None = os.open(folder, os.O_PATH | os.O_DIRECTORY)
        self._agent: socket.socket | None = None
        self.warmup_ms: float | None = None
        """How long its warm-up took, agent's clean-up included; None: it had none."""
        self.prestarted = False
        """Whether its next program's interpreter was started with the warm-up, and waits."""

    # Unix socket paths are limited to 108 bytes; through our descriptor of the run
    # folder they stay short however deep the data directory is.
    def socket_path(self, name: str) -> str:
        return f"/proc/self/fd/{self._folder_fd}/{_process.VM_FOLDER}/{name}"

    def _why_dead(self) -> str:
        code = self.process.poll()
        if code is None:
            return "QEMU is still running"
        detail = _tail(self.folder / _process.QEMU_LOG, 3) or "no message"
        console = _tail(self.folder / _process.VM_FOLDER / _process.CONSOLE_LOG, 4)
        return f"QEMU exited with {code}: {detail}" + (f"; console: {console}" if console else "")

    def connect_agent(self, timeout: float = 10.0) -> None:
        """Connect to the agent's socket as soon as QEMU has made it."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise BootFailed(f"sandbox {self.id}: {self._why_dead()}")
            connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            try:
                connection.connect(self.socket_path(_process.AGENT_SOCKET))
            except OSError as exc:
                connection.close()
                if not isinstance(exc, (FileNotFoundError, ConnectionRefusedError)):
                    raise BootFailed(f"sandbox {self.id}: cannot reach the agent's socket: {exc}") from exc
                if time.monotonic() > deadline:
                    message = f"sandbox {self.id}: QEMU made no agent socket in {timeout:g} s"
                    raise BootFailed(message) from exc
                time.sleep(0.002)
                continue
            self._agent = connection
            return

    def monitor(self, timeout: float = 10.0) -> Monitor:
        # QEMU makes its sockets one after another: wait for this one, not just any.
        path = self.socket_path(_process.QMP_SOCKET)
        deadline = time.monotonic() + timeout
        while not os.path.exists(path):
            if self.process.poll() is not None:
                raise BootFailed(f"sandbox {self.id}: {self._why_dead()}")
            if time.monotonic() > deadline:
                raise BootFailed(f"sandbox {self.id}: QEMU made no QMP socket in {timeout:g} s")
            time.sleep(0.002)
        monitor = Monitor(path, self.id)
        try:
            monitor.connect()
        except SandboxError as exc:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(1.0)  # a QEMU that hung up on QMP may be on its way out
            if self.process.poll() is not None:
                raise BootFailed(f"sandbox {self.id}: {self._why_dead()}") from exc
            raise
        return monitor

    def wait_ready(self, timeout: float) -> None:
        assert self._agent is not None
        fd = self._agent.fileno()
        try:
            _channel.wait_ready(fd, fd, timeout, self.id)
        except AgentTimeout as exc:
            raise BootFailed(f"sandbox {self.id}: the agent did not answer within {timeout:g} s; "
                             f"console: {_tail(self.folder / _process.VM_FOLDER / _process.CONSOLE_LOG)}") from exc
        except AgentError as exc:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(1.0)  # the socket closes a moment before QEMU is gone
            message = f"sandbox {self.id}: the agent went away while booting: {self._why_dead()}"
            raise BootFailed(message) from exc
        self.state = State.READY

    def set_clock(self, timeout: float) -> None:
        assert self._agent is not None
        fd = self._agent.fileno()
        _channel.set_clock(fd, fd, timeout, self.id)

    def pause(self, directory: Path) -> None:
        _pause.pause(self, directory)

    def call(self, message: Request, deadline: float, listener: Listener | None = None) -> Reply:
        if self.state is not State.READY or self._agent is None:
            raise AgentError(f"sandbox {self.id} is {self.state.value}, not ready for a call")
        fd = self._agent.fileno()
        self.state = State.RUNNING
        try:
            return _channel.call(fd, fd, message, deadline, self.id, listener)
        except AgentError as exc:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(0.2)
            if self.process.poll() is not None:
                reason = self._why_dead()
                # A dead VM is of no further use: release it now, not only when the caller does.
                self.destroy()
                raise AgentError(f"sandbox {self.id}: the VM died during the call ({reason})") from exc
            raise
        finally:
            if self.state is State.RUNNING:
                self.state = State.READY

    def outcome(self) -> HostOutcome:
        return HostOutcome()  # inside a VM the agent sees everything; the host adds nothing

    def alive(self) -> bool:
        # A guest whose agent dies panics, and panic=-1 with -no-reboot ends QEMU, closing the socket.
        return (self.state is State.READY and self._agent is not None and self.process.poll() is None
                and _channel.quiet(self._agent.fileno()))

    def memory(self) -> MemoryUse | None:
        if self.state is State.DESTROYED or self.process.poll() is not None:
            return None  # its pid may already name another process
        return _memory.measure(self.pid)  # QEMU's own, not bwrap's that waits for it

    def destroy(self) -> None:
        if self.state is State.DESTROYED:
            log.debug("sandbox %s already destroyed", self.id)
            return
        self.state = State.DESTROYED
        if self._agent is not None:
            with contextlib.suppress(OSError):
                self._agent.close()
            self._agent = None
        try:
            self.vmm.kill()
        except SandboxError as exc:
            log.warning("sandbox %s: could not kill QEMU %s: %s", self.id, self.pid, exc)
        if self._folder_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._folder_fd)
            self._folder_fd = None
        _process.remove_folder(self.folder)


class QemuBackend:
    """QEMU ``-M microvm``: KVM where usable by evidence, TCG elsewhere.

    ``images`` finds the guest kernel and snapshots (``prepare`` puts them in a spec); a
    spec's own ``kernel`` wins. Every method is synchronous: call it from a worker thread.

    ``snapshot_memory``: "file" (the default) boots the VM to be saved with its RAM in a
    shared file and leaves RAM out of the stream (``x-ignore-shared``); a restore maps
    that file private, copy-on-write, so clones share every page they have not written
    (measured: about 30 MiB PSS per ready python clone against about 160 MiB). "stream"
    saves guest RAM inside the migration stream (one file; each restore copies the
    guest's RAM into private memory); kept to measure the difference. A cold boot with
    file-backed RAM under TCG once seemed to stall at TSC calibration: that is the busy
    host's calibration failing whatever backs the RAM (without ``tsc_early_khz``, both
    layouts hung at load 13 on 2 cores; with it, both boot), see ``_command.kernel_args``.
    """

    name = "qemu"
    isolation: Isolation = "vm"

    def __init__(
        self,
        settings: Settings,
        images: GuestImages = _microvm.NO_IMAGES,
        *,
        binary: str = "qemu-system-x86_64",
        boot_timeout: float = 90.0,
        restore_timeout: float = 30.0,
        snapshot_memory: SnapshotMemory = "file",
    ) -> None:
        self.settings = settings
        self.images = images
        self.binary = binary
        self.boot_timeout = boot_timeout
        self.restore_timeout = restore_timeout
        self.snapshot_memory = snapshot_memory
        self._evidence: _probe.Evidence | None = None
        # Read once: every VM this server boots is told the same rate.
        self._tsc_khz = _probe.host_tsc_khz()

    # -- capabilities -------------------------------------------------------------
    def _accelerator(self) -> _probe.Evidence:
        if self._evidence is None:
            binary = _probe.find_qemu(self.binary) or self.binary
            self._evidence = _probe.accelerator(binary, self.images.kernel())
        return self._evidence

    def capabilities(self) -> Capabilities:
        binary = _probe.find_qemu(self.binary)
        evidence: list[str] = []
        missing: list[str] = []
        if binary is None:
            missing.append(f"{self.binary} (apt-get install qemu-system-x86)")
        else:
            evidence.append(f"{binary} found")
        jail = _jail.missing()
        if jail:
            missing.extend(jail)
        else:
            evidence.append(f"each QEMU jailed: uid {_jail.VMM_UID}, namespaces of its own, a cgroup")
        kernel = self.images.kernel()
        if kernel is None:
            missing.append("a guest kernel and initramfs (build them with `infra.operator kernel build`)")
        else:
            evidence.append(f"guest kernel {kernel.bzimage.parent.name}")
        accelerator: Accelerator | None = None
        if binary is not None:
            found = self._accelerator()
            accelerator = found.accelerator
            evidence.extend(found.lines)
        return Capabilities(
            name=self.name,
            isolation=self.isolation,
            usable=not missing,
            accelerator=accelerator,
            snapshots=True,
            evidence=tuple(evidence),
            missing=tuple(missing),
            vmm_version=_probe.qemu_version(self.binary),
        )

    # -- starting -----------------------------------------------------------------
    def prepare(self, spec: SandboxSpec) -> SandboxSpec:
        version = _probe.qemu_version(self.binary)
        return _microvm.prepare(spec, self.name, self.images, self.settings.vm_memory_mb, version)

    def _machine(
        self,
        spec: SandboxSpec,
        memory_mb: int | None = None,
        vcpus: int | None = None,
        saved: dict[str, Any] | None = None,
    ) -> _command.Machine:
        kernel = spec.kernel or self.images.kernel()
        if kernel is None:
            raise BackendUnavailable("qemu: no guest kernel; build one with images.kernel.build_kernel")
        if _probe.find_qemu(self.binary) is None:
            message = f"qemu: {self.binary} is not installed (apt-get install qemu-system-x86)"
            raise BackendUnavailable(message)
        lacking = _jail.missing()
        if lacking:
            raise BackendUnavailable("qemu: cannot jail QEMU here: " + "; ".join(lacking))
        if not spec.rootfs.is_file():
            raise BootFailed(f"qemu: rootfs {spec.rootfs} does not exist")
        accelerator = self._accelerator().accelerator
        if saved is not None:
            # A restored guest keeps the TSC rate it booted with; its command line must match.
            tsc_khz = int(saved["tsc_khz"]) if saved.get("tsc_khz") else None
        else:
            tsc_khz = self._tsc_khz if accelerator == "tcg" else None
        return _command.Machine(
            memory_mb=memory_mb or spec.memory_mb,
            vcpus=vcpus or spec.vcpus,
            accelerator=accelerator,
            tsc_khz=tsc_khz,
            bzimage=kernel.bzimage,
            initramfs=kernel.initramfs,
            rootfs=spec.rootfs,
        )

    def _spawn(self, machine: _command.Machine, spec: SandboxSpec, incoming: bool) -> QemuSandbox:
        sandbox_id = uuid.uuid4().hex[:12]
        folder = self.settings.run_dir / f"{_process.PREFIX}{sandbox_id}"
        label = re.sub(r"[^A-Za-z0-9_.-]", "", spec.labels.get("language", ""))
        name = _process.vm_name(sandbox_id) + (f"-{label}" if label else "")
        binary = _probe.find_qemu(self.binary) or self.binary
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            folder.mkdir(mode=0o700)  # the VMM's sockets reach the agent and QMP: root only
            _process.write_owner(folder)
            with (folder / _process.QEMU_LOG).open("wb") as qemu_log:
                vmm = _jail.launch(binary, machine, folder, name, incoming, qemu_log)
        except OSError as exc:
            _process.remove_folder(folder)
            raise BootFailed(f"qemu: cannot start {self.binary}: {exc.strerror or exc}") from exc
        except BootFailed as exc:
            detail = _tail(folder / _process.QEMU_LOG, 3) or "no message"
            _process.remove_folder(folder)
            raise BootFailed(f"{exc}: {detail}") from exc
        except BaseException:
            _process.remove_folder(folder)
            raise
        log.debug("sandbox %s: QEMU %s started jailed in %s", sandbox_id, vmm.pid, folder)
        return QemuSandbox(sandbox_id, folder, vmm, machine)

    def start(self, spec: SandboxSpec, ahead: bool = False) -> QemuSandbox:
        sandbox = self._restore(spec, spec.snapshot) if spec.snapshot is not None else self._boot(spec, self._machine(spec))
        # Under TCG every new VM translates the interpreter's code afresh, which costs the first
        # execution most of its time: one started ahead (in the pool) pays it now, off the request's
        # path. Under KVM the guest's code runs natively: nothing to warm.
        if ahead and spec.warmup is not None and sandbox.machine.accelerator == "tcg":
            self._warm(sandbox, spec, spec.warmup)
        return sandbox

    def _warm(self, sandbox: QemuSandbox, spec: SandboxSpec, warmup: Warmup) -> None:
        """Run ``warmup`` in the sandbox; the agent then puts the VM back as it was (see
        ``guest/_rewind.py``). A VM it could not put back is destroyed, never handed out."""
        message: WarmRequest = {"op": "warm", "execute": {
            "op": "execute",
            "files": dict(warmup.files),
            "compile": list(warmup.compile) if warmup.compile else None,
            "run": list(warmup.run),
            "env": dict(warmup.env),
            "stdin": "",
            "limits": {
                "wall_seconds": WARMUP_SECONDS,
                "cpu_seconds": WARMUP_SECONDS,
                "memory_bytes": spec.memory_mb << 20,
                "processes": spec.processes,
                "output_bytes": _WARMUP_OUTPUT_BYTES,
                "file_bytes": spec.disk_mb << 20,
            },
            # Its own: the real execution brings fresh ones again.
            "entropy": b64encode(os.urandom(64)),
            "clock": time.time(),
        }}
        if warmup.prestart is not None:
            message["prestart"] = warmup.prestart
        started = time.monotonic()
        try:
            reply = sandbox.call(message, started + WARMUP_SECONDS + 30)
        except Conflict as exc:
            # Refused before anything ran (an agent from an initramfs older than this server says
            # so too): the VM is as restored, still good to hand out, only not warm.
            log.warning("sandbox %s: the agent refused the warm-up (%s); is the kernel stale? "
                        "`infra.operator kernel build --if-stale`", sandbox.id, exc.message)
            return
        except BaseException:
            sandbox.destroy()
            raise
        assert reply["op"] == "warm"  # call() checked it
        sandbox.warmup_ms = (time.monotonic() - started) * 1000
        if reply["exit_code"] != 0:
            # Still put back, so still fine to use, only not (fully) warm.
            log.warning("sandbox %s: its warm-up ended with exit code %s%s", sandbox.id, reply["exit_code"],
                        f" ({reply['error']})" if reply["error"] else "")
        sandbox.prestarted = bool(reply.get("prestarted"))  # an agent older than this server has no such field
        log.debug("sandbox %s: warmed in %.0f ms%s", sandbox.id, sandbox.warmup_ms,
                  ", its next program's interpreter started" if sandbox.prestarted else "")

    def _boot(self, spec: SandboxSpec, machine: _command.Machine) -> QemuSandbox:
        sandbox = self._spawn(machine, spec, incoming=False)
        try:
            sandbox.connect_agent()
            monitor = sandbox.monitor()
            try:
                monitor.command("cont")
            finally:
                monitor.close()
            sandbox.wait_ready(self.boot_timeout)
        except BaseException:
            sandbox.destroy()
            raise
        return sandbox

    # -- snapshots ----------------------------------------------------------------
    def ready_memory_mb(self, spec: SandboxSpec) -> int:
        # Until a clone is measured (``QemuSandbox.memory``): at most the guest's RAM, as
        # if none of it were shared, which a booted VM can come close to.
        return spec.memory_mb

    def create_snapshot(self, spec: SandboxSpec, directory: Path) -> SnapshotFiles:
        plain = dataclasses.replace(spec, snapshot=None)
        machine = self._machine(plain)
        memory: Path | None = None
        if self.snapshot_memory == "file":
            memory = directory / MEMORY_NAME
            machine = dataclasses.replace(machine, memory_file=memory.absolute(), memory_shared=True)
        sandbox = self._boot(plain, machine)
        vmstate = directory / VMSTATE_NAME
        partial = directory / f".{VMSTATE_NAME}.partial"
        try:
            monitor = sandbox.monitor()
            try:
                if memory is not None:
                    _ignore_shared(monitor)
                monitor.command("stop")
                monitor.save_to(partial, 0o644, timeout=300)
            finally:
                monitor.close()
            partial.replace(vmstate)
        except OSError as exc:
            raise SandboxError(f"qemu: cannot save the snapshot: {exc.strerror or exc}") from exc
        finally:
            sandbox.destroy()
            partial.unlink(missing_ok=True)
        record = {key: str(value) if isinstance(value, Path) else value
                  for key, value in dataclasses.asdict(sandbox.machine).items()}
        del record["memory_file"], record["memory_shared"]  # where the snapshot lives decides
        record["memory"] = self.snapshot_memory
        try:
            _stub.write_stub(machine.bzimage, directory / KERNEL_STUB_NAME)
            if memory is not None:
                # Clones map it private and never write it. QEMU 7.2 still opens it read-write
                # (its memory-backend-file has no rom=off), so it stays the VMM uid's, 0600:
                # no one else may write it, and the tests check its bytes stay the same.
                _jail.own_memory_file(memory)
        except (OSError, ValueError) as exc:
            raise SandboxError(f"qemu: cannot finish the snapshot: {exc}") from exc
        (directory / MACHINE_NAME).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        return SnapshotFiles(directory=directory, vmstate=vmstate, memory=memory)

    def _restore(self, spec: SandboxSpec, snapshot: SnapshotFiles) -> QemuSandbox:
        if not snapshot.vmstate.is_file():
            raise SnapshotNotFound(f"qemu: snapshot file {snapshot.vmstate} is missing")
        try:
            saved = json.loads((snapshot.directory / MACHINE_NAME).read_text())
            memory_mb, vcpus = int(saved["memory_mb"]), int(saved["vcpus"])
            accelerator = str(saved["accelerator"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BootFailed(f"qemu: snapshot {snapshot.directory} has no readable {MACHINE_NAME}") from exc
        # The restored VM must be the saved one's twin: same RAM, vCPUs and accelerator.
        machine = self._machine(spec, memory_mb=memory_mb, vcpus=vcpus, saved=saved)
        if machine.accelerator != accelerator:
            message = f"qemu: snapshot was made under {accelerator}, this host uses {machine.accelerator}"
            raise BootFailed(message)
        stub = snapshot.directory / KERNEL_STUB_NAME
        if stub.is_file():  # the running guest needs no kernel or initramfs from QEMU
            machine = dataclasses.replace(machine, bzimage=stub.absolute(), initramfs=None)
        in_file = saved.get("memory") == "file"
        if in_file:
            if snapshot.memory is None or not snapshot.memory.is_file():
                raise SnapshotNotFound(f"qemu: snapshot {snapshot.directory} has no memory file")
            # Private: the clone's writes stay its own, the file stays the snapshot.
            memory_file = snapshot.memory.absolute()
            machine = dataclasses.replace(machine, memory_file=memory_file, memory_shared=False)
        sandbox = self._spawn(machine, spec, incoming=True)
        try:
            # The agent's socket is connected before the guest runs again, so the guest
            # never sees its host side closed.
            sandbox.connect_agent()
            monitor = sandbox.monitor()
            try:
                if in_file:
                    _ignore_shared(monitor)
                try:
                    monitor.restore_from(snapshot.vmstate, self.restore_timeout)
                except OSError as exc:
                    raise SnapshotNotFound(f"qemu: cannot open snapshot {snapshot.vmstate}: {exc.strerror}") from exc
            finally:
                monitor.close()
            sandbox.wait_ready(self.restore_timeout)
        except BaseException:
            sandbox.destroy()
            raise
        return sandbox

    def resume(self, spec: SandboxSpec, directory: Path) -> QemuSandbox:
        return _pause.resume(self, spec, directory)

    def close(self) -> None:
        """Nothing is held server-wide: each VM owns its run folder and is destroyed with it."""

    def sweep(self) -> list[str]:
        # The folders first: their sweep kills QEMU by its checked pid, then the cgroups
        # of dead servers (the VMMs' among them) go.
        return _process.sweep(self.settings.run_dir) + _jail.sweep_cgroups()
