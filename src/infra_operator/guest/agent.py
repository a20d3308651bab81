"""The guest agent: answers requests from the host, one frame at a time.

It knows nothing of languages: the host sends the files to write, the argv that
compiles (if any) and the argv that runs, with the limits to apply.
"""

from __future__ import annotations

import os
import sys
import time

from . import _channels, _confine, _paths
from ._runner import Limits, Watch, run_step
from .protocol import ChannelClosed, ProtocolError, b64decode, b64encode, receive, send

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs the agent's start-up milliseconds at run time
    from collections.abc import Callable
    from typing import Any

    from ._cells import Session
    from ._prestart import Prestarted
    from .messages import (
        Artifact,
        CellReply,
        ErrorReply,
        ExecuteReply,
        ExecuteRequest,
        FileDeleteReply,
        FileGetReply,
        FileListReply,
        FilePutReply,
        PingReply,
        SessionReply,
        SessionRequest,
        WarmReply,
        WarmRequest,
    )

    Reply = (PingReply | ExecuteReply | SessionReply | CellReply | FilePutReply | FileGetReply | FileListReply
             | FileDeleteReply | WarmReply | ErrorReply)
    Handler = Callable[[dict[str, Any], Watch], Reply]

WORK_DIR = "/work"
USAGE = """usage: infra.operator guest [--channel stdio|virtio:NAME|vsock:PORT] [--work-dir DIR]
       infra.operator guest --template SECCOMP_FD

The guest agent: answers the host's requests over the channel until it closes.
With --template, a jail template: forks a confined sandbox, whose agent answers on
stdio, for each request on stdin (a unix socket); see guest/_template.py.
"""


