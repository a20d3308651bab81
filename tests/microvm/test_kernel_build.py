"""The guest kernel build: a real Debian cloud kernel, unpacked and turned into what
QEMU (bzImage) and Firecracker (ELF vmlinux) boot, plus the initramfs."""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

import pytest

from infra_operator.backends.base import KernelFiles
from infra_operator.config import Settings
from infra_operator.images import build_kernel, load_kernel
from infra_operator.images._initramfs import INIT_SCRIPT

pytestmark = pytest.mark.slow


def _cpio_names(initramfs: Path) -> set[str]:
    listing = subprocess.run(
        ["cpio", "-it", "--quiet"],
        input=gzip.decompress(initramfs.read_bytes()),
        capture_output=True,
        check=True,
    )
    return set(listing.stdout.decode().split())


def test_kernel_files_are_what_each_vmm_boots(kernel: KernelFiles) -> None:
    assert kernel.bzimage.read_bytes()[0x202:0x206] == b"HdrS"  # the x86 boot protocol's header
    with kernel.vmlinux.open("rb") as handle:
        assert handle.read(4) == b"\x7fELF"
    assert kernel.vmlinux.stat().st_size > kernel.bzimage.stat().st_size
    assert len(kernel.sha256) == 64


def test_initramfs_carries_busybox_modules_and_agent(kernel: KernelFiles) -> None:
    names = _cpio_names(kernel.initramfs)
    assert {"init", "bin/busybox", "guest/agent.py", "guest/__main__.py", "modules/order"} <= names
    assert "modules/virtio_mmio.ko" in names and "modules/virtio_blk.ko" in names
    assert not any("__pycache__" in name for name in names)
    assert "switch_root /newroot /usr/bin/python3 -B -m guest" in INIT_SCRIPT


def test_load_kernel_returns_the_build(settings: Settings, kernel: KernelFiles) -> None:
    assert load_kernel(settings) == kernel
    record = json.loads((settings.kernels_dir / "kernel.json").read_text())
    assert record["sha256"] == kernel.sha256
    assert not list(settings.kernels_dir.glob(".*")), "temporary files left in the kernel store"


def test_rebuild_uses_the_cached_deb_and_gives_the_same_bytes(
    settings: Settings, kernel: KernelFiles
) -> None:
    lines: list[str] = []
    again = build_kernel(settings, lines.append)
    assert any("using cached" in line for line in lines), lines
    assert not any("downloading" in line for line in lines), lines
    assert again == kernel  # the initramfs is deterministic, so the checksum is too


def test_load_kernel_is_none_without_a_build(tmp_path: Path) -> None:
    assert load_kernel(Settings(data_dir=tmp_path)) is None


def test_load_kernel_is_none_when_a_file_is_cut(tmp_path: Path, kernel: KernelFiles) -> None:
    settings = Settings(data_dir=tmp_path)
    settings.kernels_dir.mkdir(parents=True)
    build = settings.kernels_dir / kernel.bzimage.parent.name
    build.mkdir()
    for path in (kernel.bzimage, kernel.vmlinux, kernel.initramfs):
        (build / path.name).hardlink_to(path)
    record = json.loads((kernel.bzimage.parent.parent / "kernel.json").read_text())
    (settings.kernels_dir / "kernel.json").write_text(json.dumps(record))
    loaded = load_kernel(settings)
    assert loaded is not None and loaded.sha256 == kernel.sha256
    (build / kernel.initramfs.name).unlink()
    (build / kernel.initramfs.name).write_bytes(b"cut")
    assert load_kernel(settings) is None
