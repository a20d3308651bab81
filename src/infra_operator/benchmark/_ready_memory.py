"""What each ready sandbox in the pool costs the host, measured from outside the server.

After the latency and throughput runs nothing executes, so the VMs the server has
(each QEMU named by the pid file in its run folder) are the pool's ready ones. Each is
read from ``/proc/PID/smaps_rollup``: PSS, where pages shared between clones of one
snapshot count once in all, and RSS, which counts them in each. A host holds as many
ready VMs as its memory divided by the median PSS.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..backends import MemoryUse, measure_memory
from ..backends.qemu import qemu_pid

GOAL_PSS_MIB = 32.0
"""Issue 16: a ready python VM at most this, against about 170 MiB before clones shared pages."""
HOST_MIB = 24 * 1024
"""The host size capacity is quoted for: the development machines have 24 GiB."""
SETTLE_SECONDS = 2.0
"""A VM just restored is still touching pages (timers, its ping) for a moment."""


@dataclass(frozen=True)
class ReadyMemory:
    count: int
    pss_mib: float
    """The median PSS of one ready sandbox."""
    rss_mib: float
    """The median RSS of one ready sandbox."""
    shared_mib: float
    """The median of what each maps that other processes map too."""
    total_pss_mib: float
    per_host: int
    """Ready sandboxes a ``HOST_MIB`` host would hold, each at the median PSS."""

    @property
    def met(self) -> bool:
        return self.pss_mib <= GOAL_PSS_MIB

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "host_mib": HOST_MIB, "goal_pss_mib": GOAL_PSS_MIB}

    def line(self) -> str:
        return (f"{self.count} ready sandboxes: PSS per ready sandbox {self.pss_mib:.1f} MiB (median; goal "
                f"<= {GOAL_PSS_MIB:g}: {'met' if self.met else 'not met'}), RSS {self.rss_mib:.1f} MiB, "
                f"shared {self.shared_mib:.1f} MiB; a {HOST_MIB // 1024} GiB host holds {self.per_host}")


def _parents() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile
    return parents


def sandbox_pids(server: int, run_dir: Path) -> list[int]:
    """The server's descendants that are a VM's QEMU, found by the pid file in the VM's run
    folder (a jailed QEMU works in a mount namespace of its own, so its working folder
    does not tell)."""
    parents = _parents()
    found: set[int] = set()
    frontier = {server}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    folders = sorted(run_dir.iterdir()) if run_dir.is_dir() else []
    return [pid for folder in folders if (pid := qemu_pid(folder)) is not None and pid in found]


def measure_ready(server: int, run_dir: Path, show: Callable[[str], None]) -> ReadyMemory | None:
    """The ready VMs' memory, or None when the server holds none (another backend, or an
    empty pool)."""
    time.sleep(SETTLE_SECONDS)
    uses: list[MemoryUse] = [use for pid in sandbox_pids(server, run_dir)
                             if (use := measure_memory(pid)) is not None]
    if not uses:
        show(f"no VM in {run_dir}: PSS per ready sandbox not measured")
        return None
    pss = round(statistics.median(use.pss_mb for use in uses), 2)  # capacity from the figure shown
    return ReadyMemory(
        count=len(uses),
        pss_mib=pss,
        rss_mib=round(statistics.median(use.rss_mb for use in uses), 2),
        shared_mib=round(statistics.median(use.shared_mb for use in uses), 2),
        total_pss_mib=round(sum(use.pss_mb for use in uses), 2),
        per_host=math.floor(HOST_MIB / pss) if pss > 0 else 0,
    )
