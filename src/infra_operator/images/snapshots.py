"""The local snapshot store: one saved microVM per backend and release of a language.

Layout: ``snapshots_dir/<backend>/<image>/`` (``<image>`` a release's image name:
``python@trixie``, or ``python`` for bookworm's, where snapshots were before releases)
holding the backend's files (the
device state, the memory file when it is separate) and ``metadata.json``. A snapshot
is made in a temporary folder beside its final name and renamed into place when
whole. It is only good for the kernel (whose initramfs carries the agent), the rootfs and
the VMM version it was made with, so ``find_snapshot`` compares all three and the files'
sizes before offering it, and only in the store's current ``FORMAT``: one made by an older
release is refused, as if absent, and the next ``create_snapshot`` (``snapshot create
--if-stale``) replaces it.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..backends.base import Backend, GuestImages, SandboxSpec, SnapshotFiles
from ..errors import InvalidRequest
from ..languages import split_image
from ._files import read_json, sweep_partials, write_json_atomically
from .kernel import load_kernel

if TYPE_CHECKING:
    from ..config import Settings

METADATA_NAME = "metadata.json"
FORMAT = 2
"""The snapshot layout version, in each snapshot's metadata. 1 (no ``format`` recorded):
QEMU's guest RAM inside the migration stream. 2: QEMU's guest RAM in a memory file of its
own that clones map private (see ``backends.qemu``), and a kernel stub to restore with."""
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.+-]*(@[a-z][a-z0-9-]*)?$")


@dataclass(frozen=True)
class SnapshotInfo:
    language: str
    backend: str
    kernel_sha256: str
    rootfs_sha256: str
    mem_mb: int
    vcpus: int
    created_at: str
    vmstate_size: int
    mem_size: int
    """0 when the memory travels inside the vmstate file (QEMU)."""
    path: Path
    vmm_version: str | None = None
    """The VMM that saved it (``Capabilities.vmm_version``); None for one made before it was recorded."""
    image: str = ""
    """The release's image name it was made from (``python@trixie``); ``language`` for bookworm's."""
    release: str = ""
    """The suite of that release."""


def _check_name(kind: str, name: str) -> None:
    if not _NAME.match(name):
        raise InvalidRequest(f"bad {kind} name for a snapshot: {name!r}")


def snapshot_dir(settings: Settings, backend_name: str, language: str) -> Path:
    _check_name("backend", backend_name)
    _check_name("language", language)
    return settings.snapshots_dir / backend_name / language


def _info(directory: Path, metadata: dict[str, Any]) -> SnapshotInfo:
    # Snapshots made before releases name no image: theirs is the language's own name.
    image = str(metadata.get("image") or metadata["language"])
    return SnapshotInfo(
        language=str(metadata["language"]),
        image=image,
        release=split_image(image)[1],
        backend=str(metadata["backend"]),
        kernel_sha256=str(metadata["kernel_sha256"]),
        rootfs_sha256=str(metadata["rootfs_sha256"]),
        mem_mb=int(metadata["mem_mb"]),
        vcpus=int(metadata["vcpus"]),
        created_at=str(metadata["created_at"]),
        vmstate_size=int(metadata["vmstate_size"]),
        mem_size=int(metadata["mem_size"]),
        path=directory,
        vmm_version=str(metadata["vmm_version"]) if metadata.get("vmm_version") is not None else None,
    )


def _replace_dir(source: Path, target: Path) -> None:
    """Put ``source`` at ``target``; an old ``target`` is moved aside first and removed after.
    A VM restoring from the old files keeps reading them through its open descriptors."""
    old: Path | None = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        target.rename(old)
    source.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def create_snapshot(
    settings: Settings,
    backend: Backend,
    language: str,
    spec: SandboxSpec,
    progress: Callable[[str], None],
) -> SnapshotInfo:
    """Boot ``spec`` on ``backend`` to a ready agent, save it, and store it as the snapshot of
    ``language``, a release's image name (``python@trixie``; ``python`` for bookworm's)."""
    image = language
    if spec.kernel is None:
        raise InvalidRequest("a snapshot needs spec.kernel: its checksum is part of the snapshot's identity")
    final = snapshot_dir(settings, backend.name, language)
    final.parent.mkdir(parents=True, exist_ok=True)
    for line in sweep_partials(final.parent, f".{language}.*"):
        progress(line)
    scratch = final.with_name(f".{language}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    scratch.mkdir()
    try:
        progress(f"booting a {backend.name} sandbox for {language} and saving it")
        files = backend.create_snapshot(spec, scratch)
        metadata: dict[str, Any] = {
            "format": FORMAT,
            "language": split_image(image)[0],
            "image": image,
            "backend": backend.name,
            "kernel_sha256": spec.kernel.sha256,
            "rootfs_sha256": spec.rootfs_sha256,
            "mem_mb": spec.memory_mb,
            "vcpus": spec.vcpus,
            "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "vmstate": files.vmstate.name,
            "vmstate_size": files.vmstate.stat().st_size,
            "memory": files.memory.name if files.memory is not None else None,
            "mem_size": files.memory.stat().st_size if files.memory is not None else 0,
            "vmm_version": backend.capabilities().vmm_version,
        }
        write_json_atomically(scratch / METADATA_NAME, metadata)
        _replace_dir(scratch, final)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    info = _info(final, metadata)
    size_mb = (info.vmstate_size + info.mem_size) / 2**20
    progress(f"snapshot of {language} for {backend.name} stored in {final} ({size_mb:.1f} MiB)")
    return info


def _load(directory: Path) -> tuple[SnapshotInfo, SnapshotFiles] | None:
    metadata = read_json(directory / METADATA_NAME)
    if metadata is None or metadata.get("format") != FORMAT:
        return None  # an older layout: its files may not be what this release restores
    try:
        info = _info(directory, metadata)
        vmstate = directory / str(metadata["vmstate"])
        memory = directory / str(metadata["memory"]) if metadata.get("memory") else None
        if vmstate.stat().st_size != info.vmstate_size:
            return None
        if memory is not None and memory.stat().st_size != info.mem_size:
            return None
    except (KeyError, TypeError, ValueError, OSError):
        return None
    return info, SnapshotFiles(directory=directory, vmstate=vmstate, memory=memory)


def list_snapshots(settings: Settings) -> list[SnapshotInfo]:
    """Every whole snapshot in the store, whatever kernel or rootfs it was made from."""
    found: list[SnapshotInfo] = []
    for metadata in sorted(settings.snapshots_dir.glob(f"*/*/{METADATA_NAME}")):
        if any(part.startswith(".") for part in metadata.parent.relative_to(settings.snapshots_dir).parts):
            continue
        loaded = _load(metadata.parent)
        if loaded is not None:
            found.append(loaded[0])
    return found


def find_snapshot(
    settings: Settings,
    backend_name: str,
    language: str,
    rootfs_sha256: str,
    kernel_sha256: str,
    vmm_version: str | None,
) -> SnapshotFiles | None:
    """The language's snapshot for this backend, only if made from this rootfs and kernel by
    this VMM version (one that recorded none is stale for a backend that tells its version)."""
    try:
        directory = snapshot_dir(settings, backend_name, language)
    except InvalidRequest:
        return None
    loaded = _load(directory)
    if loaded is None:
        return None
    info, files = loaded
    if (info.backend, info.image) != (backend_name, language):
        return None
    if info.rootfs_sha256 != rootfs_sha256 or info.kernel_sha256 != kernel_sha256:
        return None
    if info.vmm_version != vmm_version:
        return None
    return files


def describe(entry: Mapping[str, Any]) -> dict[str, Any]:
    """How a snapshot is shown to users, from its metadata (local or remote): ``mem_size`` is
    the guest memory it holds, wherever the backend keeps it (QEMU inside the vmstate file,
    Firecracker in a file of its own), and ``disk_size`` what its files take."""
    file_bytes = int(entry["vmstate_size"]) + int(entry["mem_size"])
    mem_mb = entry.get("mem_mb")
    image = str(entry.get("image") or entry["language"])
    return {
        "language": split_image(image)[0],
        "release": split_image(image)[1],
        "backend": entry["backend"],
        "vmstate_size": int(entry["vmstate_size"]),
        "mem_size": int(mem_mb) * 1024 * 1024 if mem_mb else int(entry["mem_size"]),
        "mem_mb": mem_mb,
        "vcpus": entry.get("vcpus"),
        "disk_size": file_bytes,
        "created_at": entry.get("created_at"),
    }


def remove_snapshot(settings: Settings, backend_name: str, language: str) -> bool:
    directory = snapshot_dir(settings, backend_name, language)
    if not directory.exists():
        return False
    shutil.rmtree(directory)
    return True


def guest_images(settings: Settings) -> GuestImages:
    """The microVM backends' view of this store: the current kernel build and the snapshots
    that match it (see ``backends.GuestImages``)."""
    def snapshot(
        backend: str, image: str, rootfs_sha256: str, kernel_sha256: str, vmm_version: str | None
    ) -> SnapshotFiles | None:
        return find_snapshot(settings, backend, image, rootfs_sha256, kernel_sha256, vmm_version)

    return GuestImages(kernel=lambda: load_kernel(settings), snapshot=snapshot)
