"""A jail template: a started agent that forks each new sandbox from itself.

Starting a jail used to mean a new bwrap setting up namespaces and mounts from
nothing, then an interpreter importing the agent. The template pays the bwrap once
per image: the host starts it in a jail of its own (same image, same user namespace,
no network) that keeps its capabilities within that namespace, and then asks it for
sandboxes over a unix socket. For each request it forks a child that, before it
answers anyone:

- leaves for fresh mount, PID, network, IPC, UTS and cgroup namespaces;
- unmounts the template's own /work, /tmp, /dev/shm and /dev/pts and mounts fresh
  ones there, the tmpfs sized by the request;
- as the new PID namespace's init, replaces the template's /proc with a fresh one,
  its kernel knobs read-only and what it says of the host masked (``mask_proc``), so
  the sandbox's mount table names no host path and none of the template's mounts;
- joins the host cgroup the host made for it (through the ``cgroup.procs`` files
  the host opened and sent along), so its limits hold before any user code runs;
- enters a user namespace of its own, nested in the shared one: the kernel counts
  per-user objects (queued signals, message queues, ...) per namespace and uid, so
  what one sandbox holds is not counted against the next;
- drops every capability for good (bounding, ambient, permitted), sets
  no_new_privs and loads the host's seccomp program, exactly what bwrap does for a
  jail started on its own;
- keeps only its own channel, the two pipe ends the host sent, and closes
  everything else, the template's socket first of all;
- execs a fresh agent. A fork would share the template's start-up secrets with every
  sandbox (the string-hash secret, the AT_RANDOM bytes behind stack canaries and
  pointer guards, the address-space layout), and a Python program runs in a fork of
  its sandbox's agent (``_fork``): each exec draws them anew.

The template itself never runs user code and holds nothing a sandbox could use: it
is not in any sandbox's PID namespace, its /dev is read-only and every writable
place is mounted over in the child. Each sandbox is still used for one execution.

When the host's end of the socket closes (the server exits, however it dies) the
template exits, and with it, as its PID namespace's init, every sandbox it made.
"""

from __future__ import annotations

import ctypes
import os
import socket

from ._confine import (
    MS_BIND,
    MS_MOVE,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    SyscallFilter,
    check,
    libc,
    mask_proc,
    mount,
)
from ._signals import signal
from .protocol import ProtocolError, decode_json, encode_json, send

# From linux/sched.h, linux/prctl.h, linux/capability.h, linux/seccomp.h.
_CLONE_NEWNS, _CLONE_NEWCGROUP, _CLONE_NEWUTS = 0x00020000, 0x02000000, 0x04000000
_CLONE_NEWIPC, _CLONE_NEWPID, _CLONE_NEWNET = 0x08000000, 0x20000000, 0x40000000
_CLONE_NEWUSER = 0x10000000
_PR_CAPBSET_DROP, _PR_CAP_AMBIENT = 24, 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_MNT_DETACH = 2
_CAPABILITY_VERSION_3 = 0x20080522
_SCRATCH = (("/work", "0777"), ("/tmp", "1777"), ("/dev/shm", "1777"))
# What bwrap's --proc makes read-only: the kernel's knobs are not the sandbox's to turn.
_PROC_READ_ONLY = ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq")
_FRESH_PROC = "/tmp/.proc"
_MAX_REQUEST = 4096
_MAX_FDS = 8


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


class _Confinement:
    """What every sandbox is given up to: read once, when the template starts."""

    def __init__(self, seccomp_program: bytes) -> None:
        self._filter = SyscallFilter(seccomp_program)
        with open("/proc/sys/kernel/cap_last_cap") as last:
            self._last_cap = int(last.read())

    def apply(self) -> None:
        for cap in range(self._last_cap + 1):
            check(libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0), f"drop capability {cap}")
        check(libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clear ambient capabilities")
        header = _CapHeader(_CAPABILITY_VERSION_3, 0)
        nothing = (_CapData * 2)()
        check(libc.capset(ctypes.byref(header), ctypes.byref(nothing)), "drop capabilities")
        self._filter.load()


def _unmount(path: str) -> None:
    check(libc.umount2(path.encode(), _MNT_DETACH), f"unmount {path}")


def _fresh_mounts(scratch_bytes: int) -> None:
    # Private first, so nothing mounted here reaches the template or a sibling.
    mount("none", "/", None, MS_REC | MS_PRIVATE)
    for path, mode in _SCRATCH:
        _unmount(path)  # the template's, which would otherwise stay listed under the sandbox's
        mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, f"size={scratch_bytes},mode={mode}")
    _unmount("/dev/pts")
    mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620")


