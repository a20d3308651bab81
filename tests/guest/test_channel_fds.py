"""The channel works on any descriptor: a host holding many sandboxes' channels has
descriptors numbered past 1024, which ``select.select`` cannot watch."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterator

import pytest

from infra_operator.guest.protocol import ChannelTimeout, receive, send

pytestmark = pytest.mark.unit

HIGH_FD = 1500


@pytest.fixture
def high_pipe() -> Iterator[tuple[int, int]]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= HIGH_FD + 1:
        pytest.skip(f"the hard limit on open files ({hard}) is below descriptor {HIGH_FD + 1}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, HIGH_FD + 2), hard))
    read_fd, write_fd = os.pipe()
    high_read, high_write = os.dup2(read_fd, HIGH_FD), os.dup2(write_fd, HIGH_FD + 1)
    os.close(read_fd)
    os.close(write_fd)
    try:
        yield high_read, high_write
    finally:
        os.close(high_read)
        os.close(high_write)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_frame_crosses_descriptors_past_1024_with_a_deadline(high_pipe: tuple[int, int]) -> None:
    read_fd, write_fd = high_pipe
    send(write_fd, {"op": "ping"}, time.monotonic() + 5)
    assert receive(read_fd, time.monotonic() + 5) == {"op": "ping"}


def test_the_deadline_holds_on_a_high_descriptor(high_pipe: tuple[int, int]) -> None:
    read_fd, _ = high_pipe
    with pytest.raises(ChannelTimeout):
        receive(read_fd, time.monotonic() + 0.05)
