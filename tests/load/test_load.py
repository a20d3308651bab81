"""Load through the real server: 200 mixed-language executions at concurrency 16, all
answered correctly; then a burst past a small queue, answered with clean 503s.

Marked ``load``: it runs in the default test command and can be deselected with
``-m 'not load'``. Timings are printed, never asserted (the machines are shared).
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import SEED_LANGUAGES, Server, require_images, start_server, stop_server

pytestmark = [pytest.mark.load, pytest.mark.timeout(1200)]

EXECUTIONS = 200
CONCURRENCY = 16


def program(language: str, n: int) -> tuple[str, str]:
    """A small program for ``language`` whose output depends on ``n``, and that output."""
    expected = f"{n * n}\n"
    source = {
        "python": f"print({n} * {n})",
        "nodejs": f"console.log({n} * {n})",
        "go": f'package main\n\nimport "fmt"\n\nfunc main() {{ fmt.Println({n} * {n}) }}\n',
        "rust": f'fn main() {{ println!("{{}}", {n}u64 * {n}u64); }}\n',
    }[language]
    return source, expected


def test_200_mixed_executions_at_concurrency_16_are_all_correct(server: Server) -> None:
    require_images(*SEED_LANGUAGES)
    jobs = [(SEED_LANGUAGES[i % len(SEED_LANGUAGES)], 1000 + i) for i in range(EXECUTIONS)]
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)

    with httpx.Client(base_url=server.url, timeout=300, limits=limits) as client:

        def one(job: tuple[str, int]) -> tuple[str, str, float]:
            language, n = job
            code, expected = program(language, n)
            started = time.monotonic()
            request = {"language": language, "code": code, "timeout": 120}
            response = client.post("/api/v1/execute", json=request)
            took = time.monotonic() - started
            if response.status_code != 200:
                return language, f"HTTP {response.status_code}: {response.text[:200]}", took
            body = response.json()
            if (body["stdout"], body["exit_code"]) != (expected, 0):
                return language, f"wrong answer for n={n}: {body['stdout']!r} exit {body['exit_code']}", took
            return language, "", took

        started = time.monotonic()
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            results = list(pool.map(one, jobs))
        wall = time.monotonic() - started

    failures = [f"{language}: {problem}" for language, problem, _ in results if problem]
    latencies = sorted(took for _, _, took in results)
    print(f"\nload: {EXECUTIONS} executions at concurrency {CONCURRENCY} in {wall:.1f}s "
          f"({EXECUTIONS / wall:.1f}/s), latency p50 {statistics.median(latencies):.2f}s "
          f"p95 {latencies[int(len(latencies) * 0.95)]:.2f}s, failures {len(failures)}")
    assert not failures, failures[:10]


def test_a_burst_past_a_small_queue_is_answered_with_clean_503s(tmp_path: Path) -> None:
    require_images("python")
    small = {"INFRA_OPERATOR_MAX_CONCURRENCY": "2", "INFRA_OPERATOR_MAX_QUEUE": "2"}
    server = start_server(tmp_path, env=small)
    try:
        code = "import time\ntime.sleep(1)\nprint('ok')\n"
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
        with httpx.Client(base_url=server.url, timeout=120, limits=limits) as client:

            def one(_: int) -> httpx.Response:
                return client.post("/api/v1/execute", json={"language": "python", "code": code})

            with ThreadPoolExecutor(32) as pool:
                answers = list(pool.map(one, range(32)))  # a connection error would raise here
    finally:
        stop_server(server)
    statuses = Counter(answer.status_code for answer in answers)
    print(f"\nburst: 32 requests against 2 slots and 2 queue places: {dict(statuses)}")
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[200] >= 2 and statuses[503] >= 1, statuses
    for answer in answers:
        if answer.status_code == 503:
            assert int(answer.headers["retry-after"]) >= 1
            assert answer.json()["error"]
        else:
            assert answer.json()["stdout"] == "ok\n"
