"""Run one program (a compile or a run step) under limits and collect what it did."""

from __future__ import annotations

import functools
import os
import resource
import selectors
import time

from . import _confine, _fork, _signals
from ._signals import signal
from .protocol import SANDBOX_UID, ProtocolError, b64encode, receive, send

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs the agent's start-up milliseconds at run time
    from .messages import StepLimits, StepResult


# Output past the soft cap is counted and dropped (the result says "truncated");
# a program that goes on printing past this many times the cap is killed.
HARD_CAP_FACTOR = 16

# After the main process exits, how long a child holding its pipes may keep them.
_PIPE_GRACE_SECONDS = 0.05


class Limits:
    """What one step may use. A plain class: ``dataclasses`` costs the agent's start-up."""

    __slots__ = ("wall_seconds", "cpu_seconds", "memory_bytes", "processes", "output_bytes", "file_bytes")

    def __init__(self, wall_seconds: float, cpu_seconds: int, memory_bytes: int, processes: int,
                 output_bytes: int, file_bytes: int) -> None:
        self.wall_seconds = wall_seconds
        self.cpu_seconds = cpu_seconds
        self.memory_bytes = memory_bytes
        self.processes = processes
        self.output_bytes = output_bytes
        self.file_bytes = file_bytes

    @classmethod
    def from_message(cls, message: StepLimits) -> Limits:
        return cls(
            wall_seconds=float(message["wall_seconds"]),
            cpu_seconds=int(message["cpu_seconds"]),
            memory_bytes=int(message["memory_bytes"]),
            processes=int(message["processes"]),
            output_bytes=int(message["output_bytes"]),
            file_bytes=int(message["file_bytes"]),
        )


class Watch:
    """The host's side of a running step: where its output goes as it comes (``stream``),
    and whether the host asked it to stop (an ``interrupt`` frame on the channel, or the
    channel closing)."""

    def __init__(self, read_fd: int, write_fd: int, stream: bool = False) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.stream = stream
        self.interrupted = False

    def chunk(self, name: str, data: bytes) -> None:
        if self.stream and data:
            send(self.write_fd, {"ok": True, "op": "chunk", "stream": name, "data": b64encode(data)})

    def hear(self) -> None:
        """The channel is readable while a step runs: only an interrupt is meant to come."""
        try:
            message = receive(self.read_fd, time.monotonic() + 5)
        except ProtocolError:  # the host went away: nobody waits for this step
            self.interrupted = True
            return
        if message.get("op") == "interrupt":
            self.interrupted = True


class _Stream:
    def __init__(self, cap: int, name: str = "stdout") -> None:
        self.cap = cap
        self.name = name
        self.kept = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> bytes:
        """Count ``chunk``; the part of it that is kept."""
        self.total += len(chunk)
        room = self.cap - len(self.kept)
        kept = chunk[:room] if room > 0 else b""
        self.kept += kept
        return kept

    @property
    def truncated(self) -> bool:
        return self.total > len(self.kept)


@functools.cache
def _syscall_filter() -> _confine.SyscallFilter | None:
    """Inside a VM, the filter a jail's template gives a jail's agent, for the programs we
    start: assembled once, in the agent, not in each child. In a jail we run under it already."""
    if os.getuid() != 0:
        return None
    from ._seccomp import program  # only inside a VM: a jail's agent starts faster without it

    return _confine.SyscallFilter(program())


def _request_rlimits(limits: Limits, processes: bool) -> list[tuple[int, tuple[int, int]]]:
    """The rlimits a request's own limits set: CPU time, file size and, with ``processes``
    (inside a VM, where only sandboxed code runs under the sandbox's uid, so the count is
    the program's alone), the number of processes."""
    chosen = [(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1)),
              (resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))]
    if processes:
        chosen.append((resource.RLIMIT_NPROC, (limits.processes, limits.processes)))
    return chosen


