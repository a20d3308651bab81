"""Where rootfs images live on the local disk, and what is recorded about each.

``images/rootfs-<image>.<format>`` is the image, ``images/rootfs-<image>.json`` its
record (checksum, toolchain version, suite, format, build time). ``<image>`` is a release's
image name (``languages.Release.image``): ``python@trixie``, or ``python`` for bookworm's,
where images were before releases, so those keep working unchanged. The format is
``squashfs`` (compressed, read-only: what builds make now) or ``ext4`` (what they made
before; a record without a format is one of those, and stays usable without a rebuild). The
record is written after the image, so an image without a record is not offered, and
the record names the format, so only the image it names is.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..backends import RootfsFormat
from ..errors import RootfsNotFound
from ..languages import split_image

_NUMBER = re.compile(r"\d+(?:\.\d+)*")


def version_number(version: str) -> str:
    """The release number in a version command's output: ``Python 3.13.5`` -> ``3.13.5``,
    ``go version go1.24.4 linux/amd64`` -> ``1.24.4``; the whole text when it has none."""
    found = _NUMBER.search(version)
    return found.group(0) if found else version


def not_built(image_name: str) -> RootfsNotFound:
    language, suite = split_image(image_name)
    return RootfsNotFound(
        f"rootfs not built for language {language} ({suite}): build it with "
        f"`infra.operator rootfs create --lang {language} --version {suite}` or POST /api/v1/rootfs")

FORMATS: tuple[RootfsFormat, ...] = ("squashfs", "ext4")
LEGACY_FORMAT: RootfsFormat = "ext4"
"""The format of an image whose record names none: every image built before formats."""


@dataclass(frozen=True)
class RootfsInfo:
    language: str
    path: Path
    size: int
    sha256: str
    version: str
    packages: tuple[str, ...]
    built_at: float
    build_seconds: float
    registry: tuple[str, ...] = ()
    """Packages from PyPI or npm, pinned as the catalog says: ``pypi:NAME==V``, ``npm:NAME@V``."""
    format: RootfsFormat = LEGACY_FORMAT
    tree_bytes: int | None = None
    """The unpacked tree's size, when the build recorded it: what compression saved."""
    image: str = ""
    """The name it is stored under (``python@trixie``); the language's own for bookworm's."""
    suite: str = ""

    @property
    def number(self) -> str:
        """The release number read from the image (``3.13.5``)."""
        return version_number(self.version)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        data["packages"] = list(self.packages)
        data["registry"] = list(self.registry)
        return data


class RootfsStore:
    def __init__(self, images_dir: Path) -> None:
        self.images_dir = images_dir

    def image_path(self, language: str, kind: RootfsFormat = LEGACY_FORMAT) -> Path:
        return self.images_dir / f"rootfs-{language}.{kind}"

    def record_path(self, language: str) -> Path:
        return self.images_dir / f"rootfs-{language}.json"

    def remove_other_formats(self, language: str, kind: RootfsFormat) -> None:
        """Delete the language's image of any format but ``kind``, once the record names ``kind``:
        no longer offered, it would only take disk. A jail or VM running on it keeps its open file."""
        for other in FORMATS:
            if other != kind:
                self.image_path(language, other).unlink(missing_ok=True)

    def remove(self, language: str) -> None:
        """Forget the language's image: the record first (so it is no longer offered), then
        the image of each format."""
        self.record_path(language).unlink(missing_ok=True)
        for kind in FORMATS:
            self.image_path(language, kind).unlink(missing_ok=True)

    def find(self, image_name: str) -> RootfsInfo | None:
        """The image stored under ``image_name``, a release's image name (``python@trixie``), if built."""
        try:
            data = json.loads(self.record_path(image_name).read_text())
            kind = data.get("format", LEGACY_FORMAT)
            if kind not in FORMATS:
                return None  # written by a newer release: not ours to run
            image = self.image_path(image_name, kind)
            size = image.stat().st_size
        except (OSError, ValueError, AttributeError):
            return None
        language, suite = split_image(image_name)
        return RootfsInfo(
            language=language,
            image=image_name,
            suite=str(data.get("suite") or suite),
            path=image,
            size=size,
            sha256=data["sha256"],
            version=data.get("version", ""),
            packages=tuple(data.get("packages", ())),
            built_at=data.get("built_at", 0.0),
            build_seconds=data.get("build_seconds", 0.0),
            registry=tuple(data.get("registry", ())),
            format=kind,
            tree_bytes=data.get("tree_bytes"),
        )

    def get(self, image_name: str) -> RootfsInfo:
        info = self.find(image_name)
        if info is None:
            raise not_built(image_name)
        return info

    def list(self) -> list[RootfsInfo]:
        found = (self.find(path.stem.removeprefix("rootfs-")) for path in sorted(self.images_dir.glob("rootfs-*.json")))
        return [info for info in found if info is not None]
