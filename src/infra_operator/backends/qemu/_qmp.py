"""A small synchronous QMP client over ``qemu.qmp``'s asyncio ``QMPClient``.

The backend API is synchronous (the executor calls it from worker threads), so each
connection owns a private event loop and runs it only while a command is in flight.
Every QMP failure leaves this module as an ``errors.SandboxError`` subclass.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

from qemu.qmp import ConnectError, QMPClient, QMPError

from ...errors import BootFailed, SandboxError

_T = TypeVar("_T")
_STREAM = "stream"
"""QEMU's name for the descriptor of a migration stream the server passes it."""
_SAVE_BANDWIDTH = 64 << 30
"""Bytes per second: QEMU's default cap (128 MiB/s) would make a 256 MiB save take 2 s."""


class QmpFailed(SandboxError):
    """QEMU's monitor refused a command or went away."""


class Monitor:
    def __init__(self, path: str, sandbox_id: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._client = QMPClient(f"qemu-{sandbox_id}")
        # Its failures name the sandbox as the backend's others do, whatever phase they hit.
        self._name = f"sandbox {sandbox_id}"
        self._path = path

    def _run(self, awaitable: Awaitable[_T], timeout: float) -> _T:
        try:
            return self._loop.run_until_complete(asyncio.wait_for(awaitable, timeout))
        except TimeoutError as exc:
            raise QmpFailed(f"{self._name}: QEMU's monitor did not answer within {timeout:g} s") from exc
        except (QMPError, OSError, EOFError) as exc:
            raise QmpFailed(f"{self._name}: QMP failed: {exc}") from exc

    def connect(self, timeout: float = 10.0) -> None:
        """Connect, retrying while QEMU has made its socket but is not yet listening."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._run(self._client.connect(self._path), max(deadline - time.monotonic(), 0.1))
                return
            except QmpFailed as exc:
                cause = exc.__cause__
                refused = isinstance(cause, ConnectError) and isinstance(
                    cause.exc, (ConnectionRefusedError, FileNotFoundError)
                )
                if not refused or time.monotonic() > deadline:
                    raise BootFailed(str(exc)) from exc
            time.sleep(0.005)

    def command(self, name: str, timeout: float = 30.0, **arguments: Any) -> Any:
        return self._run(self._client.execute(name, arguments or None), timeout)

    def pass_fd(self, name: str, fd: int) -> None:
        """Hand QEMU an open descriptor, known to it as ``name`` (for ``fd:name`` URIs).
        QEMU files the descriptor it received with the next command, ``getfd``."""
        try:
            self._client.send_fd_scm(fd)
        except (QMPError, OSError) as exc:
            raise QmpFailed(f"{self._name}: cannot pass a descriptor: {exc}") from exc
        self.command("getfd", fdname=name)

    def wait_migration(self, timeout: float) -> dict[str, Any]:
        """Poll ``query-migrate`` until the migration completes; raise if it fails."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.command("query-migrate")
            status = info.get("status") if isinstance(info, dict) else None
            if status == "completed":
                return dict(info)
            if status in ("failed", "cancelled"):
                reason = info.get("error-desc", "no reason given")
                raise QmpFailed(f"{self._name}: migration {status}: {reason}")
            if time.monotonic() > deadline:
                raise QmpFailed(f"{self._name}: migration not done after {timeout:g} s (status {status})")
            time.sleep(0.005)

    def save_to(self, target: Path, mode: int, timeout: float) -> None:
        """Migrate the stopped VM into ``target``. The server opens the file and QEMU writes to
        the descriptor: a jailed VMM holds no path to it, and its seccomp filter spawns no
        ``cat``. An ``OSError`` is the file's; the monitor's failures are ``QmpFailed``."""
        self.command("migrate-set-parameters", **{"max-bandwidth": _SAVE_BANDWIDTH})
        self._pass_file(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        self.command("migrate", uri=f"fd:{_STREAM}")
        self.wait_migration(timeout)

    def restore_from(self, source: Path, timeout: float) -> None:
        """Load a VM started with ``-incoming defer`` from ``source``, then let it run. An
        ``OSError`` is the file's; the monitor's failures are ``QmpFailed``."""
        self._pass_file(source, os.O_RDONLY, 0)
        self.command("migrate-incoming", uri=f"fd:{_STREAM}")
        self.wait_migration(timeout)
        self.command("cont")

    def _pass_file(self, path: Path, flags: int, mode: int) -> None:
        stream = os.open(path, flags | os.O_CLOEXEC, mode)
        try:
            self.pass_fd(_STREAM, stream)
        finally:
            os.close(stream)

    def close(self) -> None:
        try:
            self._loop.run_until_complete(asyncio.wait_for(self._client.disconnect(), 5.0))
        except (QMPError, OSError, EOFError, TimeoutError):
            pass  # the process is usually about to be killed anyway
        finally:
            self._loop.close()
