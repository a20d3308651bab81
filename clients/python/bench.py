"""The SDK's overhead per call, next to raw httpx doing the same request and reading the same JSON.

    python bench.py --url http://127.0.0.1:8080 [--iterations 3000] [--execute 200]

Three measures, each with the two clients taking turns (ABAB, then BABA, so drift and load
hit both alike), reported as medians side by side:

- ``mock``: both on one in-process ``httpx.MockTransport``: no network, no server; what is left
  is each client's own work, so the difference is the SDK's overhead alone.
- ``health``: ``GET /health`` on the live server.
- ``execute``: ``POST /api/v1/execute`` (python ``print(1)``) on the live server, ``--execute`` times.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from infra_operator_client import DEFAULT_BASE_URL, Client  # noqa: E402

HEALTH = {"status": "healthy", "version": "1.0.0", "backend": "jail"}
RESULT = {"stdout": "1\n", "stderr": "", "exit_code": 0, "load_time": "1ms", "exec_time": "1ms"}


def measure(raw: Callable[[], object], sdk: Callable[[], object], iterations: int) -> tuple[list[float], list[float]]:
    times: tuple[list[float], list[float]] = ([], [])
    calls = (raw, sdk)
    for _ in range(min(20, iterations)):  # warm both: connections, caches
        raw(), sdk()
    for i in range(iterations):
        order = (0, 1) if i % 2 == 0 else (1, 0)
        for which in order:
            started = time.perf_counter()
            calls[which]()
            times[which].append((time.perf_counter() - started) * 1000)
    return times


def report(name: str, times: tuple[list[float], list[float]]) -> None:
    raw, sdk = (statistics.median(sample) for sample in times)
    print(f"{name:8} {len(times[0]):6}  raw httpx {raw:8.3f} ms   SDK {sdk:8.3f} ms   overhead {sdk - raw:+.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=DEFAULT_BASE_URL)
    parser.add_argument("--iterations", type=int, default=3000, help="for mock and health")
    parser.add_argument("--execute", type=int, default=200, help="executions per client (0: none)")
    options = parser.parse_args()

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=HEALTH if request.url.path == "/health" else RESULT)

    print("measure  calls   medians per call")
    mock = httpx.MockTransport(answer)
    with httpx.Client(base_url="http://bench", transport=mock) as http, \
            Client("http://bench", transport=mock) as client:
        report("mock", measure(lambda: raw_health(http), client.health, options.iterations))
        report("mock-ex", measure(lambda: raw_execute(http), lambda: client.execute("python", "print(1)"),
                                  options.iterations))
    with httpx.Client(base_url=options.url, timeout=60) as http, Client(options.url) as client:
        report("health", measure(lambda: raw_health(http), client.health, options.iterations))
        if options.execute:
            report("execute", measure(lambda: raw_execute(http), lambda: client.execute("python", "print(1)"),
                                      options.execute))


def raw_health(http: httpx.Client) -> object:
    response = http.get("/health")
    response.raise_for_status()
    return response.json()


def raw_execute(http: httpx.Client) -> object:
    response = http.post("/api/v1/execute", json={"language": "python", "code": "print(1)"})
    response.raise_for_status()
    return response.json()


if __name__ == "__main__":
    main()
