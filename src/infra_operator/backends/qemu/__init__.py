"""QEMU microVMs (``-M microvm``), the only part of the package that speaks QMP.

    kernel = images.load_kernel(settings) or images.build_kernel(settings, print)
    backend = QemuBackend(settings, kernel)          # snapshot_memory="stream" | "file"
    backend.capabilities()                           # accelerator kvm/tcg by evidence
    backend.sweep()                                  # at server start: crash leftovers
    sandbox = backend.start(spec)                    # cold boot, or restore if spec.snapshot
    sandbox.call({"op": "execute", ..., "entropy": b64, "clock": time.time()}, deadline)
    sandbox.destroy()

Every method blocks: call them from worker threads, never on an event loop's thread.
"""

from __future__ import annotations

from ._backend import QemuBackend, QemuSandbox, SnapshotMemory

__all__ = ["QemuBackend", "QemuSandbox", "SnapshotMemory"]
