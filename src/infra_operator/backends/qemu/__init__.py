"""QEMU microVMs (``-M microvm``), the only part of the package that speaks QMP."""

from __future__ import annotations

from ._backend import QemuBackend, QemuSandbox

__all__ = ["QemuBackend", "QemuSandbox"]