def _fresh_proc() -> None:
    """The new PID namespace's /proc in place of the template's. The kernel mounts a new
    proc only beside a fully visible one, so it is made aside, then moved over."""
    os.mkdir(_FRESH_PROC)
    mount("proc", _FRESH_PROC, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _unmount("/proc")
    mount(_FRESH_PROC, "/proc", None, MS_MOVE)
    os.rmdir(_FRESH_PROC)
    for path in _PROC_READ_ONLY:
        if os.path.exists(path):
            mount(path, path, None, MS_BIND | MS_REC)
            mount("none", path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mask_proc()


def _own_user_namespace() -> None:
    """A user namespace nested in the template's, holding only our uid and gid, so that
    what the kernel counts per user is counted for this sandbox alone."""
    uid, gid = os.getuid(), os.getgid()
    check(libc.unshare(_CLONE_NEWUSER), "unshare the user namespace")
    for name, content in (("uid_map", f"{uid} {uid} 1"), ("setgroups", "deny"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as handle:
            handle.write(content)


def _become_sandbox(request: dict[str, object], fds: list[int], confinement: _Confinement) -> None:
    """In the forked child: everything from the module's list, then the channel on fds 0 and 1."""
    channel_in, channel_out, *cgroup_procs = fds
    check(libc.unshare(_CLONE_NEWNS | _CLONE_NEWPID | _CLONE_NEWNET | _CLONE_NEWIPC | _CLONE_NEWUTS),
           "unshare namespaces")
    _fresh_mounts(int(str(request["scratch_bytes"])))
    if os.fork() != 0:
        os._exit(0)  # the new PID namespace's init is our child; the template reaps us
    _fresh_proc()
    for fd in cgroup_procs:
        os.write(fd, b"0")
    check(libc.unshare(_CLONE_NEWCGROUP), "unshare the cgroup namespace")
    _own_user_namespace()
    os.setsid()
    os.chdir("/work")
    confinement.apply()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.dup2(channel_in, 0)
    os.dup2(channel_out, 1)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))


def _spawn(request: dict[str, object], fds: list[int], confinement: _Confinement, agent: list[str]) -> None:
    if os.fork() == 0:
        try:
            _become_sandbox(request, fds, confinement)
        except BaseException as exc:
            # The host is waiting for the agent's answer on this channel: tell it why there is none.
            send(fds[1], {"ok": False, "error": f"cannot make the sandbox: {exc}"})
            os._exit(1)
        try:
            os.execv(agent[0], agent)
        except OSError as exc:
            send(1, {"ok": False, "error": f"cannot start the sandbox's agent: {exc}"})
        finally:
            os._exit(1)
    for fd in fds:
        os.close(fd)


def _agent_on_tmpfs() -> None:
    """Put the agent's files on a tmpfs of their own in place of the host's bind mount:
    a mount table names the folder a bind mount came from, so every sandbox would read
    a host path in /proc/self/mountinfo. A tmpfs names nothing."""
    here = os.path.dirname(os.path.abspath(__file__))
    files = {}
    for directory, _, names in os.walk(here):
        for name in names:
            with open(os.path.join(directory, name), "rb") as handle:
                # With the times: a compiled module is used only while its source's mtime matches.
                files[os.path.relpath(os.path.join(directory, name), here)] = (handle.read(), os.fstat(handle.fileno()))
    _unmount(here)
    mount("tmpfs", here, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755")
    for name, (content, stat) in files.items():
        os.makedirs(os.path.dirname(os.path.join(here, name)), mode=0o755, exist_ok=True)
        with open(os.path.join(here, name), "wb") as handle:
            handle.write(content)
        os.utime(os.path.join(here, name), ns=(stat.st_atime_ns, stat.st_mtime_ns))
    mount("none", here, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def serve(control: int, seccomp_fd: int, agent: list[str]) -> None:
    """Answer the host's sandbox requests on ``control`` until it closes; ``agent`` is
    the command each sandbox execs once it is confined, its channel on fds 0 and 1."""
    with os.fdopen(seccomp_fd, "rb") as program:
        confinement = _Confinement(program.read())
    _agent_on_tmpfs()
    # The template is its PID namespace's init: orphaned sandboxes come to it, and are reaped at once.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    host = socket.socket(fileno=control)
    host.send(encode_json({"ok": True, "pid": os.getpid()}))  # one record: the template is up
    while True:
        payload, fds, _, _ = socket.recv_fds(host, _MAX_REQUEST, _MAX_FDS)
        if not payload:
            return
        try:
            request = decode_json(payload)
        except ProtocolError:
            request = None
        if not isinstance(request, dict) or len(fds) < 2:
            for fd in fds:  # only the host writes here; a request it did not mean is dropped
                os.close(fd)
            continue
        _spawn(request, fds, confinement, agent)