def _write_file(work_dir: str, name: str, content: str, mode: int = 0o644) -> None:
    if "/" in name or name in ("", ".", ".."):
        raise ValueError(f"bad file name {name!r}")
    # O_EXCL|O_NOFOLLOW: the work dir is fresh; never write through a planted link.
    fd = os.open(os.path.join(work_dir, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(b64decode(content))
        os.fchmod(handle.fileno(), mode & 0o755)  # no set-id bits, whatever the host sent


def _write_files(work_dir: str, files: dict[str, str], limit: int = 1 << 62) -> None:
    work_fd = -1
    for name, content in files.items():
        if "/" in name:  # in a folder of its own (a multi-file program): made, and reached, beneath work_dir
            work_fd = work_fd if work_fd >= 0 else os.open(work_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            _paths.put(work_fd, name, b64decode(content), 0, limit)
            continue
        _write_file(work_dir, name, content)
    if work_fd >= 0:
        os.close(work_fd)


def _artifacts(work_dir: str) -> list[Artifact]:
    """The regular files a compile step left in the working folder (links are not followed)."""
    found: list[Artifact] = []
    with os.scandir(work_dir) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                with open(entry.path, "rb") as handle:
                    found.append({"name": entry.name, "content": b64encode(handle.read()),
                                  "mode": entry.stat(follow_symlinks=False).st_mode & 0o755})
    return found


def execute(message: ExecuteRequest, work_dir: str = WORK_DIR, watch: Watch | None = None) -> ExecuteReply:
    started = time.monotonic()
    _confine.reseed(b64decode(message.get("entropy", "")), message.get("clock"))
    limits = Limits.from_message(message["limits"])
    deadline = started + limits.wall_seconds
    _confine.bound_scratch((work_dir, "/tmp", "/dev/shm"), limits.file_bytes)
    prestarted = _claim_prestarted(message)
    files = message.get("files", {})
    _write_files(work_dir, files if prestarted is None else {name: content for name, content in files.items()
                                                            if name != prestarted.source}, limits.file_bytes)
    for artifact in message.get("artifacts", []):
        _write_file(work_dir, artifact["name"], artifact["content"], int(artifact["mode"]))
    if watch is not None:
        watch.stream = bool(message.get("stream"))
    if prestarted is not None:
        ran = prestarted.hand_over(b64decode(files[prestarted.source]), limits, deadline, watch)
        return {"ok": True, "op": "execute", "compile": None, "run": ran}
    env = {str(k): str(v) for k, v in message.get("env", {}).items()}
    compiled = None
    compile_argv = message.get("compile")
    if compile_argv:
        compiled = run_step(list(compile_argv), work_dir, env, b"", limits, deadline, watch)
        if compiled["exit_code"] != 0 or compiled["timed_out"]:
            return {"ok": True, "op": "execute", "compile": compiled, "run": None}
    if message.get("collect"):
        return {"ok": True, "op": "execute", "compile": compiled, "run": None, "artifacts": _artifacts(work_dir)}
    stdin = b64decode(message.get("stdin", ""))
    ran = run_step(list(message["run"]), work_dir, env, stdin, limits, deadline, watch)
    return {"ok": True, "op": "execute", "compile": compiled, "run": ran}


def _claim_prestarted(message: ExecuteRequest) -> Prestarted | None:
    """The program started ahead, if it is what ``message`` asks to run; else it is discarded."""
    global _prestarted
    prestarted = _prestarted
    if prestarted is not None and prestarted.serves(message):
        _prestarted = None
        return prestarted
    _discard_prestarted()
    return None


def _discard_prestarted() -> None:
    global _prestarted
    if _prestarted is not None:
        _prestarted.discard()
        _prestarted = None


def warm(message: WarmRequest, work_dir: str) -> WarmReply:
    """Run a throwaway execution, then put the VM back as it was (see ``_rewind``): under
    TCG the interpreter's code is then translated already when the real execution comes.
    With ``prestart``, the run step's interpreter is then started again to wait for the
    next execution's program (see ``_prestart``).
    The warm-up failing is an answer (the VM is still put back); the VM not being put back
    is an error, and the host then destroys it rather than hand it out."""
    global _prestarted
    if os.getpid() != 1 or os.getuid() != 0 or _session is not None or _prestarted is not None:
        raise _paths.Refused("state", "a warm-up runs only in a VM that has served nothing, whose init is this agent")
    from . import _prestart, _rewind  # only a pooled VM's agent needs them

    started = time.monotonic()
    mark = _rewind.Mark((work_dir, "/tmp", "/dev/shm"))
    exit_code: int | None = None
    error: str | None = None
    try:
        reply = execute(message["execute"], work_dir)
        step = reply["run"] or reply["compile"]
        exit_code = step["exit_code"] if step is not None else None
    except (KeyError, TypeError, ValueError, OSError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    mark.rewind()
    source = message.get("prestart")
    if source and exit_code == 0:
        _prestarted = _prestart.Prestarted.start(message["execute"], source, work_dir, mark,
                                                 started + float(message["execute"]["limits"]["wall_seconds"]))
    return {"ok": True, "op": "warm", "exit_code": exit_code, "error": error,
            "prestarted": _prestarted is not None, "wall_ms": round((time.monotonic() - started) * 1000, 3)}


_session: Session | None = None
"""Set by the ``session`` request: this sandbox then serves one session for its life."""
_prestarted: Prestarted | None = None
"""Set by a ``warm`` request with ``prestart``: the next execution's interpreter, waiting."""


def open_session(message: SessionRequest, work_dir: str) -> SessionReply:
    global _session
    if _session is not None:
        raise _paths.Refused("state", "this sandbox already serves a session")
    _discard_prestarted()  # a session starts its own interpreter, its own way
    _confine.reseed(b64decode(message.get("entropy", "")), message.get("clock"))
    limits = message["limits"]
    _confine.bound_scratch((work_dir, "/tmp", "/dev/shm"), int(limits["file_bytes"]))
    from . import _cells  # here: every sandbox starts its own agent, and only a session's needs this

    _session = _cells.Session(message, work_dir)
    return {"ok": True, "op": "session"}


def _in_session(op: str, message: dict[str, Any], watch: Watch) -> Reply:
    session = _session
    if session is None:
        raise _paths.Refused("state", f"{op} needs a session: this sandbox serves none")
    fd = session.work_fd
    if op == "cell":
        return session.cell(message, watch)  # type: ignore[arg-type]  # its shape is checked as it is read
    if op == "file_put":
        size = _paths.put(fd, str(message["path"]), b64decode(message["data"]), int(message["offset"]),
                          session.limits.file_bytes)
        return {"ok": True, "op": "file_put", "path": str(message["path"]), "size": size}
    if op == "file_get":
        data, size = _paths.get(fd, str(message["path"]), int(message["offset"]), int(message["length"]))
        return {"ok": True, "op": "file_get", "data": b64encode(data), "size": size}
    if op == "file_list":
        return {"ok": True, "op": "file_list", "files": _paths.listing(fd)}
    if op == "file_delete":
        _paths.delete(fd, str(message["path"]))
        return {"ok": True, "op": "file_delete"}
    return {"ok": False, "error": f"unknown op {op!r}"}


def handle(message: dict[str, Any], work_dir: str = WORK_DIR, watch: Watch | None = None) -> Reply:
    """Answer one request; a malformed one (a key missing, a value of the wrong type) is
    an ``ErrorReply``, never the agent's end."""
    op = message.get("op")
    try:
        if op == "ping":
            # A resumed VM's clock stood still while it was saved. Only a VM's init sets it:
            # an agent run on the host (a test double's) must never set the host's clock.
            if "clock" in message and os.getpid() == 1:
                _confine.reseed(b"", float(message["clock"]))
            return {"ok": True, "op": "ping", "pid": os.getpid(), "uid": os.getuid()}
        if op == "execute":
            return execute(message, work_dir, watch)  # type: ignore[arg-type]  # its shape is checked as it is read
        if op == "session":
            return open_session(message, work_dir)  # type: ignore[arg-type]  # its shape is checked as it is read
        if op == "warm":
            return warm(message, work_dir)  # type: ignore[arg-type]  # its shape is checked as it is read
        return _in_session(str(op), message, watch or Watch(-1, -1))
    except _paths.Refused as exc:
        return {"ok": False, "error": str(exc), "refused": exc.reason}
    except (KeyError, TypeError, ValueError, OSError) as exc:
        return {"ok": False, "error": f"{op}: {type(exc).__name__}: {exc}"}


def _handle(message: dict[str, Any], watch: Watch) -> Reply:
    return handle(message, WORK_DIR, watch)


def serve(read_fd: int, write_fd: int, handler: Handler = _handle) -> None:
    """Answer frames until the host closes the channel."""
    while True:
        try:
            message = receive(read_fd)
        except ChannelClosed:
            return
        except ProtocolError as exc:
            send(write_fd, {"ok": False, "error": f"protocol: {exc}"})
            return
        if message.get("op") == "interrupt":
            continue  # it came after what it meant to stop had answered
        send(write_fd, handler(message, Watch(read_fd, write_fd)))


def _options(argv: list[str]) -> dict[str, str]:
    """``--channel`` and ``--work-dir``, as ``--name value`` or ``--name=value`` (argparse
    alone would cost the agent's start-up more than the rest of its imports)."""
    options = {"--channel": "stdio", "--work-dir": WORK_DIR, "--template": ""}
    rest = list(argv)
    while rest:
        name, _, value = rest.pop(0).partition("=")
        if name in ("-h", "--help"):
            print(USAGE, end="")
            raise SystemExit(0)
        if name not in options or (not value and not rest):
            print(USAGE, end="", file=sys.stderr)
            raise SystemExit(f"infra.operator guest: bad argument {name!r}")
        options[name] = value or rest.pop(0)
    return options


def _answer_host(channel: str, work_dir: str) -> None:
    _confine.harden_agent()
    if os.getpid() == 1 and os.getuid() == 0:
        _confine.mask_proc()  # a VM's init; a jail's /proc is masked by its template
    os.chdir(work_dir)
    for read_fd, write_fd in _channels.by_name(channel):
        try:
            serve(read_fd, write_fd, lambda message, watch: handle(message, work_dir, watch))
        except ChannelClosed:
            continue


def main(argv: list[str] | None = None) -> None:
    options = _options(sys.argv[1:] if argv is None else argv)
    work_dir = options["--work-dir"]
    if options["--template"]:
        from . import _template  # only a jail template needs it

        # Each sandbox execs this very agent afresh, on the channel it is handed as stdio.
        _template.serve(0, int(options["--template"]), [sys.executable, "-B", "-m", "guest", "--work-dir", work_dir])
        return
    _answer_host(options["--channel"], work_dir)

