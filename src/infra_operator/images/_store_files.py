"""File helpers of the kernel and snapshot stores: checksums and whole-or-nothing writes.

Kept apart from the rootfs store's helpers so the two branches merge without a
conflict; they do the same thing and can be folded together.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


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


def write_bytes_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_name(path)
    temporary.write_bytes(data)
    os.replace(temporary, path)


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    write_bytes_atomically(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when it is missing or not a whole object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
