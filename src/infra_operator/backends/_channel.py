"""The host's side of the agent channel, shared by every backend: one call is one
frame out and one frame back, with protocol faults translated to our errors."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, cast

from ..errors import AgentError, AgentTimeout
from ..guest.protocol import ChannelClosed, ChannelTimeout, ProtocolError, receive, send

if TYPE_CHECKING:
    from ..guest.messages import PingReply, Reply, Request


def call(read_fd: int, write_fd: int, message: Request, deadline: float, sandbox: str) -> Reply:
    """One request and its reply; the reply must be a success that answers this request's op."""
    try:
        send(write_fd, message, deadline)
        reply = receive(read_fd, deadline)
    except ChannelTimeout as exc:
        raise AgentTimeout(f"sandbox {sandbox}: the agent did not answer in time") from exc
    except ChannelClosed as exc:
        raise AgentError(f"sandbox {sandbox}: the sandbox went away during the call") from exc
    except ProtocolError as exc:
        raise AgentError(f"sandbox {sandbox}: bad answer from the agent: {exc}") from exc
    except OSError as exc:
        raise AgentError(f"sandbox {sandbox}: channel failed: {exc.strerror or exc}") from exc
    if not reply.get("ok"):
        raise AgentError(f"sandbox {sandbox}: the agent refused: {reply.get('error', 'no reason given')}")
    if reply.get("op") != message["op"]:
        raise AgentError(f"sandbox {sandbox}: the agent answered {reply.get('op')!r} to {message['op']!r}")
    return cast("Reply", reply)


def wait_ready(read_fd: int, write_fd: int, timeout: float, sandbox: str) -> PingReply:
    """Ping the agent once it is up; a sandbox is ready only after this answers."""
    reply = call(read_fd, write_fd, {"op": "ping"}, time.monotonic() + timeout, sandbox)
    assert reply["op"] == "ping"  # call() checked it
    return reply
