"""Importing a ``docker save`` or OCI image archive as a rootfs tree.

The archive is read as data, never trusted: its layers are applied in order the way
an overlay filesystem stacks them, and any entry that could write outside the tree
or give a sandbox a device is refused with the entry's name, not skipped:

- an absolute path or one with a ``..`` component;
- a character or block device node;
- a hard link to a path outside the tree, a symbolic link whose relative target
  climbs above the image's root.

Absolute symbolic links are normal in images (``/etc/alternatives/...``) and mean the
image's root; so when a later entry's path passes through a link, the link is
followed inside the tree, clamped at its root, never on the host.

Whiteouts follow the OCI image spec: ``.wh.NAME`` deletes NAME of the layers below,
``.wh..wh..opq`` empties its folder of what the layers below put there. Both apply
before the layer's own entries, so what a layer adds beside its whiteouts stays.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from ..errors import InvalidRequest
from ._rootfs_builder import SANDBOX_DIRS, Progress

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
_MAX_LINKS = 40
_INDEX_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")
PYTHON_PLACES = ("usr/bin/python3", "usr/local/bin/python3", "bin/python3")
"""Where an image's python3 may be; the agent runs as /usr/bin/python3."""


class BadArchive(InvalidRequest):
    """The archive is not an image, or an entry of it is refused."""


def _parts(name: str) -> list[str]:
    return [part for part in name.split("/") if part not in ("", ".")]


def _checked(name: str, where: str) -> list[str]:
    """An entry's path as components, refused when absolute or climbing."""
    if name.startswith("/"):
        raise BadArchive(f"{where}: absolute path refused: {name}")
    parts = _parts(name)
    if ".." in parts:
        raise BadArchive(f"{where}: path with '..' refused: {name}")
    return parts


