"""The host's side of a jail template: one bwrap per image whose agent forks each sandbox.

The template is a jail like the sandboxes it makes (the image read-only at /, the
shared uid-65534 user namespace, no network, its own PIDs, IPC and UTS), but it keeps
its capabilities within that namespace, so that it can give each sandbox fresh
namespaces and mounts, and it runs no seccomp filter: it reads the filter from us
and loads it into every sandbox. ``guest/_template.py`` has the sandbox's side, and
``_backend``'s docstring a map of every part of a jail's confinement.

We talk to it over a unix seqpacket socket on its stdin: one record per sandbox,
carrying the sandbox's two pipe ends and the ``cgroup.procs`` files of its host
cgroup. The sandbox's agent then answers on those pipes like any other agent.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import threading
from pathlib import Path

from ...errors import SandboxError
from ...guest.protocol import SANDBOX_UID, ProtocolError, decode_json, encode_json
from .._cgroups import HostCgroup
from . import _seccomp

GUEST_MOUNT = "/opt/infra-operator/guest"
START_TIMEOUT_SECONDS = 10.0
CLOSE_TIMEOUT_SECONDS = 5.0
_SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"


def _bwrap_argv(root: Path, agent: Path, userns_fd: int, seccomp_fd: int) -> list[str]:
    return [
        "bwrap",
        "--userns", str(userns_fd),
        "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
        "--die-with-parent",  # bwrap's own process is the parent here, not one of our threads
        "--new-session",
        "--as-pid-1",
        "--ro-bind", str(root), "/",
        "--proc", "/proc",
        "--dev", "/dev",
        # The template's own writable places: every sandbox mounts fresh ones over them.
        "--size", "1048576", "--tmpfs", "/tmp",
        "--size", "1048576", "--tmpfs", "/work",
        "--size", "1048576", "--tmpfs", "/dev/shm",
        # /dev is the one mount sandboxes share with the template: nobody may write it.
        "--remount-ro", "/dev",
        "--ro-bind", str(agent), GUEST_MOUNT,
        "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
        "--hostname", "sandbox",
        "--cap-add", "ALL",
        "--clearenv",
        "--setenv", "PATH", _SANDBOX_PATH,
        "--setenv", "PYTHONPATH", str(Path(GUEST_MOUNT).parent),
        "--chdir", "/work",
        "/usr/bin/python3", "-B", "-m", "guest", "--template", str(seccomp_fd),
    ]


class Template:
    """A running template for one mounted image.

    It counts the sandboxes it made that are still in use: a template is retired (its
    image was rebuilt, or it made its share of sandboxes) by taking no more requests and
    stopping once the last of them is destroyed, since stopping it ends them all."""

    def __init__(self, root: Path, agent: Path, userns_fd: int, run_dir: Path) -> None:
        self.root = root
        self.run_dir = run_dir
        self.made = 0
        self.closed = False
        self._in_use = 0
        self._retired = False
        self._lock = threading.Lock()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        seccomp_fd = _seccomp.program_fd()
        try:
            run_dir.mkdir(parents=True)
            with (run_dir / "stderr.log").open("wb") as stderr:
                self._process = subprocess.Popen(
                    _bwrap_argv(root, agent, userns_fd, seccomp_fd),
                    stdin=theirs.fileno(), stdout=subprocess.DEVNULL, stderr=stderr,
                    start_new_session=True, pass_fds=(userns_fd, seccomp_fd),
                )
        except OSError as exc:
            ours.close()
            shutil.rmtree(run_dir, ignore_errors=True)
            raise SandboxError(f"cannot start a jail template: {exc.strerror or exc}") from exc
        finally:
            theirs.close()
            os.close(seccomp_fd)
        self._socket = ours
        try:
            self._wait_started()
        except BaseException:
            self.close()
            raise

    def _wait_started(self) -> None:
        readable, _, _ = select.select([self._socket], [], [], START_TIMEOUT_SECONDS)
        record = self._socket.recv(4096) if readable else b""
        try:
            hello = decode_json(record) if record else None
        except ProtocolError:
            hello = None
        if not isinstance(hello, dict) or not hello.get("ok"):
            self._process.kill()
            self._process.wait()
            raise SandboxError(f"the jail template did not start; bwrap said: {self.stderr_tail()}")

    def usable(self) -> bool:
        return not self._retired and self._process.poll() is None

    def spawn(self, scratch_bytes: int, cgroup: HostCgroup) -> tuple[int, int]:
        """A new sandbox in ``cgroup``: the fds we read its agent from and write it to.
        Every sandbox it returns must be ``release``d once destroyed."""
        to_agent = os.pipe()
        from_agent = os.pipe()
        procs = cgroup.open_procs()
        try:
            request = encode_json({"scratch_bytes": scratch_bytes})
            with self._lock:
                if self._retired:
                    raise OSError("the template is retired")
                socket.send_fds(self._socket, [request], [to_agent[0], from_agent[1], *procs])
                self.made += 1
                self._in_use += 1
        except OSError as exc:
            for fd in (*to_agent, *from_agent):
                os.close(fd)
            raise SandboxError(f"the jail template is gone: {exc.strerror or exc}") from exc
        finally:
            for fd in procs:
                os.close(fd)
        os.close(to_agent[0])
        os.close(from_agent[1])
        return from_agent[0], to_agent[1]

    def release(self) -> None:
        with self._lock:
            self._in_use -= 1
            done = self._retired and self._in_use == 0
        if done:
            self.close()

    def retire(self) -> None:
        with self._lock:
            already, self._retired = self._retired, True
            done = not already and self._in_use == 0
        if done:
            self.close()

    def stderr_tail(self) -> str:
        try:
            return (self.run_dir / "stderr.log").read_text(errors="replace").strip()[-500:] or "nothing"
        except OSError:
            return "nothing"

    def close(self) -> None:
        """Stop the template and, with it, every sandbox it made."""
        self.closed = True
        self._socket.close()  # the template exits when it reads the end of its socket
        try:
            self._process.wait(timeout=CLOSE_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self._process.kill()  # bwrap's --die-with-parent takes the template along
            self._process.wait()
        shutil.rmtree(self.run_dir, ignore_errors=True)
