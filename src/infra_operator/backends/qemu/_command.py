"""The QEMU command line of one microVM."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..base import Accelerator
from . import _process

KERNEL_ARGS = "console=ttyS0 quiet reboot=t panic=-1 infra.channel=virtio:agent"
"""``panic=-1`` with ``-no-reboot``: a guest whose agent (PID 1) dies ends its QEMU."""


def kernel_args(machine: Machine) -> str:
    if machine.tsc_khz is None:
        return KERNEL_ARGS
    # Under TCG the guest's TSC runs at the host's rate. Left to calibrate it against
    # the emulated PIT, a guest on a busy host fails, marks the TSC unstable and then
    # hangs waiting for timer ticks (measured: every boot at load 12 on 2 cores). Told
    # the rate, it never calibrates; tsc=reliable keeps the clocksource watchdog from
    # demoting the TSC later for the same reason.
    return f"{KERNEL_ARGS} tsc_early_khz={machine.tsc_khz} tsc=reliable"


@dataclass(frozen=True)
class Machine:
    """What must be equal between a VM saved to a snapshot and one restored from it."""

    memory_mb: int
    vcpus: int
    accelerator: Accelerator
    bzimage: Path
    initramfs: Path | None
    """None for a restored VM, whose kernel is already running (see ``_stub``)."""
    rootfs: Path
    tsc_khz: int | None = None
    """The TSC rate told to a TCG guest; None under KVM, where kvmclock serves."""
    memory_file: Path | None = None
    """Guest RAM backed by this file instead of anonymous memory (snapshots in "file" mode)."""
    memory_shared: bool = False
    """Writes reach the file (making a snapshot) or stay private copies (a restored clone)."""


def argv(binary: str, machine: Machine, name: str, incoming: bool) -> list[str]:
    """Paths of sockets and logs are relative: QEMU runs in the run folder, which keeps
    unix socket paths short whatever the data directory is."""
    kvm = machine.accelerator == "kvm"
    board = "microvm,x-option-roms=off,isa-serial=on,rtc=on,acpi=on"
    memory = ["-m", str(machine.memory_mb)]
    if machine.memory_file is not None:
        board += ",memory-backend=ram"
        path = str(machine.memory_file).replace(",", ",,")  # QEMU's option syntax escapes commas
        share = "on" if machine.memory_shared else "off"
        backend = f"memory-backend-file,id=ram,size={machine.memory_mb}M,mem-path={path},share={share}"
        memory += ["-object", backend]
    accel = ["-accel", "kvm", "-cpu", "host"] if kvm else ["-accel", "tcg", "-cpu", "max"]
    command = [
        binary,
        "-name", name,
        # seccomp: no privilege changes or resource control from QEMU; spawning stays
        # allowed because saving and restoring a snapshot runs "exec:cat".
        "-sandbox", "on,obsolete=deny,elevateprivileges=deny,resourcecontrol=deny",
        # ACPI on: this kernel finds virtio-mmio devices only through ACPI. The RTC
        # stays on: under TCG the kernel hung without it.
        "-M", board,
        *accel,
        *memory,
        "-smp", str(machine.vcpus),
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-kernel", str(machine.bzimage),
        *(["-initrd", str(machine.initramfs)] if machine.initramfs is not None else []),
        "-append", kernel_args(machine),
        "-drive", f"id=rootfs,file={machine.rootfs},format=raw,if=none,readonly=on",
        "-device", "virtio-blk-device,drive=rootfs",
        "-device", "virtio-rng-device",
        "-device", "virtio-serial-device",
        "-chardev", f"socket,id=agent,path={_process.AGENT_SOCKET},server=on,wait=off",
        "-device", "virtserialport,chardev=agent,name=agent",
        "-chardev", f"socket,id=qmp,path={_process.QMP_SOCKET},server=on,wait=off",
        "-mon", "chardev=qmp,mode=control",
        "-serial", f"file:{_process.CONSOLE_LOG}",
        "-pidfile", _process.PID_FILE,
        # Paused until the host holds the agent's socket: a virtio-serial read in the
        # guest returns end-of-file while no host is connected, which would end the agent.
        "-S",
    ]
    if incoming:
        command += ["-incoming", "defer"]
    return command
