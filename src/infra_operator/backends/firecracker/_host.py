"""What this host offers Firecracker, decided by evidence: a binary that runs, and a KVM
that can run a guest. ``/dev/kvm`` merely existing proves nothing (a nested, paravirtual
KVM without ``vmx``/``svm`` accepts ``KVM_CREATE_VM`` and then cannot run a real guest)."""

from __future__ import annotations

import fcntl
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

_KVM_GET_API_VERSION = 0xAE00  # _IO(KVMIO, 0x00)
_KVM_CREATE_VM = 0xAE01  # _IO(KVMIO, 0x01)
_KVM_API_VERSION = 12  # the only stable KVM API version there has ever been


@dataclass(frozen=True)
class Probe:
    ok: bool
    evidence: str
    """What was seen, as one line: shown in capabilities and in errors."""


def cpu_virtualization(cpuinfo: Path = Path("/proc/cpuinfo")) -> Probe:
    try:
        text = cpuinfo.read_text()
    except OSError as exc:
        return Probe(False, f"cannot read {cpuinfo}: {exc.strerror}")
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    found = sorted(flags & {"vmx", "svm"})
    if found:
        return Probe(True, f"CPU flags include {', '.join(found)}")
    return Probe(False, "CPU flags have neither vmx nor svm (no hardware virtualization; a nested guest?)")


def kvm_create_vm(device: Path = Path("/dev/kvm")) -> Probe:
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return Probe(False, f"cannot open {device}: {exc.strerror}")
    try:
        version = fcntl.ioctl(fd, _KVM_GET_API_VERSION)
        if version != _KVM_API_VERSION:
            return Probe(False, f"{device}: KVM API version {version}, expected {_KVM_API_VERSION}")
        vm_fd = fcntl.ioctl(fd, _KVM_CREATE_VM, 0)
        os.close(vm_fd)
    except OSError as exc:
        return Probe(False, f"{device}: KVM_CREATE_VM failed: {exc.strerror}")
    finally:
        os.close(fd)
    return Probe(True, f"{device}: KVM_CREATE_VM succeeded")


def kvm_usable() -> tuple[Probe, ...]:
    """Both probes; KVM is usable only when every one is ok."""
    return (cpu_virtualization(), kvm_create_vm())


def binary_version(binary: Path | None, label: str, timeout: float = 5.0) -> Probe:
    if binary is None:
        return Probe(False, f"no {label} binary configured")
    if not binary.is_file():
        return Probe(False, f"{label} binary {binary} does not exist")
    try:
        done = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return Probe(False, f"{binary} --version failed: {exc}")
    first = (done.stdout or done.stderr).strip().splitlines()
    if done.returncode != 0:
        return Probe(False, f"{binary} --version exited {done.returncode}: {first[0] if first else ''}")
    return Probe(True, f"{binary} --version: {first[0] if first else '(no output)'}")
