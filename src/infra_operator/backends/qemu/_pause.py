"""Pausing a QEMU sandbox to disk and resuming it in a fresh QEMU.

What a session holds lives in guest RAM: the agent, the REPL kernel and its names, and
the working folder, which is a tmpfs of the guest's (the rootfs is a read-only drive;
there is no writable disk). So the migration stream, saved with ``stop`` + ``migrate``
to a descriptor of FILE passed over QMP (QEMU is jailed, see ``_jail``), is the whole
session; next to it ``machine.json`` records the command line the resumed QEMU must
repeat (the same kernel, initramfs, rootfs, RAM and TSC rate), since a migration stream
only loads into a twin of the machine that wrote it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import AgentError, SandboxError, SnapshotNotFound
from ..base import SandboxSpec, State
from . import _command

if TYPE_CHECKING:
    from ._backend import QemuBackend, QemuSandbox

log = logging.getLogger(__name__)

STATE_NAME = "vmstate"
MACHINE_NAME = "machine.json"
SAVE_TIMEOUT = 300.0
_PATHS = ("bzimage", "initramfs", "rootfs", "memory_file")


def pause(sandbox: QemuSandbox, directory: Path) -> None:
    """Save ``sandbox`` into ``directory`` and end its QEMU; on failure the VM runs on."""
    if sandbox.state is not State.READY:
        raise AgentError(f"sandbox {sandbox.id} is {sandbox.state.value}: only a ready sandbox can pause")
    vmstate = directory / STATE_NAME
    partial = directory / f".{STATE_NAME}.partial"
    monitor = sandbox.monitor()
    stopped = False
    try:
        if sandbox.machine.memory_file is not None:
            # A clone restored from a file-backed snapshot may have this capability on from its
            # restore; its RAM is private, but say so: all of it must go into the stream.
            monitor.command("migrate-set-capabilities", capabilities=[{"capability": "x-ignore-shared", "state": False}])
        monitor.command("stop")
        stopped = True
        monitor.save_to(partial, 0o600, timeout=SAVE_TIMEOUT)
        partial.replace(vmstate)
        record = {key: str(value) if isinstance(value, Path) else value
                  for key, value in dataclasses.asdict(sandbox.machine).items()}
        (directory / MACHINE_NAME).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    except BaseException as exc:
        partial.unlink(missing_ok=True)
        vmstate.unlink(missing_ok=True)
        if stopped:
            try:
                monitor.command("cont")  # the session goes on as if never asked to pause
            except SandboxError:
                log.warning("sandbox %s: could not run again after a failed pause", sandbox.id)
        if isinstance(exc, OSError):
            raise SandboxError(f"sandbox {sandbox.id}: cannot save it: {exc.strerror or exc}") from exc
        raise
    finally:
        monitor.close()
    sandbox.destroy()


def read_machine(directory: Path) -> _command.Machine:
    try:
        record: dict[str, Any] = json.loads((directory / MACHINE_NAME).read_text())
        fields = {field.name for field in dataclasses.fields(_command.Machine)}
        values: dict[str, Any] = {key: Path(value) if key in _PATHS and value is not None else value
                  for key, value in record.items() if key in fields}
        machine = _command.Machine(**values)
    except (OSError, ValueError, TypeError) as exc:
        raise SnapshotNotFound(f"qemu: paused sandbox {directory} has no readable {MACHINE_NAME}: {exc}") from exc
    for name in _PATHS:
        path = getattr(machine, name)
        if path is not None and not path.is_file():
            raise SnapshotNotFound(f"qemu: the paused sandbox in {directory} needs {path}, which is gone")
    return machine


def resume(backend: QemuBackend, spec: SandboxSpec, directory: Path) -> QemuSandbox:
    vmstate = directory / STATE_NAME
    if not vmstate.is_file():
        raise SnapshotNotFound(f"qemu: paused sandbox {directory} has no {STATE_NAME}")
    machine = read_machine(directory)
    accelerator = backend._accelerator().accelerator
    if machine.accelerator != accelerator:
        raise SandboxError(f"qemu: the sandbox was paused under {machine.accelerator}, this host runs {accelerator}")
    sandbox = backend._spawn(machine, spec, incoming=True)
    try:
        # The agent's socket is held before the guest runs again: a guest that saw its host
        # side closed would read end-of-file and its agent would end.
        sandbox.connect_agent()
        monitor = sandbox.monitor()
        try:
            monitor.restore_from(vmstate, backend.restore_timeout)
        finally:
            monitor.close()
        sandbox.wait_ready(backend.restore_timeout)
        sandbox.set_clock(backend.restore_timeout)
    except BaseException:
        sandbox.destroy()
        raise
    return sandbox
