"""Rootfs images (ext4, or compressed squashfs) loop-mounted read-only, one mount per
image content, shared by the jails of one server process.

Mounts are keyed by the image's checksum, so a rebuilt image gets a fresh mount
while jails still running on the old one keep it, and by the server's pid, so a
server unmounts its own on shutdown and never pulls a rootfs from under another
server's jails. A sweep removes the mounts of dead servers and of images that were
rebuilt or deleted, once no jail uses them.
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

from ...errors import SandboxError
from .._leftovers import owner_is_gone
from ..base import RootfsFormat, rootfs_format

# noload: an ext4 image copied while mounted elsewhere may ask for journal recovery,
# which a read-only mount cannot do; squashfs is read-only by design and has no such option.
_MOUNT_OPTIONS: dict[RootfsFormat, str] = {
    "ext4": "loop,ro,noload,nodev,nosuid",
    "squashfs": "loop,ro,nodev,nosuid",
}


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
            try:
                kind = rootfs_format(image)
            except OSError as exc:
                raise SandboxError(f"cannot read {image}: {exc.strerror or exc}") from exc
            result = subprocess.run(
                ["mount", "-t", kind, "-o", _MOUNT_OPTIONS[kind], str(image), str(target)],
                capture_output=True, text=True,
            )
            if result.returncode != 0:
                raise SandboxError(f"cannot mount {image}: {result.stderr.strip()}")
        return target

    def _release(self, targets: list[Path], lazy: bool) -> list[str]:
        released = []
        for target in targets:
            # Lazy for our own or a dead server's mounts: a jail still running keeps its view.
            # Otherwise a busy mount refuses, and stays.
            if os.path.ismount(target) and subprocess.run(
                    ["umount", *(["--lazy"] if lazy else []), str(target)], capture_output=True).returncode:
                continue
            try:
                target.rmdir()
                released.append(f"mount {target}")
            except OSError:
                pass
        return released

    def close(self) -> None:
        """Unmount this server's mounts."""
        with self._lock:
            self._release(sorted(self.mount_root.glob(f"{os.getpid()}-*")), lazy=True)

    def sweep(self) -> list[str]:
        if not self.mount_root.exists():
            return []
        targets = sorted(self.mount_root.glob("*"))
        sources = _mount_sources()
        orphaned = [target for target in targets if owner_is_gone(target.name)]
        replaced = [target for target in targets if target not in orphaned
                    and _image_is_gone(sources.get(str(target)))]
        with self._lock:
            return self._release(orphaned, lazy=True) + self._release(replaced, lazy=False)


def _mount_sources() -> dict[str, str]:
    """Mount point -> mounted device, from this process's mount table."""
    sources = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        sources[fields[4]] = fields[fields.index("-") + 2]
    return sources


def _image_is_gone(device: str | None) -> bool:
    """Whether the image file behind a loop device was replaced (a rebuild) or deleted."""
    if device is None:
        return False
    try:
        backing = (Path("/sys/block") / Path(device).name / "loop" / "backing_file").read_text().strip()
    except OSError:
        return False
    return backing.endswith(" (deleted)") or not Path(backing).exists()
