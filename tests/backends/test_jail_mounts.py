"""Image mounts, on real loop mounts: squashfs and ext4 images mounted read-only, and
the start-up sweep, which leaves the mount of a current image alone (another server
sharing the data dir may be starting a jail on it) and unmounts one whose image was
rebuilt."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from infra_operator.backends import rootfs_format
from infra_operator.backends.jail._mounts import ImageMounts


def _image(path: Path, marker: str) -> None:
    tree = path.parent / f"tree-{marker}"
    tree.mkdir()
    (tree / "marker").write_text(marker)
    partial = path.with_suffix(".partial")
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(tree), str(partial), "4M"], check=True)
    partial.rename(path)  # as the image store does: a rebuild replaces the file by rename
    shutil.rmtree(tree)


@pytest.fixture
def mounts(tmp_path: Path) -> ImageMounts:
    if os.geteuid() != 0 or shutil.which("mkfs.ext4") is None:
        pytest.skip("needs root and mkfs.ext4 to loop-mount an image")
    return ImageMounts(tmp_path / "mounts")


def test_sweep_keeps_current_images_and_unmounts_replaced_ones(tmp_path: Path, mounts: ImageMounts) -> None:
    image = tmp_path / "rootfs-test.ext4"
    _image(image, "first")
    first = mounts.mount(image, "a" * 64)
    try:
        assert (first / "marker").read_text() == "first"
        assert mounts.sweep() == []
        assert os.path.ismount(first)

        _image(image, "second")
        second = mounts.mount(image, "b" * 64)
        assert mounts.sweep() == [f"mount {first}"]
        assert not first.exists()
        assert os.path.ismount(second) and (second / "marker").read_text() == "second"
    finally:
        for target in mounts.mount_root.glob("*"):
            subprocess.run(["umount", str(target)], capture_output=True)


def test_mounts_are_per_server_and_released_on_close(tmp_path: Path, mounts: ImageMounts) -> None:
    image = tmp_path / "rootfs-test.ext4"
    _image(image, "only")
    target = mounts.mount(image, "c" * 64)
    assert target.name.startswith(f"{os.getpid()}-")
    dead = mounts.mount_root / "999999999-deadbeef"  # a server that no longer runs
    dead.mkdir()
    assert mounts.sweep() == [f"mount {dead}"]
    assert os.path.ismount(target)
    mounts.close()
    assert not target.exists()


def test_a_squashfs_image_is_mounted_read_only_as_squashfs(tmp_path: Path, mounts: ImageMounts) -> None:
    if shutil.which("mksquashfs") is None:
        print("skipping: mksquashfs is not installed")
        pytest.skip("mksquashfs is not installed (apt-get install squashfs-tools)")
    tree = tmp_path / "tree"
    (tree / "bin").mkdir(parents=True)
    (tree / "bin" / "tool").write_text("#!/bin/sh\necho compressed\n")
    (tree / "bin" / "tool").chmod(0o755)
    image = tmp_path / "rootfs-test.squashfs"
    subprocess.run(["mksquashfs", str(tree), str(image), "-comp", "zstd", "-quiet", "-no-progress"], check=True)
    ext4 = tmp_path / "rootfs-old.ext4"
    _image(ext4, "old")
    assert (rootfs_format(image), rootfs_format(ext4)) == ("squashfs", "ext4")
    target = mounts.mount(image, "d" * 64)
    old = mounts.mount(ext4, "e" * 64)
    try:
        fields = {line.split()[4]: line.split() for line in Path("/proc/self/mountinfo").read_text().splitlines()}
        mounted = fields[str(target)]
        assert mounted[mounted.index("-") + 1] == "squashfs" and "ro" in mounted[5].split(",")
        assert subprocess.run([str(target / "bin" / "tool")], capture_output=True, text=True).stdout == "compressed\n"
        with pytest.raises(OSError) as written:
            (target / "new").write_text("x")
        assert written.value.errno == errno.EROFS
        assert (old / "marker").read_text() == "old"  # an ext4 image of an earlier release, next to it
    finally:
        mounts.close()
