"""One Firecracker process and its run folder: spawned directly or through the jailer,
watched, killed and cleaned up. No HTTP here (see ``_api``), no agent (see ``_backend``).

Every path handed to Firecracker is relative to its working directory, which is the
run folder when it runs directly and the chroot's root (``/``) when the jailer runs it.
So one set of names serves both, and a snapshot's recorded relative paths (the vsock
socket, the rootfs drive) exist again in the next sandbox's folder, jailed or not.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

RUN_PREFIX = "firecracker-"
API_SOCKET = "api.sock"
VSOCK_SOCKET = "vsock.sock"
CONSOLE_LOG = "console.log"
PID_FILE = "pid"
JAIL_UID_BASE = 900_000
"""Jailed VMs run as uid/gid JAIL_UID_BASE + a slot from their id: a uid used by
nothing else on the host (not 65534, which the namespace jail uses), so an escaped
guest cannot signal or ptrace other VMs or sandboxes."""
JAIL_UID_SLOTS = 50_000
_MAX_SUN_PATH = 100  # sockaddr_un.sun_path is 108 bytes with the NUL; keep a margin
_MEMORY_OVERHEAD_MIB = 128  # Firecracker's own memory beside the guest's, for the cgroup limit


@dataclass(frozen=True)
class Launcher:
    firecracker: Path
    jailer: Path | None = None


def _cgroup_version() -> int:
    return 2 if Path("/sys/fs/cgroup/cgroup.controllers").exists() else 1


class MicroVm:
    """A run folder and, once spawned, the Firecracker process living in it."""

    def __init__(self, run_dir: Path, sandbox_id: str, launcher: Launcher) -> None:
        self.id = sandbox_id
        self.launcher = launcher
        self.folder = run_dir / f"{RUN_PREFIX}{sandbox_id}"
        self.jailed = launcher.jailer is not None
        slot = int(sandbox_id, 16) % JAIL_UID_SLOTS if self.jailed else 0
        self.uid = self.gid = JAIL_UID_BASE + slot
        if self.jailed:
            # jailer's layout: <chroot base>/<exec file name>/<id>/root
            self.root = self.folder / "jail" / launcher.firecracker.name / sandbox_id / "root"
        else:
            self.root = self.folder
        self.process: subprocess.Popen[bytes] | None = None
        self._root_fd: int | None = None
        self._cgroup_version = _cgroup_version()

    def prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=False)
        if self.jailed:
            # Firecracker binds its sockets and writes snapshots here after dropping to the uid.
            os.chown(self.root, self.uid, self.gid)
        self._root_fd = os.open(self.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def host_path(self, name: str) -> Path:
        """Where the file Firecracker knows as ``name`` is on the host; usable for connect()."""
        path = self.root / name
        if len(str(path)) > _MAX_SUN_PATH and self._root_fd is not None:
            # Too long for a unix socket address: reach it through our open directory fd.
            return Path(f"/proc/self/fd/{self._root_fd}/{name}")
        return path

    def place(self, source: Path, name: str) -> str:
        """Make ``source`` reachable by Firecracker as ``name``; returns the path to hand it.

        Directly, a symbolic link to it; in a jail, where a link cannot lead out of the
        chroot, a hard link (or a copy owned by the jail's uid). Either way Firecracker,
        and so a snapshot it makes, sees the same relative name."""
        target = self.root / name
        if not self.jailed:
            target.symlink_to(source.resolve())
            return name
        mode = source.stat().st_mode
        try:
            if not mode & 0o004:
                raise OSError("not world-readable: copy it, so chown cannot touch the original")
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
            os.chown(target, self.uid, self.gid)
            target.chmod(0o400)
        return name

    def spawn(self, memory_mib: int) -> None:
        log_file = open(self.folder / CONSOLE_LOG, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.process = subprocess.Popen(
                self._argv(memory_mib),
                cwd=self.root if not self.jailed else self.folder,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: one killpg takes every child
            )
        finally:
            log_file.close()
        (self.folder / PID_FILE).write_text(f"{self.process.pid}\n")

    def _argv(self, memory_mib: int) -> list[str]:
        fc = self.launcher.firecracker
        key = "memory.max" if self._cgroup_version == 2 else "memory.limit_in_bytes"
        if self.launcher.jailer is None:
            return [str(fc), "--id", self.id, "--api-sock", API_SOCKET]
        argv = [
            str(self.launcher.jailer),
            "--id", self.id,
            "--exec-file", str(fc.resolve()),
            "--uid", str(self.uid),
            "--gid", str(self.gid),
            "--chroot-base-dir", str(self.folder / "jail"),
            "--cgroup-version", str(self._cgroup_version),
            # Bound the whole process, guest RAM and VMM, so a runaway VM meets the host's OOM killer.
            "--cgroup", f"{key}={(memory_mib + _MEMORY_OVERHEAD_MIB) * 1024 * 1024}",
        ]  # fmt: skip
        return [*argv, "--", "--api-sock", API_SOCKET]

    def why_dead(self, wait: float = 0.0) -> str | None:
        """None while the process runs (after waiting up to ``wait`` seconds for it to end);
        else how it ended and the end of its console."""
        if self.process is None:
            return "firecracker was never started"
        try:
            code = self.process.wait(timeout=wait) if wait else self.process.poll()
        except subprocess.TimeoutExpired:
            code = None
        if code is None:
            return None
        how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
        return f"firecracker {how}; last output: {self.console_tail()}"

    def console_tail(self, limit: int = 1500) -> str:
        try:
            with open(self.folder / CONSOLE_LOG, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - limit))
                text = handle.read().decode("utf-8", "replace").strip()
        except OSError:
            return "(no console log)"
        return text.replace("\n", " | ") or "(empty)"

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        if self.process is not None:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log.warning("sandbox %s: firecracker pid %d survived SIGKILL", self.id, self.process.pid)

    def remove(self) -> None:
        if self._root_fd is not None:
            os.close(self._root_fd)
            self._root_fd = None
        if self.jailed:
            for group in jail_cgroups(self.launcher.firecracker.name, self.id):
                try:
                    group.rmdir()
                except OSError as exc:
                    log.warning("sandbox %s: cannot remove cgroup %s: %s", self.id, group, exc.strerror)
        shutil.rmtree(self.folder, ignore_errors=True)
        if self.folder.exists():
            log.warning("sandbox %s: run folder %s could not be removed", self.id, self.folder)


def jail_cgroups(exec_name: str, sandbox_id: str) -> list[Path]:
    """The cgroups the jailer made for one VM (its parent cgroup is the exec file's name)."""
    # v2 at the root; v1 under each controller's mount, and a hybrid host's v2 under unified/.
    root = Path("/sys/fs/cgroup")
    try:
        bases = [root, *(path for path in root.iterdir() if path.is_dir())]
    except OSError:
        return []
    return [base / exec_name / sandbox_id for base in bases if (base / exec_name / sandbox_id).is_dir()]
