"""Where rootfs images live on the local disk, and what is recorded about each.

``images/rootfs-<image>.ext4`` is the image, ``images/rootfs-<image>.json`` its record
(checksum, toolchain version, suite, size, build time). ``<image>`` is a release's image
name (``languages.Release.image``): ``python@trixie``, or ``python`` for bookworm's, where
images were before releases, so those keep working unchanged. The record is written
after the image, so an image without a record is not offered.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

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

    def image_path(self, language: str) -> Path:
        return self.images_dir / f"rootfs-{language}.ext4"

    def record_path(self, language: str) -> Path:
        return self.images_dir / f"rootfs-{language}.json"

    def find(self, image_name: str) -> RootfsInfo | None:
        """The image stored under ``image_name`` (a release's ``image``), if built."""
        image, record = self.image_path(image_name), self.record_path(image_name)
        try:
            data = json.loads(record.read_text())
            size = image.stat().st_size
        except (OSError, ValueError):
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
        )

    def get(self, image_name: str) -> RootfsInfo:
        info = self.find(image_name)
        if info is None:
            raise not_built(image_name)
        return info

    def list(self) -> list[RootfsInfo]:
        found = (self.find(path.stem.removeprefix("rootfs-")) for path in sorted(self.images_dir.glob("rootfs-*.ext4")))
        return [info for info in found if info is not None]
