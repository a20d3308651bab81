"""Starting a step's program from the agent: by fork and exec, or, for a Python script,
in a fork of the agent itself instead of a new interpreter.

The agent is itself a started Python. When the step's argv would only start that same
interpreter on a script (``python3 [-u] main.py ARGS``, found through the step's PATH,
with no ``PYTHON*`` variable that changes start-up), a fork of the agent runs the script
as ``__main__``: the interpreter's start-up was paid while the sandbox waited in the
pool, not by the request. Nothing leaks between executions, since each sandbox (and so
each agent) serves one execution only, and in a jail, the one place this is done, each
sandbox's agent is an interpreter exec'd for it alone: its start-up secrets (hash
secret, AT_RANDOM, layout) are the program's and no one else's. The child undoes what
the agent is: its modules, its channel, its signal dispositions, its random state, its
path entry; it gets the step's environment, argv, working folder, limits and standard streams, and it
exits the way the interpreter would (atexit handlers, non-daemon threads, exit code,
traceback without our frames).
"""

from __future__ import annotations

import fcntl
import io
import os
import sys

from ._signals import signal

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs the agent's start-up milliseconds at run time
    from collections.abc import Callable
    from typing import NoReturn

_OWN_DIR = os.path.dirname(os.path.abspath(__file__))
_FLAGS = {"-u"}


def python_script(argv: list[str], env: dict[str, str]) -> tuple[str, list[str], bool] | None:
    """The script, its arguments and whether ``-u`` was given, when ``argv`` only starts this
    very interpreter on a script; None when a real exec is needed.

    Only in a jail, whose agent was exec'd for its sandbox alone. Inside a VM the agent is
    root and may have been started before a snapshot that every clone restores: a fork of
    it would give each execution the same hash secret, AT_RANDOM bytes (stack canary,
    pointer guard) and layout, where an exec draws them from the reseeded kernel."""
    if not argv or not forks_are_fresh() or any(key.startswith("PYTHON") for key in env):
        return None
    executable = _which(argv[0], env.get("PATH", ""))
    if executable is None or os.path.realpath(executable) != os.path.realpath(sys.executable):
        return None
    rest = argv[1:]
    flags = set()
    while rest and rest[0].startswith("-"):
        if rest[0] not in _FLAGS:
            return None
        flags.add(rest.pop(0))
    if not rest or not rest[0].endswith(".py"):
        return None
    return rest[0], rest[1:], "-u" in flags


def forks_are_fresh() -> bool:
    """Whether a fork of this agent has start-up secrets no other sandbox has: in a jail, whose
    agent was exec'd for its sandbox alone. Not inside a VM, where the agent is root and may have
    been started before a snapshot that every clone restores."""
    return os.getuid() != 0


def _which(name: str, path: str) -> str | None:
    if "/" in name:
        return name if os.access(name, os.X_OK) else None
    for folder in path.split(os.pathsep):
        candidate = os.path.join(folder or ".", name)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    return None


class Forked:
    """A child of the agent, shaped like the ``subprocess.Popen`` that ``run_step`` needs
    (``pid``, ``stdin`` or None, ``stdout``, ``stderr``), running ``child_main`` in its
    own session with pipes for its standard streams and no other descriptor of ours.
    The agent forks rather than use ``subprocess``, whose import alone costs more than
    the agent's whole start-up otherwise."""

    def __init__(
        self,
        cwd: str,
        with_stdin: bool,
        prepare: Callable[[], None],
        child_main: Callable[[], None],
        what: str,
        keep: tuple[int, ...] = (),
    ) -> None:
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        in_read, in_write = os.pipe() if with_stdin else (os.open(os.devnull, os.O_RDONLY), -1)
        pid = os.fork()
        if pid == 0:
            try:
                os.setsid()
                for fd, target in ((in_read, 0), (out_write, 1), (err_write, 2)):
                    os.dup2(fd, target)
                # ``keep`` (a session kernel's own pipes) becomes 3, 4, ...: moved past them first.
                moved = [fcntl.fcntl(fd, fcntl.F_DUPFD, 3 + len(keep)) for fd in keep]
                for target, fd in enumerate(moved, start=3):
                    os.dup2(fd, target)
                os.closerange(3 + len(keep), os.sysconf("SC_OPEN_MAX"))  # the agent's channel first of all
                os.chdir(cwd)
                prepare()
                child_main()
            except OSError as exc:
                os.write(2, f"cannot start {what}: {exc.strerror or exc}\n".encode())
            except BaseException as exc:
                os.write(2, f"cannot start {what}: {exc}\n".encode())
            finally:
                os._exit(127)
        for fd in (in_read, out_write, err_write):
            os.close(fd)
        self.pid = pid
        self.returncode: int | None = None
        self.stdin = os.fdopen(in_write, "wb", buffering=0) if with_stdin else None
        self.stdout = os.fdopen(out_read, "rb", buffering=0)
        self.stderr = os.fdopen(err_read, "rb", buffering=0)


