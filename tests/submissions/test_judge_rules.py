"""The judge's rules on their own: how output is compared, and which verdict a run gets
when several things went wrong at once."""

from __future__ import annotations

import pytest

from infra_operator.executor import ExecutionResult
from infra_operator.submissions import same_output, verdict

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("produced", "expected", "same"), [
    ("4\n", "4", True),
    ("4  \n\n\n", "4", True),              # trailing whitespace of the output
    ("a \t\nb  \n", "a\nb", True),          # and at the ends of lines
    ("a\r\nb\r\n", "a\nb", True),           # a line's carriage return is trailing whitespace
    (" 4", "4", False),                     # leading whitespace counts
    ("a b", "ab", False),                   # so does whitespace inside a line
    ("a\n\nb", "a\nb", False),              # and an empty line inside the output
    ("", "", True),
])
def test_output_is_compared_ignoring_trailing_whitespace(produced: str, expected: str, same: bool) -> None:
    assert same_output(produced, expected) is same


def _ran(**fields: object) -> ExecutionResult:
    base: dict[str, object] = {"stdout": "ok\n", "stderr": "", "exit_code": 0, "load_ms": 1.0, "exec_ms": 1.0,
                               "language": "python", "version": "3", "backend": "jail"}
    return ExecutionResult(**{**base, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(("fields", "expected"), [
    ({}, "accepted"),
    ({"stdout": "no\n"}, "wrong_answer"),
    ({"exit_code": 1}, "runtime_error"),
    ({"exit_code": 137, "signal": "SIGKILL", "timed_out": True, "stdout": ""}, "time_limit_exceeded"),
    ({"exit_code": 152, "signal": "SIGXCPU"}, "time_limit_exceeded"),
    ({"exit_code": 137, "oom_killed": True}, "memory_limit_exceeded"),
    ({"exit_code": 137, "output_limit_exceeded": True}, "output_limit_exceeded"),
    ({"stdout_truncated": True}, "output_limit_exceeded"),
    # Killed for a limit, a program also exits non-zero and leaves its output short: the limit is the verdict.
    ({"exit_code": 137, "timed_out": True, "oom_killed": True}, "time_limit_exceeded"),
])
def test_a_limit_is_the_verdict_before_the_exit_code_and_the_output(fields: dict[str, object], expected: str) -> None:
    assert verdict(_ran(**fields), "ok") == expected
