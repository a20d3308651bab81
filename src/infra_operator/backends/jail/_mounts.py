"""Rootfs images loop-mounted read-only, one mount per image content, shared by every jail.

Mounts are keyed by the image's checksum, so a rebuilt image gets a fresh mount
while jails still running on the old one keep it.
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

from ...errors import SandboxError


class ImageMounts:
    def __init__(self, mount_root: Path) -> None:
        self.mount_root = mount_root
        self._lock = threading.Lock()

    def mount(self, image: Path, sha256: str) -> Path:
        target = self.mount_root / sha256[:32]
        with self._lock:
            if os.path.ismount(target):
                return target
            target.mkdir(parents=True, exist_ok=True)
            result = subprocess.run(
                ["mount", "-o", "loop,ro,noload,nodev,nosuid", str(image), str(target)],
                capture_output=True, text=True,
            )
            if result.returncode != 0 and not os.path.ismount(target):
                raise SandboxError(f"cannot mount {image}: {result.stderr.strip()}")
        return target

    def sweep(self) -> list[str]:
        """Unmount what no jail uses any more; a mount still in use refuses and stays."""
        removed = []
        for target in sorted(self.mount_root.glob("*")) if self.mount_root.exists() else []:
            if os.path.ismount(target) and subprocess.run(["umount", str(target)], capture_output=True).returncode:
                continue
            try:
                target.rmdir()
                removed.append(f"mount {target}")
            except OSError:
                pass
        return removed
