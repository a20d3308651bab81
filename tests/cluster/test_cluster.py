"""The cluster, each part on its own "host": Redis, API processes and two workers, each in
a network namespace of the test's own with its own address (see tests/netns.py), joined
by Redis streams. Workers, API processes and Redis are killed and restarted under load;
nothing accepted is lost and nothing completes twice."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import redis
from conftest import DATA_DIR, require_images, stop_process, wait_for
from judgekit import JUDGED, JUDGED_LIMITS, JUDGED_TESTS, JUDGED_VERDICTS, RUST_STAMPED, SECRET, Receiver, signed
from netns import Network, redis_command, require_namespaces
from sessionkit import SSE, cell, events, held_by_a_slow_cell, open_session, read_events

from infra_operator.cluster import RedisStore, Router
from infra_operator.submissions import queued

SRC = Path(__file__).resolve().parents[2] / "src"
REDIS_PORT = 6379
API_PORT = 8080
KEY = "cluster-test-key"
RATE_KEY = "cluster-test-rate-key"
"""A key of its own for the rate-limit test: the others' submissions count against KEY."""
CAP_KEY = "cluster-test-cap-key"
"""A key of its own for the queue-cap test, whose per-key count starts at zero."""
HEADERS = {"X-API-Key": KEY}


@dataclass
class Cluster:
    network: Network
    tmp: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def redis_url(self) -> str:
        return f"redis://{self.network.hosts['redis']}:{REDIS_PORT}/0"

    def redis(self) -> redis.Redis:
        return redis.Redis(host=self.network.hosts["redis"], port=REDIS_PORT, socket_timeout=10)

    def _start(self, name: str, host: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        environment = {**os.environ, "PYTHONPATH": str(SRC), "INFRA_OPERATOR_DATA_DIR": str(DATA_DIR),
                       "INFRA_OPERATOR_API_KEYS": json.dumps([KEY, RATE_KEY, CAP_KEY]),
                       # Callbacks may reach the test's own address on the cluster's network.
                       "INFRA_OPERATOR_SUBMISSIONS__CALLBACK_SECRET": SECRET,
                       "INFRA_OPERATOR_SUBMISSIONS__CALLBACK_ALLOW": json.dumps([f"{self.network.subnet}.0/24"]),
                       **(env or {})}
        with (self.tmp / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(self.network.command(host, argv), stdout=log,
                                                    stderr=subprocess.STDOUT, env=environment)

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def start_redis(self) -> None:
        (self.tmp / "redis").mkdir(exist_ok=True)
        self._start("redis", "redis", redis_command(self.tmp / "redis", self.network.hosts["redis"], REDIS_PORT))
        wait_for(lambda: _answers(self.redis()), "redis to answer")

    def start_worker(self, name: str, env: dict[str, str]) -> None:
        self._start(name, name, [sys.executable, "-m", "infra_operator", "worker", "--redis", self.redis_url,
                                 "--id", name, "--claim-idle", "3"], env)
        wait_for(lambda: self.redis().exists(f"infra-operator:worker:{name}"), f"worker {name} to advertise")

    def start_api(self, name: str, env: dict[str, str] | None = None) -> str:
        address = self.network.hosts["api"]
        port = API_PORT + len([p for p in self.processes if p.startswith("api")])
        self._start(name, "api", [sys.executable, "-m", "infra_operator", "api", "--redis", self.redis_url,
                                  "--host", address, "--port", str(port)], env)
        url = f"http://{address}:{port}"

        def healthy() -> bool:
            process = self.processes[name]
            assert process.poll() is None, self.log(name)[-2000:]
            try:
                return httpx.get(f"{url}/health", timeout=2).status_code == 200
            except httpx.TransportError:
                return False
        wait_for(healthy, f"API {name} to answer")
        return url

    def kill(self, name: str, number: int = signal.SIGKILL) -> None:
        process = self.processes.pop(name)
        process.send_signal(number)
        process.wait(timeout=60)

    def stop_all(self) -> None:
        for name in list(self.processes):
            stop_process(self.processes.pop(name))


def _value(client: redis.Redis, key: str) -> bytes | None:
    return cast("bytes | None", client.get(key))


def _unfinished(cluster: Cluster) -> int:
    return int(cast("bytes | None", cluster.redis().hget("infra-operator:unfinished", "*")) or 0)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


WORKER_ENV = {
    # w1 keeps python ready; w2 keeps nothing ready, so an execute that reaches w2 shows in its answer.
    "w1": {"INFRA_OPERATOR_POOL__PREWARM": '["python"]', "INFRA_OPERATOR_POOL__SIZE": "2",
           "INFRA_OPERATOR_MAX_CONCURRENCY": "2"},
    "w2": {"INFRA_OPERATOR_POOL__PREWARM": "[]", "INFRA_OPERATOR_POOL__SIZE": "0", "INFRA_OPERATOR_POOL__MAX_SIZE": "0",
           "INFRA_OPERATOR_MAX_CONCURRENCY": "2"},
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_namespaces()
    require_images("python", "rust")
    network = Network()
    running = Cluster(network, tmp_path_factory.mktemp("cluster"))
    try:
        network.create()
        for host in ("redis", "api", "w1", "w2"):
            network.add_host(host)
        running.start_redis()
        for name, env in WORKER_ENV.items():
            running.start_worker(name, env)
        yield running
    finally:
        running.stop_all()
        network.destroy()


@pytest.fixture(scope="module")
def api(cluster: Cluster) -> Iterator[httpx.Client]:
    url = cluster.start_api("api")
    with httpx.Client(base_url=url, headers=HEADERS, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def api_b(cluster: Cluster) -> Iterator[httpx.Client]:
    """A second API process: what one of them starts, the other must reach."""
    url = cluster.start_api("api-b")
    with httpx.Client(base_url=url, headers=HEADERS, timeout=120) as client:
        yield client


def _finished(client: httpx.Client, ids: list[str], seconds: float = 180) -> list[dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}

    def all_done() -> bool:
        for submission_id in ids:
            if submission_id not in found:
                answer = client.get(f"/api/v1/submissions/{submission_id}")
                if answer.status_code == 200 and answer.json()["status"] in ("done", "failed"):
                    found[submission_id] = answer.json()
        return len(found) == len(ids)
    wait_for(all_done, f"{len(ids)} submissions to finish", seconds)
    return [found[submission_id] for submission_id in ids]


def test_an_execute_goes_to_the_worker_with_a_warm_pool(api: httpx.Client, cluster: Cluster) -> None:
    wait_for(lambda: json.loads(_value(cluster.redis(), "infra-operator:worker:w1") or b"{}").get("free") == 2,
             "w1 to advertise its room")
    answers = [api.post("/api/v1/execute", json={"language": "python", "code": f"print({n} * 2)"}) for n in range(6)]
    assert [a.status_code for a in answers] == [200] * 6, answers[0].text
    assert [a.json()["stdout"] for a in answers] == [f"{n * 2}\n" for n in range(6)]
    assert {a.json()["worker"] for a in answers} == {"w1"}
    # No worker keeps rust warm: any worker with the image answers, through the shared stream.
    rust = api.post("/api/v1/execute", json={"language": "rust", "code": 'fn main() { println!("hi"); }'})
    assert rust.status_code == 200 and rust.json()["stdout"] == "hi\n", rust.text


def test_the_contract_client_works_through_the_cluster(api: httpx.Client) -> None:
    answer = api.post("/api/v1/execute", json={"language": "python", "code": "print(2 ** 10)", "timeout": 30})
    assert answer.status_code == 200 and answer.json()["stdout"] == "1024\n"
    unknown = api.post("/api/v1/execute", json={"language": "no-such-language", "code": "x"})
    assert unknown.status_code == 404 and "language not found" in unknown.json()["error"]


def test_a_rust_submission_with_ten_tests_is_compiled_once_on_a_worker(api: httpx.Client) -> None:
    tests = [{"stdin": str(n), "expected_output": str(2 * n)} for n in range(10)]
    answer = api.post("/api/v1/submissions", params={"wait": "true"},
                      json={"language": "rust", "code": RUST_STAMPED, "tests": tests})
    assert answer.status_code == 200, answer.text
    result = answer.json()["result"]
    assert result["verdict"] == "accepted" and len(result["tests"]) == 10, result
    assert len({test["stderr"] for test in result["tests"]}) == 1, "compiled more than once"
    assert answer.json()["worker"] in ("w1", "w2")


def test_every_verdict_and_a_signed_callback_through_the_cluster(cluster: Cluster, api: httpx.Client) -> None:
    here = f"{cluster.network.subnet}.254"  # the test's own end of the cluster's network
    receiver = Receiver(address=here)
    try:
        judged = api.post("/api/v1/submissions", params={"wait": "true"}, json={
            "language": "python", "code": JUDGED, "tests": JUDGED_TESTS, **JUDGED_LIMITS,
            "callback_url": f"http://{here}:{receiver.port}/hook"})
        assert judged.status_code == 200, judged.text
        result = judged.json()["result"]
        assert [test["verdict"] for test in result["tests"]] == JUDGED_VERDICTS, result
        assert result["verdict"] == "wrong_answer"
        wait_for(lambda: receiver.received, "the worker's callback")
    finally:
        receiver.close()
    headers, body = receiver.received[0]
    assert signed(headers, body)
    assert json.loads(body)["id"] == judged.json()["id"] and json.loads(body)["result"] == result
    broken = api.post("/api/v1/submissions", params={"wait": "true"}, json={
        "language": "rust", "code": "fn main() { let x: i32 = ; }", "tests": [{"stdin": "", "expected_output": ""}]})
    assert broken.json()["result"]["verdict"] == "compile_error", broken.text
    # Loopback, private, link-local and metadata addresses, also by name, are refused before anything is queued.
    for url in ("http://127.0.0.1:9/", "http://localhost:9/", "http://10.1.2.3/", "http://169.254.169.254/"):
        refused = api.post("/api/v1/submissions", json={"language": "python", "code": "1", "callback_url": url})
        assert refused.status_code == 400, (url, refused.text)


def test_a_batch_of_200_is_shared_by_the_workers(api: httpx.Client, cluster: Cluster) -> None:
    batch = [{"language": "python", "code": f"print({n})"} for n in range(200)]
    answer = api.post("/api/v1/submissions/batch", json={"submissions": batch})
    assert answer.status_code == 202, answer.text
    finished = _finished(api, answer.json()["ids"])
    assert [f["result"]["stdout"] for f in finished] == [f"{n}\n" for n in range(200)]
    assert {f["worker"] for f in finished} == {"w1", "w2"}
    assert all(f["attempts"] == 1 for f in finished)
    wait_for(lambda: _unfinished(cluster) == 0,
             "the count of unfinished submissions to come back to zero")


def test_completion_counts_once(cluster: Cluster) -> None:
    client = cluster.redis()
    store = RedisStore(client, Router(client), retention_seconds=60)
    # A language no worker has: its stream is read by nobody, so only this test starts the submission.
    submission = queued("idempotence-test", {"language": "no-worker-has-this", "code": "print(1)"}, None, None)
    store.add([submission])
    first, second = store.start(submission["id"], "a"), store.start(submission["id"], "b")
    assert first is not None and second is not None and second["attempts"] == 2
    assert store.unfinished("idempotence-test") == 1
    assert store.finish(second, ("done", {"stdout": "b"}, None)) is not None
    assert store.finish(first, ("done", {"stdout": "a"}, None)) is None  # the runner that lost
    kept = store.get(submission["id"])
    assert kept is not None and kept["result"] == {"stdout": "b"}
    assert store.unfinished("idempotence-test") == 0
    assert store.start(submission["id"], "c") is None  # finished: not run again
    client.delete("infra-operator:work:no-worker-has-this")


def test_a_finish_wakes_a_request_waiting_on_another_api_process(cluster: Cluster) -> None:
    client = cluster.redis()
    store = RedisStore(client, Router(client), retention_seconds=60)
    submission = queued("wake-test", {"language": "no-worker-has-this", "code": "print(1)"}, None, None)
    store.add([submission])
    started = store.start(submission["id"], "a")
    assert started is not None
    with ThreadPoolExecutor(1) as background:
        # A minute's wait, ended by the finish: a bound on waiting, never a timing assertion.
        waiting = background.submit(store.wait_finished, submission["id"], 60.0)
        store.finish(started, ("done", {"stdout": "1\n"}, None))
        waiting.result(timeout=10)
    client.delete("infra-operator:work:no-worker-has-this")


def test_work_whose_workers_kept_dying_ends_failed_with_the_reason(cluster: Cluster, api: httpx.Client) -> None:
    client = cluster.redis()
    # As a submission whose three runners were killed would be found by a fourth.
    owner = hashlib.sha256(KEY.encode()).hexdigest()[:32]  # as the API names KEY's submissions
    submission = queued(owner, {"language": "python", "code": "print(1)"}, None, None)
    submission["attempts"] = 3
    RedisStore(client, Router(client), retention_seconds=60).add([submission])
    [finished] = _finished(api, [submission["id"]])
    assert finished["status"] == "failed" and "stopped 3 times" in finished["error"], finished
    assert "result" not in finished


def test_an_api_process_killed_loses_nothing(cluster: Cluster, api: httpx.Client) -> None:
    doomed = cluster.start_api("api-doomed")
    batch = [{"language": "python", "code": f"import time; time.sleep(0.3); print({n})"} for n in range(12)]
    with httpx.Client(base_url=doomed, headers=HEADERS, timeout=60) as client:
        answer = client.post("/api/v1/submissions/batch", json={"submissions": batch})
    assert answer.status_code == 202
    cluster.kill("api-doomed")
    finished = _finished(api, answer.json()["ids"])  # asked of another API process
    assert [f["result"]["stdout"] for f in finished] == [f"{n}\n" for n in range(12)]


def test_redis_restarted_loses_nothing(cluster: Cluster, api: httpx.Client) -> None:
    batch = [{"language": "python", "code": f"import time; time.sleep(0.3); print({n})"} for n in range(16)]
    ids = api.post("/api/v1/submissions/batch", json={"submissions": batch}).json()["ids"]
    wait_for(lambda: any(api.get(f"/api/v1/submissions/{i}").json()["status"] != "queued" for i in ids),
             "a submission to start")
    cluster.kill("redis")
    down = api.get(f"/api/v1/submissions/{ids[0]}")
    assert down.status_code == 503 and "Redis" in down.json()["error"] and down.headers["Retry-After"]
    cluster.start_redis()
    finished = _finished(api, ids)
    assert [f["status"] for f in finished] == ["done"] * 16
    assert [f["result"]["stdout"] for f in finished] == [f"{n}\n" for n in range(16)]


def test_rate_limits_hold_across_api_processes(cluster: Cluster) -> None:
    limited = {"INFRA_OPERATOR_SUBMISSIONS__RATE_PER_MINUTE": "3"}
    urls = [cluster.start_api("api-rate-1", limited), cluster.start_api("api-rate-2", limited)]
    key = {"X-API-Key": RATE_KEY}
    body = {"language": "python", "code": "print(1)"}
    # The window is a clock minute: start where all four requests fall in one.
    wait_for(lambda: time.time() % 60 < 50, "a minute with room for the test", seconds=15)
    try:
        statuses = [httpx.post(f"{urls[n % 2]}/api/v1/submissions", json=body, headers=key, timeout=30).status_code
                    for n in range(3)]
        refused = httpx.post(f"{urls[1]}/api/v1/submissions", json=body, headers=key, timeout=30)
    finally:
        cluster.kill("api-rate-1", signal.SIGTERM)
        cluster.kill("api-rate-2", signal.SIGTERM)
    assert statuses == [202, 202, 202]
    assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 61, refused.text


def test_queue_caps_count_the_whole_clusters_submissions(cluster: Cluster) -> None:
    wait_for(lambda: _unfinished(cluster) == 0, "the earlier tests' submissions to finish")
    url = cluster.start_api("api-queue-capped", {"INFRA_OPERATOR_SUBMISSIONS__MAX_QUEUED": "3",
                                                 "INFRA_OPERATOR_SUBMISSIONS__MAX_QUEUED_PER_KEY": "2"})
    slow = {"language": "python", "code": "import time; time.sleep(6); print('done')"}

    def submit(key: str, count: int) -> httpx.Response:
        return httpx.post(f"{url}/api/v1/submissions/batch", json={"submissions": [slow] * count},
                          headers={"X-API-Key": key}, timeout=30)
    try:
        assert submit(CAP_KEY, 4).status_code == 503  # more than the whole queue holds
        too_many = submit(CAP_KEY, 3)
        assert too_many.status_code == 429 and too_many.headers["Retry-After"], too_many.text
        assert _unfinished(cluster) == 0, "a refused batch was queued"
        first = submit(CAP_KEY, 2)
        assert first.status_code == 202, first.text
        # While those two wait or run (6 s), the per-key cap and then the whole queue are full.
        assert submit(CAP_KEY, 1).status_code == 429
        other = submit(KEY, 1)
        assert other.status_code == 202, other.text
        full = submit(KEY, 1)
        assert full.status_code == 503 and "queue is full" in full.json()["error"] and full.headers["Retry-After"]
        with httpx.Client(base_url=url, headers={"X-API-Key": CAP_KEY}, timeout=60) as client:
            assert [f["result"]["stdout"] for f in _finished(client, first.json()["ids"])] == ["done\n"] * 2
    finally:
        cluster.kill("api-queue-capped", signal.SIGTERM)
    wait_for(lambda: _unfinished(cluster) == 0, "the queue to empty")


def test_a_full_cluster_refuses_executes_and_loses_none_it_took(cluster: Cluster) -> None:
    # The two workers run 2 executes each, and 2 more may wait: the seventh of seven sent at
    # once, each running 6 s, is refused.
    url = cluster.start_api("api-execute-capped", {"INFRA_OPERATOR_MAX_QUEUE": "2"})
    body = {"language": "python", "code": "import time; time.sleep(6); print('ran')"}

    def send(_: int) -> httpx.Response:
        return httpx.post(f"{url}/api/v1/execute", json=body, headers=HEADERS, timeout=120)
    try:
        with ThreadPoolExecutor(7) as senders:
            answers = list(senders.map(send, range(7)))
    finally:
        cluster.kill("api-execute-capped", signal.SIGTERM)
    ran = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code == 503]
    # Six when both workers advertise (4 + 2), four if one's advertisement lapsed under load.
    assert len(ran) in (4, 6) and len(ran) + len(refused) == 7, [a.text for a in answers]
    assert all(a.json()["stdout"] == "ran\n" for a in ran)
    assert "waiting for a worker" in refused[0].json()["error"] and refused[0].headers["Retry-After"]
    assert cluster.redis().zcard("infra-operator:unanswered-executes") == 0, "an answered execute still counts"


def test_a_live_worker_keeps_a_run_longer_than_the_claim_idle_time(api: httpx.Client) -> None:
    # The workers take over entries idle for 3 s (--claim-idle 3); this one runs 5 s on a live worker.
    answer = api.post("/api/v1/submissions", params={"wait": "true"},
                      json={"language": "python", "code": "import time; time.sleep(5); print('once')"})
    assert answer.json()["status"] == "done" and answer.json()["result"]["stdout"] == "once\n"
    assert answer.json()["attempts"] == 1, "a live worker's run was taken over"


def _advert(cluster: Cluster, worker: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(_value(cluster.redis(), f"infra-operator:worker:{worker}") or b"{}")
    return found


def _sessions_held(cluster: Cluster, worker: str) -> int:
    return int(_advert(cluster, worker).get("sessions", -1))


def test_a_session_stays_on_its_worker_whichever_api_process_is_asked(
        cluster: Cluster, api: httpx.Client, api_b: httpx.Client) -> None:
    session_id = open_session(api)
    try:
        first = cell(api_b, session_id, "x = 41")
        worker = first["worker"]
        assert worker in ("w1", "w2"), first
        second = cell(api, session_id, "print(x + 1)")
        assert second["stdout"] == "42\n" and second["worker"] == worker, second
        wait_for(lambda: _sessions_held(cluster, worker) == 1, f"{worker} to advertise the session it holds")
        # Past one piece (1 MiB) each way: the file crosses Redis in several calls.
        content = os.urandom((1 << 20) + 12345)
        put = api_b.put(f"/api/v1/sessions/{session_id}/files/data/blob.bin", content=content)
        assert put.status_code == 201 and put.json() == {"path": "data/blob.bin", "size": len(content)}, put.text
        got = api.get(f"/api/v1/sessions/{session_id}/files/data/blob.bin")
        assert got.status_code == 200 and got.content == content
        read = cell(api_b, session_id, "import os; print(os.path.getsize('data/blob.bin'))")
        assert read["stdout"] == f"{len(content)}\n" and read["worker"] == worker
        # The worker runs calls side by side: one to the session while its cell runs is refused, not queued.
        with held_by_a_slow_cell(api, session_id, wait_seconds=10):
            assert api_b.get(f"/api/v1/sessions/{session_id}/files").status_code == 409
            busy = api_b.post(f"/api/v1/sessions/{session_id}/execute", json={"code": "print(1)"})
            assert busy.status_code == 409, busy.text
        listed = api.get(f"/api/v1/sessions/{session_id}/files").json()["files"]
        assert {"path": "data/blob.bin", "size": len(content), "type": "file"} in listed
        assert api.get(f"/api/v1/sessions/{session_id}/files/no-such-file").status_code == 404
        assert api_b.delete(f"/api/v1/sessions/{session_id}/files/data/blob.bin").status_code == 204
        assert api.get(f"/api/v1/sessions/{session_id}/files/data/blob.bin").status_code == 404
        shown = api_b.get(f"/api/v1/sessions/{session_id}")
        assert shown.status_code == 200 and shown.json()["id"] == session_id
        # Pause is routed to the worker as any call: on the jail it answers the worker's 409.
        refused = api.post(f"/api/v1/sessions/{session_id}/pause")
        assert refused.status_code == 409 and "cannot pause" in refused.json()["error"], refused.text
        assert session_id in [s["id"] for s in api_b.get("/api/v1/sessions").json()["sessions"]]
    finally:
        deleted = api_b.delete(f"/api/v1/sessions/{session_id}")
    assert deleted.status_code == 204
    assert api.get(f"/api/v1/sessions/{session_id}").status_code == 404
    assert api.post(f"/api/v1/sessions/{session_id}/execute", json={"code": "1"}).status_code == 404
    assert api.post(f"/api/v1/sessions/{session_id}/pause").status_code == 404
    assert session_id not in [s["id"] for s in api.get("/api/v1/sessions").json()["sessions"]]
    assert not cluster.redis().exists(f"infra-operator:session:{session_id}")
    wait_for(lambda: _sessions_held(cluster, worker) == 0, f"{worker} to advertise it holds no session")


def test_two_sessions_go_to_different_workers(cluster: Cluster, api: httpx.Client, api_b: httpx.Client) -> None:
    first = open_session(api)
    try:
        held = cell(api, first, "print('here')")["worker"]
        other = {"w1": "w2", "w2": "w1"}[held]
        wait_for(lambda: _sessions_held(cluster, held) > _sessions_held(cluster, other) >= 0,
                 f"{held} to advertise more sessions than {other}")
        second = open_session(api_b)  # the worker with fewer sessions is chosen
        try:
            assert cell(api, second, "print('there')")["worker"] == other
        finally:
            assert api.delete(f"/api/v1/sessions/{second}").status_code == 204
    finally:
        assert api_b.delete(f"/api/v1/sessions/{first}").status_code == 204


def test_a_cell_streams_through_the_cluster_and_a_client_that_leaves_interrupts_it(
        api: httpx.Client, api_b: httpx.Client) -> None:
    session_id = open_session(api)
    try:
        code = "import time\nprint('a', flush=True)\ntime.sleep(1)\nprint('b', flush=True)"
        heard = events(api_b, f"/api/v1/sessions/{session_id}/execute", {"code": code})
        assert {name for name, _, _ in heard[:-1]} == {"stdout"}, heard
        assert "".join(data["data"] for _, data, _ in heard[:-1]) == "a\nb\n"
        name, result, ended = heard[-1]
        assert name == "result" and result["stdout"] == "a\nb\n" and result["worker"] in ("w1", "w2"), heard
        assert ended - heard[0][2] >= 0.5, "the first line came only with the answer"
        # A client that leaves mid-cell interrupts it on its worker: the session answers again at once.
        cell(api, session_id, "kept = 1")
        long_cell = {"code": "import time\nprint('on', flush=True)\ntime.sleep(280)", "timeout": 290}
        with api.stream("POST", f"/api/v1/sessions/{session_id}/execute", json=long_cell, headers=SSE) as response:
            assert response.status_code == 200
            assert next(read_events(response))[0] == "stdout"

        def answered() -> bool:
            after = api_b.post(f"/api/v1/sessions/{session_id}/execute", json={"code": "print(kept)"})
            return after.status_code == 200 and after.json()["stdout"] == "1\n"
        wait_for(answered, "the session to answer with its names after its client left", seconds=30)
    finally:
        assert api_b.delete(f"/api/v1/sessions/{session_id}").status_code == 204


def test_a_plain_execute_streams_through_the_cluster_and_a_client_that_leaves_stops_it(
        cluster: Cluster, api: httpx.Client) -> None:
    code = "import time\nprint('a', flush=True)\ntime.sleep(1)\nprint('b', flush=True)"
    heard = events(api, "/api/v1/execute", {"language": "python", "code": code})
    assert [name for name, _, _ in heard[:-1]] and {name for name, _, _ in heard[:-1]} == {"stdout"}, heard
    assert "".join(data["data"] for _, data, _ in heard[:-1]) == "a\nb\n"
    name, result, ended = heard[-1]
    assert name == "result" and result["stdout"] == "a\nb\n" and result["worker"] in ("w1", "w2"), heard
    assert ended - heard[0][2] >= 0.5, "the first line came only with the answer"
    long_run = {"language": "python", "code": "import time\nprint('on', flush=True)\ntime.sleep(280)", "timeout": 290}
    with api.stream("POST", "/api/v1/execute", json=long_run, headers=SSE) as response:
        assert response.status_code == 200
        assert next(read_events(response))[0] == "stdout"
    # Left to run, it would hold its worker's runner for 280 s; stopped, the runner is free again.
    wait_for(lambda: all(_advert(cluster, w).get("free") == 2 for w in ("w1", "w2")),
             "the run to stop on its worker once its client left", seconds=30)
    wait_for(lambda: cluster.redis().zcard("infra-operator:unanswered-executes") == 0,
             "the stopped run to be answered")


def test_another_key_cannot_see_a_session(api: httpx.Client, api_b: httpx.Client) -> None:
    session_id = open_session(api)
    other = {"X-API-Key": RATE_KEY}
    try:
        cell(api, session_id, "secret = 7")
        path = f"/api/v1/sessions/{session_id}"
        assert api_b.get(path, headers=other).status_code == 404
        assert api_b.post(f"{path}/execute", json={"code": "print(secret)"}, headers=other).status_code == 404
        assert api_b.put(f"{path}/files/a.txt", content=b"x", headers=other).status_code == 404
        assert api_b.get(f"{path}/files", headers=other).status_code == 404
        assert api_b.delete(path, headers=other).status_code == 404
        assert session_id not in [s["id"] for s in api_b.get("/api/v1/sessions", headers=other).json()["sessions"]]
        # None of that touched it: its own key still has it, names and all.
        assert cell(api_b, session_id, "print(secret)")["stdout"] == "7\n"
    finally:
        assert api.delete(f"/api/v1/sessions/{session_id}").status_code == 204


def test_a_session_whose_worker_was_killed_answers_404(
        cluster: Cluster, api: httpx.Client, api_b: httpx.Client) -> None:
    session_id = open_session(api)
    worker = cell(api, session_id, "x = 1")["worker"]
    cluster.kill(worker)
    try:
        wait_for(lambda: not cluster.redis().exists(f"infra-operator:worker:{worker}"),
                 f"the advertisement of the killed {worker} to expire", seconds=30)
        gone = api_b.post(f"/api/v1/sessions/{session_id}/execute", json={"code": "print(x)"})
        assert gone.status_code == 404 and f"its worker {worker} is gone" in gone.json()["error"], gone.text
        assert not cluster.redis().exists(f"infra-operator:session:{session_id}")
        assert api.get(f"/api/v1/sessions/{session_id}").status_code == 404
        assert session_id not in [s["id"] for s in api.get("/api/v1/sessions").json()["sessions"]]
    finally:
        cluster.start_worker(worker, WORKER_ENV[worker])


def test_a_worker_killed_mid_batch_loses_nothing_and_doubles_nothing(cluster: Cluster, api: httpx.Client) -> None:
    batch = [{"language": "python", "code": f"import time; time.sleep(1); print({n})"} for n in range(12)]
    ids = api.post("/api/v1/submissions/batch", json={"submissions": batch}).json()["ids"]

    def running_on_w2() -> bool:
        return any(s["status"] == "running" and s["worker"] == "w2"
                   for s in (api.get(f"/api/v1/submissions/{i}").json() for i in ids))
    wait_for(running_on_w2, "w2 to be running a submission")
    cluster.kill("w2")
    finished = _finished(api, ids)
    assert [f["status"] for f in finished] == ["done"] * 12, [f.get("error") for f in finished]
    assert [f["result"]["stdout"] for f in finished] == [f"{n}\n" for n in range(12)]
    rerun = [f for f in finished if f["attempts"] > 1]
    assert rerun, "nothing was taken over from the killed worker"
    assert all(f["worker"] == "w1" for f in rerun)
    assert "took over" in cluster.log("w1")
    wait_for(lambda: _unfinished(cluster) == 0,
             "every submission to be counted finished exactly once")


def test_a_drained_worker_finishes_what_it_runs_and_a_new_one_takes_the_rest(
        cluster: Cluster, api: httpx.Client) -> None:
    # After the previous test only w1 is left: drain it mid-batch, then add a worker.
    batch = [{"language": "python", "code": f"import time; time.sleep(1); print({n})"} for n in range(6)]
    ids = api.post("/api/v1/submissions/batch", json={"submissions": batch}).json()["ids"]
    wait_for(lambda: any(api.get(f"/api/v1/submissions/{i}").json()["status"] == "running" for i in ids),
             "w1 to be running a submission")
    process = cluster.processes.pop("w1")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0, cluster.log("w1")[-2000:]
    assert not cluster.redis().exists("infra-operator:worker:w1")
    states = [api.get(f"/api/v1/submissions/{i}").json() for i in ids]
    assert "running" not in {s["status"] for s in states}, states  # what it ran, it finished
    assert any(s["status"] == "done" for s in states) and any(s["status"] == "queued" for s in states)
    cluster.start_worker("w2", WORKER_ENV["w2"])  # a new worker, on the host of the one killed before
    finished = _finished(api, ids)
    assert [f["result"]["stdout"] for f in finished] == [f"{n}\n" for n in range(6)]
    assert all(f["attempts"] == 1 for f in finished)  # a drain never makes work run again
