"""Byte progress of an upload or download, and its translation into log lines."""

from __future__ import annotations

from collections.abc import Callable

ByteProgress = Callable[[int, int], None]
"""Called with (bytes done, bytes in all) as a transfer goes on."""


def mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


def progress_lines(line: Callable[[str], None], what: str, step_percent: int = 10) -> ByteProgress:
    """A ``ByteProgress`` that says one line per ``step_percent`` (a job's log, a CLI without a terminal)."""
    reported = -1

    def report(done: int, total: int) -> None:
        nonlocal reported
        percent = 100 if total <= 0 else min(100, done * 100 // total)
        if percent // step_percent > reported:
            reported = percent // step_percent
            line(f"{what}: {percent}% of {mib(total)}")

    return report