def spawn(
    argv: list[str], cwd: str, env: dict[str, str], with_stdin: bool, prepare: Callable[[], None]
) -> Forked:
    """Start ``argv``: in a fork of this interpreter when it names this interpreter on a
    script, else by exec (a program that cannot start exits 127 saying why on stderr)."""
    inline = python_script(argv, env)
    if inline is not None:
        script, args, unbuffered = inline
        return Forked(cwd, with_stdin, prepare, lambda: _run(script, args, unbuffered, env), argv[0])

    def execute() -> None:
        path = _which(argv[0], env.get("PATH", ""))
        if path is None:
            raise FileNotFoundError(2, "No such file or directory")
        os.execve(path, argv, env)

    return Forked(cwd, with_stdin, prepare, execute, argv[0])


def _streams(unbuffered: bool) -> None:
    """Standard streams as ``python3 [-u]`` makes them when they are pipes."""

    def writer(fd: int, errors: str, line_buffering: bool) -> io.TextIOWrapper:
        raw = io.FileIO(fd, "w", closefd=False)
        binary = raw if unbuffered else io.BufferedWriter(raw)
        return io.TextIOWrapper(
            binary,
            encoding="utf-8",
            errors=errors,
            line_buffering=line_buffering,
            write_through=unbuffered,
        )

    reader = io.BufferedReader(io.FileIO(0, "r", closefd=False))
    streams = {
        "stdin": io.TextIOWrapper(reader, encoding="utf-8", errors="strict"),
        "stdout": writer(1, "strict", False),
        "stderr": writer(2, "backslashreplace", True),
    }
    for name, stream in streams.items():
        # The interpreter's originals (sys.__stdout__, ...) are the same objects; typeshed calls them final.
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def _forget_agent() -> None:
    for name in [name for name in sys.modules if name == "guest" or name.startswith("guest.")]:
        del sys.modules[name]
    agent_root = os.path.dirname(_OWN_DIR)
    sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != agent_root]
    sys.dont_write_bytecode = False
    # The interpreter's own dispositions, which the agent changed.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    if "random" in sys.modules:
        sys.modules["random"].seed()


def _run(script: str, args: list[str], unbuffered: bool, env: dict[str, str]) -> NoReturn:
    import types

    _forget_agent()
    os.environ.clear()
    os.environ.update(env)
    path = os.path.abspath(script)
    sys.argv = [script, *args]
    sys.path[0] = os.path.dirname(path)  # where the agent's start put its own first entry
    _streams(unbuffered)
    main = types.ModuleType("__main__")
    main.__file__ = path
    main.__dict__["__builtins__"] = __builtins__
    sys.modules["__main__"] = main
    code = 0
    try:
        with open(path, "rb") as source:
            compiled = compile(source.read(), path, "exec")
        exec(compiled, main.__dict__)
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except BaseException as exc:
        # Without this module's frame, as the interpreter would print it.
        tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
        sys.excepthook(type(exc), exc.with_traceback(tb), tb)
        code = 1
    _finish()
    os._exit(code)


def _exit_code(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    print(value, file=sys.stderr)
    return 1


def _finish() -> None:
    """What the interpreter does on the way out: join threads, run atexit, flush."""
    threading = sys.modules.get("threading")
    if threading is not None:
        threading._shutdown()
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken stream has nothing to flush
            pass
