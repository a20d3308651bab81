"""Images: rootfs builds, the guest kernel and initramfs, snapshots, the local stores
and the remote object store."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._docker import BadArchive, add_agent, import_archive
from ._extras import npm_install, pip_install
from ._files import sweep
from ._progress import ByteProgress, progress_lines
from ._releases import ReleaseState, release_states, resolve
from ._rootfs_builder import Progress, build_rootfs, is_stale
from ._rootfs_store import RootfsInfo, RootfsStore, version_number
from .kernel import build_kernel, kernel_is_stale, load_kernel, require_kernel
from .snapshots import (
    SnapshotInfo,
    create_snapshot,
    describe,
    find_snapshot,
    guest_images,
    list_snapshots,
    remove_snapshot,
)

if TYPE_CHECKING:
    from ._remote import RemoteStore, Transfer


def __getattr__(name: str) -> object:
    # boto3 takes about 150 ms to import: only the commands that touch the object store pay for it.
    if name in ("RemoteStore", "Transfer"):
        from . import _remote

        return getattr(_remote, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BadArchive",
    "ByteProgress",
    "Progress",
    "ReleaseState",
    "RemoteStore",
    "RootfsInfo",
    "RootfsStore",
    "SnapshotInfo",
    "Transfer",
    "add_agent",
    "build_kernel",
    "build_rootfs",
    "create_snapshot",
    "describe",
    "find_snapshot",
    "guest_images",
    "import_archive",
    "is_stale",
    "kernel_is_stale",
    "list_snapshots",
    "load_kernel",
    "npm_install",
    "pip_install",
    "progress_lines",
    "release_states",
    "remove_snapshot",
    "require_kernel",
    "resolve",
    "sweep",
    "version_number",
]