def _preexec(limits: Limits, cgroup: _confine.Cgroup | None, syscall_filter: _confine.SyscallFilter | None) -> None:
    # Runs in the child between fork and exec.
    _confine.reset_signals()
    _confine.oom_first()
    if cgroup is not None:
        cgroup.enter()
    in_vm = os.getuid() == 0
    for which, values in _request_rlimits(limits, processes=in_vm):
        resource.setrlimit(which, values)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _confine.limit_kernel_objects()
    if in_vm:
        os.setgroups([])
        os.setgid(SANDBOX_UID)
        os.setuid(SANDBOX_UID)
    if syscall_filter is not None:
        syscall_filter.load()


def run_step(
    argv: list[str],
    cwd: str,
    env: dict[str, str],
    stdin: bytes,
    limits: Limits,
    deadline: float,
    watch: Watch | None = None,
) -> StepResult:
    return start_step(argv, cwd, env, bool(stdin), limits).finish(stdin, limits, deadline, watch)


def start_step(argv: list[str], cwd: str, env: dict[str, str], with_stdin: bool, limits: Limits) -> Step:
    """Start a program confined by ``limits``; ``Step.finish`` collects what it does."""
    cgroup = _confine.Cgroup.create(limits)
    started = time.monotonic()
    usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    syscall_filter = _syscall_filter()
    process = _fork.spawn(argv, cwd, env, with_stdin, lambda: _preexec(limits, cgroup, syscall_filter))
    return Step(process, cgroup, started, usage_before)


class Step:
    """A started program, until ``finish`` has collected it and cleaned up after it."""

    def __init__(self, process: _fork.Forked, cgroup: _confine.Cgroup | None, started: float,
                 usage_before: resource.struct_rusage) -> None:
        self.process = process
        self.cgroup = cgroup
        self.started = started
        """Where its ``wall_ms`` counts from."""
        self.usage_before = usage_before
        self.exit_watch = _ExitWatch(process.pid)

    def retarget(self, limits: Limits) -> None:
        """Apply ``limits`` to a program started under others (a prestarted one, see ``_prestart``),
        as ``_preexec`` would have applied them; as the VM's root, which may raise them too."""
        for which, values in _request_rlimits(limits, processes=True):  # prestarted only in VMs
            resource.prlimit(self.process.pid, which, values)
        if self.cgroup is not None:
            self.cgroup.limit(limits)

    def finish(self, stdin: bytes, limits: Limits, deadline: float, watch: Watch | None = None) -> StepResult:
        process, exit_watch, cgroup = self.process, self.exit_watch, self.cgroup
        timed_out, flooded, stdout, stderr = _collect(process, exit_watch, stdin, limits, deadline, watch)
        process.returncode = exit_watch.wait()
        oom = cgroup.oom_killed() if cgroup is not None else False
        _confine.kill_leftovers(cgroup)
        if cgroup is not None:
            cgroup.remove()
        code = process.returncode
        signal_number = -code if code < 0 else None
        exit_code = 128 + signal_number if signal_number is not None else code
        assert exit_watch.usage is not None  # wait() reaped it
        peak_kb = exit_watch.usage.ru_maxrss  # Linux counts it in KiB
        return _result(exit_code, signal_number, timed_out, oom, flooded, stdout, stderr, self.started,
                       self.usage_before, peak_kb)

    def abandon(self) -> None:
        """Kill the program unheard, and clean up after it."""
        _signal_group(self.process.pid)
        self.exit_watch.wait()
        _confine.kill_leftovers(self.cgroup)
        if self.cgroup is not None:
            self.cgroup.remove()
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


