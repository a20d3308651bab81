"""Whether an idle agent's channel is still good (``_channel.quiet``), as the pool asks before
it serves a ready sandbox: real pipes and sockets, no sandbox needed."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

import pytest

from infra_operator.backends import _channel

pytestmark = pytest.mark.unit


@pytest.fixture
def pipes() -> Iterator[dict[str, int]]:
    """A jail's channel: the host reads ``from_agent`` and writes ``to_agent``."""
    from_agent, agent_out = os.pipe()
    agent_in, to_agent = os.pipe()
    ends = {"from_agent": from_agent, "agent_out": agent_out, "agent_in": agent_in, "to_agent": to_agent}
    yield ends
    for fd in ends.values():
        with contextlib.suppress(OSError):  # closed by the test already
            os.close(fd)


def test_an_idle_channel_of_two_pipes_is_quiet(pipes: dict[str, int]) -> None:
    assert _channel.quiet(pipes["from_agent"], pipes["to_agent"])


def test_an_agent_that_no_longer_reads_is_not_quiet_though_its_output_pipe_is_held(pipes: dict[str, int]) -> None:
    # The agent is gone; a process it left behind still holds its output pipe, so no hang-up comes.
    os.close(pipes.pop("agent_in"))
    assert not _channel.quiet(pipes["from_agent"], pipes["to_agent"])
    assert _channel.quiet(pipes["from_agent"]), "the reading side alone cannot tell"


def test_output_nobody_asked_for_or_a_hang_up_is_not_quiet(pipes: dict[str, int]) -> None:
    os.write(pipes["agent_out"], b"x")
    assert not _channel.quiet(pipes["from_agent"], pipes["to_agent"])
    os.read(pipes["from_agent"], 1)
    os.close(pipes.pop("agent_out"))
    assert not _channel.quiet(pipes["from_agent"], pipes["to_agent"])


def test_a_socket_channel_whose_peer_closed_is_not_quiet() -> None:
    host, agent = socket.socketpair()
    with host:
        assert _channel.quiet(host.fileno(), host.fileno())
        agent.close()
        assert not _channel.quiet(host.fileno(), host.fileno())
