"""``extract_vmlinux`` finds the ELF kernel inside a bzImage whatever compressed it, past
bytes that only look like the start of a stream. The bzImages are made here, no kernel needed."""

from __future__ import annotations

import bz2
import gzip
import lzma
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from infra_operator.images._vmlinux import extract_vmlinux

pytestmark = pytest.mark.unit

KERNEL = b"\x7fELF\x02\x01\x01" + bytes(range(256)) * 5000  # an ELF header and over a MiB
SETUP = b"MZ" + b"\x00" * 0x200 + b"HdrS" + b"\x00" * 64  # where a bzImage's setup code would be


def _zstd(data: bytes) -> bytes:
    tool = shutil.which("zstd")
    if tool is None:
        pytest.skip("zstd is not installed (apt-get install zstd); the extractor needs it for zstd kernels")
    return subprocess.run([tool, "-cq"], input=data, capture_output=True, check=True).stdout


def _lzma(data: bytes) -> bytes:
    # As the kernel's build writes it: a dictionary of a multiple of 16 MiB, so the header
    # starts with the bytes the extractor (and the kernel's extract-vmlinux) looks for.
    lzma1 = {"id": lzma.FILTER_LZMA1, "dict_size": 1 << 24, "mode": lzma.MODE_FAST, "mf": lzma.MF_HC3, "nice_len": 8}
    return lzma.compress(data, format=lzma.FORMAT_ALONE, filters=[lzma1])


COMPRESSIONS: dict[str, tuple[bytes, Callable[[bytes], bytes]]] = {
    "zstd": (b"\x28\xb5\x2f\xfd", _zstd),
    "gzip": (b"\x1f\x8b\x08", gzip.compress),
    "xz": (b"\xfd7zXZ\x00", lzma.compress),
    "bzip2": (b"BZh", bz2.compress),
    "lzma": (b"\x5d\x00\x00\x00", _lzma),
}


def bzimage(tmp_path: Path, *parts: bytes) -> Path:
    path = tmp_path / "vmlinuz"
    path.write_bytes(SETUP + b"".join(parts) + b"\x00trailing bytes after the stream")
    return path


@pytest.mark.parametrize("name", COMPRESSIONS)
def test_the_kernel_is_found_past_a_false_start(tmp_path: Path, name: str) -> None:
    magic, compress = COMPRESSIONS[name]
    decoy = magic + b"not a stream at all"
    assert extract_vmlinux(bzimage(tmp_path, decoy, compress(KERNEL))) == (KERNEL, name)


def test_streams_that_are_not_the_kernel_are_passed_over(tmp_path: Path) -> None:
    not_elf = gzip.compress(b"a stream, but not of an ELF file" * 100_000)
    small_elf = gzip.compress(b"\x7fELF a compressed module, far below a kernel's size")
    assert extract_vmlinux(bzimage(tmp_path, not_elf, small_elf, lzma.compress(KERNEL))) == (KERNEL, "xz")


def test_an_elf_file_is_its_own_vmlinux(tmp_path: Path) -> None:
    path = tmp_path / "vmlinux"
    path.write_bytes(KERNEL)
    assert extract_vmlinux(path) == (KERNEL, "none")


def test_no_kernel_inside_is_a_value_error_naming_the_file(tmp_path: Path) -> None:
    path = bzimage(tmp_path, gzip.compress(b"no ELF here" * 1000))
    with pytest.raises(ValueError, match=f"{path}: no compressed ELF kernel found inside"):
        extract_vmlinux(path)
