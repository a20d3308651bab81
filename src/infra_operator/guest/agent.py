"""The guest agent: answers requests from the host, one frame at a time.

It knows nothing of languages: the host sends the files to write, the argv that
compiles (if any) and the argv that runs, with the limits to apply.
"""

from __future__ import annotations

import functools
import os
import sys
import time

from . import _channels, _confine
from ._runner import Limits, run_step
from .protocol import ChannelClosed, ProtocolError, b64decode, b64encode, receive, send

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs the agent's start-up milliseconds at run time
    from collections.abc import Callable
    from typing import Any

    from .messages import Artifact, ErrorReply, ExecuteReply, ExecuteRequest, PingReply

    Handler = Callable[[dict[str, Any]], PingReply | ExecuteReply | ErrorReply]

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


def _write_files(work_dir: str, files: dict[str, str]) -> None:
    for name, content in files.items():
        _write_file(work_dir, name, content)


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


def execute(message: ExecuteRequest, work_dir: str = WORK_DIR) -> ExecuteReply:
    started = time.monotonic()
    _confine.reseed(b64decode(message.get("entropy", "")), message.get("clock"))
    limits = Limits.from_message(message["limits"])
    deadline = started + limits.wall_seconds
    _confine.bound_scratch((work_dir, "/tmp", "/dev/shm"), limits.file_bytes)
    _write_files(work_dir, message.get("files", {}))
    for artifact in message.get("artifacts", []):
        _write_file(work_dir, artifact["name"], artifact["content"], int(artifact["mode"]))
    env = {str(k): str(v) for k, v in message.get("env", {}).items()}
    compiled = None
    compile_argv = message.get("compile")
    if compile_argv:
        compiled = run_step(list(compile_argv), work_dir, env, b"", limits, deadline)
        if compiled["exit_code"] != 0 or compiled["timed_out"]:
            return {"ok": True, "op": "execute", "compile": compiled, "run": None}
    if message.get("collect"):
        return {"ok": True, "op": "execute", "compile": compiled, "run": None, "artifacts": _artifacts(work_dir)}
    stdin = b64decode(message.get("stdin", ""))
    ran = run_step(list(message["run"]), work_dir, env, stdin, limits, deadline)
    return {"ok": True, "op": "execute", "compile": compiled, "run": ran}


def handle(message: dict[str, Any], work_dir: str = WORK_DIR) -> PingReply | ExecuteReply | ErrorReply:
    """Answer one request; a malformed one (a key missing, a value of the wrong type) is
    an ``ErrorReply``, never the agent's end."""
    op = message.get("op")
    try:
        if op == "ping":
            return {"ok": True, "op": "ping", "pid": os.getpid(), "uid": os.getuid()}
        if op == "execute":
            return execute(message, work_dir)  # type: ignore[arg-type]  # its shape is checked as it is read
        return {"ok": False, "error": f"unknown op {op!r}"}
    except (KeyError, TypeError, ValueError, OSError) as exc:
        return {"ok": False, "error": f"{op}: {type(exc).__name__}: {exc}"}


def serve(read_fd: int, write_fd: int, handler: Handler = handle) -> None:
    """Answer frames until the host closes the channel."""
    while True:
        try:
            message = receive(read_fd)
        except ChannelClosed:
            return
        except ProtocolError as exc:
            send(write_fd, {"ok": False, "error": f"protocol: {exc}"})
            return
        send(write_fd, handler(message))


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
    os.chdir(work_dir)
    for read_fd, write_fd in _channels.by_name(channel):
        try:
            serve(read_fd, write_fd, functools.partial(handle, work_dir=work_dir))
        except ChannelClosed:
            continue


def main(argv: list[str] | None = None) -> None:
    options = _options(sys.argv[1:] if argv is None else argv)
    work_dir = options["--work-dir"]
    if options["--template"]:
        from . import _template  # only a jail template needs it

        _template.serve(0, int(options["--template"]), functools.partial(_answer_host, "stdio", work_dir))
        return
    _answer_host(options["--channel"], work_dir)

