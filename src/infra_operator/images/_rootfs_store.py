"""Where rootfs images live on the local disk, and what is recorded about each.

``images/rootfs-<language>.ext4`` is the image, ``images/rootfs-<language>.json`` its
record (checksum, toolchain version, size, build time). The record is written
after the image, so an image without a record is not offered.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import RootfsNotFound


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

    def find(self, language: str) -> RootfsInfo | None:
        image, record = self.image_path(language), self.record_path(language)
        try:
            data = json.loads(record.read_text())
            size = image.stat().st_size
        except (OSError, ValueError):
            return None
        return RootfsInfo(
            language=language,
            path=image,
            size=size,
            sha256=data["sha256"],
            version=data.get("version", ""),
            packages=tuple(data.get("packages", ())),
            built_at=data.get("built_at", 0.0),
            build_seconds=data.get("build_seconds", 0.0),
            registry=tuple(data.get("registry", ())),
        )

    def get(self, language: str) -> RootfsInfo:
        info = self.find(language)
        if info is None:
            raise RootfsNotFound(
                f"rootfs not built for language {language}: build it with "
                f"`infra.operator rootfs create --lang {language}` or POST /api/v1/rootfs"
            )
        return info

    def list(self) -> list[RootfsInfo]:
        found = (self.find(path.stem.removeprefix("rootfs-")) for path in sorted(self.images_dir.glob("rootfs-*.ext4")))
        return [info for info in found if info is not None]