def resolve(root: Path, parts: list[str]) -> Path:
    """Where ``parts`` lead inside ``root``, following links in the tree as the image would
    see them (absolute ones from its root), never above ``root``."""
    done: list[str] = []
    pending = list(parts)
    links = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        candidate = root.joinpath(*done, part)
        if candidate.is_symlink():
            links += 1
            if links > _MAX_LINKS:
                raise BadArchive(f"too many levels of symbolic links at /{'/'.join([*done, part])}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                done = []
            pending = target.split("/") + pending
            continue
        done.append(part)
    return root.joinpath(*done)


def _remove(path: Path) -> None:
    """Remove whatever is at ``path``, a link itself and not what it points to."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        shutil.rmtree(path)
    else:
        path.unlink()


def _blob(digest: str, where: str) -> str:
    found = _DIGEST.fullmatch(digest)
    if found is None:
        raise BadArchive(f"{where}: unsupported digest {digest!r}")
    return f"blobs/sha256/{found.group(1)}"


class _Archive:
    """The outer tar: its members by normalized name."""

    def __init__(self, tar: tarfile.TarFile, label: str) -> None:
        self.tar = tar
        self.label = label
        self.members = {"/".join(_parts(member.name)): member for member in tar.getmembers() if member.isfile()}

    def open(self, name: str) -> IO[bytes]:
        member = self.members.get("/".join(_parts(name)))
        extracted = self.tar.extractfile(member) if member is not None else None
        if extracted is None:
            raise BadArchive(f"{self.label}: {name} is missing from the archive")
        return extracted

    def json(self, name: str) -> Any:
        try:
            return json.load(self.open(name))
        except ValueError as exc:
            raise BadArchive(f"{self.label}: {name} is not JSON: {exc}") from exc

    def layers(self) -> list[str]:
        """The layer blobs, lowest first: from ``manifest.json`` (docker save) or ``index.json`` (OCI)."""
        if "manifest.json" in self.members:
            manifest = self.json("manifest.json")
            if not isinstance(manifest, list) or len(manifest) != 1:
                raise BadArchive(f"{self.label}: manifest.json should describe exactly one image "
                                 f"(save one image: docker save IMAGE > archive.tar)")
            layers = manifest[0].get("Layers")
            if not isinstance(layers, list) or not all(isinstance(layer, str) for layer in layers):
                raise BadArchive(f"{self.label}: manifest.json has no list of Layers")
            return layers
        if "index.json" in self.members:
            return self._oci_layers(self.json("index.json"), "index.json")
        raise BadArchive(f"{self.label}: not an image archive: neither manifest.json (docker save) "
                         "nor index.json (OCI layout) in it")

    def _oci_layers(self, index: Any, where: str, depth: int = 0) -> list[str]:
        manifests = index.get("manifests") if isinstance(index, dict) else None
        if not isinstance(manifests, list) or len(manifests) != 1 or depth > 4:
            raise BadArchive(f"{self.label}: {where} should list exactly one image manifest")
        descriptor = manifests[0]
        manifest = self.json(_blob(str(descriptor.get("digest")), where))
        if descriptor.get("mediaType") in _INDEX_TYPES or "manifests" in manifest:
            return self._oci_layers(manifest, descriptor["digest"], depth + 1)
        layers = manifest.get("layers")
        if not isinstance(layers, list):
            raise BadArchive(f"{self.label}: manifest {descriptor.get('digest')} has no layers")
        return [_blob(str(layer.get("digest")), "layer") for layer in layers]


class _Layer:
    """One layer applied onto the tree."""

    def __init__(self, tree: Path, label: str) -> None:
        self.tree = tree
        self.label = label

    def apply(self, layer: tarfile.TarFile) -> int:
        members = layer.getmembers()
        entries: list[tuple[list[str], tarfile.TarInfo]] = []
        for member in members:
            parts = _checked(member.name, self.label)
            if not parts:
                continue  # the root folder itself
            if parts[-1] == OPAQUE:
                folder = resolve(self.tree, parts[:-1])
                if folder.is_dir():
                    for child in list(folder.iterdir()):
                        _remove(child)
            elif parts[-1].startswith(WHITEOUT):
                _remove(resolve(self.tree, parts[:-1]) / parts[-1][len(WHITEOUT):])
            else:
                entries.append((parts, member))
        for parts, member in entries:
            self._extract(layer, parts, member)
        return len(entries)

    def _where(self, parts: list[str]) -> Path:
        parent = resolve(self.tree, parts[:-1])
        if os.path.lexists(parent) and not parent.is_dir():
            raise BadArchive(f"{self.label}: {'/'.join(parts)}: its folder is a file in the image")
        parent.mkdir(parents=True, exist_ok=True)
        return parent / parts[-1]

    def _extract(self, layer: tarfile.TarFile, parts: list[str], member: tarfile.TarInfo) -> None:
        name = "/".join(parts)
        if member.ischr() or member.isblk():
            raise BadArchive(f"{self.label}: device node refused: {name}")
        if member.issym():
            self._check_symlink(parts, member.linkname)
        target = self._where(parts)
        if member.isdir():
            if not target.is_dir() or target.is_symlink():
                _remove(target)
                target.mkdir()
        else:
            _remove(target)
            if member.isfile():
                source = layer.extractfile(member)
                assert source is not None
                with source, open(target, "xb") as output:
                    shutil.copyfileobj(source, output, 1 << 20)
            elif member.issym():
                os.symlink(member.linkname, target)
            elif member.islnk():
                os.link(self._hardlink_source(name, member.linkname), target, follow_symlinks=False)
            elif member.isfifo():
                os.mkfifo(target)
            else:
                raise BadArchive(f"{self.label}: unsupported entry type {member.type!r}: {name}")
        if member.islnk():
            return  # the file it links to has its owner and mode already: a link's own are not applied
        os.chown(target, member.uid, member.gid, follow_symlinks=False)
        if not member.issym():
            os.chmod(target, member.mode & 0o7777)
            os.utime(target, (member.mtime, member.mtime))

    def _check_symlink(self, parts: list[str], linkname: str) -> None:
        if linkname.startswith("/"):
            return  # the image's own root, wherever it is mounted
        depth = len(parts) - 1
        for part in linkname.split("/"):
            depth += {"..": -1, "": 0, ".": 0}.get(part, 1)
            if depth < 0:
                raise BadArchive(f"{self.label}: symbolic link escaping the image refused: "
                                 f"{'/'.join(parts)} -> {linkname}")

    def _hardlink_source(self, name: str, linkname: str) -> Path:
        if linkname.startswith("/") or ".." in _parts(linkname):
            raise BadArchive(f"{self.label}: hard link escaping the image refused: {name} -> {linkname}")
        link_parts = _parts(linkname)
        source = resolve(self.tree, link_parts[:-1]) / link_parts[-1] if link_parts else self.tree
        if not source.is_file() or source.is_symlink():
            raise BadArchive(f"{self.label}: hard link to a missing file: {name} -> {linkname}")
        return source


@contextmanager
def _open_tar(stream: IO[bytes] | None, path: Path | None, label: str) -> Iterator[tarfile.TarFile]:
    try:
        tar = tarfile.open(name=path, fileobj=stream, mode="r:*")  # noqa: SIM115 (closed below, once open)
    except (tarfile.TarError, EOFError) as exc:
        raise BadArchive(f"{label}: not a tar archive (plain, gzip, bzip2 or xz): {exc}") from exc
    with tar:
        yield tar


def import_archive(archive: Path, tree: Path, progress: Progress) -> None:
    """Fill ``tree`` with the image in ``archive``: its layers in order, whiteouts honoured."""
    if not archive.is_file():
        raise InvalidRequest(f"no such image archive: {archive}")
    with _open_tar(None, archive, archive.name) as outer:
        image = _Archive(outer, archive.name)
        layers = image.layers()
        for number, name in enumerate(layers, 1):
            label = f"{archive.name}: layer {number} ({name})"
            progress(f"applying layer {number} of {len(layers)}: {name}")
            with _open_tar(image.open(name), None, label) as layer:
                try:
                    count = _Layer(tree, label).apply(layer)
                except (tarfile.TarError, EOFError) as exc:
                    raise BadArchive(f"{label}: damaged: {exc}") from exc
            progress(f"layer {number}: {count} entries")


def add_agent(tree: Path, progress: Progress) -> None:
    """Make an imported tree bootable by the agent: its mount points, and python3 where
    the agent starts it (``/usr/bin/python3``)."""
    for folder in SANDBOX_DIRS:
        where = resolve(tree, _parts(folder))
        if not where.is_dir():
            _remove(where)
            where.mkdir(parents=True)
    os.chmod(resolve(tree, ["tmp"]), 0o1777)
    found = [place for place in PYTHON_PLACES if resolve(tree, _parts(place)).is_file()]
    if not found:
        raise InvalidRequest(
            "the image has no python3 (looked in /" + ", /".join(PYTHON_PLACES) + "): infra.operator's agent runs "
            "on the image's own python3, so import an image that has it (python:3-slim, or Debian with python3)")
    if found[0] != "usr/bin/python3":
        agent_python = resolve(tree, ["usr", "bin"])
        agent_python.mkdir(parents=True, exist_ok=True)
        _remove(agent_python / "python3")
        os.symlink(f"/{found[0]}", agent_python / "python3")
        progress(f"python3 found at /{found[0]}: linked from /usr/bin/python3 for the agent")
