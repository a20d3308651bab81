"""Finding what a dead server left behind. Every sandbox's run folder (and cgroup)
is named ``<kind>-<server pid>-<...>``, so a folder whose server is gone is debris."""

from __future__ import annotations

from pathlib import Path

from .._pids import pid_alive


def owner_is_gone(name: str) -> bool:
    """For a name ``[<kind>-]<pid>-<...>``: whether the server that made it has exited."""
    for part in name.split("-")[:2]:
        if part.isdigit():
            return not pid_alive(int(part))
    return False


def stale_run_folders(run_dir: Path, kind: str) -> list[Path]:
    if not run_dir.exists():
        return []
    return [folder for folder in sorted(run_dir.glob(f"{kind}-*")) if owner_is_gone(folder.name)]