class _ExitWatch:
    """Reaps the main process exactly once (``Popen.poll`` would reap it behind our back),
    keeping its own resource usage: that of this step alone, where the agent's
    RUSAGE_CHILDREN adds up every step it ran."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.code: int | None = None
        self.usage: resource.struct_rusage | None = None

    def exited(self) -> bool:
        if self.code is None:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            if pid:
                self.code, self.usage = os.waitstatus_to_exitcode(status), usage
        return self.code is not None

    def wait(self) -> int:
        if self.code is None:
            _, status, self.usage = os.wait4(self.pid, 0)
            self.code = os.waitstatus_to_exitcode(status)
        return self.code


def _collect(
    process: _fork.Forked, exit_watch: _ExitWatch, stdin: bytes, limits: Limits, deadline: float,
    watch: Watch | None = None,
) -> tuple[bool, bool, _Stream, _Stream]:
    assert process.stdout is not None and process.stderr is not None
    streams = {process.stdout.fileno(): _Stream(limits.output_bytes, "stdout"),
               process.stderr.fileno(): _Stream(limits.output_bytes, "stderr")}
    hard_cap = limits.output_bytes * HARD_CAP_FACTOR
    selector = selectors.DefaultSelector()
    for fd in streams:
        selector.register(fd, selectors.EVENT_READ)
    # A pidfd wakes the loop the moment the main process exits, even while a child
    # it left behind keeps the pipes open.
    exit_fd = os.pidfd_open(process.pid)
    selector.register(exit_fd, selectors.EVENT_READ)
    # The host's channel is watched too, but the loop ends when the program's own are done.
    watching = 0
    if watch is not None:
        selector.register(watch.read_fd, selectors.EVENT_READ)
        watching = 1
    pending_stdin = memoryview(stdin)
    if process.stdin is not None:
        os.set_blocking(process.stdin.fileno(), False)
        selector.register(process.stdin.fileno(), selectors.EVENT_WRITE)
    timed_out = flooded = False
    exited_at: float | None = None
    while len(selector.get_map()) > watching:
        now = time.monotonic()
        if now >= deadline:
            timed_out = True
            break
        if exited_at is not None and now - exited_at > _PIPE_GRACE_SECONDS:
            break  # something the program left behind still holds its pipes
        timeout = min(deadline - now, _PIPE_GRACE_SECONDS) if exited_at is not None else deadline - now
        for key, _ in selector.select(timeout):
            fd = int(key.fd)
            if fd == exit_fd:
                selector.unregister(exit_fd)
                exited_at = exited_at or time.monotonic()
            elif watch is not None and fd == watch.read_fd:
                watch.hear()
            elif fd in streams:
                chunk = os.read(fd, 65536)
                if chunk:
                    kept = streams[fd].add(chunk)
                    if watch is not None:
                        watch.chunk(streams[fd].name, kept)
                else:
                    selector.unregister(fd)
            else:
                try:
                    written = os.write(fd, pending_stdin[:65536])
                    pending_stdin = pending_stdin[written:]
                except BrokenPipeError:
                    pending_stdin = pending_stdin[:0]
                if not pending_stdin:
                    selector.unregister(fd)
                    assert process.stdin is not None
                    process.stdin.close()
        if sum(stream.total for stream in streams.values()) > hard_cap:
            flooded = True
            break
        if watch is not None and watch.interrupted:
            break
    if timed_out or flooded or not exit_watch.exited():
        _signal_group(process.pid)
    selector.close()
    os.close(exit_fd)
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None and not pipe.closed:
            pipe.close()
    stdout, stderr = streams.values()
    return timed_out, flooded, stdout, stderr


def _signal_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _result(
    exit_code: int,
    signal_number: int | None,
    timed_out: bool,
    oom_killed: bool,
    flooded: bool,
    stdout: _Stream,
    stderr: _Stream,
    started: float,
    usage_before: resource.struct_rusage,
    peak_kb: int,
) -> StepResult:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (usage.ru_utime - usage_before.ru_utime) + (usage.ru_stime - usage_before.ru_stime)
    return {
        "exit_code": exit_code,
        "signal": _signals.name(signal_number) if signal_number else None,
        "timed_out": timed_out,
        "oom_killed": oom_killed,
        "stdout": b64encode(bytes(stdout.kept)),
        "stderr": b64encode(bytes(stderr.kept)),
        "stdout_truncated": stdout.truncated,
        "stderr_truncated": stderr.truncated,
        "output_limit_exceeded": flooded,
        "wall_ms": round((time.monotonic() - started) * 1000, 3),
        "cpu_ms": round(cpu * 1000, 3),
        "memory_kb": peak_kb,
    }
