"""Isolation backends behind one interface (see ``base``), and the choice between them."""

from __future__ import annotations

from ._memory import measure as measure_memory
from ._registry import AUTO_ORDER, BackendSet, factories
from .base import (
    Backend,
    Capabilities,
    GuestImages,
    HostOutcome,
    KernelFiles,
    Listener,
    MemoryUse,
    RootfsFormat,
    Sandbox,
    SandboxSpec,
    SnapshotFiles,
    State,
    Warmup,
    rootfs_format,
)

__all__ = [
    "AUTO_ORDER",
    "Backend",
    "BackendSet",
    "Capabilities",
    "GuestImages",
    "HostOutcome",
    "KernelFiles",
    "Listener",
    "MemoryUse",
    "RootfsFormat",
    "Sandbox",
    "SandboxSpec",
    "SnapshotFiles",
    "State",
    "Warmup",
    "factories",
    "measure_memory",
    "rootfs_format",
]
