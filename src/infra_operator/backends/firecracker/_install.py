"""Install Firecracker and its jailer from a release archive, checked before it is opened.

A release (``firecracker-v1.16.1-x86_64.tgz``) holds
``release-v1.16.1-x86_64/firecracker-v1.16.1-x86_64`` and ``.../jailer-v1.16.1-x86_64``.
The archive is downloaded to a temporary file, its SHA-256 compared with the one given,
and only then read; the two binaries are copied out of it by name (nothing else is ever
extracted), and renamed into place together at the end, so a failure installs nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

import httpx

from ...errors import InvalidRequest

FIRECRACKER_VERSION = "v1.16.1"
FIRECRACKER_ARCH = "x86_64"
FIRECRACKER_URL_TEMPLATE = (
    "https://github.com/firecracker-microvm/firecracker/releases/download/"
    "{version}/firecracker-{version}-{arch}.tgz"
)
MAX_ARCHIVE_BYTES = 512 * 1024 * 1024
"""A release is about 20 MB; anything far larger is not one."""
BINARIES = ("firecracker", "jailer")
_CHUNK = 1 << 16
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")

Progress = Callable[[int, int | None], None]
"""Called with (bytes downloaded, total bytes or None when the server did not say)."""


class InstallFailed(InvalidRequest):
    """The release could not be installed; nothing was changed in the destination."""


def firecracker_release_url(
    version: str = FIRECRACKER_VERSION, arch: str = FIRECRACKER_ARCH, template: str = FIRECRACKER_URL_TEMPLATE
) -> str:
    return template.format(version=version, arch=arch)


def install_firecracker(url: str, sha256: str, dest_dir: Path, progress: Progress) -> Path:
    """Download, verify and install; returns the path of the installed ``firecracker``
    (the ``jailer`` is beside it). Raises ``InstallFailed`` and installs nothing on any fault."""
    if not _SHA256.match(sha256):
        raise InstallFailed(f"expected SHA-256 must be 64 hex digits, got {sha256!r}")
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InstallFailed(f"cannot create {dest_dir}: {exc.strerror}") from exc
    with _scratch(dest_dir) as scratch:
        archive = scratch / "release.tgz"
        digest = _download(url, archive, progress)
        if digest != sha256.lower():
            raise InstallFailed(
                f"checksum mismatch for {url}: expected sha256 {sha256.lower()}, "
                f"got {digest}; nothing installed"
            )
        staged = _extract(archive, scratch)
        try:
            for name in BINARIES:
                os.replace(staged[name], dest_dir / name)
        except OSError as exc:
            raise InstallFailed(f"cannot install into {dest_dir}: {exc.strerror}") from exc
    return dest_dir / "firecracker"


@contextlib.contextmanager
def _scratch(dest_dir: Path) -> Iterator[Path]:
    # In dest_dir itself, so the final rename stays on one filesystem and is atomic.
    try:
        with tempfile.TemporaryDirectory(dir=dest_dir, prefix=".install-") as name:
            yield Path(name)
    except OSError as exc:
        raise InstallFailed(f"cannot use {dest_dir}: {exc.strerror or exc}") from exc


def _download(url: str, target: Path, progress: Progress) -> str:
    hasher = hashlib.sha256()
    done = 0
    try:
        with (
            httpx.stream("GET", url, follow_redirects=True, timeout=30.0) as response,
            open(target, "wb") as out,
        ):
            if response.status_code != 200:
                raise InstallFailed(f"download of {url} failed: HTTP {response.status_code}")
            length = response.headers.get("content-length")
            total = int(length) if length and length.isdigit() else None
            if total is not None and total > MAX_ARCHIVE_BYTES:
                raise InstallFailed(f"{url} is {total} bytes: too large for a Firecracker release")
            progress(0, total)
            for chunk in response.iter_bytes(_CHUNK):
                done += len(chunk)
                if done > MAX_ARCHIVE_BYTES:
                    raise InstallFailed(f"{url} is larger than {MAX_ARCHIVE_BYTES} bytes: not a release")
                hasher.update(chunk)
                out.write(chunk)
                progress(done, total)
    except httpx.HTTPError as exc:
        raise InstallFailed(f"download of {url} failed: {exc}") from exc
    return hasher.hexdigest()


def _unsafe(name: str) -> bool:
    path = PurePosixPath(name)
    return path.is_absolute() or ".." in path.parts


def _extract(archive: Path, scratch: Path) -> dict[str, Path]:
    """Copy the two binaries out of the verified archive into ``scratch``, mode 755."""
    wanted = re.compile(r"^(?:\./)?release-(?P<tag>[^/]+)/(?P<name>firecracker|jailer)-(?P=tag)$")
    staged: dict[str, Path] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            # Refuse an archive that tries to reach outside itself, even though we extract by
            # name only: a release never holds such a member, so this one is not a release.
            bad = [
                m.name for m in members if _unsafe(m.name) or (m.issym() or m.islnk()) and _unsafe(m.linkname)
            ]
            if bad:
                raise InstallFailed(
                    f"archive has members that escape it: {', '.join(bad[:5])}; nothing installed"
                )
            for member in members:
                match = wanted.match(member.name)
                if match is None:
                    continue
                name = match.group("name")
                if not member.isreg():
                    raise InstallFailed(f"archive member {member.name} is not a regular file")
                if name in staged:
                    raise InstallFailed(f"archive has two {name} binaries")
                source = tar.extractfile(member)
                if source is None:
                    raise InstallFailed(f"cannot read {member.name} from the archive")
                target = scratch / name
                with source, open(target, "wb") as out:
                    while chunk := source.read(_CHUNK):
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                target.chmod(0o755)
                staged[name] = target
    except (tarfile.TarError, EOFError) as exc:
        raise InstallFailed(f"not a readable release archive: {exc}") from exc
    except OSError as exc:
        raise InstallFailed(f"cannot unpack the release: {exc.strerror or exc}") from exc
    absent = [name for name in BINARIES if name not in staged]
    if absent:
        raise InstallFailed(f"archive holds no release-<version>/{'/'.join(absent)}-<version>: not a release")
    return staged
