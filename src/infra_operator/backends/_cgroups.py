"""Host cgroups that hold one jail or one QEMU VMM: memory, process and (optionally) CPU
limits, OOM evidence, and a way to kill everything inside. Works on cgroup v1 (as on
these machines) and v2.

Groups are named ``<server pid>-<sandbox id>`` under ``infra-operator``, so a sweep
at start-up can tell the leftovers of a dead server from the groups of a live one.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from ..errors import SandboxError
from ._leftovers import owner_is_gone

CGROUP_ROOT = Path("/sys/fs/cgroup")
GROUP_PARENT = "infra-operator"
CPU_PERIOD_US = 100_000


def unified() -> bool:
    return (CGROUP_ROOT / "cgroup.controllers").exists()


def _write(path: Path, value: str) -> None:
    path.write_text(value)


class HostCgroup:
    def __init__(self, dirs: list[Path]) -> None:
        self.dirs = dirs

    @classmethod
    def create(cls, name: str, memory_bytes: int, processes: int, cpus: float | None = None) -> HostCgroup:
        """``cpus``: at most that many cores' worth of CPU time (a CFS quota); None: no CPU limit."""
        quota = None if cpus is None else max(int(cpus * CPU_PERIOD_US), 1000)
        made = cls([])
        try:
            if unified():
                parent = CGROUP_ROOT / GROUP_PARENT
                parent.mkdir(exist_ok=True)
                controllers = "+memory +pids" + ("" if quota is None else " +cpu")
                _write(CGROUP_ROOT / "cgroup.subtree_control", controllers)
                _write(parent / "cgroup.subtree_control", controllers)
                group = parent / name
                group.mkdir()
                _write(group / "memory.max", str(memory_bytes))
                if (group / "memory.swap.max").exists():
                    _write(group / "memory.swap.max", "0")
                _write(group / "pids.max", str(processes))
                if (group / "memory.oom.group").exists():
                    _write(group / "memory.oom.group", "1")  # over its limit, the sandbox dies whole
                if quota is not None:
                    _write(group / "cpu.max", f"{quota} {CPU_PERIOD_US}")
                return cls([group])
            memory = CGROUP_ROOT / "memory" / GROUP_PARENT / name
            pids = CGROUP_ROOT / "pids" / GROUP_PARENT / name
            memory.mkdir(parents=True)
            made.dirs.append(memory)
            pids.mkdir(parents=True)
            made.dirs.append(pids)
            _write(memory / "memory.limit_in_bytes", str(memory_bytes))
            if (memory / "memory.memsw.limit_in_bytes").exists():
                _write(memory / "memory.memsw.limit_in_bytes", str(memory_bytes))
            _write(pids / "pids.max", str(processes))
            if quota is not None:
                cpu = CGROUP_ROOT / "cpu" / GROUP_PARENT / name
                cpu.mkdir(parents=True)
                made.dirs.append(cpu)
                _write(cpu / "cpu.cfs_period_us", str(CPU_PERIOD_US))
                _write(cpu / "cpu.cfs_quota_us", str(quota))
            return made
        except OSError as exc:
            made.remove()  # the groups made before the failure (on v1, one per controller)
            raise SandboxError(f"cannot create cgroup {name}: {exc.strerror or exc}") from exc

    def open_procs(self) -> list[int]:
        """Each group's ``cgroup.procs``, open for writing: a process given them joins the group
        by writing ``0``, which the kernel allows on the strength of who opened the file (us)."""
        fds: list[int] = []
        try:
            for group in self.dirs:
                fds.append(os.open(group / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC))
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            raise SandboxError(f"cannot open {group}/cgroup.procs: {exc.strerror or exc}") from exc
        return fds

    def add(self, pid: int) -> None:
        """Move ``pid`` into every group (for a process that cannot join by itself: it must
        not be running yet, or what it already forked stays outside)."""
        try:
            for group in self.dirs:
                _write(group / "cgroup.procs", str(pid))
        except OSError as exc:
            raise SandboxError(f"cannot move {pid} into {group}: {exc.strerror or exc}") from exc

    def oom_killed(self) -> bool:
        for group in self.dirs:
            for events in ("memory.events", "memory.oom_control"):
                try:
                    lines = (group / events).read_text().splitlines()
                except OSError:
                    continue
                for line in lines:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill" and int(value) > 0:
                        return True
        return False

    def pids(self) -> set[int]:
        found: set[int] = set()
        for group in self.dirs:
            try:
                found.update(int(pid) for pid in (group / "cgroup.procs").read_text().split())
            except OSError:
                pass
        return found

    def kill_all(self) -> None:
        for _ in range(50):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.01)

    def remove(self) -> None:
        self.kill_all()
        for group in self.dirs:
            for _ in range(100):
                try:
                    group.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)


def sweep() -> list[str]:
    """Remove the groups of servers that are no longer running."""
    parents = [CGROUP_ROOT / GROUP_PARENT] if unified() else [
        CGROUP_ROOT / controller / GROUP_PARENT for controller in ("memory", "pids", "cpu")]
    removed = []
    for parent in parents:
        for group in sorted(parent.glob("*-*")) if parent.exists() else []:
            if owner_is_gone(group.name):
                HostCgroup([group]).remove()
                removed.append(f"cgroup {group}")
    return removed
