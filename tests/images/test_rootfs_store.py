"""The image store across formats: a record written before formats existed still names
its ext4 image, a new one names its squashfs image, and a record names the one image
that is offered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra_operator.images import RootfsStore

pytestmark = pytest.mark.unit


def _write(images: Path, language: str, image_suffix: str, body: bytes, **record: object) -> None:
    images.mkdir(parents=True, exist_ok=True)
    (images / f"rootfs-{language}.{image_suffix}").write_bytes(body)
    (images / f"rootfs-{language}.json").write_text(json.dumps({"language": language, "sha256": "0" * 64, **record}))


def test_a_record_without_a_format_is_an_ext4_image_of_an_earlier_release(tmp_path: Path) -> None:
    _write(tmp_path, "bash", "ext4", b"\0" * 4096, version="GNU bash 5.2")
    info = RootfsStore(tmp_path).get("bash")
    assert (info.format, info.path.name, info.size, info.tree_bytes) == ("ext4", "rootfs-bash.ext4", 4096, None)


def test_a_squashfs_record_names_its_image_and_the_tree_it_came_from(tmp_path: Path) -> None:
    _write(tmp_path, "go", "squashfs", b"hsqs" + b"\0" * 1020, format="squashfs", tree_bytes=600 << 20)
    info = RootfsStore(tmp_path).get("go")
    assert (info.format, info.path.name, info.size, info.tree_bytes) == ("squashfs", "rootfs-go.squashfs", 1024,
                                                                         600 << 20)
    assert info.to_json()["format"] == "squashfs"


def test_only_the_image_the_record_names_is_offered(tmp_path: Path) -> None:
    store = RootfsStore(tmp_path)
    _write(tmp_path, "rust", "ext4", b"\0" * 4096)  # built by the release before
    _write(tmp_path, "rust", "squashfs", b"hsqs", format="squashfs")  # rebuilt since
    assert [(info.language, info.format) for info in store.list()] == [("rust", "squashfs")]
    store.remove_other_formats("rust", "squashfs")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["rootfs-rust.json", "rootfs-rust.squashfs"]
    _write(tmp_path, "zig", "erofs", b"\0", format="erofs")  # a format this release cannot mount
    assert store.find("zig") is None
    (tmp_path / "rootfs-rust.squashfs").unlink()  # a record whose image is gone offers nothing
    assert store.list() == []
