"""What a server leaves on the host, seen from outside: processes, cgroups, run folders,
mounts. Tests take a footprint before and after and compare, naming what leaked.

A server is identified by its pid: the jail names its cgroups ``<pid>-*`` and its
run folders ``jail-<pid>-*``; its sandboxes are its descendant processes. Mounts are
those under the data dir and the runtime dir, but the shared read-only image mounts
(``/run/infra-operator/mounts``), which are there by design.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from conftest import DATA_DIR

CGROUP_PARENTS = (
    Path("/sys/fs/cgroup/infra-operator"),
    Path("/sys/fs/cgroup/memory/infra-operator"),
    Path("/sys/fs/cgroup/pids/infra-operator"),
    Path("/sys/fs/cgroup/cpu/infra-operator"),  # a QEMU VMM's CPU limit
)
# Mounts under the data dir are ours; of those, the shared image mounts are by design and
# image builds (of any server on this host sharing the data dir) come and go on their own.
RUNTIME_DIR = Path("/run/infra-operator")
NOT_LEAKS = (str(RUNTIME_DIR / "mounts") + "/", str(DATA_DIR / "cache" / "build") + "/")


def parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[1])


def descendants(root: int) -> set[int]:
    parents = {pid: parent(pid) for pid in (int(p) for p in os.listdir("/proc") if p.isdigit())}
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier and pid not in found}
        found |= frontier
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def host_uid(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def processes_with(token: str) -> list[int]:
    """Host processes whose command line holds ``token`` (a sandboxed program's marker)."""
    me = os.getpid()
    return [
        pid
        for pid in (int(p) for p in os.listdir("/proc") if p.isdigit())
        if pid != me and token in cmdline(pid)
    ]


def cgroups_of(server_pid: int) -> set[str]:
    return {
        str(group) for parent in CGROUP_PARENTS if parent.exists() for group in parent.glob(f"{server_pid}-*")
    }


def run_folders_of(server_pid: int) -> set[str]:
    run_dir = DATA_DIR / "run"
    return {str(folder) for folder in run_dir.glob(f"*-{server_pid}-*")} if run_dir.exists() else set()


def host_mounts() -> set[str]:
    """Mount points under the data and runtime dirs that are not there by design."""
    points = set()
    ours = (str(DATA_DIR) + "/", str(RUNTIME_DIR) + "/")
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        if point.startswith(ours) and not point.startswith(NOT_LEAKS):
            points.add(point)
    return points


@dataclass(frozen=True)
class Footprint:
    processes: frozenset[str]
    cgroups: frozenset[str]
    run_folders: frozenset[str]
    mounts: frozenset[str]

    @classmethod
    def of(cls, server_pid: int) -> Footprint:
        return cls(
            processes=frozenset(f"{pid} {cmdline(pid)[:80]}" for pid in descendants(server_pid)),
            cgroups=frozenset(cgroups_of(server_pid)),
            run_folders=frozenset(run_folders_of(server_pid)),
            mounts=frozenset(host_mounts()),
        )

    def growth_over(self, baseline: Footprint) -> list[str]:
        """What exceeds the baseline: a kind whose count grew, with the new items named.

        Counts, not identities, so a pool that replaces the ready sandbox it handed out
        is not a leak; a sandbox that stays on top of that is."""
        leaks = []
        for kind in ("processes", "cgroups", "run_folders", "mounts"):
            now, before = getattr(self, kind), getattr(baseline, kind)
            if len(now) > len(before):
                leaks.append(f"{kind}: {sorted(now - before)}")
        return leaks


def settled_leaks(server_pid: int, baseline: Footprint, wait_seconds: float = 10.0) -> list[str]:
    """Leaks left once the server had ``wait_seconds`` to settle (destroying is not instant)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        leaks = Footprint.of(server_pid).growth_over(baseline)
        if not leaks or time.monotonic() > deadline:
            return leaks
        time.sleep(0.1)
