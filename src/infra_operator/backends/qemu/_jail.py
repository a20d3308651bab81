"""The VMM's jail: every QEMU runs unprivileged, sees only its own files, and is held
in a cgroup, as Firecracker's jailer does for its VMM.

How one QEMU is started (``launch``):

- **uid.** QEMU runs as ``VMM_UID`` (70000), one dedicated unprivileged host uid with
  no supplementary groups, no capabilities (an empty bounding set too) and
  ``no_new_privs``. bwrap builds the jail as root (inside a user namespace it could not
  bind files from below root's 0700 folders) and execs ``setpriv``, which drops to the
  uid and execs QEMU. Not the jail backend's 65534: untrusted code runs on the host as
  65534 there, and must not be able to signal or trace a VMM. One uid for all VMMs
  rather than one per VM: what a uid per VM would add, VMMs unable to signal or trace
  each other, the PID namespace below already gives (no VMM can name another's
  process), each VM's files are reachable only through its own mount namespace, and
  one uid needs no allocator that must survive server crashes without ever handing
  one uid to two live VMs.
- **namespaces.** bwrap gives QEMU new mount, PID (QEMU is its PID 1), IPC, UTS and
  network namespaces (QEMU needs no network: the guest has no NIC). Its root is an
  empty read-only tmpfs holding only: QEMU's binary, the shared libraries ``ldd`` names
  for it and its TCG module, the microvm firmware, ``setpriv`` (which QEMU replaces at
  once), /dev/null, the guest kernel and initramfs (bound read-only), in "file"
  snapshot mode the snapshot's memory file, and the run folder's ``vm/``. No /proc,
  /sys, /etc, /tmp or shell.
- **files by descriptor.** The rootfs is opened read-only by the server and inherited
  (``-add-fd``): no image is reachable by path, not even its own, and a read-only
  descriptor cannot be reopened for writing. Snapshot streams go over QMP as
  descriptors too (see ``_backend``), so QEMU never opens a snapshot file by name, and
  its seccomp filter (``-sandbox on``) denies spawning as well.
- **cgroup.** ``backends._cgroups.HostCgroup``, shared with the jail backend: memory
  (guest RAM plus ``MEMORY_OVERHEAD_MB`` for QEMU and TCG's translation buffer), tasks
  (QEMU's thread pool grows to 64 workers and a thread it cannot create aborts it, so
  the cap is well above that) and CPU (one core per vCPU plus one for QEMU's main loop
  and I/O). bwrap holds QEMU (``--block-fd``) until the server has moved it into the
  group, so nothing QEMU runs is ever outside it.

Cost, measured on the 2-core development machine (load 5, 12 starts each): from the
server's start call to QEMU's QMP socket, a median 36 ms jailed against 20 ms for the
same QEMU started bare (bwrap, the binds, setpriv and the cgroup).

What the VMM can still write: its ``vm/`` folder (sockets, console log) and its log
(stdout and stderr, a file the server opened). In "file" snapshot mode (the backend's
default) it can also write the snapshot's memory file it maps: QEMU 7.2 opens guest RAM
files read-write even to map them private (``readonly=on`` maps guest RAM read-only; a
private mapping of a read-only file, ``rom=off``, arrived in QEMU 8.2), so the file is
``VMM_UID``'s, 0600, and a VMM escaped from one clone could alter what later clones of
that snapshot start from. "stream" snapshots have no such file; with QEMU 8.2 the file
could be bound read-only.

On KVM hosts the VMM gets /dev/kvm and, as its one supplementary group, the group that
owns it (root:kvm 0660 on Debian). These machines have no usable KVM, so that path is
untested here, and the KVM probe boot (``_probe``, our kernel straight into
``poweroff``, only on CPUs with vmx/svm) still runs QEMU unjailed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import BinaryIO

from ...errors import BootFailed, SandboxError
from .. import _cgroups
from .._cgroups import HostCgroup
from . import _command, _process

VMM_UID = 70000
"""Above the 16-bit ids distributions hand out, below the 100000 where /etc/subuid
ranges start by default, and not 65534, which the jail backend's programs run as."""
MEMORY_OVERHEAD_MB = 384
"""Beyond guest RAM: QEMU itself and TCG's translation buffer (measured: a 256 MiB
python guest's QEMU holds about 260 MiB resident in all)."""
TASKS = 128
CPU_PER_VMM = 1.0
"""CPU beyond the vCPUs: QEMU's main loop and I/O threads."""
SETPRIV = "/usr/bin/setpriv"
KVM = "/dev/kvm"
DEV_NULL = "/dev/null"


@dataclass
class Vmm:
    """One jailed QEMU. ``process`` is bwrap, which waits for QEMU and exits with its status."""

    process: subprocess.Popen[bytes]
    pid: int
    """QEMU's pid on the host."""
    cgroup: HostCgroup

    def kill(self) -> None:
        """Kill QEMU, reap bwrap, remove the cgroup. QEMU is killed through its cgroup,
        not its pid: once bwrap has reaped it the pid may name someone else."""
        self.cgroup.remove()  # kills everything in it and waits until it is empty
        try:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(10)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SandboxError(f"bwrap {self.process.pid} did not exit: {exc}") from exc


