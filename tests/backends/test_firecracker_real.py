"""The Firecracker backend end to end with a real Firecracker, a real guest kernel and a
real rootfs: cold boot + execute, then snapshot, restore + execute.

Runs only where it can: env FIRECRACKER_BIN names a Firecracker binary (and optionally
FIRECRACKER_JAILER_BIN a jailer), KVM is usable by evidence (CPU vmx/svm and
KVM_CREATE_VM), and FIRECRACKER_VMLINUX, FIRECRACKER_INITRAMFS and FIRECRACKER_ROOTFS
name the guest kernel (ELF vmlinux), its initramfs and a rootfs with python3. Otherwise
it is skipped, naming what is missing.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest

from infra_operator.backends.base import KernelFiles, SandboxSpec
from infra_operator.backends.firecracker import FirecrackerBackend
from infra_operator.backends.firecracker._host import kvm_usable
from infra_operator.config import Settings
from infra_operator.guest.protocol import b64decode, b64encode

pytestmark = pytest.mark.slow

LIMITS = {
    "wall_seconds": 20,
    "cpu_seconds": 20,
    "memory_bytes": 128 * 1024 * 1024,
    "processes": 64,
    "output_bytes": 65536,
    "file_bytes": 1 << 20,
}


def _missing() -> list[str]:
    missing: list[str] = []
    for name in ("FIRECRACKER_BIN", "FIRECRACKER_VMLINUX", "FIRECRACKER_INITRAMFS", "FIRECRACKER_ROOTFS"):
        value = os.environ.get(name)
        if not value:
            missing.append(f"env {name} is not set")
        elif not Path(value).is_file():
            missing.append(f"{name}={value} does not exist")
    missing += [f"KVM not usable: {probe.evidence}" for probe in kvm_usable() if not probe.ok]
    return missing


@pytest.fixture
def backend_and_spec(tmp_path: Path) -> tuple[FirecrackerBackend, SandboxSpec]:
    missing = _missing()
    if missing:
        reason = "real Firecracker cannot run here: " + "; ".join(missing)
        print(reason)
        pytest.skip(reason)
    jailer = os.environ.get("FIRECRACKER_JAILER_BIN")
    settings = Settings(
        data_dir=tmp_path / "data",
        firecracker_bin=Path(os.environ["FIRECRACKER_BIN"]),
        jailer_bin=Path(jailer) if jailer else None,
    )
    vmlinux = Path(os.environ["FIRECRACKER_VMLINUX"])
    initramfs = Path(os.environ["FIRECRACKER_INITRAMFS"])
    rootfs = Path(os.environ["FIRECRACKER_ROOTFS"])
    kernel = KernelFiles(bzimage=vmlinux, vmlinux=vmlinux, initramfs=initramfs, sha256="unchecked")
    spec = SandboxSpec(rootfs=rootfs, rootfs_sha256="unchecked", memory_mb=256, vcpus=1, kernel=kernel)
    return FirecrackerBackend(settings, boot_timeout=30.0), spec


def _run(sandbox: object, source: str) -> bytes:
    message = {
        "op": "execute",
        "files": {"main.py": b64encode(source.encode())},
        "compile": None,
        "run": ["python3", "main.py"],
        "env": {"PATH": "/usr/bin:/bin"},
        "stdin": "",
        "limits": LIMITS,
        "entropy": b64encode(os.urandom(32)),
        "clock": time.time(),
    }
    reply = sandbox.call(message, time.monotonic() + 30)  # type: ignore[attr-defined]
    assert reply["run"]["exit_code"] == 0, reply
    return b64decode(reply["run"]["stdout"])


def test_cold_boot_then_snapshot_restore(
    backend_and_spec: tuple[FirecrackerBackend, SandboxSpec], tmp_path: Path
) -> None:
    backend, spec = backend_and_spec
    assert backend.capabilities().usable, backend.capabilities().missing
    started = time.monotonic()
    sandbox = backend.start(spec)
    try:
        assert _run(sandbox, "print(6 * 7)") == b"42\n"
    finally:
        sandbox.destroy()
    cold = time.monotonic() - started

    directory = tmp_path / "snapshot"
    directory.mkdir()
    files = backend.create_snapshot(spec, directory)
    started = time.monotonic()
    restored = backend.start(replace(spec, snapshot=files))
    try:
        token = hashlib.sha256(os.urandom(8)).hexdigest()[:8]
        assert _run(restored, f"print('{token}')") == f"{token}\n".encode()
    finally:
        restored.destroy()
    print(f"cold boot + execute {cold:.2f} s, restore + execute {time.monotonic() - started:.2f} s")
    assert list(backend.settings.run_dir.glob("firecracker-*")) == []
