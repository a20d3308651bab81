"""QEMU processes and their run folders: find, kill, sweep.

Each VM gets ``run_dir/qemu-<id>`` (root's, 0700) holding QEMU's log, its host pid and
the pid of the server that owns it, all written by the server; and in it ``vm/``, owned
by the VMM's uid, the only host folder QEMU can write: its sockets and console log. The
VMM cannot touch what the server trusts (the pid file a sweep kills by), only its own.

A folder whose owner is gone is a crash leftover: ``sweep`` kills its QEMU (after
checking the pid still names that VM's QEMU, since pids are reused) and removes it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from pathlib import Path

PREFIX = "qemu-"
PID_FILE = "qemu.pid"
OWNER_FILE = "owner"
VM_FOLDER = "vm"
"""The VMM's own part of the run folder: what follows lives in it."""
QMP_SOCKET = "qmp.sock"
AGENT_SOCKET = "agent.sock"
CONSOLE_LOG = "console.log"
QEMU_LOG = "qemu.log"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks: with the pid, names it uniquely."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def write_owner(folder: Path) -> None:
    pid = os.getpid()
    (folder / OWNER_FILE).write_text(f"{pid} {_start_time(pid)}\n")


def owner_alive(folder: Path) -> bool:
    try:
        pid_text, started = (folder / OWNER_FILE).read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return False
    return _start_time(pid) == started


def vm_name(sandbox_id: str) -> str:
    """QEMU's ``-name``: how a pid is told to still be this VM's QEMU."""
    return f"infra-operator-{sandbox_id}"


def write_pid(folder: Path, pid: int) -> None:
    (folder / PID_FILE).write_text(f"{pid}\n")


def qemu_pid(folder: Path) -> int | None:
    """QEMU's pid from its pid file, only while that pid is still QEMU for this folder."""
    try:
        pid = int((folder / PID_FILE).read_text().strip())
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    # Not its working directory: QEMU runs in a mount namespace of its own, where the
    # run folder has another path. Its -name carries the sandbox id the folder is named by.
    name = vm_name(folder.name.removeprefix(PREFIX)).encode()
    if b"qemu-system" not in arguments[0] or not any(arg.startswith(name) for arg in arguments):
        return None
    return pid


def kill(pid: int, timeout: float = 5.0) -> None:
    """SIGKILL ``pid`` and wait until it is gone (reaping it when it is our child)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                return
        except ChildProcessError:
            if not Path(f"/proc/{pid}").exists():
                return
            # Not our child: it is gone once /proc says it is a zombie or gone.
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                    return
        time.sleep(0.005)


def remove_folder(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def sweep(run_dir: Path) -> list[str]:
    removed: list[str] = []
    if not run_dir.is_dir():
        return removed
    for folder in sorted(run_dir.glob(f"{PREFIX}*")):
        if not folder.is_dir() or owner_alive(folder):
            continue
        pid = qemu_pid(folder)
        if pid is not None:
            kill(pid)
            removed.append(f"killed QEMU {pid} of {folder.name}")
        remove_folder(folder)
        removed.append(f"removed {folder}")
    return removed
