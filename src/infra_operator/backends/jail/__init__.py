"""The namespace jail backend (bubblewrap)."""

from __future__ import annotations

from ._backend import JailBackend, JailSandbox

__all__ = ["JailBackend", "JailSandbox"]
