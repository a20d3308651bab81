"""What the agent does to the sandbox it runs in: confining each step in a cgroup
(inside a VM, where the agent is root), killing what a program left behind,
reseeding randomness and setting the clock after a snapshot restore, hiding what
/proc says of the machine, and the limits and syscall filter every program runs under.

In a jail the agent is not root: the host owns the cgroup, the template (``_template``)
masks /proc and loads the filter before the agent starts, and the agent, as the
PID namespace's init, kills leftovers with ``kill(-1)``.
"""

from __future__ import annotations

import ctypes
import fcntl
import itertools
import os
import resource
import struct
import time

from ._signals import signal

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs the agent's start-up milliseconds at run time
    from ._runner import Limits

_CGROUP_ROOT = "/sys/fs/cgroup"
_RNDADDENTROPY = 0x40085203  # _IOW('R', 0x03, int[2])
_RNDRESEEDCRNG = 0x5207  # _IO('R', 0x07)
_PR_SET_DUMPABLE = 4
_PR_SET_SECCOMP, _PR_SET_NO_NEW_PRIVS = 22, 38
_SECCOMP_MODE_FILTER = 2
# From linux/mount.h.
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_MOVE = 1, 2, 4, 8, 32, 4096, 8192
MS_REC, MS_PRIVATE = 0x4000, 1 << 18
_counter = itertools.count()
# What /proc says of the machine rather than of the sandbox: the kernel's command line
# (a host's vsock ports, its root disk), every block device with its I/O counters (a
# live view of other tenants' images), swap, interrupts and device lists. Files read
# as empty (/dev/null over them), folders as an empty read-only tmpfs, as Docker and
# LXC mask them.
PROC_MASKED_FILES = ("/proc/cmdline", "/proc/partitions", "/proc/diskstats", "/proc/swaps", "/proc/interrupts",
                     "/proc/devices", "/proc/misc", "/proc/consoles", "/proc/iomem", "/proc/ioports",
                     "/proc/mdstat", "/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug",
                     "/proc/vmstat")
PROC_MASKED_FOLDERS = ("/proc/fs", "/proc/bus", "/proc/driver", "/proc/scsi", "/proc/acpi", "/proc/asound",
                       "/proc/pressure")
# Per program, and counted for its sandbox alone (its own user namespace, or its own VM):
# queued signals and POSIX message queue bytes, each of which ties up kernel memory. In a
# jail the kernel also counts all sandboxes together against the server's own limits
# (by default 819200 bytes of queues, and signals by the thousand): one queue with the
# default sizes (10 messages of 8 KiB, about 81 KiB) each, for the 8 executions a
# server runs at once, stays within them.
SIGPENDING_LIMIT = 256
MSGQUEUE_LIMIT_BYTES = 96 * 1024

libc = ctypes.CDLL(None, use_errno=True)  # the process's own symbols include libc's


def check(result: int, what: str) -> None:
    """A libc call's 0 as success; anything else as ``OSError`` saying ``what`` failed and why."""
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def mount(source: str, target: str, fstype: str | None, flags: int, options: str | None = None,
          what: str | None = None) -> None:
    check(
        libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                   options.encode() if options else None),
        what or f"mount {target}",
    )


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class SyscallFilter:
    """A seccomp program in memory libc can hand the kernel: made once, loaded in each
    child that is to run under it."""

    def __init__(self, program: bytes) -> None:
        self._program = ctypes.create_string_buffer(program, len(program))
        self._fprog = _SockFprog(len(program) // 8, ctypes.addressof(self._program))

    def load(self) -> None:
        """From now on, in this process and all it starts: no privilege gained by exec, and the filter."""
        check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "set no_new_privs")
        check(libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(self._fprog), 0, 0),
              "load the seccomp filter")


def mask_proc() -> None:
    """Hide PROC_MASKED_* in this mount namespace's /proc; needs the right to mount."""
    for path in PROC_MASKED_FILES:
        if os.path.exists(path):
            mount(os.devnull, path, None, MS_BIND)
    for path in PROC_MASKED_FOLDERS:
        if os.path.isdir(path):
            mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0,mode=555")


def limit_kernel_objects() -> None:
    """In a child before exec: the program's share of per-user kernel objects."""
    resource.setrlimit(resource.RLIMIT_SIGPENDING, (SIGPENDING_LIMIT, SIGPENDING_LIMIT))
    resource.setrlimit(resource.RLIMIT_MSGQUEUE, (MSGQUEUE_LIMIT_BYTES, MSGQUEUE_LIMIT_BYTES))


