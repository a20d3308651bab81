"""The guest agent and the wire protocol it shares with the host.

Standard library only, no imports from the rest of the package: this folder is
copied into every sandbox and runs on the image's own Python.
"""

from __future__ import annotations

from ._source import PACKAGE_DIR, fingerprint, source_files
from .protocol import (
    AGENT_VSOCK_PORT,
    SANDBOX_UID,
    ChannelClosed,
    ChannelTimeout,
    ProtocolError,
    b64decode,
    b64encode,
    receive,
    send,
)


def seccomp_program() -> bytes:
    """The seccomp filter sandboxed programs run under, as ``guest/_seccomp.py`` assembles it.
    Imported on first use: an agent in a jail never needs it, and starts faster without."""
    from ._seccomp import program

    return program()


__all__ = [
    "PACKAGE_DIR",
    "AGENT_VSOCK_PORT",
    "ChannelClosed",
    "ChannelTimeout",
    "ProtocolError",
    "SANDBOX_UID",
    "b64decode",
    "b64encode",
    "fingerprint",
    "receive",
    "seccomp_program",
    "send",
    "source_files",
]
