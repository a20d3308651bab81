"""Rootfs images loop-mounted read-only, one mount per image content, shared by the
jails of one server process.

Mounts are keyed by the image's checksum, so a rebuilt image gets a fresh mount
while jails still running on the old one keep it, and by the server's pid, so a
server unmounts its own on shutdown and a sweep removes those of dead servers
without touching a live one's.
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

from ...errors import SandboxError
from .._leftovers import owner_is_gone


class ImageMounts:
    def __init__(self, mount_root: Path) -> None:
        self.mount_root = mount_root
        self._lock = threading.Lock()

    def mount(self, image: Path, sha256: str) -> Path:
        target = self.mount_root / f"{os.getpid()}-{sha256[:32]}"
        with self._lock:
            if os.path.ismount(target):
                return target
            target.mkdir(parents=True, exist_ok=True)
            result = subprocess.run(
                ["mount", "-o", "loop,ro,noload,nodev,nosuid", str(image), str(target)],
                capture_output=True, text=True,
            )
            if result.returncode != 0:
                raise SandboxError(f"cannot mount {image}: {result.stderr.strip()}")
        return target

    def _release(self, targets: list[Path]) -> list[str]:
        released = []
        for target in targets:
            # A lazy unmount: a jail still starting keeps its view until it exits.
            if os.path.ismount(target):
                subprocess.run(["umount", "--lazy", str(target)], capture_output=True)
            try:
                target.rmdir()
                released.append(f"mount {target}")
            except OSError:
                pass
        return released

    def close(self) -> None:
        """Unmount this server's mounts."""
        with self._lock:
            self._release(sorted(self.mount_root.glob(f"{os.getpid()}-*")))

    def sweep(self) -> list[str]:
        """Unmount the mounts of servers that are gone."""
        if not self.mount_root.exists():
            return []
        return self._release([target for target in sorted(self.mount_root.glob("*")) if owner_is_gone(target.name)])
