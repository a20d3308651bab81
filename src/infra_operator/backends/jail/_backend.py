"""The jail backend: namespaces over a rootfs mounted read-only.

Each sandbox has fresh namespaces (no network, its own PIDs, IPC, UTS, cgroups,
mounts and a user namespace of its own), all capabilities dropped, a seccomp filter,
uid 65534 (host uid 65534 too, see ``_userns``), private tmpfs for /work, /tmp and
/dev/shm sized by the request's file limit, a /proc that hides the host, and a host
cgroup that bounds memory and processes. The agent is the namespace's PID 1, so
``kill(-1)`` from user code cannot reach it, and when it exits every process of the
sandbox dies with it. It talks to the host over two pipes.

A sandbox is forked, already confined, from the image's template (``_template``): a
bwrap started once per image whose agent has paid bwrap's start-up, so a new sandbox
costs a fork, some namespaces and a fresh agent rather than a bwrap.

How a jail is confined, and where each part is done (host: this package; guest: the
agent's own package, ``guest/``, which runs inside):

- the user namespace (uid 65534 only, owned by 65534): host, ``_userns``;
- the image read-only, /dev read-only, no network, the template's PID, IPC and UTS
  namespaces: host, bwrap's command in ``_template._bwrap_argv``;
- the host cgroup (memory, processes): host, ``_cgroups``; joined by the sandbox in
  ``guest/_template._become_sandbox``;
- per sandbox, fresh mount, PID, network, IPC, UTS, cgroup and user namespaces:
  guest, ``guest/_template._become_sandbox``;
- per sandbox, fresh /work, /tmp, /dev/shm, /dev/pts and /proc, /proc's knobs
  read-only: guest, ``guest/_template._fresh_mounts`` and ``_fresh_proc``;
- /proc's view of the host masked (cmdline, partitions, diskstats, ...): guest,
  ``guest/_confine.mask_proc``;
- capabilities dropped, no_new_privs, the seccomp filter: guest,
  ``guest/_template._Confinement``; the filter itself is ``guest/_seccomp``;
- a fresh agent, with start-up secrets of its own: guest, ``guest/_template._spawn``;
- per program, rlimits (CPU, file size, core, queued signals, message queues): guest,
  ``guest/_runner._preexec`` and ``guest/_confine.limit_kernel_objects``;
- what a step left running, killed: guest, ``guest/_confine.kill_leftovers``.
"""
from __future__ import annotations

import compileall
import itertools
import os
import shutil
import subprocess
import threading
import uuid
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from ... import guest
from ...errors import AgentError, AgentTimeout, BackendUnavailable, Conflict, InvalidRequest, SandboxError
from .. import _cgroups, _channel
from .._cgroups import HostCgroup
from .._leftovers import stale_run_folders
from ..base import Capabilities, HostOutcome, Isolation, Listener, MemoryUse, SandboxSpec, SnapshotFiles, State
from . import _seccomp, _userns
from ._mounts import ImageMounts
from ._template import Template

if TYPE_CHECKING:
    from ...guest.messages import Reply, Request

READY_TIMEOUT_SECONDS = 10.0
TEMPLATE_SANDBOXES = 500
"""How many sandboxes one template makes before a fresh one takes over. Sandboxes no
longer share the template's start-up secrets (each execs an agent of its own); what a
long-lived template still shares with each fork is its own memory layout, which it
chose once, so no one template serves a server's whole life."""
READY_MEMORY_MB = 5
"""A ready jail is an agent of its own waiting on a pipe: about 4 MiB of its own memory
(its interpreter's heap; the files it maps are the image's, in the page cache once for
all). Its memory limit is what the program may take once it runs, not what it holds."""
_counter = itertools.count()


_NO_PAUSE = ("the jail backend cannot pause a session: its processes run on the host's kernel, with no machine "
             "to save; pause a session on a microVM backend (qemu, firecracker)")


