"""Evidence for what QEMU can do on this host. ``/dev/kvm`` existing is not evidence:
a nested, paravirtual KVM opens fine and then fails on ordinary guest instructions.
KVM counts only when the CPU has hardware virtualization and a probe boot works."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..base import Accelerator, KernelFiles


@dataclass(frozen=True)
class Evidence:
    accelerator: Accelerator
    lines: tuple[str, ...]


def cpu_virtualization_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    return flags & {"vmx", "svm"}


def probe_boot(
    binary: str, kernel: KernelFiles, accelerator: Accelerator = "kvm", timeout: float = 30.0
) -> tuple[bool, str]:
    """Boot the kernel into busybox ``poweroff -f``; the accelerator is usable only if the
    guest got that far. A crash can end QEMU with status 0 too (a triple fault under
    ``-no-reboot``), so the console must show the power-down."""
    if accelerator == "kvm":
        accel = ["-accel", "kvm", "-cpu", "host"]
        append = "console=ttyS0 quiet panic=-1"
    else:
        accel = ["-accel", "tcg", "-cpu", "max"]
        append = f"console=ttyS0 quiet panic=-1 tsc_early_khz={host_tsc_khz() or 1000000} tsc=reliable"
    command = [
        binary, "-M", "microvm,x-option-roms=off,isa-serial=on,rtc=on,acpi=on",
        *accel, "-m", "128", "-smp", "1",
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-kernel", str(kernel.bzimage), "-initrd", str(kernel.initramfs),
        "-append", f"{append} rdinit=/bin/busybox -- poweroff -f",
        "-serial", "stdio",
    ]
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return False, f"a {accelerator.upper()} probe boot did not finish in {timeout:g} s"
    except OSError as exc:
        return False, f"a {accelerator.upper()} probe boot could not start: {exc.strerror or exc}"
    if done.returncode != 0 or b"reboot: Power down" not in done.stdout:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        return False, f"a {accelerator.upper()} probe boot failed ({done.returncode}): {tail[0]}"
    return True, f"a {accelerator.upper()} probe boot reached userspace and powered off"


def accelerator(binary: str, kernel: KernelFiles | None) -> Evidence:
    flags = cpu_virtualization_flags()
    if not flags:
        return Evidence("tcg", ("the CPU has no vmx/svm flag: KVM would be nested and unusable; using TCG",))
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        line = f"the CPU has {'/'.join(sorted(flags))} but /dev/kvm is not usable; using TCG"
        return Evidence("tcg", (line,))
    if kernel is None:
        return Evidence("tcg", ("no guest kernel to probe KVM with; using TCG until one is built",))
    ok, line = probe_boot(binary, kernel)
    return Evidence("kvm" if ok else "tcg", (f"the CPU has {'/'.join(sorted(flags))}", line))


def host_tsc_khz() -> int | None:
    """The host's TSC rate, which a TCG guest's TSC follows; None when unknown.

    ``cpu MHz`` in /proc/cpuinfo is the TSC rate on a VM host (the kernel's own
    calibration); on bare metal with frequency scaling it may be the current clock,
    but such a host has KVM and never needs this.
    """
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("cpu MHz"):
            try:
                return round(float(line.split(":", 1)[1]) * 1000)
            except ValueError:
                return None
    return None


def find_qemu(name: str) -> str | None:
    return shutil.which(name)


_versions: dict[tuple[str, int, int, int], str | None] = {}


def qemu_version(name: str) -> str | None:
    """The first line of ``qemu-system-x86_64 --version`` (QEMU's version and Debian's package
    revision), or None when it cannot be run. A snapshot restores only under the QEMU that
    saved it: a migration stream from another version may not load, or load wrong. Asked
    per request, so it is cached by the binary's identity: an upgrade is seen at once."""
    binary = find_qemu(name)
    if binary is None:
        return None
    try:
        real = os.path.realpath(binary)
        info = os.stat(real)
    except OSError:
        return None
    key = (real, info.st_ino, info.st_size, info.st_mtime_ns)
    if key not in _versions:
        try:
            done = subprocess.run([real, "--version"], capture_output=True, text=True, timeout=10, check=False)
            lines = done.stdout.strip().splitlines()
            _versions[key] = lines[0].strip() if done.returncode == 0 and lines else None
        except (OSError, subprocess.SubprocessError):
            _versions[key] = None
    return _versions[key]
