"""The initramfs, built from inputs made here: the cpio archive unpacks with the real
``cpio`` into what it was given, is the same bytes for the same inputs, and carries the
modules the guest needs in an order ``insmod`` can load them."""

from __future__ import annotations

import gzip
import lzma
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from infra_operator.images._initramfs import INIT_SCRIPT, Entry, build, cpio_newc, resolve_modules

pytestmark = pytest.mark.unit


def unpack(archive: bytes, into: Path) -> Path:
    """Unpack with GNU cpio, as the kernel's reader stands in for here: the format is theirs."""
    tool = shutil.which("cpio")
    if tool is None:
        pytest.skip("cpio is not installed (apt-get install cpio): it is the reference reader")
    into.mkdir()
    subprocess.run([tool, "-idm", "--quiet", "--no-absolute-filenames"], input=archive, cwd=into,
                   capture_output=True, check=True)
    return into


def module(name: str, depends: str = "") -> bytes:
    """Enough of a kernel module for the resolver: its modinfo strings."""
    return b"\x7fELF....\x00license=GPL\x00depends=" + depends.encode() + b"\x00name=" + name.encode() + b"\x00"


def modules_dir(tmp_path: Path, files: dict[str, bytes], builtin: tuple[str, ...] = ()) -> Path:
    root = tmp_path / "lib" / "modules" / "6.12.0-test"
    for relative, data in files.items():
        (root / "kernel" / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / "kernel" / relative).write_bytes(data)
    (root / "modules.builtin").write_text("".join(f"kernel/{name}\n" for name in builtin))
    return root


def test_cpio_unpacks_to_the_entries_it_was_given(tmp_path: Path) -> None:
    archive = cpio_newc([
        Entry("bin", stat.S_IFDIR | 0o755),
        Entry("bin/tool", stat.S_IFREG | 0o755, b"#!/bin/sh\necho hi\n"),
        Entry("bin/sh", stat.S_IFLNK | 0o777, b"tool"),
        Entry("data", stat.S_IFDIR | 0o755),
        Entry("data/odd-length.txt", stat.S_IFREG | 0o644, b"12345"),  # padding to 4 bytes follows
        Entry("data/empty", stat.S_IFREG | 0o600),
    ])
    root = unpack(archive, tmp_path / "root")
    assert (root / "bin" / "tool").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert stat.S_IMODE((root / "bin" / "tool").stat().st_mode) == 0o755
    assert (root / "bin" / "sh").readlink() == Path("tool")
    assert (root / "data" / "odd-length.txt").read_bytes() == b"12345"
    assert (root / "data" / "empty").read_bytes() == b""
    assert stat.S_IMODE((root / "data" / "empty").stat().st_mode) == 0o600
    assert sorted(path.relative_to(root).as_posix() for path in root.rglob("*")) == [
        "bin", "bin/sh", "bin/tool", "data", "data/empty", "data/odd-length.txt"]


def test_modules_come_dependencies_first_without_built_ins_and_decompressed(tmp_path: Path) -> None:
    directory = modules_dir(tmp_path, {
        "drivers/virtio/virtio_mmio.ko.xz": lzma.compress(module("virtio_mmio", "virtio,virtio-ring")),
        "drivers/virtio/virtio.ko.gz": gzip.compress(module("virtio")),
        "drivers/virtio/virtio_ring.ko": module("virtio_ring", "virtio"),
        "drivers/block/virtio_blk.ko.xz": lzma.compress(module("virtio_blk", "virtio,virtio_ring")),
        "fs/ext4/ext4.ko.xz": lzma.compress(module("ext4", "jbd2")),
    }, builtin=("fs/ext4/ext4.ko",))
    resolved = resolve_modules(directory, ("virtio_mmio", "virtio_blk", "ext4"))
    assert [name for name, _ in resolved] == ["virtio.ko", "virtio_ring.ko", "virtio_mmio.ko", "virtio_blk.ko"]
    assert dict(resolved)["virtio_mmio.ko"] == module("virtio_mmio", "virtio,virtio-ring")


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        ({"a.ko": module("a", "b"), "b.ko": module("b", "a")}, "module dependency cycle: a -> b -> a"),
        ({"a.ko": module("a", "missing")}, "module missing is neither built in nor shipped"),
        ({"a.ko.zst": b"zstd"}, "zstd-compressed modules are not supported"),
    ],
)
def test_modules_the_guest_could_not_load_are_refused(tmp_path: Path, files: dict[str, bytes], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        resolve_modules(modules_dir(tmp_path, files), ("a",))


def test_the_initramfs_is_the_same_bytes_for_the_same_inputs_and_carries_them(tmp_path: Path) -> None:
    busybox = tmp_path / "busybox"
    busybox.write_bytes(b"\x7fELF busybox")
    agent = tmp_path / "agent"
    (agent / "__pycache__").mkdir(parents=True)
    (agent / "__main__.py").write_text("print('agent')\n")
    (agent / "__pycache__" / "__main__.cpython-311.pyc").write_bytes(b"cache")
    # squashfs is a module in Debian's cloud kernel: the initramfs must carry it, or a
    # squashfs rootfs cannot be mounted.
    directory = modules_dir(tmp_path, {"virtio_mmio.ko": module("virtio_mmio"),
                                       "fs/squashfs/squashfs.ko.xz": lzma.compress(module("squashfs"))},
                            builtin=("virtio_blk.ko", "ext4.ko", "vsock.ko", "vmw_vsock_virtio_transport.ko",
                                     "virtio_rng.ko"))
    first = build(busybox, directory, agent)
    assert build(busybox, directory, agent) == first
    root = unpack(gzip.decompress(first), tmp_path / "root")
    assert (root / "init").read_text() == INIT_SCRIPT
    assert stat.S_IMODE((root / "init").stat().st_mode) == 0o755
    assert (root / "bin" / "busybox").read_bytes() == busybox.read_bytes()
    assert (root / "bin" / "sh").readlink() == Path("busybox")
    assert (root / "modules" / "order").read_text() == "virtio_mmio.ko\nsquashfs.ko\n"
    assert (root / "modules" / "virtio_mmio.ko").read_bytes() == module("virtio_mmio")
    assert (root / "modules" / "squashfs.ko").read_bytes() == module("squashfs")
    assert [path.name for path in (root / "guest").iterdir()] == ["__main__.py"]
    assert {path.name for path in root.iterdir()} == {"bin", "dev", "proc", "sys", "newroot", "modules", "init",
                                                      "guest"}
