"""Extract the uncompressed ELF ``vmlinux`` from a bzImage, as the kernel's own
``scripts/extract-vmlinux`` does: find a compressor's magic, decompress from there,
and keep the first output that is an ELF file. Firecracker boots only the ELF."""

from __future__ import annotations

import bz2
import gzip
import lzma
import shutil
import subprocess
import zlib
from collections.abc import Callable
from pathlib import Path

_ELF_MAGIC = b"\x7fELF"


def _zstd(data: bytes) -> bytes:
    # The standard library has no zstd before 3.14; the zstd tool stops after the
    # frame and complains of the trailing bytes, so its exit status is not the test.
    tool = shutil.which("zstd")
    if tool is None:
        raise FileNotFoundError("zstd is not installed (apt-get install zstd)")
    done = subprocess.run([tool, "-dcq"], input=data, capture_output=True, check=False)
    return done.stdout


def _gzip(data: bytes) -> bytes:
    return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)


def _xz(data: bytes) -> bytes:
    return lzma.LZMADecompressor(lzma.FORMAT_XZ).decompress(data)


def _lzma(data: bytes) -> bytes:
    return lzma.LZMADecompressor(lzma.FORMAT_ALONE).decompress(data)


def _bzip2(data: bytes) -> bytes:
    return bz2.BZ2Decompressor().decompress(data)


_COMPRESSORS: tuple[tuple[str, bytes, Callable[[bytes], bytes]], ...] = (
    ("zstd", b"\x28\xb5\x2f\xfd", _zstd),
    ("gzip", b"\x1f\x8b\x08", _gzip),
    ("xz", b"\xfd7zXZ\x00", _xz),
    ("bzip2", b"BZh", _bzip2),
    ("lzma", b"\x5d\x00\x00\x00", _lzma),
)

_ERRORS = (OSError, EOFError, ValueError, lzma.LZMAError, zlib.error, gzip.BadGzipFile)


def extract_vmlinux(bzimage: Path) -> tuple[bytes, str]:
    """Return the ELF kernel inside ``bzimage`` and the name of its compression."""
    data = bzimage.read_bytes()
    if data.startswith(_ELF_MAGIC):
        return data, "none"
    for name, magic, decompress in _COMPRESSORS:
        start = data.find(magic)
        while start != -1:
            try:
                out = decompress(data[start:])
            except _ERRORS:
                out = b""
            if out.startswith(_ELF_MAGIC) and len(out) > 1 << 20:
                return out, name
            start = data.find(magic, start + 1)
    raise ValueError(f"{bzimage}: no compressed ELF kernel found inside")
