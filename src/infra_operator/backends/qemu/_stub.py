"""The kernel a restored VM is started with: the boot kernel's header and setup code only.

QEMU copies the whole ``-kernel`` (and ``-initrd``) into its own memory to hand it to the
firmware at boot, and keeps that copy for the VM's life: about 12 MiB of private memory
per VM, which in a clone of a snapshot (whose kernel is already running in guest RAM)
serves nothing. Nothing of it is in the migration stream either (fw_cfg saves only its
read position), so a restore may name a stub: enough of a bzImage for QEMU to parse its
header, nothing more.
"""

from __future__ import annotations

from pathlib import Path

_SETUP_SECTS = 0x1F1
"""Offset of the bzImage header's count of 512-byte setup sectors (0 means 4)."""
_MAGIC_OFFSET = 0x202
_MAGIC = b"HdrS"
_TAIL = 4096
"""Kept past the setup code: QEMU wants a protected-mode part, however small."""


def write_stub(bzimage: Path, target: Path) -> None:
    """Write ``bzimage``'s header and setup code (plus a page) to ``target``."""
    with bzimage.open("rb") as source:
        header = source.read(_MAGIC_OFFSET + len(_MAGIC))
        if header[_MAGIC_OFFSET:] != _MAGIC:
            raise ValueError(f"{bzimage} is not a bzImage (no HdrS header)")
        sectors = header[_SETUP_SECTS] or 4
        source.seek(0)
        stub = source.read((sectors + 1) * 512 + _TAIL)
    target.write_bytes(stub)