def missing() -> list[str]:
    """What this host lacks to jail a VMM, as install hints."""
    lacking = []
    if os.geteuid() != 0:
        lacking.append("run as root (the VMM's jail is built by root, then QEMU drops to its uid)")
    if shutil.which("bwrap") is None:
        lacking.append("bwrap (apt-get install bubblewrap)")
    if not os.access(SETPRIV, os.X_OK):
        lacking.append(f"{SETPRIV} (apt-get install util-linux)")
    return lacking


def _ldd(path: str) -> set[str]:
    try:
        out = subprocess.run(["ldd", path], capture_output=True, text=True, check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise SandboxError(f"qemu: cannot list the libraries of {path}: {exc}") from exc
    return {word for word in out.split() if word.startswith("/")}


def _data_dirs(binary: str) -> list[Path]:
    """QEMU's firmware search path, as it reports it."""
    try:
        out = subprocess.run([binary, "-L", "help"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise SandboxError(f"qemu: cannot ask {binary} for its data directories: {exc}") from exc
    return [Path(line.strip()) for line in out.splitlines() if line.strip()]


def _data_dirs_lazily(binary: str) -> Iterator[Path]:
    yield from _data_dirs(binary)


@cache
def runtime_binds(binary: str) -> tuple[tuple[str, str], ...]:
    """(host file, path inside) for what ``binary`` (an absolute path) needs to run a microvm under TCG or KVM.

    The libraries are bound at the paths ``ldd`` found them, where the dynamic loader
    looks without /etc/ld.so.cache. TCG is a loadable module in Debian's build, found
    in the module folder next to the binary's prefix. ``x-option-roms=off`` leaves
    microvm needing one firmware file, qboot (``bios-microvm.bin``)."""
    real = os.path.realpath(binary)
    binds = {SETPRIV: os.path.realpath(SETPRIV)}
    prefix = Path(real).parent.parent
    modules = [folder / "accel-tcg-x86_64.so" for folder in
               (*prefix.glob("lib/*-linux-gnu/qemu"), prefix / "lib/qemu", prefix / "lib64/qemu")]
    for path in [real, SETPRIV, *(str(module) for module in modules if module.is_file())]:
        binds[path] = os.path.realpath(path)
        for library in _ldd(path):
            binds[library] = os.path.realpath(library)
    # QEMU looks first in ``<its folder>/../share/qemu``; then wherever it says it looks
    # (asked only when needed: a server once got an empty answer from ``-L help``).
    for folder in (prefix / "share/qemu", *_data_dirs_lazily(binary)):
        firmware = folder / "bios-microvm.bin"
        if firmware.exists():  # bound where the path QEMU builds leads inside the jail
            binds[os.path.normpath(firmware)] = str(firmware.resolve())
            break
    else:
        raise SandboxError(f"qemu: no bios-microvm.bin (qboot) found for {binary}")
    return tuple(sorted((host, inside) for inside, host in binds.items()))


def _vm_files(machine: _command.Machine, folder: Path) -> list[tuple[str, Path, str]]:
    """(bwrap's bind option, host path, path inside) for the files of this VM alone."""
    files = [("--ro-bind-fd", machine.bzimage, _command.KERNEL)]
    if machine.initramfs is not None:  # a restored VM's kernel is already running (see ``_stub``)
        files.append(("--ro-bind-fd", machine.initramfs, _command.INITRAMFS))
    if machine.memory_file is not None:
        files.append(("--bind-fd", machine.memory_file, _command.MEMORY))
    files.append(("--bind-fd", folder / _process.VM_FOLDER, _command.RUN))
    return files


def _folders(paths: list[str]) -> list[str]:
    """Every folder above ``paths``, parents first."""
    found = {str(parent) for path in paths for parent in Path(path).parents if str(parent) != "/"}
    return sorted(found, key=lambda folder: (folder.count("/"), folder))


def _jail_argv(binary: str, fds: dict[str, int], vm_files: list[tuple[str, int, str]], kvm: bool) -> list[str]:
    """bwrap's and setpriv's part of the command, up to QEMU's own.

    ``vm_files``: (bind option, an O_PATH descriptor, path inside), so the jail holds the
    very files the server opened. bwrap makes missing folders 0700 and root's, which the
    VMM could not enter: each is made 0755 first."""
    runtime = runtime_binds(binary)
    inside = [path for _, path in runtime] + [path for _, _, path in vm_files] + [DEV_NULL]
    folders: list[str] = []
    for folder in _folders(inside):
        folders += ["--perms", "0755", "--dir", folder]
    binds: list[str] = []
    for host, path in runtime:
        binds += ["--ro-bind", host, path]
    for option, fd, path in vm_files:
        binds += [option, str(fd), path]
    groups = "--clear-groups"
    if kvm:
        binds += ["--dev-bind", KVM, KVM]
        groups = f"--groups={os.stat(KVM).st_gid}"
    return [
        "bwrap",
        "--unshare-pid", "--as-pid-1", "--unshare-ipc", "--unshare-net", "--unshare-uts",
        # Only what setpriv needs to empty the bounding set and drop to the VMM's uid;
        # the uid change clears them too.
        "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP",
        "--new-session",
        "--info-fd", str(fds["info"]), "--block-fd", str(fds["block"]),
        *folders,
        # All of /dev QEMU needs (it probes file locking on /dev/null); entropy for
        # virtio-rng comes from getrandom(), not /dev/urandom.
        "--dev-bind", DEV_NULL, DEV_NULL,
        *binds,
        "--remount-ro", "/",
        "--chdir", "/",  # not the run folder: bwrap, still root but without CAP_DAC_OVERRIDE, cannot enter it
        SETPRIV, f"--reuid={VMM_UID}", f"--regid={VMM_UID}", groups, "--inh-caps=-all", "--bounding-set=-all",
        "--no-new-privs",
    ]


def _prepare_files(machine: _command.Machine, folder: Path) -> None:
    """The VMM's ``vm/`` folder and, in "file" snapshot mode, the memory file: its uid's."""
    vm_folder = folder / _process.VM_FOLDER
    vm_folder.mkdir(mode=0o700)
    os.chown(vm_folder, VMM_UID, VMM_UID)
    if machine.memory_file is not None:
        if machine.memory_shared:
            machine.memory_file.touch(mode=0o600)
        own_memory_file(machine.memory_file)


def own_memory_file(path: Path) -> None:
    """A "file" snapshot's memory file, made the VMM uid's and 0600: QEMU 7.2 opens it
    read-write even to map it private (see the module's note on "file" mode)."""
    os.chown(path, VMM_UID, VMM_UID)
    os.chmod(path, 0o600)


def _read_child_pid(info: int) -> int | None:
    data = b""
    while chunk := os.read(info, 4096):
        data += chunk
    try:
        return int(json.loads(data)["child-pid"])
    except (ValueError, KeyError, TypeError):
        return None  # bwrap failed before it made the jail; its log says why


def launch(
    binary: str, machine: _command.Machine, folder: Path, name: str, incoming: bool, log: BinaryIO
) -> Vmm:
    """Start QEMU for ``machine`` jailed, with ``folder`` (the server's run folder, already
    made) holding its ``vm/``; its output goes to ``log``."""
    sandbox_id = folder.name.removeprefix(_process.PREFIX)
    kvm = machine.accelerator == "kvm"
    _prepare_files(machine, folder)
    memory = (machine.memory_mb + MEMORY_OVERHEAD_MB) << 20
    cgroup = HostCgroup.create(f"{os.getpid()}-qemu-{sandbox_id}", memory, TASKS + machine.vcpus,
                               cpus=machine.vcpus + CPU_PER_VMM)
    ours: list[int] = []
    process: subprocess.Popen[bytes] | None = None
    try:
        rootfs = os.open(machine.rootfs, os.O_RDONLY | os.O_CLOEXEC)
        ours.append(rootfs)
        vm_files: list[tuple[str, int, str]] = []
        for option, path, inside in _vm_files(machine, folder):
            vm_files.append((option, os.open(path, os.O_PATH | os.O_CLOEXEC), inside))
            ours.append(vm_files[-1][1])
        info_read, info_write = os.pipe2(os.O_CLOEXEC)
        block_read, block_write = os.pipe2(os.O_CLOEXEC)
        ours += [info_read, info_write, block_read, block_write]
        fds = {"info": info_write, "block": block_read}
        # QEMU by its real path: without /proc it finds its firmware from argv[0], and
        # ``/bin/..`` inside the jail (where /bin is a folder, not a link) is not /usr.
        qemu = _command.argv(os.path.realpath(binary), machine, name, incoming, rootfs_fd=rootfs)
        process = subprocess.Popen(
            [*_jail_argv(binary, fds, vm_files, kvm), *qemu],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            pass_fds=(*fds.values(), rootfs, *(fd for _, fd, _ in vm_files)), close_fds=True,
            start_new_session=True,  # a Ctrl-C at the server's terminal is not for the VMs
        )
        for fd in (info_write, block_read, rootfs, *(fd for _, fd, _ in vm_files)):  # the jail has its copies
            os.close(fd)
            ours.remove(fd)
        pid = _read_child_pid(info_read)
        if pid is None:
            process.wait(10)
            raise BootFailed(f"qemu: bwrap could not jail QEMU (exit {process.returncode})")
        try:
            cgroup.add(pid)
        except SandboxError as exc:
            process.wait(10)  # bwrap failed in the jail after making it
            raise BootFailed(f"qemu: bwrap could not jail QEMU (exit {process.returncode})") from exc
        _process.write_pid(folder, pid)
        os.write(block_write, b"go")  # bwrap now execs QEMU, inside the cgroup
        return Vmm(process, pid, cgroup)
    except BaseException:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        cgroup.remove()
        raise
    finally:
        for fd in ours:
            os.close(fd)


def sweep_cgroups() -> list[str]:
    """The cgroups of servers that are gone (the jail backend's sweep removes the same)."""
    return _cgroups.sweep()
