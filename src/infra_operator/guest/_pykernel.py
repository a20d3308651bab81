"""The python kernel of a session: a fork of the agent that runs each cell in one
namespace kept for the session's life, the way a notebook does.

Each cell's code is parsed; a final expression is evaluated apart, and its value
(when not None) is the cell's text result, as a notebook shows it. Every matplotlib
figure left open is saved as a PNG result and closed (the Agg backend draws without
a display). An exception prints its traceback, without our frames, and the
namespace stays as the cell left it. SIGINT raises KeyboardInterrupt only while a
cell runs, so an interrupt at its time-out keeps the names it and others defined.

Requests come on one pipe (``{"code", "stdin"}`` frames of the agent's protocol) and
each answer goes back on another (``{"status", "results"}``); the cell's output
goes to the kernel's standard streams, which the agent reads as they come.
"""

from __future__ import annotations

import os
import sys

from . import _fork
from ._signals import signal
from .protocol import ChannelClosed, b64decode, b64encode, receive, send

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs the agent's start-up milliseconds at run time
    from typing import Any, NoReturn

    from .messages import RichResult


_FRESH = ("import os, sys; sys.path.insert(0, sys.argv[1]); from guest import _pykernel; "
          "_pykernel.main(3, 4, dict(os.environ))")


def start(env: dict[str, str], fork_is_fresh: bool) -> NoReturn:
    """Become the kernel, on requests at fd 3 and replies at fd 4: as this fork of the agent
    when its start-up secrets are its own (``_fork.forks_are_fresh``, asked before the fork:
    the fork has dropped to the sandbox's uid), else in a new interpreter exec'd for it, which
    draws them afresh."""
    if fork_is_fresh:
        main(3, 4, env)
    agent_root = os.path.dirname(_fork._OWN_DIR)  # main() takes it out of sys.path again
    os.execve(sys.executable, [sys.executable, "-B", "-c", _FRESH, agent_root], env)


def main(requests_fd: int, replies_fd: int, env: dict[str, str]) -> NoReturn:
    import ast
    import io
    import linecache
    import types
    import warnings

    _fork._forget_agent()
    os.environ.clear()
    os.environ.update(env)
    sys.argv = [""]
    sys.path[0] = ""  # as `python3 -i` has it: the working folder first
    _fork._streams(unbuffered=True)  # output reaches the agent, and the client, as it is written
    # Agg cannot show a window: show() is where a notebook draws, and it draws here at the cell's end.
    warnings.filterwarnings("ignore", message=".*non-interactive.*cannot be shown")
    main_module = types.ModuleType("__main__")
    main_module.__dict__["__builtins__"] = __builtins__
    sys.modules["__main__"] = main_module
    namespace = main_module.__dict__
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    kernel = os.getpid()
    for number in range(1, 1 << 62):
        try:
            request = receive(requests_fd)
        except ChannelClosed:
            os._exit(0)
        name = f"<cell {number}>"
        code = str(request.get("code", ""))
        linecache.cache[name] = (len(code), None, code.splitlines(True), name)  # tracebacks show the lines
        sys.stdin = io.TextIOWrapper(io.BytesIO(b64decode(str(request.get("stdin", "")))), encoding="utf-8")
        status, value = _run(ast, code, name, namespace)
        if os.getpid() != kernel:
            os._exit(status)  # a fork the cell made came back here: only the kernel answers
        results: list[RichResult] = [{"type": "text", "text": value}] if value is not None else []
        results += _figures(io)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        send(replies_fd, {"status": status, "results": results})
    os._exit(0)


def _run(ast: Any, code: str, name: str, namespace: dict[str, Any]) -> tuple[int, str | None]:
    """The cell's status (as an exit code) and the text of its final expression's value."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        tree = ast.parse(code, name, "exec")
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, name, "exec"), namespace)
        if last is None:
            return 0, None
        value = eval(compile(ast.Expression(last.value), name, "eval"), namespace)
        if value is None:
            return 0, None
        namespace["_"] = value
        return 0, repr(value)
    except SystemExit as exc:  # a notebook's cell may call exit(); the kernel goes on
        return _fork._exit_code(exc.code), None
    except BaseException as exc:  # KeyboardInterrupt too: the names defined so far stay
        traceback = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
        sys.excepthook(type(exc), exc.with_traceback(traceback), traceback)
        return 1, None
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _figures(io: Any) -> list[RichResult]:
    """Every open matplotlib figure as a PNG, then closed: each cell shows what it drew."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None:
        return []
    found: list[RichResult] = []
    try:
        for number in pyplot.get_fignums():
            image = io.BytesIO()
            pyplot.figure(number).savefig(image, format="png")
            found.append({"type": "image/png", "data": b64encode(image.getvalue())})
    except Exception as exc:  # a figure that cannot be drawn is the cell's error, shown as one
        print(f"cannot save a figure: {type(exc).__name__}: {exc}", file=sys.stderr)
    pyplot.close("all")
    return found
