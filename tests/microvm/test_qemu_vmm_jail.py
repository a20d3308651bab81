"""The QEMU VMM's jail, seen from the host: its uid, what its mount namespace holds,
what it can open, and its cgroup's limits (issue 16, "An unprivileged VMM")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import Sandboxes

from infra_operator.backends.base import SandboxSpec
from infra_operator.backends.qemu import QemuSandbox, _command, _jail, _process

from .conftest import run_python

pytestmark = pytest.mark.slow


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def _qemu_pids_of(sandbox: QemuSandbox) -> list[int]:
    """Every process on the host whose command line names this sandbox's VM."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"qemu-system" in arguments[0] and any(_process.vm_name(sandbox.id).encode() in a for a in arguments):
            found.append(int(entry.name))
    return found


def _cgroup_dir(pid: int, controller: str) -> Path:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return Path("/sys/fs/cgroup") / controller / path.lstrip("/")
    raise AssertionError(f"{pid} is in no {controller} cgroup")


def test_no_vmm_runs_as_root(sandboxes: Sandboxes[QemuSandbox], spec: SandboxSpec, restore_spec: SandboxSpec) -> None:
    booted = sandboxes.start(spec)
    restored = sandboxes.start(restore_spec)
    for sandbox in (booted, restored):
        assert run_python(sandbox, "print('ran')")["stdout_text"] == "ran\n"
        pids = _qemu_pids_of(sandbox)
        assert pids == [sandbox.pid], pids  # one QEMU, the one the backend knows
        status = _status(sandbox.pid)
        print(f"QEMU {sandbox.pid}: Uid {status['Uid']}, Gid {status['Gid']}, Groups '{status['Groups']}', "
              f"CapEff {status['CapEff']}, NoNewPrivs {status['NoNewPrivs']}, NSpid {status['NSpid']}")
        assert status["Uid"].split() == [str(_jail.VMM_UID)] * 4
        assert status["Gid"].split() == [str(_jail.VMM_UID)] * 4
        assert status["Groups"] == ""
        assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0 and int(status["CapBnd"], 16) == 0
        assert status["NoNewPrivs"] == "1"
        assert status["NSpid"].split()[-1] == "1", "QEMU is not PID 1 of a PID namespace of its own"
        for namespace in ("mnt", "pid", "net", "ipc"):
            assert os.readlink(f"/proc/{sandbox.pid}/ns/{namespace}") != os.readlink(f"/proc/self/ns/{namespace}")
        # Its seccomp filter is on too, spawning included.
        assert status["Seccomp"] == "2"
        assert b"spawn=deny" in Path(f"/proc/{sandbox.pid}/cmdline").read_bytes()


def test_the_vmm_mount_namespace_holds_only_its_own_files(
    sandboxes: Sandboxes[QemuSandbox], restore_spec: SandboxSpec
) -> None:
    sandbox = sandboxes.start(restore_spec)
    root = Path(f"/proc/{sandbox.pid}/root")
    files: set[str] = set()
    for folder, _, names in os.walk(root):
        files.update("/" + str((Path(folder) / name).relative_to(root)) for name in names)
    print(f"{len(files)} files in the VMM's root:", " ".join(sorted(f for f in files if not f.startswith("/lib"))))
    runtime = {inside for _, inside in _jail.runtime_binds(_qemu_binary(sandbox))}
    own = {_command.KERNEL} | {f"{_command.RUN}/{name}" for name in
                               (_process.AGENT_SOCKET, _process.QMP_SOCKET, _process.CONSOLE_LOG)}
    if sandbox.machine.initramfs is not None:  # a clone runs its kernel already: a stub, no initramfs
        own.add(_command.INITRAMFS)
    if sandbox.machine.memory_file is not None:  # "file" snapshots: the snapshot's RAM
        own.add(_command.MEMORY)
    assert files == runtime | own | {"/dev/null"}
    assert sorted(path.name for path in root.iterdir()) == ["dev", "lib", "lib64", "usr", "vm"]
    # No image is there by path, not even its own: QEMU reads the rootfs through a descriptor.
    image = os.stat(restore_spec.rootfs)
    for path in files:
        found = os.stat(root / path.lstrip("/"))
        assert (found.st_dev, found.st_ino) != (image.st_dev, image.st_ino), path
    assert run_python(sandbox, "print('still runs')")["stdout_text"] == "still runs\n"


def _qemu_binary(sandbox: QemuSandbox) -> str:
    return Path(f"/proc/{sandbox.pid}/cmdline").read_bytes().split(b"\0")[0].decode()


