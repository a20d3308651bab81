"""The Firecracker backend: a microVM per sandbox, configured through Firecracker's
API, the agent reached over vsock, snapshots saved and loaded by Firecracker itself."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import (
    AgentError,
    AgentTimeout,
    BackendUnavailable,
    BootFailed,
    OperatorError,
    RootfsNotFound,
    SandboxError,
    SnapshotNotFound,
)
from ...guest.protocol import AGENT_VSOCK_PORT
from .. import _channel, _microvm
from ..base import Capabilities, GuestImages, HostOutcome, Isolation, Listener, MemoryUse, SandboxSpec, SnapshotFiles, State
from . import _host, _vsock
from ._api import FirecrackerApi, Refused
from ._vm import API_SOCKET, PID_FILE, RUN_PREFIX, VSOCK_SOCKET, Launcher, MicroVm, jail_cgroups

if TYPE_CHECKING:
    from ...config import Settings
    from ...guest.messages import Reply, Request

log = logging.getLogger(__name__)

GUEST_CID = 3  # the lowest a guest may have: 0-2 are reserved for the hypervisor and host
BOOT_ARGS = "console=ttyS0 reboot=k panic=1 pci=off i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd"
"""Firecracker's recommended command line with the serial console on (its output goes to
the run folder's console.log) and without ``nomodule``: the guest's initramfs loads
virtio_mmio, virtio_blk and vsock as modules. ``infra.channel`` is added to it."""
ROOTFS_DRIVE = "rootfs"
SNAPSHOT_STATE = "vmstate"
SNAPSHOT_MEMORY = "mem"


class FirecrackerSandbox:
    """One running microVM with an open vsock connection to its agent."""

    def __init__(
        self,
        vm: MicroVm,
        api: FirecrackerApi,
        channel: socket.socket,
        on_destroy: Callable[[str], None] | None = None,
    ) -> None:
        self.id = vm.id
        self.state = State.READY
        self._vm = vm
        self._api = api
        self._channel: socket.socket | None = channel
        self._on_destroy = on_destroy

    @property
    def vm(self) -> MicroVm:
        return self._vm

    @property
    def api(self) -> FirecrackerApi:
        return self._api

    def call(self, message: Request, deadline: float, listener: Listener | None = None) -> Reply:
        if self.state is State.DESTROYED or self._channel is None:
            raise AgentError(f"sandbox {self.id} is {self.state.value}: no agent to call")
        fd = self._channel.fileno()
        self.state = State.RUNNING
        try:
            return _channel.call(fd, fd, message, deadline, self.id, listener)
        except AgentTimeout:
            # Its answer may still come and would be read as the next call's: no next call.
            self.close_channel()
            raise
        except AgentError as exc:
            gone = self._vm.why_dead()
            if gone is not None:
                self.close_channel()
                raise AgentError(f"sandbox {self.id}: the microVM died: {gone}") from exc
            raise
        finally:
            if self.state is State.RUNNING:
                self.state = State.READY

    def outcome(self) -> HostOutcome:
        return HostOutcome()  # the guest's own cgroup sees every kill; the host adds nothing

    def alive(self) -> bool:
        return self.state is State.READY and self._channel is not None and _channel.quiet(self._channel.fileno())

    def set_clock(self, timeout: float) -> None:
        if self._channel is None:
            raise AgentError(f"sandbox {self.id}: no agent to call")
        fd = self._channel.fileno()
        _channel.set_clock(fd, fd, timeout, self.id)

    def pause(self, directory: Path) -> None:
        """Paused through the API, saved as a Full snapshot, then stopped. The channel goes
        first: the agent returns to accept(), where the resumed guest's host finds it."""
        if self.state is not State.READY:
            raise AgentError(f"sandbox {self.id} is {self.state.value}: only a ready sandbox can pause")
        try:
            self.close_channel()
            self._api.pause()
            self._api.create_snapshot(SNAPSHOT_STATE, SNAPSHOT_MEMORY)
            self._vm.kill()
            _take_snapshot_files(self._vm, directory)
        finally:
            # Its channel is closed either way: a sandbox whose pause failed is of no further use.
            self.destroy()

    def memory(self) -> MemoryUse | None:
        # The process we hold may be the jailer, or Firecracker in a pid namespace of its
        # own, and no Firecracker runs on our test hosts to check a reading against:
        # counted at its configured RAM until one can be measured for real.
        return None

    def close_channel(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def destroy(self) -> None:
        if self.state is State.DESTROYED:
            log.debug("sandbox %s: already destroyed", self.id)
            return
        self.state = State.DESTROYED
        # Each piece separately, so one failure cannot leak the rest.
        for release in (self.close_channel, self._api.close, self._vm.kill, self._vm.remove):
            try:
                release()
            except OSError as exc:
                log.warning("sandbox %s: %s: %s", self.id, release.__name__, exc)
        if self._on_destroy is not None:
            self._on_destroy(self.id)


class FirecrackerBackend:
    name = "firecracker"
    isolation: Isolation = "vm"

    def __init__(
        self,
        settings: Settings,
        images: GuestImages = _microvm.NO_IMAGES,
        *,
        boot_timeout: float = 20.0,
        api_timeout: float = 10.0,
        check_kvm: bool = True,
    ) -> None:
        """``images`` finds the guest kernel and snapshots for ``prepare``; a spec started
        directly brings its own. ``api_timeout`` bounds the process's start until its API answers; ``boot_timeout``
        then bounds the guest's boot (or restore) until its agent answers a ping.
        ``check_kvm=False`` skips the hardware probe before each start: for a Firecracker
        test double, which needs no KVM. A real Firecracker without KVM still fails, later."""
        self.settings = settings
        self.images = images
        self.boot_timeout = boot_timeout
        self.api_timeout = api_timeout
        self.check_kvm = check_kvm
        self._kvm: tuple[_host.Probe, ...] | None = None
        self._live: set[str] = set()

    # -- capabilities ---------------------------------------------------------------

    def _kvm_probes(self) -> tuple[_host.Probe, ...]:
        if self._kvm is None:
            self._kvm = _host.kvm_usable()
        return self._kvm

    def capabilities(self) -> Capabilities:
        evidence: list[str] = []
        missing: list[str] = []
        fc = _host.binary_version(self.settings.firecracker_bin, "firecracker")
        (evidence if fc.ok else missing).append(fc.evidence)
        if not fc.ok:
            missing.append(
                "install it: `infra.operator setup --install-firecracker`, "
                "or set INFRA_OPERATOR_FIRECRACKER_BIN"
            )
        if self.settings.jailer_bin is not None:
            jailer = _host.binary_version(self.settings.jailer_bin, "jailer")
            (evidence if jailer.ok else missing).append(jailer.evidence)
        kvm = self._kvm_probes()
        for probe in kvm:
            (evidence if probe.ok else missing).append(probe.evidence)
        if not all(probe.ok for probe in kvm):
            missing.append(
                "Firecracker needs hardware virtualization: a bare-metal host or a .metal instance"
            )
        # The image store's record of the current build, not a scan of the folder: a scan
        # trips over a build's temporary folder vanishing under it.
        kernel = self.images.kernel()
        if kernel is not None:
            evidence.append(f"guest kernel {kernel.vmlinux}")
        else:
            missing.append("no guest vmlinux: build the guest kernel first (`infra.operator kernel build`)")
        return Capabilities(
            name=self.name,
            isolation=self.isolation,
            usable=not missing,
            accelerator="kvm" if all(probe.ok for probe in kvm) else None,
            snapshots=True,
            evidence=tuple(evidence),
            missing=tuple(missing),
        )

    # -- starting -------------------------------------------------------------------

    def _launcher(self) -> Launcher:
        binary = self.settings.firecracker_bin
        if binary is None or not binary.is_file():
            raise BackendUnavailable(
                f"firecracker binary {'is not configured' if binary is None else f'{binary} is missing'}: "
                "run `infra.operator setup --install-firecracker` or set INFRA_OPERATOR_FIRECRACKER_BIN"
            )
        jailer = self.settings.jailer_bin
        if jailer is not None and not jailer.is_file():
            raise BackendUnavailable(f"jailer binary {jailer} does not exist")
        if jailer is not None and "firecracker" not in binary.name:
            # The jailer refuses any other exec file; say so before it does, more clearly.
            raise BackendUnavailable(
                f"the jailer runs only a file whose name includes 'firecracker', not {binary}"
            )
        if self.check_kvm:
            failed = [probe.evidence for probe in self._kvm_probes() if not probe.ok]
            if failed:
                raise BackendUnavailable(f"KVM is not usable here: {'; '.join(failed)}")
        return Launcher(firecracker=binary, jailer=jailer)

    def prepare(self, spec: SandboxSpec) -> SandboxSpec:
        # Firecracker's version is not recorded yet: its snapshots match as before (None to None).
        return _microvm.prepare(spec, self.name, self.images, self.settings.vm_memory_mb, None)

    def start(self, spec: SandboxSpec, ahead: bool = False) -> FirecrackerSandbox:
        # ``ahead`` changes nothing: under KVM the guest's code runs natively, nothing to warm.
        launcher = self._launcher()
        _check_files(spec)
        vm = MicroVm(self.settings.run_dir, uuid.uuid4().hex[:12], launcher)
        api: FirecrackerApi | None = None
        channel: socket.socket | None = None
        try:
            with _os_errors(vm):
                vm.prepare()
                paths = _place(vm, spec)
                try:
                    vm.spawn(spec.memory_mb)
                except (FileNotFoundError, PermissionError) as exc:
                    raise BackendUnavailable(f"cannot run {exc.filename}: {exc.strerror}") from exc
            self._live.add(vm.id)
            api = FirecrackerApi(vm.host_path(API_SOCKET), vm.id)
            _wait_for_api(vm, api, time.monotonic() + self.api_timeout)
            deadline = time.monotonic() + self.boot_timeout
            try:
                _configure(api, spec, paths)
            except BootFailed as exc:
                # A request that got no answer: say why, when it is that the process died.
                gone = None if isinstance(exc, Refused) else vm.why_dead(wait=0.5)
                if gone is not None:
                    raise BootFailed(f"{exc.message}: the process died: {gone}") from exc
                raise
            channel = _connect_agent(vm, deadline)
            _wait_ready(channel, vm, deadline)
            return FirecrackerSandbox(vm, api, channel, on_destroy=self._live.discard)
        except BaseException:
            if channel is not None:
                channel.close()
            if api is not None:
                api.close()
            vm.kill()
            vm.remove()
            self._live.discard(vm.id)
            raise

    def ready_memory_mb(self, spec: SandboxSpec) -> int:
        return spec.memory_mb  # the guest's RAM, all of it the VM's own

    def create_snapshot(self, spec: SandboxSpec, directory: Path) -> SnapshotFiles:
        sandbox = self.start(replace(spec, snapshot=None))
        try:
            # Let go of the agent first: it goes back to accept(), where the restored
            # guest will find it (a restore resets every vsock connection anyway).
            sandbox.close_channel()
            sandbox.api.pause()
            sandbox.api.create_snapshot(SNAPSHOT_STATE, SNAPSHOT_MEMORY)
            sandbox.vm.kill()
            return _take_snapshot_files(sandbox.vm, directory)
        finally:
            sandbox.destroy()

    def resume(self, spec: SandboxSpec, directory: Path) -> FirecrackerSandbox:
        """A paused sandbox is a snapshot of its own: loaded as a pooled clone's is."""
        files = SnapshotFiles(directory, directory / SNAPSHOT_STATE, directory / SNAPSHOT_MEMORY)
        sandbox = self.start(replace(spec, snapshot=files))
        try:
            sandbox.set_clock(self.boot_timeout)
        except BaseException:
            sandbox.destroy()
            raise
        return sandbox

    # -- cleaning up ----------------------------------------------------------------

    def close(self) -> None:
        """Nothing is held server-wide: each VM owns its run folder and is destroyed with it."""

    def sweep(self) -> list[str]:
        removed: list[str] = []
        run_dir = self.settings.run_dir
        if not run_dir.is_dir():
            return removed
        exec_name = self.settings.firecracker_bin.name if self.settings.firecracker_bin else "firecracker"
        for folder in sorted(run_dir.glob(f"{RUN_PREFIX}*")):
            sandbox_id = folder.name[len(RUN_PREFIX) :]
            if sandbox_id in self._live:
                continue
            pid = _leftover_pid(folder, sandbox_id)
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                    removed.append(f"killed firecracker pid {pid} of sandbox {sandbox_id}")
                _wait_gone(pid)
            for group in jail_cgroups(exec_name, sandbox_id):
                with contextlib.suppress(OSError):
                    group.rmdir()
                    removed.append(f"removed cgroup {group}")
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(f"removed run folder {folder}")
        return removed


def _take_snapshot_files(vm: MicroVm, directory: Path) -> SnapshotFiles:
    """Move the snapshot a stopped VM wrote in its run folder into ``directory``."""
    files = SnapshotFiles(directory, directory / SNAPSHOT_STATE, directory / SNAPSHOT_MEMORY)
    with _os_errors(vm):
        for name, target in ((SNAPSHOT_STATE, files.vmstate), (SNAPSHOT_MEMORY, files.memory)):
            assert target is not None
            # Under a temporary name first: a half-moved file never has the real one.
            partial = target.with_name(f".{target.name}.part")
            shutil.move(vm.root / name, partial)
            if vm.jailed and os.geteuid() == 0:
                # Written as the jail's uid; later jails get hard links to these files,
                # so no jail uid may own (and so rewrite) them.
                os.chown(partial, 0, 0)
            partial.chmod(0o644)
            os.replace(partial, target)
    return files


def _place(vm: MicroVm, spec: SandboxSpec) -> dict[str, str]:
    """Put the files the VM needs where Firecracker finds them; their names for the API."""
    # The rootfs also when restoring: Firecracker reopens the drive the snapshot recorded.
    # Hence one name whatever the image holds (squashfs or ext4): the guest's init reads
    # the file system from the drive's first bytes, and the name stays what snapshots recorded.
    paths = {"rootfs": vm.place(spec.rootfs, "rootfs.ext4")}
    if spec.snapshot is not None:
        assert spec.snapshot.memory is not None  # _check_files
        paths["vmstate"] = vm.place(spec.snapshot.vmstate, SNAPSHOT_STATE)
        paths["memory"] = vm.place(spec.snapshot.memory, SNAPSHOT_MEMORY)
    else:
        assert spec.kernel is not None  # _check_files
        paths["kernel"] = vm.place(spec.kernel.vmlinux, "vmlinux")
        paths["initrd"] = vm.place(spec.kernel.initramfs, "initramfs")
    return paths


def _configure(api: FirecrackerApi, spec: SandboxSpec, paths: dict[str, str]) -> None:
    """Restore, or configure and boot, in the order Firecracker requires."""
    if spec.snapshot is not None:
        api.load_snapshot(paths["vmstate"], paths["memory"], VSOCK_SOCKET)
        return
    api.boot_source(paths["kernel"], paths["initrd"], f"{BOOT_ARGS} infra.channel=vsock:{AGENT_VSOCK_PORT}")
    api.drive(ROOTFS_DRIVE, paths["rootfs"], read_only=True)
    api.machine_config(spec.vcpus, spec.memory_mb)
    api.vsock(GUEST_CID, VSOCK_SOCKET)
    api.start()


def _check_files(spec: SandboxSpec) -> None:
    if not spec.rootfs.is_file():
        raise RootfsNotFound(f"rootfs {spec.rootfs} does not exist")
    if spec.snapshot is not None:
        for path in (spec.snapshot.vmstate, spec.snapshot.memory):
            if path is None or not path.is_file():
                raise SnapshotNotFound(f"firecracker snapshot file {path} does not exist")
        return
    if spec.kernel is None:
        raise BackendUnavailable("firecracker needs a guest kernel (vmlinux and initramfs): build it first")
    for path in (spec.kernel.vmlinux, spec.kernel.initramfs):
        if not path.is_file():
            raise BackendUnavailable(f"guest kernel file {path} does not exist: build the guest kernel first")


@contextlib.contextmanager
def _os_errors(vm: MicroVm) -> Iterator[None]:
    """Host-side file work that fails is our failure to set the VM up, not an OSError."""
    try:
        yield
    except OperatorError:
        raise
    except OSError as exc:
        raise BootFailed(f"sandbox {vm.id}: {exc}") from exc


def _wait_for_api(vm: MicroVm, api: FirecrackerApi, deadline: float) -> None:
    """Until Firecracker answers GET /version: its socket file appears at bind(), a
    moment before it accepts connections."""
    last = "no API socket yet"
    while True:
        gone = vm.why_dead()
        if gone is not None:
            raise BootFailed(f"sandbox {vm.id}: {gone}")
        if (vm.root / API_SOCKET).exists():
            try:
                api.ping()
                return
            except BootFailed as exc:
                last = exc.message
        if time.monotonic() > deadline:
            raise BootFailed(f"sandbox {vm.id}: firecracker API not answering in time ({last})")
        time.sleep(0.002)


def _connect_agent(vm: MicroVm, deadline: float) -> socket.socket:
    try:
        return _vsock.connect(vm.host_path(VSOCK_SOCKET), AGENT_VSOCK_PORT, deadline, vm.why_dead)
    except ProcessLookupError as exc:
        raise BootFailed(f"sandbox {vm.id}: the microVM died while booting: {exc}") from exc
    except TimeoutError as exc:
        raise AgentTimeout(
            f"sandbox {vm.id}: no agent on vsock port {AGENT_VSOCK_PORT} in time (last: {exc}); "
            f"guest console: {vm.console_tail()}"
        ) from exc


def _wait_ready(channel: socket.socket, vm: MicroVm, deadline: float) -> None:
    """The agent answered the vsock handshake; the sandbox is ready once it answers a ping."""
    fd = channel.fileno()
    try:
        _channel.wait_ready(fd, fd, max(deadline - time.monotonic(), 0.5), vm.id)
    except SandboxError as exc:
        gone = vm.why_dead()
        if gone is not None:
            raise BootFailed(f"sandbox {vm.id}: the microVM died while booting: {gone}") from exc
        raise


def _leftover_pid(folder: Path, sandbox_id: str) -> int | None:
    """The pid in the folder, only if that process still is this sandbox's Firecracker."""
    try:
        pid = int((folder / PID_FILE).read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    # Substring, not element: the jailer execs Firecracker with "--id=<id>" as one argument.
    return pid if any(sandbox_id.encode() in argument for argument in cmdline) else None


def _wait_gone(pid: int, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            # A zombie (state Z, after the last ")") is gone for our purpose: it holds nothing.
            if Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z":
                return
        except (OSError, IndexError):
            return
        time.sleep(0.01)
