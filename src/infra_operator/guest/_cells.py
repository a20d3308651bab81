"""A session inside one sandbox: a REPL kernel kept across cells, and the working folder's files.

A language with a kernel (python, node, bash) runs each cell in one long-lived process,
so the names a cell defines are there for the next. The kernel runs as the sandbox's
user under the same limits as any program (rlimits, and inside a VM its own cgroup);
``cpu_seconds`` bounds the kernel's whole life, since an rlimit on CPU cannot be reset.
At a cell's time-out (or when the host interrupts it) the kernel gets SIGINT, which
python and node turn into an error inside the cell, keeping their names; a kernel
that has not answered a second later, or that died (``os._exit``, a segfault), is
killed and started afresh, and the cell's answer says ``reset``. Processes a cell
started do not outlive it: only the kernel does.

A language without a kernel writes each cell to its source file and compiles and runs
it afresh; its files stay, as every session's do.
"""

from __future__ import annotations

import os
import select
import selectors
import time

from . import _confine, _fork, _paths, _pykernel, _runner, _signals
from ._runner import Limits, Watch, run_step
from ._signals import signal
from .protocol import SANDBOX_UID, ProtocolError, b64decode, b64encode, receive, send

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs the agent's start-up milliseconds at run time
    from .messages import CellReply, CellRequest, Kernel, Program, RichResult, SessionRequest, StepResult

INTERRUPT_GRACE_SECONDS = 1.0
"""How long a kernel has to answer after SIGINT before it is killed and started afresh."""
_TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")

# Node: cells run in the kernel's own global context, so top-level names (var, let,
# const, functions) stay; a promise a cell ends with is awaited; SIGINT interrupts a
# running cell (breakOnSigint) and is otherwise ignored.
_NODE_KERNEL = r"""
const vm = require('vm'), util = require('util'), fs = require('fs');
globalThis.require = require; globalThis.module = module;
let pending = Buffer.alloc(0), busy = false, cells = 0;
const queue = [];
process.on('SIGINT', () => {});
process.on('uncaughtException', (e) => process.stderr.write(String(e && e.stack || e) + '\n'));
process.on('unhandledRejection', (e) => process.stderr.write(String(e && e.stack || e) + '\n'));
async function run(request) {
  const results = [];
  try {
    let value = vm.runInThisContext(request.code, {filename: `<cell ${++cells}>`, breakOnSigint: true});
    if (value && typeof value.then === 'function') value = await value;
    if (value !== undefined) results.push({type: 'text', text: util.inspect(value)});
    return {status: 0, results};
  } catch (e) {
    process.stderr.write(String(e && e.stack || e) + '\n');
    return {status: 1, results};
  }
}
async function drain() {
  if (busy) return;
  busy = true;
  while (queue.length) {
    const body = Buffer.from(JSON.stringify(await run(queue.shift())));
    const head = Buffer.alloc(4);
    head.writeUInt32BE(body.length);
    fs.writeSync(4, Buffer.concat([head, body]));
  }
  busy = false;
}
const requests = fs.createReadStream(null, {fd: 3});
requests.on('data', (data) => {
  pending = Buffer.concat([pending, data]);
  while (pending.length >= 4 && pending.length >= 4 + pending.readUInt32BE(0)) {
    const size = pending.readUInt32BE(0);
    queue.push(JSON.parse(pending.subarray(4, 4 + size).toString()));
    pending = pending.subarray(4 + size);
  }
  drain();
});
requests.on('end', () => process.exit(0));
"""

# Bash: a cell is its length in bytes, a newline and the code, then the same for its
# stdin; the kernel evals it in the shell itself (no process substitution: a VM's /dev
# has no /dev/fd) and answers the status on fd 4. A trapped SIGINT stops the command
# running and lets the shell go on.
_BASH_KERNEL = r"""
trap ':' INT
while IFS= read -r __cell_bytes <&3; do
  __cell=$(/usr/bin/head -c "$__cell_bytes" <&3)
  IFS= read -r __stdin_bytes <&3
  __stdin=$(/usr/bin/head -c "$__stdin_bytes" <&3)
  if [ "$__stdin_bytes" -gt 0 ]; then eval "$__cell" <<<"$__stdin"; else eval "$__cell" </dev/null; fi
  echo "$?" >&4
done
"""

_EXEC_KERNELS = {
    "node": ["node", "-e", _NODE_KERNEL],
    "bash": ["bash", "--norc", "--noprofile", "-c", _BASH_KERNEL],
}