class JailSandbox:
    def __init__(self, sandbox_id: str, channel: tuple[int, int], cgroup: HostCgroup, template: Template) -> None:
        self.id = sandbox_id
        self.state = State.CREATED
        self._read_fd, self._write_fd = channel
        self._cgroup = cgroup
        self._template = template

    def wait_ready(self) -> None:
        try:
            _channel.wait_ready(self._read_fd, self._write_fd, READY_TIMEOUT_SECONDS, self.id)
        except (AgentError, AgentTimeout) as exc:
            raise SandboxError(f"{exc.message}; the template said: {self._template.stderr_tail()}") from exc
        self.state = State.READY

    def call(self, message: Request, deadline: float, listener: Listener | None = None) -> Reply:
        if self.state is not State.READY:
            raise SandboxError(f"sandbox {self.id} is {self.state.value}, not ready")
        self.state = State.RUNNING
        try:
            return _channel.call(self._read_fd, self._write_fd, message, deadline, self.id, listener)
        finally:
            if self.state is State.RUNNING:
                self.state = State.READY

    def outcome(self) -> HostOutcome:
        return HostOutcome(oom_killed=self._cgroup.oom_killed())

    def alive(self) -> bool:
        # Its cgroup too: the channel's other end may outlive the sandbox a moment in its template.
        return (self.state is State.READY and _channel.quiet(self._read_fd, self._write_fd)
                and bool(self._cgroup.pids()))

    def pause(self, directory: Path) -> None:
        raise Conflict(_NO_PAUSE)

    def memory(self) -> MemoryUse | None:
        return None  # a waiting jail is one small agent: the backend's estimate serves

    def destroy(self) -> None:
        if self.state is State.DESTROYED:
            return
        self.state = State.DESTROYED
        # Its agent exits at the end of its channel; whatever is still running dies with the group.
        os.close(self._write_fd)
        os.close(self._read_fd)
        self._cgroup.remove()
        self._template.release()

    def __enter__(self) -> JailSandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.destroy()


def _install_agent(runtime_dir: Path) -> Path:
    """A copy of the agent, byte-compiled, where the sandbox user may read it.

    The checkout may sit under a folder uid 65534 cannot enter (``/root``, a 0700 temp
    folder), and may change while the server runs; the copy, named by the sources'
    checksum, is neither. The jail mounts it read-only and starts it with -B, so it is
    compiled here once rather than in every sandbox."""
    target = runtime_dir / f"agent-{guest.fingerprint()[:16]}"
    if (target / "guest" / "agent.py").exists():
        return target / "guest"
    staging = runtime_dir / f".agent-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    (staging / "guest").mkdir(parents=True)
    for name in guest.source_files():
        destination = staging / "guest" / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(guest.PACKAGE_DIR) / name, destination)
    compileall.compile_dir(str(staging / "guest"), quiet=2, workers=1)
    for path in [staging, *staging.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    try:
        staging.rename(target)
    except OSError:  # another server installed the same agent a moment ago
        shutil.rmtree(staging, ignore_errors=True)
    return target / "guest"


@cache
def _probe() -> tuple[bool, str]:
    if shutil.which("bwrap") is None:
        return False, "bwrap is not installed"
    argv = ["bwrap", "--unshare-all", "--ro-bind", "/", "/", "--cap-drop", "ALL", "true"]
    fds: tuple[int, ...] = ()
    as_jails_run = os.geteuid() == 0
    if as_jails_run:
        # Try the confinement every jail gets, so a host that cannot give it is found here
        # rather than by every request failing.
        try:
            fds = (_userns.namespace_fd(guest.SANDBOX_UID, guest.SANDBOX_UID), _seccomp.program_fd())
        except (SandboxError, OSError) as exc:
            return False, f"cannot confine a jail: {exc}"
        argv = ["bwrap", "--userns", str(fds[0]), "--unshare-pid", "--unshare-net", "--ro-bind", "/", "/",
                "--uid", str(guest.SANDBOX_UID), "--gid", str(guest.SANDBOX_UID), "--cap-drop", "ALL",
                "--seccomp", str(fds[1]), "true"]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10, pass_fds=fds)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"bwrap probe failed: {exc}"
    finally:
        if fds:
            os.close(fds[1])
    if result.returncode != 0:
        return False, f"bwrap probe failed: {result.stderr.strip()}"
    version = subprocess.run(["bwrap", "--version"], capture_output=True, text=True).stdout.strip()
    how = f" as uid {guest.SANDBOX_UID} under seccomp" if as_jails_run else ""
    return True, f"{version} started a namespace sandbox{how}"


