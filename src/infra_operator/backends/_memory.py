"""What a sandbox's processes cost the host in memory, read from ``/proc``.

PSS (proportional set size) is the measure: a page mapped by N processes counts 1/N
in each, so clones that share their snapshot's pages add up to what the host really
holds, where RSS would count every shared page once per clone.
"""

from __future__ import annotations

from pathlib import Path

from .base import MemoryUse

_KIB_PER_MIB = 1024


def rollup(pid: int) -> dict[str, int] | None:
    """``/proc/PID/smaps_rollup`` as kB per field; None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:  # gone, or a kernel without smaps_rollup (before 4.14)
        return None
    fields: dict[str, int] = {}
    for line in text.splitlines()[1:]:  # the first line names the address range
        name, _, value = line.partition(":")
        parts = value.split()
        if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            fields[name.strip()] = int(parts[0])
    return fields


def measure(pid: int) -> MemoryUse | None:
    """The memory one process holds now; None when it is gone or cannot be read."""
    fields = rollup(pid)
    if not fields or "Pss" not in fields or "Rss" not in fields:
        return None
    return MemoryUse(
        pss_mb=fields["Pss"] / _KIB_PER_MIB,
        rss_mb=fields["Rss"] / _KIB_PER_MIB,
        shared_mb=(fields.get("Shared_Clean", 0) + fields.get("Shared_Dirty", 0)) / _KIB_PER_MIB,
    )
