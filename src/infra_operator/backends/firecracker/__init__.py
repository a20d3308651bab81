"""The Firecracker backend: microVMs through Firecracker's REST API (v1.16.1), optionally
under its jailer, with the agent over vsock and snapshots made by Firecracker itself."""

from __future__ import annotations

from ._backend import BOOT_ARGS, GUEST_CID, FirecrackerBackend, FirecrackerSandbox
from ._install import (
    FIRECRACKER_ARCH,
    FIRECRACKER_URL_TEMPLATE,
    FIRECRACKER_VERSION,
    InstallFailed,
    firecracker_release_url,
    install_firecracker,
)

__all__ = [
    "BOOT_ARGS",
    "FIRECRACKER_ARCH",
    "FIRECRACKER_URL_TEMPLATE",
    "FIRECRACKER_VERSION",
    "GUEST_CID",
    "FirecrackerBackend",
    "FirecrackerSandbox",
    "InstallFailed",
    "firecracker_release_url",
    "install_firecracker",
]
