"""How a request's limits are resolved against the server's allowed ranges."""

from __future__ import annotations

import pytest

from infra_operator.config import LimitRange, Limits
from infra_operator.errors import InvalidRequest
from infra_operator.executor import resolve

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("timeout", [1, 5, 30])
def test_the_cpu_limit_a_request_leaves_out_gives_the_wall_timer_a_second_to_win(timeout: int) -> None:
    # A spinning program must answer timed_out, not SIGXCPU, when only a timeout was asked for.
    assert resolve(Limits(), timeout=timeout).cpu_seconds == timeout + 1


def test_the_margin_never_passes_the_servers_cpu_maximum() -> None:
    limits = Limits(timeout_seconds=LimitRange(default=30, maximum=300), cpu_seconds=LimitRange(default=30, maximum=10))
    assert resolve(limits, timeout=30).cpu_seconds == 10


def test_a_cpu_limit_the_request_names_is_kept_as_named() -> None:
    assert resolve(Limits(), timeout=60, cpu_seconds=1).cpu_seconds == 1


def test_a_cpu_limit_outside_the_allowed_range_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="cpu_seconds must be between 1 and 300"):
        resolve(Limits(), cpu_seconds=301)
