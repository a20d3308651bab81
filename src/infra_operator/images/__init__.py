"""Images: the guest kernel and initramfs, rootfs images and saved snapshots."""

from __future__ import annotations

from .kernel import build_kernel, load_kernel
from .snapshots import SnapshotInfo, create_snapshot, find_snapshot, list_snapshots, remove_snapshot

__all__ = [
    "SnapshotInfo",
    "build_kernel",
    "create_snapshot",
    "find_snapshot",
    "list_snapshots",
    "load_kernel",
    "remove_snapshot",
]
