"""Rootfs images loop-mounted read-only, one mount per image content, shared by every jail.

Mounts are keyed by the image's checksum, so a rebuilt image gets a fresh mount
while jails still running on the old one keep it.
"""

from __future__ import annotations

import contextlib
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
        """Unmount images that were replaced or deleted and that no jail uses any more.

        The mount of a current image stays: other servers sharing this data dir may be
        about to start a jail on it, so unmounting it (or removing a directory about to
        be mounted on) from here would pull the rootfs from under them.
        """
        removed = []
        sources = _mount_sources()
        for target in sorted(self.mount_root.glob("*")) if self.mount_root.exists() else []:
            source = sources.get(str(target))
            if source is None or not _image_is_gone(source):
                continue
            if subprocess.run(["umount", str(target)], capture_output=True).returncode:
                continue  # still in use by a jail
            with contextlib.suppress(OSError):
                target.rmdir()
            removed.append(f"mount {target}")
        return removed


def _mount_sources() -> dict[str, str]:
    """Mount point -> mounted device, from this process's mount table."""
    sources = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        sources[fields[4]] = fields[fields.index("-") + 2]
    return sources


def _image_is_gone(device: str) -> bool:
    """Whether the image file behind a loop device was replaced (a rebuild) or deleted."""
    try:
        backing = (Path("/sys/block") / Path(device).name / "loop" / "backing_file").read_text().strip()
    except OSError:
        return False
    return backing.endswith(" (deleted)") or not Path(backing).exists()