class _Kernel:
    """One started REPL process and the pipes to it."""

    def __init__(self, kind: Kernel, work_dir: str, env: dict[str, str], limits: Limits) -> None:
        self.kind = kind
        requests_read, self.requests = os.pipe()
        self.replies, replies_write = os.pipe()
        self.cgroup = cgroup = _confine.Cgroup.create(limits)
        if kind == "python":
            kernel_env = {**env, "MPLBACKEND": "Agg"}
            fork_is_fresh = _fork.forks_are_fresh()

            def child_main() -> None:
                _pykernel.start(kernel_env, fork_is_fresh)
        else:
            argv = _EXEC_KERNELS[kind]

            def child_main() -> None:
                path = _fork._which(argv[0], env.get("PATH", ""))
                if path is None:
                    raise FileNotFoundError(2, f"{argv[0]} is not in this image")
                os.execve(path, argv, env)

        syscall_filter = _runner._syscall_filter()
        self.process = _fork.Forked(work_dir, False, lambda: _runner._preexec(limits, cgroup, syscall_filter),
                                    child_main, f"the {kind} kernel", keep=(requests_read, replies_write))
        os.close(requests_read)
        os.close(replies_write)
        self.pid = self.process.pid
        self.pidfd = os.pidfd_open(self.pid)
        assert self.process.stdout is not None and self.process.stderr is not None
        self.outputs = {self.process.stdout.fileno(): "stdout", self.process.stderr.fileno(): "stderr"}
        for fd in self.outputs:
            os.set_blocking(fd, False)
        self.status: int | None = None
        """The wait status once it is reaped."""
        self.usage: object = None

    def ask(self, code: str, stdin: bytes) -> None:
        self._forget_stale_answers()
        if self.kind == "bash":
            cell = code.encode("utf-8")
            os.write(self.requests, b"%d\n%s%d\n%s" % (len(cell), cell, len(stdin), stdin))
        else:
            send(self.requests, {"code": code, "stdin": b64encode(stdin)})

    def _forget_stale_answers(self) -> None:
        """Drop what a process of an earlier cell (killed since) wrote where answers come."""
        poller = select.poll()
        poller.register(self.replies, select.POLLIN)
        while poller.poll(0):
            if not os.read(self.replies, 65536):
                return

    def answer(self) -> tuple[int, list[RichResult]]:
        """The kernel's answer to the cell asked; ``ProtocolError`` when it makes no sense."""
        if self.kind == "bash":
            line = b""
            while not line.endswith(b"\n"):
                piece = os.read(self.replies, 64)
                if not piece or len(line) > 64:
                    raise ProtocolError("the bash kernel answered nonsense")
                line += piece
            try:
                return int(line), []
            except ValueError:
                raise ProtocolError("the bash kernel answered nonsense") from None
        reply = receive(self.replies, time.monotonic() + 5)
        results = reply.get("results")
        status = reply.get("status")
        if not isinstance(status, int) or not isinstance(results, list):
            raise ProtocolError("the kernel answered nonsense")
        return status, [entry for entry in results if isinstance(entry, dict)]  # type: ignore[misc]  # the kernel's own shape

    def cpu_ms(self) -> float:
        """CPU time of the kernel and the children it waited for, so far."""
        try:
            with open(f"/proc/{self.pid}/stat", "rb") as stat:
                fields = stat.read().rpartition(b")")[2].split()
        except OSError:
            return 0.0
        return sum(int(value) for value in fields[11:15]) * _TICK_MS  # utime stime cutime cstime

    def reset_peak(self) -> None:
        """From now on, ``peak_kb`` and the kernel's ``ru_maxrss`` count from this moment: a
        cell's own peak, not its kernel's since it started (Linux's ``clear_refs`` value 5)."""
        try:
            with open(f"/proc/{self.pid}/clear_refs", "wb") as refs:
                refs.write(b"5")
        except OSError:
            pass  # a kernel that is going away: the cell finds it dead and says so

    def peak_kb(self) -> int:
        try:
            with open(f"/proc/{self.pid}/status", "rb") as status:
                for line in status:
                    if line.startswith(b"VmHWM:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def reap(self) -> bool:
        """Whether it has exited (and is reaped now)."""
        if self.status is None:
            try:
                pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            except ChildProcessError:
                return True
            if pid:
                self.status, self.usage = status, usage
        return self.status is not None

    def stop(self) -> None:
        for target in (-self.pid, self.pid):  # its group first: what it runs goes with it
            try:
                os.kill(target, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.status is None:
            try:
                _, self.status, self.usage = os.wait4(self.pid, 0)
            except ChildProcessError:
                self.status = 0
        if self.cgroup is not None:
            self.cgroup.remove()
        for fd in (self.requests, self.replies, self.pidfd):
            os.close(fd)
        for pipe in (self.process.stdout, self.process.stderr):  # they own their descriptors
            if pipe is not None:
                pipe.close()


def _victim(entry: str, keep: int, as_init: bool) -> bool:
    """Whether process ``entry`` is one a cell left: as the sandbox's init (a jail's PID
    namespace, a VM), any live process of the sandbox's user; else (an agent run on a host
    for tests) only those still in the kernel's own session, never a stranger's."""
    try:
        with open(f"/proc/{entry}/status", "rb") as status:  # right even for an undumpable process
            fields = dict(line.split(b":", 1) for line in status if b":" in line)
    except OSError:
        return False  # gone already
    if fields.get(b"State", b"Z").strip().startswith(b"Z"):
        return False
    if as_init:
        return int(fields.get(b"Uid", b"-1").split()[0]) == SANDBOX_UID
    return int(fields.get(b"NSsid", b"-1").split()[0]) == keep


def _kill_others(keep: int) -> None:
    """Kill every process a cell started in the background, the kernel (and the agent) aside.
    Repeated until none is left, so a fork bomb cannot outrun it."""
    me = os.getpid()
    as_init = me == 1
    for _ in range(100):
        victims = [int(entry) for entry in os.listdir("/proc")
                   if entry.isdigit() and int(entry) not in (me, keep) and _victim(entry, keep, as_init)]
        if not victims:
            return
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.001)


def _reap_orphans(kernel: _Kernel | None) -> None:
    """Reap children that are not the kernel (as init, orphans come to the agent)."""
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is None or (kernel is not None and info.si_pid == kernel.pid):
            return
        try:
            os.waitpid(info.si_pid, 0)
        except ChildProcessError:
            return


class Session:
    def __init__(self, message: SessionRequest, work_dir: str) -> None:
        self.kind: Kernel | None = message["kernel"]
        self.source = str(message["source"])
        self.compile = list(message["compile"]) if message["compile"] else None
        self.run = list(message["run"])
        self.env = {str(k): str(v) for k, v in message["env"].items()}
        self.limits = Limits.from_message(message["limits"])
        self.work_dir = work_dir
        self.work_fd = os.open(work_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.kernel = self._start() if self.kind is not None else None

    def _start(self) -> _Kernel:
        assert self.kind is not None
        return _Kernel(self.kind, self.work_dir, self.env, self.limits)

    def cell(self, message: CellRequest, watch: Watch) -> CellReply:
        watch.stream = bool(message.get("stream"))
        wall = min(float(message["wall_seconds"]), self.limits.wall_seconds)
        stdin = b64decode(message.get("stdin", ""))
        if self.kernel is None:
            program = message.get("program") or {"source": self.source, "compile": self.compile, "run": self.run}
            return self._program(str(message["code"]), program, stdin, wall, watch)
        return self._cell(str(message["code"]), stdin, wall, watch)

    def _program(self, code: str, program: Program, stdin: bytes, wall: float, watch: Watch) -> CellReply:
        _paths.put(self.work_fd, str(program["source"]), code.encode("utf-8"), 0, self.limits.file_bytes)
        limits = Limits(wall, self.limits.cpu_seconds, self.limits.memory_bytes, self.limits.processes,
                        self.limits.output_bytes, self.limits.file_bytes)
        deadline = time.monotonic() + wall
        compiled = None
        if program["compile"]:
            compiled = run_step(list(program["compile"]), self.work_dir, self.env, b"", limits, deadline, watch)
            if compiled["exit_code"] != 0 or compiled["timed_out"]:
                return {"ok": True, "op": "cell", "compile": compiled, "run": None, "results": [], "reset": False}
        ran = run_step(list(program["run"]), self.work_dir, self.env, stdin, limits, deadline, watch)
        return {"ok": True, "op": "cell", "compile": compiled, "run": ran, "results": [], "reset": False}

    def _cell(self, code: str, stdin: bytes, wall: float, watch: Watch) -> CellReply:
        kernel = self.kernel
        if kernel is None or kernel.reap():
            if kernel is not None:
                kernel.stop()
            kernel = self.kernel = self._start()
        started = time.monotonic()
        deadline = started + wall
        kernel.reset_peak()
        cpu_before = kernel.cpu_ms()
        streams = {name: _runner._Stream(self.limits.output_bytes, name) for name in ("stdout", "stderr")}
        hard_cap = self.limits.output_bytes * _runner.HARD_CAP_FACTOR
        selector = selectors.DefaultSelector()
        for fd in (*kernel.outputs, kernel.replies, kernel.pidfd, watch.read_fd):
            if fd >= 0:  # a watch without a channel (the agent driven in process) has none
                selector.register(fd, selectors.EVENT_READ)
        timed_out = flooded = died = False
        interrupted_at: float | None = None
        answer: tuple[int, list[RichResult]] | None = None
        try:
            kernel.ask(code, stdin)
        except (OSError, ProtocolError):
            died = True  # it went away before the cell: answered below as a crash
        while answer is None and not died:
            now = time.monotonic()
            if interrupted_at is None and (now >= deadline or watch.interrupted or flooded):
                timed_out = now >= deadline
                interrupted_at = now
                _interrupt(kernel)
            if interrupted_at is not None and now - interrupted_at > INTERRUPT_GRACE_SECONDS:
                break  # it did not come back from the interrupt
            limit = (interrupted_at + INTERRUPT_GRACE_SECONDS if interrupted_at is not None else deadline) - now
            for key, _ in selector.select(max(limit, 0.001)):
                fd = int(key.fd)
                if fd == watch.read_fd:
                    watch.hear()
                    if watch.interrupted:
                        selector.unregister(fd)
                elif fd in kernel.outputs:
                    self._read_output(fd, kernel, streams, watch)
                elif fd == kernel.replies:
                    try:
                        answer = kernel.answer()
                    except (ProtocolError, OSError):
                        died = True  # a kernel that speaks nonsense is started afresh
                elif fd == kernel.pidfd:
                    died = True
            if sum(stream.total for stream in streams.values()) > hard_cap:
                flooded = True
        selector.close()
        for fd in kernel.outputs:  # what it wrote before answering or dying
            self._read_output(fd, kernel, streams, watch, drain=True)
        reset = answer is None
        memory_kb = kernel.peak_kb()
        if reset:
            kernel.stop()
            usage = kernel.usage
            memory_kb = int(getattr(usage, "ru_maxrss", 0)) or memory_kb
            cpu = getattr(usage, "ru_utime", 0.0) + getattr(usage, "ru_stime", 0.0)
            cpu_ms = max(0.0, cpu * 1000 - cpu_before)
        else:
            cpu_ms = kernel.cpu_ms() - cpu_before
        _kill_others(kernel.pid)
        _reap_orphans(None if reset else kernel)
        if reset:
            self.kernel = self._start()  # so the next call finds a kernel ready
        status, results = answer if answer is not None else _crash(kernel.status)
        signal_name = None
        if answer is None and kernel.status is not None and os.WIFSIGNALED(kernel.status):
            signal_name = _signals.name(os.WTERMSIG(kernel.status))
        step: StepResult = {
            "exit_code": status,
            "signal": signal_name,
            "timed_out": timed_out,
            "oom_killed": kernel.cgroup.oom_killed() if kernel.cgroup is not None else False,
            "stdout": b64encode(bytes(streams["stdout"].kept)),
            "stderr": b64encode(bytes(streams["stderr"].kept)),
            "stdout_truncated": streams["stdout"].truncated,
            "stderr_truncated": streams["stderr"].truncated,
            "output_limit_exceeded": flooded,
            "wall_ms": round((time.monotonic() - started) * 1000, 3),
            "cpu_ms": round(cpu_ms, 3),
            "memory_kb": memory_kb,
        }
        return {"ok": True, "op": "cell", "compile": None, "run": step, "results": results, "reset": reset}

    @staticmethod
    def _read_output(fd: int, kernel: _Kernel, streams: dict[str, _runner._Stream], watch: Watch,
                     drain: bool = False) -> None:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except (BlockingIOError, OSError):
                return
            if not chunk:
                return
            stream = streams[kernel.outputs[fd]]
            watch.chunk(stream.name, stream.add(chunk))
            if not drain:
                return

    def close(self) -> None:
        if self.kernel is not None:
            self.kernel.stop()
            self.kernel = None


def _interrupt(kernel: _Kernel) -> None:
    try:
        os.killpg(kernel.pid, signal.SIGINT)  # the kernel and what it is running in the foreground
    except ProcessLookupError:
        pass


def _crash(status: int | None) -> tuple[int, list[RichResult]]:
    """The exit code of a kernel that did not answer: its own, or 128 + the signal that ended it."""
    if status is None:
        return 137, []
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status), []
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1, []
