"""Running one submission: a plain execution, or a judged one (compile once, then each
test in a fresh sandbox, each with a verdict)."""

from __future__ import annotations

import dataclasses
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from ..errors import OperatorError, Overloaded
from ..executor import ExecutionRequest, ExecutionResult, Executor
from ._record import Submission, TestCase

log = logging.getLogger(__name__)

Verdict = Literal["accepted", "wrong_answer", "time_limit_exceeded", "memory_limit_exceeded",
                  "output_limit_exceeded", "runtime_error", "compile_error", "internal_error"]
TESTS_AT_ONCE = 4
BUSY_RETRY_SECONDS = 0.5
Outcome = tuple[Literal["done", "failed"], dict[str, Any] | None, str | None]
"""The status a run ends in, its result, and the reason when it failed."""


def same_output(produced: str, expected: str) -> bool:
    """Equal but for trailing whitespace at the ends of lines and of the output."""
    def normal(text: str) -> str:
        return "\n".join(line.rstrip() for line in text.rstrip().splitlines())
    return normal(produced) == normal(expected)


def verdict(result: ExecutionResult, expected: str) -> Verdict:
    # Limits first: a program killed for one also exits non-zero, and its output is cut short.
    if result.timed_out or result.signal == "SIGXCPU":
        return "time_limit_exceeded"
    if result.oom_killed:
        return "memory_limit_exceeded"
    if result.output_limit_exceeded or result.stdout_truncated:
        return "output_limit_exceeded"
    if result.exit_code != 0:
        return "runtime_error"
    return "accepted" if same_output(result.stdout, expected) else "wrong_answer"


def _test_view(verdict: Verdict, result: ExecutionResult | None, error: str | None = None) -> dict[str, Any]:
    if result is None:
        return {"verdict": verdict, "stdout": "", "exit_code": None, "time_ms": None, "memory_kb": None,
                "stderr": "", "cpu_time_ms": None, **({"error": error} if error else {})}
    return {"verdict": verdict, "stdout": result.stdout, "exit_code": result.exit_code,
            "time_ms": round(result.exec_ms, 3), "memory_kb": result.memory_kb, "stderr": result.stderr,
            "cpu_time_ms": result.cpu_time_ms}


def judge(executor: Executor, request: ExecutionRequest, tests: list[TestCase]) -> dict[str, Any]:
    """Compile once; run each test fresh from what the compile made. The submission's verdict
    is its first test's that is not ``accepted``, or ``accepted``."""
    try:
        compiled = executor.compile(request)
    except Overloaded:
        raise
    except OperatorError as exc:
        log.warning("judge: compiling failed: %s", exc.message)
        return {"verdict": "internal_error", "error": exc.message,
                "tests": [_test_view("internal_error", None, exc.message) for _ in tests]}
    if compiled.failure is not None:
        failure = compiled.failure
        return {"verdict": "compile_error", "compile_output": failure.compile_output,
                "compile_exit_code": failure.compile_exit_code,
                "tests": [_test_view("compile_error", None) for _ in tests]}

    def run_test(test: TestCase) -> dict[str, Any]:
        try:
            result = executor.execute(dataclasses.replace(request, stdin=test["stdin"], artifacts=compiled.artifacts))
        except Overloaded:
            raise  # the host is busy, the program is not at fault: see run()
        except OperatorError as exc:
            log.warning("judge: a test failed to run: %s", exc.message)
            return _test_view("internal_error", None, exc.message)
        return _test_view(verdict(result, test["expected_output"]), result)

    # Tests are independent runs, each in its own sandbox: a few at once (the executor's
    # admission still bounds what runs on the host).
    with ThreadPoolExecutor(max_workers=min(TESTS_AT_ONCE, len(tests)), thread_name_prefix="judge") as pool:
        views = list(pool.map(run_test, tests))
    overall = next((view["verdict"] for view in views if view["verdict"] != "accepted"), "accepted")
    return {"verdict": overall, "tests": views}


def run(executor: Executor, submission: Submission) -> Outcome:
    """What a runner does with a submission it took: never raises for the program's sake or ours."""
    request = ExecutionRequest.from_json(submission["request"])
    try:
        while True:
            try:
                if submission["tests"] is not None:
                    return "done", judge(executor, request, submission["tests"]), None
                return "done", executor.execute(request).answer(), None
            except Overloaded:
                # Too many executions wait on this host (HTTP executes and other submissions):
                # an accepted submission waits for room rather than fail for it.
                time.sleep(BUSY_RETRY_SECONDS)
    except OperatorError as exc:
        return "failed", None, exc.message
    except Exception as exc:  # a fault of ours must end the submission, not the runner
        log.exception("submission %s: unexpected error", submission["id"])
        return "failed", None, f"internal error: {type(exc).__name__}: {exc}"
