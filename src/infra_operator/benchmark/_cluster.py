"""``infra.operator benchmark-cluster``: what the cluster and judge mode cost and save, side
by side in one run on this host (loopback only):

- execute through the cluster (an ``api --redis``, Redis and one worker) against a single
  process, the same program interleaved, so both see the same machine (goal: +3 ms p50 at most);
- a rust submission with 10 tests (compiled once) against 10 separate executes, medians of
  rounds taken in turn (goal: 5x faster);
- many queued submissions through the cluster, all completed, none lost.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from ..errors import InvalidRequest, SandboxError
from ._bench import Stats
from ._targets import OverHttp, stop_process, wait_until

GOAL_CLUSTER_ADDED_MS = 3.0
GOAL_JUDGE_SPEEDUP = 5.0
RUST_PROGRAM = '''use std::io::*;
fn main() {
    let mut line = String::new();
    stdin().read_line(&mut line).unwrap();
    let n: i64 = line.trim().parse().unwrap();
    println!("{}", n * n);
}
'''
BATCH = 200
JUDGE_ROUNDS = 5


@dataclass
class ClusterBenchmark:
    single_process: Stats
    cluster: Stats
    added_p50_ms: float
    judged_ms: float
    separate_ms: float
    judge_speedup: float
    queued: int
    completed: int
    failed: int
    lost: int
    queued_seconds: float

    def lines(self) -> list[str]:
        return [
            f"execute p50: single process {self.single_process.p50:.2f} ms, through the cluster "
            f"{self.cluster.p50:.2f} ms: +{self.added_p50_ms:.2f} ms (goal <= {GOAL_CLUSTER_ADDED_MS} ms)",
            f"execute p95: single process {self.single_process.p95:.2f} ms, cluster {self.cluster.p95:.2f} ms",
            f"rust, 10 tests (medians of {JUDGE_ROUNDS}): one judged submission {self.judged_ms:.0f} ms, 10 separate executes "
            f"{self.separate_ms:.0f} ms: {self.judge_speedup:.1f}x faster (goal >= {GOAL_JUDGE_SPEEDUP}x)",
            f"{self.queued} queued submissions through the cluster: {self.completed} done, {self.failed} failed, "
            f"{self.lost} lost, in {self.queued_seconds:.1f} s ({self.queued / self.queued_seconds:.0f}/s)",
        ]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})


def _latencies(single: OverHttp, cluster: OverHttp, requests: int) -> tuple[Stats, Stats]:
    samples: dict[int, list[float]] = {0: [], 1: []}
    for number in range(requests + 10):  # the first ten of each warm connections and caches
        for side, target in enumerate((single, cluster)):
            sample = target.execute("python", f"print({number})")
            if sample.stdout != f"{number}\n":
                raise SandboxError(f"benchmark: wrong answer {sample.stdout!r}")
            if number >= 10:
                samples[side].append(sample.end_to_end_ms)
    return Stats.of(samples[0]), Stats.of(samples[1])


def _judge_against_separate(url: str) -> tuple[float, float]:
    """Median milliseconds of a judged submission and of its ten separate executes, over
    ``JUDGE_ROUNDS`` rounds taken in turn, so both see the same machine."""
    tests = [{"stdin": str(n), "expected_output": str(n * n)} for n in range(10)]
    judged: list[float] = []
    separate: list[float] = []
    with httpx.Client(base_url=url, timeout=600) as client:
        for _ in range(JUDGE_ROUNDS):
            started = time.perf_counter()
            answer = client.post("/api/v1/submissions", params={"wait": "true"},
                                 json={"language": "rust", "code": RUST_PROGRAM, "tests": tests}).json()
            judged.append((time.perf_counter() - started) * 1000)
            if answer.get("result", {}).get("verdict") != "accepted":
                raise SandboxError(f"benchmark: the judged rust submission was not accepted: {answer}")
            started = time.perf_counter()
            for test in tests:
                answer = client.post("/api/v1/execute", json={"language": "rust", "code": RUST_PROGRAM,
                                                              "stdin": test["stdin"]}).json()
                if answer.get("stdout", "").strip() != test["expected_output"]:
                    raise SandboxError(f"benchmark: a separate rust execute answered {answer}")
            separate.append((time.perf_counter() - started) * 1000)
    return statistics.median(judged), statistics.median(separate)


def _queued(url: str, count: int) -> tuple[int, int, int, float]:
    """Done, failed and lost of ``count`` submissions, and the seconds until none was left running."""
    with httpx.Client(base_url=url, timeout=120) as client:
        started = time.perf_counter()
        ids: list[str] = []
        for first in range(0, count, BATCH):
            batch = [{"language": "python", "code": f"print({n})"} for n in range(first, min(count, first + BATCH))]
            answer = client.post("/api/v1/submissions/batch", json={"submissions": batch})
            if answer.status_code != 202:
                raise SandboxError(f"benchmark: a batch was refused: {answer.text}")
            ids += answer.json()["ids"]
        outcome: dict[str, dict[str, Any]] = {}

        def all_finished() -> bool:
            for index, submission_id in enumerate(ids):
                if submission_id in outcome:
                    continue
                answer = client.get(f"/api/v1/submissions/{submission_id}")
                if answer.status_code == 404:
                    outcome[submission_id] = {"status": "lost"}
                elif answer.json()["status"] in ("done", "failed"):
                    outcome[submission_id] = {**answer.json(), "index": index}
                else:
                    return False
            return True
        wait_until(all_finished, f"{count} submissions to finish", seconds=max(60.0, count))
        seconds = time.perf_counter() - started
    done = sum(1 for found in outcome.values()
               if found["status"] == "done" and found["result"]["stdout"] == f"{found['index']}\n")
    failed = sum(1 for found in outcome.values() if found["status"] == "failed")
    return done, failed, count - done - failed, seconds


def run_cluster_benchmark(backend: str | None, requests: int, submissions: int,
                          progress: Callable[[str], None]) -> ClusterBenchmark:
    if shutil.which("redis-server") is None:
        raise InvalidRequest("benchmark-cluster needs redis-server (apt-get install redis-server)")
    with tempfile.TemporaryDirectory(prefix="infra-operator-cluster-benchmark-") as folder:
        tmp = Path(folder)
        port = _free_port()
        url = f"redis://127.0.0.1:{port}/0"
        warm = {"INFRA_OPERATOR_POOL__PREWARM": '["python", "rust"]', "INFRA_OPERATOR_POOL__SIZE": "2"}
        processes = [_spawn(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", folder,
                             "--appendonly", "yes", "--appendfsync", "always", "--save", ""], tmp / "redis.log")]
        targets: list[OverHttp] = []
        try:
            progress("starting Redis, a worker, a single-process API and a cluster API")
            worker_argv = [sys.executable, "-m", "infra_operator", "worker", "--redis", url, "--id", "bench"]
            processes.append(_spawn(worker_argv + (["--backend", backend] if backend else []), tmp / "worker.log",
                                    warm))
            targets.append(OverHttp(backend, env={**warm, "INFRA_OPERATOR_SUBMISSIONS__STORE": str(tmp / "s.db")}))
            targets.append(OverHttp(None, args=["--redis", url]))
            single, cluster = targets
            single.wait_warm(["python", "rust"])
            wait_until(lambda: httpx.post(f"{cluster.url}/api/v1/execute", json={"language": "python", "code": "1"},
                                     timeout=60).json().get("sandbox_start") == "pool", "the worker's warm pool")
            progress(f"execute: {requests} each, interleaved")
            single_stats, cluster_stats = _latencies(single, cluster, requests)
            progress(f"rust with 10 tests: judged once against 10 executes, {JUDGE_ROUNDS} rounds")
            judged_ms, separate_ms = _judge_against_separate(single.url)
            progress(f"{submissions} queued submissions through the cluster")
            done, failed, lost, seconds = _queued(cluster.url, submissions)
        finally:
            for target in targets:
                target.close()
            for process in reversed(processes):
                stop_process(process)
    return ClusterBenchmark(
        single_process=single_stats, cluster=cluster_stats,
        added_p50_ms=round(cluster_stats.p50 - single_stats.p50, 3),
        judged_ms=round(judged_ms, 1), separate_ms=round(separate_ms, 1),
        judge_speedup=round(separate_ms / judged_ms, 2),
        queued=submissions, completed=done, failed=failed, lost=lost, queued_seconds=round(seconds, 2))


def write_cluster_json(result: ClusterBenchmark, path: Path) -> None:
    path.write_text(json.dumps(asdict(result), indent=2) + "\n")
