"""The guest agent: answers requests from the host, one frame at a time.

It knows nothing of languages: the host sends the files to write, the argv that
compiles (if any) and the argv that runs, with the limits to apply.
"""

from __future__ import annotations

import argparse
import functools
import os
import time
from collections.abc import Callable
from typing import Any

from . import _channels, _confine
from ._runner import Limits, run_step
from .protocol import ChannelClosed, ProtocolError, b64decode, receive, send

WORK_DIR = "/work"
Handler = Callable[[dict[str, Any]], dict[str, Any]]


def _write_files(work_dir: str, files: dict[str, str]) -> None:
    for name, content in files.items():
        if "/" in name or name in ("", ".", ".."):
            raise ValueError(f"bad file name {name!r}")
        # O_EXCL|O_NOFOLLOW: the work dir is fresh; never write through a planted link.
        fd = os.open(os.path.join(work_dir, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(b64decode(content))


def execute(message: dict[str, Any], work_dir: str = WORK_DIR) -> dict[str, Any]:
    started = time.monotonic()
    _confine.reseed(b64decode(message.get("entropy", "")), message.get("clock"))
    limits = Limits.from_message(message["limits"])
    deadline = started + limits.wall_seconds
    _write_files(work_dir, message.get("files", {}))
    env = {str(k): str(v) for k, v in message.get("env", {}).items()}
    compiled = None
    if message.get("compile"):
        compiled = run_step(list(message["compile"]), work_dir, env, b"", limits, deadline)
        if compiled["exit_code"] != 0 or compiled["timed_out"]:
            return {"ok": True, "compile": compiled, "run": None}
    stdin = b64decode(message.get("stdin", ""))
    ran = run_step(list(message["run"]), work_dir, env, stdin, limits, deadline)
    return {"ok": True, "compile": compiled, "run": ran}


def handle(message: dict[str, Any], work_dir: str = WORK_DIR) -> dict[str, Any]:
    op = message.get("op")
    try:
        if op == "ping":
            return {"ok": True, "pid": os.getpid(), "uid": os.getuid()}
        if op == "execute":
            return execute(message, work_dir)
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="infra.operator guest", description=__doc__)
    parser.add_argument("--channel", default="stdio", help="stdio, virtio:NAME or vsock:PORT")
    parser.add_argument("--work-dir", default=WORK_DIR)
    args = parser.parse_args(argv)
    _confine.harden_agent()
    os.chdir(args.work_dir)
    for read_fd, write_fd in _channels.by_name(args.channel):
        try:
            serve(read_fd, write_fd, functools.partial(handle, work_dir=args.work_dir))
        except ChannelClosed:
            continue

