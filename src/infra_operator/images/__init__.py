"""Images: rootfs builds, the local store and the remote object store (kernels and snapshots beside them)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._files import sweep
from ._progress import ByteProgress, progress_lines
from ._rootfs_builder import Progress, build_rootfs, is_stale
from ._rootfs_store import RootfsInfo, RootfsStore

if TYPE_CHECKING:
    from ._remote import RemoteStore, Transfer


def __getattr__(name: str) -> object:
    # boto3 takes about 150 ms to import: only the commands that touch the object store pay for it.
    if name in ("RemoteStore", "Transfer"):
        from . import _remote

        return getattr(_remote, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ByteProgress", "Progress", "RemoteStore", "RootfsInfo", "RootfsStore", "Transfer", "build_rootfs",
           "is_stale", "progress_lines", "sweep"]
