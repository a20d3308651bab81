"""A pooled VM's next program, started ahead: after the warm-up's clean-up (``_rewind``)
the agent starts the interpreter the next execution will run, and it waits, its start-up
paid, for its program. Under TCG an interpreter's start-up is most of a short execution
(python3 about 200 ms of a 250 ms ``print(1)``); the warm-up only spares the translation.

How it waits: its program's path holds a FIFO. The interpreter starts, opens its script
and blocks in that open (``wait_for_partner``) until the execution comes. The agent then
writes the real source beside it, opens the FIFO's other end (the interpreter's open
returns), puts the file in the FIFO's place (the interpreter keeps the end it holds), and
sends the source down the FIFO. The program finds its source file where a fresh one
would, a regular file, whole.

To the program it is a fresh start: the same argv, environment, working folder and files,
standard streams, pid and cgroup name, limits (applied at the hand-over,
``Step.retarget``), and the modules its interpreter loads before reading a script. Its
start-up's random draws (python's hash secret, AT_RANDOM) came from the kernel after the
warm-up's reseed, so they are this clone's alone. What differs is its start time in
/proc/self/stat, earlier by the time the VM waited in the pool.

It is used when an execution asks for exactly what was started: no compile step, no
artifacts, no stdin (a fresh program's stdin is /dev/null then, and so is this one's),
the same run argv and environment, and a program at the started path. Anything else
discards it, and the VM is put back as it was before it was started.
"""

from __future__ import annotations

import errno
import os
import time

from . import _rewind
from ._runner import Limits, Step, Watch, start_step

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs the agent's start-up milliseconds at run time
    from .messages import ExecuteRequest, StepResult

# The kernel function a task blocked opening a FIFO that has no writer waits in.
_WAITING_ON_FIFO = "wait_for_partner"
_POLL_SECONDS = 0.002


def _waiting_on_fifo(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/wchan") as handle:
            return handle.read() == _WAITING_ON_FIFO
    except OSError:
        return False


class Prestarted:
    """The started interpreter, and what an execution must ask for to be given it."""

    def __init__(self, step: Step, message: ExecuteRequest, fifo: str, source: str, mark: _rewind.Mark) -> None:
        self.step = step
        self.run = list(message["run"])
        self.env = dict(message.get("env", {}))
        self.fifo = fifo
        self.source = source
        """The program's name in the working folder, as the execution's ``files`` name it."""
        self.mark = mark

    @classmethod
    def start(cls, message: ExecuteRequest, source: str, work_dir: str, mark: _rewind.Mark,
              deadline: float) -> Prestarted | None:
        """Start ``message``'s run step on a FIFO at ``source``; None when its interpreter does not
        come to wait there by ``deadline`` (it read the script early, or failed): the VM is then
        put back as ``mark`` found it."""
        if "/" in source or source in ("", ".", ".."):
            return None
        fifo = os.path.join(work_dir, source)
        os.mkfifo(fifo)
        os.chmod(fifo, 0o644)  # as the agent writes a program's files
        limits = Limits.from_message(message["limits"])
        env = {str(k): str(v) for k, v in message.get("env", {}).items()}
        prestarted = cls(start_step(list(message["run"]), work_dir, env, False, limits), message, fifo, source, mark)
        pid = prestarted.step.process.pid
        while not _waiting_on_fifo(pid):
            if prestarted.step.exit_watch.exited() or time.monotonic() > deadline:
                prestarted.discard()
                return None
            time.sleep(_POLL_SECONDS)
        return prestarted

    def serves(self, message: ExecuteRequest) -> bool:
        return (not message.get("compile") and not message.get("artifacts") and not message.get("stdin")
                and not message.get("collect") and list(message["run"]) == self.run
                and dict(message.get("env", {})) == self.env and self.source in message.get("files", {}))

    def hand_over(self, source: bytes, limits: Limits, deadline: float, watch: Watch | None) -> StepResult:
        """Give the waiting interpreter its program, and collect what it does."""
        step = self.step
        step.started = time.monotonic()
        step.retarget(limits)
        staged = f"{self.fifo}.{os.getpid()}.staged"
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(source)
            os.fchmod(handle.fileno(), 0o644)
        writer = self._open_writer(deadline)
        os.rename(staged, self.fifo)
        if writer is not None:
            try:
                with os.fdopen(writer, "wb") as handle:
                    handle.write(source)
            except BrokenPipeError:
                pass  # it died reading: finish() tells how
        return step.finish(b"", limits, deadline, watch)

    def _open_writer(self, deadline: float) -> int | None:
        """The FIFO's writing end, once the interpreter holds the other; None if it never does."""
        while True:
            try:
                fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # no reader yet
                    raise
            else:
                os.set_blocking(fd, True)  # the source may be more than the pipe holds
                return fd
            if self.step.exit_watch.exited() or time.monotonic() > deadline:
                return None
            time.sleep(_POLL_SECONDS)

    def discard(self) -> None:
        """Stop it unused, and put the VM back as before it started (pids, cgroup names, files)."""
        self.step.abandon()
        self.mark.rewind()
