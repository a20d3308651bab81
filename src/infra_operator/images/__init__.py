"""Images: rootfs builds and the local store (kernels and snapshots live beside them)."""

from __future__ import annotations

from ._files import sweep
from ._rootfs_builder import Progress, build_rootfs, is_stale
from ._rootfs_store import RootfsInfo, RootfsStore

__all__ = ["Progress", "RootfsInfo", "RootfsStore", "build_rootfs", "is_stale", "sweep"]