# Run in a child that joins the VMM's mount namespace and takes its uid: what it can open
# is what a VMM taken over by the guest could open.
_AS_THE_VMM = textwrap.dedent("""
    import ctypes, errno, json, os, sys
    pid, uid, paths = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY), 0x00020000) != 0:
        raise OSError(ctypes.get_errno(), "setns")
    os.setgroups([]); os.setgid(uid); os.setuid(uid)
    seen = {}
    for path, mode in paths:
        try:
            os.close(os.open(path, {"r": os.O_RDONLY, "w": os.O_WRONLY}[mode]))
            seen[path + " " + mode] = "opened"
        except OSError as exc:
            seen[path + " " + mode] = errno.errorcode[exc.errno]
    print(json.dumps(seen))
""")


def test_the_vmm_cannot_open_host_files_outside_its_own(
    sandboxes: Sandboxes[QemuSandbox], restore_spec: SandboxSpec
) -> None:
    sandbox = sandboxes.start(restore_spec)
    assert restore_spec.snapshot is not None
    probes = [
        ("/etc/shadow", "r"),
        ("/etc/passwd", "r"),
        ("/var/lib/infra-operator/images/rootfs-python.ext4", "r"),
        (str(restore_spec.rootfs), "r"),
        (str(restore_spec.snapshot.vmstate), "r"),
        (str(sandbox.folder / _process.OWNER_FILE), "r"),
        ("/proc/1/environ", "r"),
        (_command.KERNEL, "r"),
        (_command.KERNEL, "w"),
        (f"{_command.RUN}/{_process.CONSOLE_LOG}", "w"),
    ]
    in_file = sandbox.machine.memory_file is not None
    if in_file:
        probes.append((_command.MEMORY, "w"))
    done = subprocess.run([sys.executable, "-c", _AS_THE_VMM, str(sandbox.pid), str(_jail.VMM_UID), json.dumps(probes)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    print(seen)
    assert seen == {
        "/etc/shadow r": "ENOENT",
        "/etc/passwd r": "ENOENT",
        "/var/lib/infra-operator/images/rootfs-python.ext4 r": "ENOENT",
        f"{restore_spec.rootfs} r": "ENOENT",
        f"{restore_spec.snapshot.vmstate} r": "ENOENT",
        f"{sandbox.folder / _process.OWNER_FILE} r": "ENOENT",
        "/proc/1/environ r": "ENOENT",
        f"{_command.KERNEL} r": "opened",  # its own files it can read...
        f"{_command.KERNEL} w": "EACCES",  # ...but not change (root's files)...
        f"{_command.RUN}/{_process.CONSOLE_LOG} w": "opened",  # the one folder it writes
        # QEMU 7.2 opens a "file" snapshot's RAM read-write even to map it private (see _jail).
        **({f"{_command.MEMORY} w": "opened"} if in_file else {}),
    }
    # ...and bound read-only as well, whatever their modes; only its run folder is writable.
    options = {}
    for line in Path(f"/proc/{sandbox.pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        options[fields[4]] = fields[5].split(",")
    assert "ro" in options["/"] and "ro" in options[_command.KERNEL]
    writable = ["/dev/null", *([_command.MEMORY] if in_file else []), _command.RUN]
    assert [path for path, flags in options.items() if "rw" in flags] == writable


def test_the_vmm_is_held_in_a_cgroup_with_limits(
    sandboxes: Sandboxes[QemuSandbox], restore_spec: SandboxSpec
) -> None:
    sandbox = sandboxes.start(restore_spec)
    assert run_python(sandbox, "print(sum(range(100)))")["stdout_text"] == "4950\n"
    memory = _cgroup_dir(sandbox.pid, "memory")
    pids = _cgroup_dir(sandbox.pid, "pids")
    cpu = _cgroup_dir(sandbox.pid, "cpu")
    for group in (memory, pids, cpu):
        assert group.parent.name == "infra-operator" and group.name.endswith(f"-qemu-{sandbox.id}"), group
    limit = int((memory / "memory.limit_in_bytes").read_text())
    used = int((memory / "memory.usage_in_bytes").read_text())
    quota = int((cpu / "cpu.cfs_quota_us").read_text())
    print(f"memory limit {limit >> 20} MiB (in use {used >> 20} MiB), tasks max "
          f"{(pids / 'pids.max').read_text().strip()} (in use {(pids / 'pids.current').read_text().strip()}), "
          f"CPU quota {quota} us per {(cpu / 'cpu.cfs_period_us').read_text().strip()} us")
    assert limit == (restore_spec.memory_mb + _jail.MEMORY_OVERHEAD_MB) << 20
    assert 0 < used < limit
    assert int((pids / "pids.max").read_text()) == _jail.TASKS + restore_spec.vcpus
    assert quota == int((restore_spec.vcpus + _jail.CPU_PER_VMM) * 100_000)
    # Every thread of QEMU is inside: it was moved before it ran.
    threads = int(_status(sandbox.pid)["Threads"])
    assert int((pids / "pids.current").read_text()) == threads
    assert [int(pid) for pid in (pids / "cgroup.procs").read_text().split()] == [sandbox.pid]
    sandbox.destroy()
    assert not memory.exists() and not pids.exists() and not cpu.exists()