class Cgroup:
    """A cgroup v2 group for one step, inside a VM."""

    def __init__(self, path: str) -> None:
        self.path = path

    @classmethod
    def create(cls, limits: Limits) -> Cgroup | None:
        control = os.path.join(_CGROUP_ROOT, "cgroup.subtree_control")
        if os.getuid() != 0 or not os.path.exists(control):
            return None
        try:
            _write(control, "+memory +pids")
            path = os.path.join(_CGROUP_ROOT, f"step-{os.getpid()}-{next(_counter)}")
            os.mkdir(path)
            if os.path.exists(os.path.join(path, "memory.swap.max")):
                _write(os.path.join(path, "memory.swap.max"), "0")
            if os.path.exists(os.path.join(path, "memory.oom.group")):
                # A program over its memory limit dies whole, not one child at a time.
                _write(os.path.join(path, "memory.oom.group"), "1")
            cgroup = cls(path)
            cgroup.limit(limits)
        except OSError:
            return None
        return cgroup

    def limit(self, limits: Limits) -> None:
        _write(os.path.join(self.path, "memory.max"), str(limits.memory_bytes))
        _write(os.path.join(self.path, "pids.max"), str(limits.processes))

    def enter(self) -> None:
        _write(os.path.join(self.path, "cgroup.procs"), "0")

    def oom_killed(self) -> bool:
        try:
            events = _read(os.path.join(self.path, "memory.events")).split()
        except OSError:
            return False
        counts = dict(zip(events[::2], events[1::2], strict=False))
        return int(counts.get("oom_kill", "0")) > 0

    def kill(self) -> None:
        kill_file = os.path.join(self.path, "cgroup.kill")
        if os.path.exists(kill_file):
            _write(kill_file, "1")
            return
        for pid in _read(os.path.join(self.path, "cgroup.procs")).split():
            _kill(int(pid))

    def remove(self) -> None:
        for _ in range(100):
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError:
                self.kill()
                time.sleep(0.01)


def restart_step_names() -> None:
    """Name the next step's cgroup as the first one's: after a warm-up (see ``_rewind``) the
    program must not see in /proc/self/cgroup that a step ran before it."""
    global _counter
    _counter = itertools.count()


def _write(path: str, value: str) -> None:
    with open(path, "w") as handle:
        handle.write(value)


def _read(path: str) -> str:
    with open(path) as handle:
        return handle.read()


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def kill_leftovers(cgroup: Cgroup | None) -> None:
    """Kill every process the last step left behind, so none outlives its answer."""
    if cgroup is not None:
        cgroup.kill()
    elif os.getpid() == 1:
        # As the namespace's init we are the one process kill(-1) spares.
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _reap()


def _reap() -> None:
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.002)


def harden_agent() -> None:
    """Keep sandboxed code, which may share our uid in a jail, out of the agent."""
    libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)


def oom_first() -> None:
    """Make this process (and what it starts) the OOM killer's first choice over the agent.

    The agent shares the memory limit with the program; when a program made of many
    small processes runs out, the agent may be the biggest one, and killing it loses
    the answer. Raising one's own score needs no privilege, only a /proc entry we own,
    which a process the agent made undumpable does not have until it execs."""
    libc.prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)
    try:
        with open("/proc/self/oom_score_adj", "w") as score:
            score.write("1000")
    except OSError:
        pass  # no /proc: nothing to prefer


def bound_scratch(paths: tuple[str, ...], size_bytes: int) -> None:
    """Inside a VM, the init made the writable tmpfs folders at boot, before any request said
    how much a program may write: resize them to this request's bound. Only as the VM's root
    and init; a jail's folders are made per sandbox, to size, by the host."""
    if os.getpid() != 1 or os.getuid() != 0:
        return
    for path in paths:
        mount("tmpfs", path, "tmpfs", MS_REMOUNT | MS_NOSUID | MS_NODEV, f"size={size_bytes}",
              what=f"cannot bound {path} to {size_bytes} bytes")


def reset_signals() -> None:
    """In a child before exec: undo ``harden_agent``'s dispositions, which exec would keep."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)


def reseed(entropy: bytes, clock: float | None) -> None:
    """After a restore every clone holds the same random state and a stale clock: fix both."""
    if os.getuid() != 0:
        return  # a jail shares the host's kernel: its pool and clock are already the host's
    if entropy:
        with open("/dev/urandom", "wb") as urandom:
            info = struct.pack("ii", len(entropy) * 8, len(entropy)) + entropy
            fcntl.ioctl(urandom.fileno(), _RNDADDENTROPY, info)
            fcntl.ioctl(urandom.fileno(), _RNDRESEEDCRNG)
    if clock is not None:
        time.clock_settime(time.CLOCK_REALTIME, clock)
