"""QEMU microVMs (``-M microvm``), the only part of the package that speaks QMP.

    backend = QemuBackend(settings, images.guest_images(settings))  # snapshot_memory="stream" | "file"
    backend.capabilities()                           # accelerator kvm/tcg by evidence
    backend.sweep()                                  # at server start: crash leftovers
    spec = backend.prepare(spec)                     # the kernel, the image's snapshot, the VM's RAM
    sandbox = backend.start(spec)                    # cold boot, or restore if spec.snapshot
    sandbox.call({"op": "execute", ..., "entropy": b64, "clock": time.time()}, deadline)
    sandbox.destroy()

Every method blocks: call them from worker threads, never on an event loop's thread.
"""

from __future__ import annotations

from ._backend import QemuBackend, QemuSandbox, SnapshotMemory
from ._process import qemu_pid

__all__ = ["QemuBackend", "QemuSandbox", "SnapshotMemory", "qemu_pid"]
