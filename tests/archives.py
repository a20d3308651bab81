"""Image archives written by the tests themselves, as ``docker save`` and an OCI layout
write them: layer tars, then the manifests naming them."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

Entry = Callable[[tarfile.TarFile], None]


@dataclass(frozen=True)
class Item:
    """One entry of a layer: ``kind`` is file, dir, symlink, hardlink, chr, blk or fifo."""

    name: str
    kind: str = "file"
    data: bytes = b""
    target: str = ""
    mode: int = 0o644


def file(name: str, data: str | bytes = b"", mode: int = 0o644) -> Item:
    return Item(name, "file", data.encode() if isinstance(data, str) else data, mode=mode)


def folder(name: str) -> Item:
    return Item(name, "dir", mode=0o755)


def symlink(name: str, target: str) -> Item:
    return Item(name, "symlink", target=target, mode=0o777)


def hardlink(name: str, target: str) -> Item:
    return Item(name, "hardlink", target=target)


def device(name: str) -> Item:
    return Item(name, "chr", mode=0o666)


_TYPES = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
          "chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE, "fifo": tarfile.FIFOTYPE}


def layer(items: list[Item], extra: Entry | None = None) -> bytes:
    """A layer tar of ``items``; ``extra`` may add entries from a real tree (``tar.add``)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        if extra is not None:
            extra(tar)
        for item in items:
            info = tarfile.TarInfo(item.name)
            info.type, info.mode, info.mtime = _TYPES[item.kind], item.mode, 1700000000
            info.linkname = item.target
            if item.kind == "chr":
                info.devmajor, info.devminor = 1, 3
            info.size = len(item.data) if item.kind == "file" else 0
            tar.addfile(info, io.BytesIO(item.data) if item.kind == "file" else None)
    return buffer.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 1700000000
    tar.addfile(info, io.BytesIO(data))


def docker_save(path: Path, layers: list[bytes]) -> Path:
    """What ``docker save`` writes: ``<id>/layer.tar`` per layer and ``manifest.json``."""
    with tarfile.open(path, "w") as tar:
        names = []
        for data in layers:
            name = f"{hashlib.sha256(data).hexdigest()}/layer.tar"
            _add(tar, name, data)
            names.append(name)
        config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
        _add(tar, "config.json", config)
        _add(tar, "manifest.json", json.dumps([{"Config": "config.json", "RepoTags": ["test:latest"],
                                                "Layers": names}]).encode())
    return path


def oci_layout(path: Path, layers: list[bytes], compress: bool = True) -> Path:
    """An OCI image layout: ``oci-layout``, ``index.json`` and ``blobs/sha256``, layers gzipped."""
    blobs: dict[str, bytes] = {}

    def blob(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return f"sha256:{digest}"

    described = []
    for data in layers:
        stored = gzip.compress(data, mtime=0) if compress else data
        media = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if compress else "")
        described.append({"mediaType": media, "digest": blob(stored), "size": len(stored)})
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blob(config),
                   "size": len(config)},
        "layers": described}).encode()
    index = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                                "digest": blob(manifest), "size": len(manifest)}]}
    with tarfile.open(path, "w") as tar:
        _add(tar, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        _add(tar, "index.json", json.dumps(index).encode())
        for digest, data in blobs.items():
            _add(tar, f"blobs/sha256/{digest}", data)
    return path
