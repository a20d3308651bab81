"""The Firecracker backend end to end with a real Firecracker, a real guest kernel and a
real rootfs: cold boot + execute, then snapshot, restore + execute.

Runs only where it can: env FIRECRACKER_BIN names a Firecracker binary (and optionally
FIRECRACKER_JAILER_BIN a jailer) and KVM is usable by evidence (CPU vmx/svm and
KVM_CREATE_VM). The guest is the project's own: the kernel and initramfs of
``infra.operator kernel build`` and the python rootfs, both from the data dir, unless
FIRECRACKER_VMLINUX, FIRECRACKER_INITRAMFS and FIRECRACKER_ROOTFS name others.
Otherwise it is skipped, naming what is missing.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import DATA_DIR

from infra_operator.backends.base import KernelFiles, SandboxSpec
from infra_operator.backends.firecracker import FirecrackerBackend
from infra_operator.backends.firecracker._host import kvm_usable
from infra_operator.config import Settings
from infra_operator.guest.protocol import b64decode, b64encode
from infra_operator.images import RootfsStore, load_kernel

pytestmark = pytest.mark.slow

LIMITS = {
    "wall_seconds": 20,
    "cpu_seconds": 20,
    "memory_bytes": 128 * 1024 * 1024,
    "processes": 64,
    "output_bytes": 65536,
    "file_bytes": 1 << 20,
}


def _guest() -> tuple[KernelFiles | None, Path | None]:
    """The kernel and rootfs to boot: named by the environment, else the project's own."""
    if all(os.environ.get(name) for name in ("FIRECRACKER_VMLINUX", "FIRECRACKER_INITRAMFS", "FIRECRACKER_ROOTFS")):
        vmlinux = Path(os.environ["FIRECRACKER_VMLINUX"])
        kernel = KernelFiles(bzimage=vmlinux, vmlinux=vmlinux, initramfs=Path(os.environ["FIRECRACKER_INITRAMFS"]),
                             sha256="unchecked")
        return kernel, Path(os.environ["FIRECRACKER_ROOTFS"])
    rootfs = RootfsStore(DATA_DIR / "images").find("python")
    return load_kernel(Settings(data_dir=DATA_DIR)), rootfs.path if rootfs else None


def _missing() -> list[str]:
    missing: list[str] = []
    binary = os.environ.get("FIRECRACKER_BIN")
    if not binary:
        missing.append("env FIRECRACKER_BIN is not set")
    elif not Path(binary).is_file():
        missing.append(f"FIRECRACKER_BIN={binary} does not exist")
    kernel, rootfs = _guest()
    if kernel is None or not kernel.vmlinux.is_file() or not kernel.initramfs.is_file():
        missing.append(f"no guest kernel in {DATA_DIR}: run `infra.operator kernel build`")
    if rootfs is None or not rootfs.is_file():
        missing.append(f"no python rootfs in {DATA_DIR}: run `infra.operator rootfs create --lang python`")
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
    kernel, rootfs = _guest()
    assert kernel is not None and rootfs is not None
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
