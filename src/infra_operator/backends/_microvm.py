"""What the microVM backends share in preparing a sandbox's spec."""

from __future__ import annotations

import dataclasses

from ..errors import BackendUnavailable
from .base import GuestImages, SandboxSpec

NO_IMAGES = GuestImages.fixed(None)
"""A microVM backend's images when none are handed in: no kernel, no snapshots (a spec
started directly brings its own kernel)."""


def prepare(
    spec: SandboxSpec, backend: str, images: GuestImages, memory_mb: int, vmm_version: str | None
) -> SandboxSpec:
    """The spec with the current guest kernel, the image's snapshot for ``backend`` when one
    was made from this rootfs and kernel by this VMM version, and the server's VM memory: a microVM's RAM is the
    server's setting, the request's memory limit is applied inside the guest by its cgroup."""
    kernel = images.kernel()
    if kernel is None:
        raise BackendUnavailable("the guest kernel is not built: run `infra.operator kernel build`")
    snapshot = None
    if spec.image is not None:
        snapshot = images.snapshot(backend, spec.image, spec.rootfs_sha256, kernel.sha256, vmm_version)
    return dataclasses.replace(spec, memory_mb=memory_mb, kernel=kernel, snapshot=snapshot)