class JailBackend:
    name = "jail"
    isolation: Isolation = "namespace"

    def __init__(self, run_dir: Path, runtime_dir: Path) -> None:
        self.run_dir = run_dir
        self.runtime_dir = runtime_dir
        self.mounts = ImageMounts(runtime_dir / "mounts")
        self._agent: Path | None = None
        self._templates: dict[Path, Template] = {}
        """By image file: the template its next sandbox comes from."""
        self._retired: list[Template] = []
        """Templates that take no more requests, until their last sandbox is gone."""
        self._templates_lock = threading.Lock()

    def _agent_dir(self) -> Path:
        if self._agent is None:
            self.runtime_dir.mkdir(parents=True, exist_ok=True)
            self.runtime_dir.chmod(0o755)
            self._agent = _install_agent(self.runtime_dir)
        return self._agent

    def capabilities(self) -> Capabilities:
        works, evidence = _probe()
        cgroups = "cgroup v2" if _cgroups.unified() else "cgroup v1"
        usable = works and os.geteuid() == 0
        why = ("run as root",) if works else (f"apt-get install bubblewrap ({evidence})",)
        missing = () if usable else why
        return Capabilities(name=self.name, isolation=self.isolation, usable=usable, snapshots=False,
                            evidence=(evidence, f"limits through {cgroups}"), missing=missing)

    def _template(self, spec: SandboxSpec, root: Path, broken: Template | None = None) -> Template:
        """The template for ``spec``'s image, mounted at ``root``. A new one replaces the
        current one when that died, was ``broken`` for a caller, made its share of
        sandboxes, or serves an older build of the image; the old one is retired."""
        with self._templates_lock:
            current = self._templates.get(spec.rootfs)
            if (current is not None and current is not broken and current.usable() and current.root == root
                    and current.made < TEMPLATE_SANDBOXES):
                return current
            if current is not None:
                current.retire()
                self._retired = [old for old in [*self._retired, current] if not old.closed]
            name = f"jail-{os.getpid()}-template-{next(_counter)}"
            template = Template(root, self._agent_dir(), _userns.namespace_fd(guest.SANDBOX_UID, guest.SANDBOX_UID),
                                self.run_dir / name)
            self._templates[spec.rootfs] = template
            return template

    def prepare(self, spec: SandboxSpec) -> SandboxSpec:
        return spec  # a jail needs nothing beyond the rootfs

    def start(self, spec: SandboxSpec, ahead: bool = False) -> JailSandbox:
        # ``ahead`` changes nothing: programs run natively, with no translation cache to warm.
        capabilities = self.capabilities()
        if not capabilities.usable:
            raise BackendUnavailable("the jail backend cannot run on this host: " + "; ".join(capabilities.missing))
        root = self.mounts.mount(spec.rootfs, spec.rootfs_sha256)
        sandbox_id = f"{os.getpid()}-{next(_counter)}-{uuid.uuid4().hex[:8]}"
        cgroup = HostCgroup.create(sandbox_id, spec.memory_mb * 1024 * 1024, spec.processes)
        try:
            template = self._template(spec, root)
            try:
                channel = template.spawn(spec.disk_mb * 1024 * 1024, cgroup)
            except SandboxError:  # it died or retired since we last asked: one new template, one more try
                template = self._template(spec, root, broken=template)
                channel = template.spawn(spec.disk_mb * 1024 * 1024, cgroup)
        except BaseException:
            cgroup.remove()
            raise
        sandbox = JailSandbox(sandbox_id, channel, cgroup, template)
        try:
            sandbox.wait_ready()
        except BaseException:
            sandbox.destroy()
            raise
        return sandbox

    def ready_memory_mb(self, spec: SandboxSpec) -> int:
        return READY_MEMORY_MB

    def create_snapshot(self, spec: SandboxSpec, directory: Path) -> SnapshotFiles:
        raise InvalidRequest("the jail backend cannot make snapshots: snapshots need a microVM backend (qemu or firecracker)")

    def close(self) -> None:
        with self._templates_lock:
            for template in [*self._templates.values(), *self._retired]:
                template.close()  # and every sandbox it made: the server is going
            self._templates.clear()
            self._retired.clear()
        self.mounts.close()

    def resume(self, spec: SandboxSpec, directory: Path) -> JailSandbox:
        raise Conflict(_NO_PAUSE)

    def sweep(self) -> list[str]:
        removed = _cgroups.sweep()
        for folder in stale_run_folders(self.run_dir, "jail"):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(f"run folder {folder}")
        return removed + self.mounts.sweep()

