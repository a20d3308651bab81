"""The host's side of the agent channel, shared by every backend: one call is one
frame out and one frame back, with protocol faults translated to our errors."""

from __future__ import annotations

import select
import time
from typing import TYPE_CHECKING, Any, cast

from ..errors import AgentError, AgentTimeout, Conflict, InvalidRequest, NotFound, PayloadTooLarge
from ..guest.protocol import ChannelClosed, ChannelTimeout, ProtocolError, b64decode, receive, send

if TYPE_CHECKING:
    from ..guest.messages import PingReply, Reply, Request
    from .base import Listener

CANCEL_POLL_SECONDS = 0.05
"""How often a streaming call looks whether its listener was cancelled while the agent is quiet."""
_REFUSALS = {"path": InvalidRequest, "missing": NotFound, "too_large": PayloadTooLarge, "state": Conflict}


def _next_frame(read_fd: int, write_fd: int, deadline: float, listener: Listener | None,
                interrupted: list[bool]) -> dict[str, Any]:
    """The agent's next frame; while waiting, an interrupt goes out once the listener is cancelled."""
    if listener is not None:
        poller = select.poll()
        poller.register(read_fd, select.POLLIN)
        while not poller.poll(int(CANCEL_POLL_SECONDS * 1000)):
            if time.monotonic() >= deadline:
                raise ChannelTimeout("deadline passed")
            if listener.cancel.is_set() and not interrupted:
                send(write_fd, {"op": "interrupt"}, deadline)
                interrupted.append(True)
    return receive(read_fd, deadline)


def quiet(read_fd: int, write_fd: int | None = None) -> bool:
    """Nothing on an idle channel: it is open (no hang-up, no error) and the agent sent nothing
    unasked, which would be read as the next call's answer. A channel of two pipes is open only
    while its agent still reads, too: a pipe whose reader is gone reports an error to its
    writer, although a process the agent left behind may hold the other pipe open."""
    poller = select.poll()
    poller.register(read_fd, select.POLLIN)
    if write_fd is not None and write_fd != read_fd:
        poller.register(write_fd, 0)  # errors and hang-ups are reported whatever the mask
    return not poller.poll(0)


def call(read_fd: int, write_fd: int, message: Request, deadline: float, sandbox: str,
         listener: Listener | None = None) -> Reply:
    """One request and its reply; the reply must be a success that answers this request's op.
    Output frames before it go to ``listener`` (see ``base.Listener``)."""
    interrupted: list[bool] = []
    try:
        send(write_fd, message, deadline)
        while True:
            reply = _next_frame(read_fd, write_fd, deadline, listener, interrupted)
            if reply.get("op") != "chunk":
                break
            if listener is not None:
                listener.on_output(str(reply.get("stream")), b64decode(str(reply.get("data", ""))))
    except ChannelTimeout as exc:
        raise AgentTimeout(f"sandbox {sandbox}: the agent did not answer in time") from exc
    except ChannelClosed as exc:
        raise AgentError(f"sandbox {sandbox}: the sandbox went away during the call") from exc
    except (ProtocolError, ValueError) as exc:  # ValueError: output that is not base64
        raise AgentError(f"sandbox {sandbox}: bad answer from the agent: {exc}") from exc
    except OSError as exc:
        raise AgentError(f"sandbox {sandbox}: channel failed: {exc.strerror or exc}") from exc
    refusal = _REFUSALS.get(str(reply.get("refused")))
    if not reply.get("ok") and refusal is not None:
        raise refusal(str(reply.get("error", "refused")))
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


def set_clock(read_fd: int, write_fd: int, timeout: float, sandbox: str) -> None:
    """Tell a resumed guest the time: its clock stood still while it was saved. A ping that
    carries it, so an agent too old to read it still answers (and keeps its stale clock)."""
    call(read_fd, write_fd, {"op": "ping", "clock": time.time()}, time.monotonic() + timeout, sandbox)
