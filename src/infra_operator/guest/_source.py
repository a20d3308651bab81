"""The agent's own sources, as the host copies them into sandboxes and initramfs images."""

from __future__ import annotations

import os

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def source_files() -> list[str]:
    """The package's files that a sandbox needs, as paths relative to it, sorted."""
    found = []
    for directory, subdirs, files in os.walk(PACKAGE_DIR):
        subdirs[:] = sorted(d for d in subdirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                found.append(os.path.relpath(os.path.join(directory, name), PACKAGE_DIR))
    return found


def fingerprint() -> str:
    """A checksum of the agent's sources: what a copy of it must match to be current."""
    import hashlib  # here, not at the top: the agent itself never needs it, and starts faster

    digest = hashlib.sha256()
    for name in source_files():
        with open(os.path.join(PACKAGE_DIR, name), "rb") as handle:
            digest.update(name.encode() + b"\0" + handle.read() + b"\0")
    return digest.hexdigest()
