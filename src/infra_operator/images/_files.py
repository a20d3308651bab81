"""Small file helpers the stores share: atomic writes, checksums and a writer's lock."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .._pids import pid_alive


def sha256_of(*paths: Path) -> str:
    """One checksum over the files in order (a kernel and its initramfs count as one)."""
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def temporary_name(path: Path) -> Path:
    """A sibling name for writing ``path`` whole before it is renamed into place."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


@contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """One writer of ``path`` at a time, across processes (a build, a download, the API and a CLI)."""
    lock_path = path.with_name(f".{path.name}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_name(path)
    temporary.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(temporary, path)


def remove_tree(tree: Path) -> None:
    """Remove a build tree that a killed mmdebstrap may have left with /proc, /sys or /dev
    mounted inside: unmount those first, and never cross into another file system."""
    prefix = str(tree.resolve()) + "/"
    with open("/proc/self/mountinfo") as mountinfo:
        mounts = [line.split()[4] for line in mountinfo]
    for mount in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "--lazy", mount], capture_output=True)
    subprocess.run(["rm", "-rf", "--one-file-system", str(tree)], capture_output=True)


def owner_pid(name: str) -> int | None:
    """The pid a temporary name carries (``...-<pid>`` or ``...-<pid>-<random>``), if any."""
    for part in reversed(name.replace(".", "-").split("-")):
        if part.isdigit():
            return int(part)
    return None


def sweep(images_dir: Path, cache_dir: Path) -> list[str]:
    """Remove half-written images and build trees whose builder process is gone."""
    removed = []
    candidates = [*images_dir.glob(".*.tmp-*"), *(cache_dir / "build").glob("*")]
    for path in candidates:
        pid = owner_pid(path.name.rsplit("tmp-", 1)[-1] if ".tmp-" in path.name else path.name.split("_")[0])
        if pid is None or pid_alive(pid):
            continue
        if path.is_dir():
            remove_tree(path)
        else:
            path.unlink(missing_ok=True)
        removed.append(f"leftover {path}")
    return removed


def sweep_partials(directory: Path, pattern: str) -> list[str]:
    """Remove temporary folders named ``.<anything>-<pid>-<random>`` whose writer is dead;
    a live writer's are in use."""
    removed: list[str] = []
    if not directory.is_dir():
        return removed
    for path in directory.glob(pattern):
        parts = path.name.rsplit("-", 2)
        try:
            pid = int(parts[-2])
        except (IndexError, ValueError):
            continue
        if pid_alive(pid):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(f"removed {path}")
    return removed


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when it is missing or not a whole object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
