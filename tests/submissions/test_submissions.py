"""Submissions on a single server (no Redis): asynchronous, waited for, batched, judged,
kept across a killed server, forgotten after their retention, and limited per API key."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Server, require_images, start_server, stop_server, wait_for, write_fake_rootfs
from judgekit import JUDGED, JUDGED_LIMITS, JUDGED_TESTS, JUDGED_VERDICTS, RUST_STAMPED

from infra_operator.api._models import ExecuteResponse, JudgedResult, SubmissionView


def _env(tmp: Path, **settings: str) -> dict[str, str]:
    return {"INFRA_OPERATOR_SUBMISSIONS__STORE": str(tmp / "submissions.sqlite3"),
            **{f"INFRA_OPERATOR_SUBMISSIONS__{name.upper()}": value for name, value in settings.items()}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    require_images("python", "rust")
    tmp = tmp_path_factory.mktemp("submissions")
    running = start_server(tmp, env={**_env(tmp), "INFRA_OPERATOR_POOL__PREWARM": '["python"]',
                                     "INFRA_OPERATOR_POOL__SIZE": "2", "INFRA_OPERATOR_POOL__MAX_SIZE": "4"})
    try:
        yield running
    finally:
        stop_server(running)


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as session:
        yield session


def _finished(client: httpx.Client, submission_id: str, seconds: float = 120) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def done() -> bool:
        found.update(client.get(f"/api/v1/submissions/{submission_id}").json())
        return found["status"] in ("done", "failed")
    wait_for(done, f"submission {submission_id} to finish", seconds)
    return found


def documented(answer: httpx.Response) -> ExecuteResponse | JudgedResult | None:
    """A submission's result read through the model the API documents (OpenAPI), which
    requires every field it names."""
    return SubmissionView.model_validate(answer.json()).result


def test_asynchronous_then_polled(client: httpx.Client) -> None:
    answer = client.post("/api/v1/submissions", json={"language": "python", "code": "print(input()[::-1])",
                                                       "stdin": "abc"})
    assert answer.status_code == 202, answer.text
    assert set(answer.json()) == {"id", "status"} and answer.json()["status"] == "queued"
    finished = _finished(client, answer.json()["id"])
    assert finished["status"] == "done", finished
    assert finished["result"]["stdout"] == "cba\n" and finished["result"]["exit_code"] == 0
    assert finished["result"]["load_time"].endswith("ms")


def test_wait_answers_the_finished_submission(client: httpx.Client) -> None:
    answer = client.post("/api/v1/submissions", params={"wait": "true"},
                         json={"language": "python", "code": "print(6 * 7)"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "done" and answer.json()["result"]["stdout"] == "42\n"
    assert isinstance(documented(answer), ExecuteResponse)


def test_every_verdict_but_compile_and_internal(client: httpx.Client) -> None:
    answer = client.post("/api/v1/submissions", params={"wait": "true"}, json={
        "language": "python", "code": JUDGED, "tests": JUDGED_TESTS, **JUDGED_LIMITS})
    assert answer.status_code == 200, answer.text
    result = answer.json()["result"]
    assert [test["verdict"] for test in result["tests"]] == JUDGED_VERDICTS
    assert result["verdict"] == "wrong_answer"  # the first test that is not accepted
    first = result["tests"][0]
    assert first["stdout"] == "yes  \n\n\n" and first["exit_code"] == 0
    assert first["time_ms"] > 0 and first["memory_kb"] > 0
    assert result["tests"][2]["exit_code"] == 3
    assert isinstance(documented(answer), JudgedResult)


def test_compile_error(client: httpx.Client) -> None:
    answer = client.post("/api/v1/submissions", params={"wait": "true"}, json={
        "language": "rust", "code": "fn main() { let x: i32 = ; }", "tests": [{"stdin": "", "expected_output": ""}]})
    result = answer.json()["result"]
    assert result["verdict"] == "compile_error" and result["tests"][0]["verdict"] == "compile_error"
    assert "error" in result["compile_output"]
    assert isinstance(documented(answer), JudgedResult)


def test_rust_with_ten_tests_is_compiled_once(client: httpx.Client) -> None:
    tests = [{"stdin": str(n), "expected_output": str(2 * n)} for n in range(10)]
    answer = client.post("/api/v1/submissions", params={"wait": "true"},
                         json={"language": "rust", "code": RUST_STAMPED, "tests": tests})
    result = answer.json()["result"]
    assert result["verdict"] == "accepted", result
    assert [test["stdout"] for test in result["tests"]] == [f"{2 * n}\n" for n in range(10)]
    stamps = {test["stderr"] for test in result["tests"]}
    assert len(stamps) == 1, f"compiled more than once: {stamps}"


def test_a_batch_of_200_keeps_its_order(client: httpx.Client) -> None:
    batch = [{"language": "python", "code": f"print({n})"} for n in range(200)]
    answer = client.post("/api/v1/submissions/batch", json={"submissions": batch})
    assert answer.status_code == 202, answer.text
    ids = answer.json()["ids"]
    assert len(ids) == 200 and len(set(ids)) == 200
    outputs = [_finished(client, submission_id)["result"]["stdout"] for submission_id in ids]
    assert outputs == [f"{n}\n" for n in range(200)]


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"language": "cobol-2099", "code": "x"}, 404, "language not found"),
    ({"language": "python", "code": "x", "tests": []}, 400, "tests"),
    ({"language": "python", "code": "x", "tests": [{"stdin": "1"}]}, 400, "expected_output"),
    ({"language": "python", "code": "x", "timeout": 100000}, 400, "timeout"),
    ({"language": "python", "code": "x", "callback_url": "http://example.com/hook"}, 400, "signing secret"),
    ({"language": "python", "code": "x", "callback_url": "http://[::1/hook"}, 400, "callback_url"),
    ({"language": "python", "code": "x", "callback_url": "file:///etc/passwd"}, 400, "http or https"),
])
def test_bad_submissions_are_clear_errors(client: httpx.Client, body: dict[str, Any], status: int, words: str) -> None:
    answer = client.post("/api/v1/submissions", json=body)
    assert answer.status_code == status, answer.text
    assert words in answer.json()["error"]
    batch = client.post("/api/v1/submissions/batch", json={"submissions": [{"language": "python", "code": "1"}, body]})
    assert batch.status_code == status  # all or none


def test_an_unknown_submission_is_404(client: httpx.Client) -> None:
    answer = client.get("/api/v1/submissions/does-not-exist")
    assert answer.status_code == 404 and "submission not found" in answer.json()["error"]


def test_a_killed_server_loses_nothing_accepted(tmp_path: Path) -> None:
    require_images("python")
    env = _env(tmp_path, runners="1")
    first = start_server(tmp_path, env=env)
    try:
        with first.client() as client:
            batch = [{"language": "python", "code": f"import time; time.sleep(0.2); print({n})"} for n in range(10)]
            ids = client.post("/api/v1/submissions/batch", json={"submissions": batch}).json()["ids"]
            # Any of them: one runner takes them in turn, so one runs until the last is done.
            wait_for(lambda: any(client.get(f"/api/v1/submissions/{i}").json()["status"] == "running" for i in ids),
                     "a submission to run")
    finally:
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
    second = start_server(tmp_path, env=env)
    try:
        with second.client() as client:
            outputs = [_finished(client, submission_id)["result"]["stdout"] for submission_id in ids]
        assert outputs == [f"{n}\n" for n in range(10)]
        assert "were running when this server last stopped" in second.log_text()
    finally:
        stop_server(second)


def test_finished_submissions_are_forgotten_after_their_retention(tmp_path: Path) -> None:
    require_images("python")
    server = start_server(tmp_path, env=_env(tmp_path, retention_seconds="1"))
    try:
        with server.client() as client:
            done = client.post("/api/v1/submissions", params={"wait": "true"},
                               json={"language": "python", "code": "print(1)"}).json()
            assert done["status"] == "done"
            wait_for(lambda: client.get(f"/api/v1/submissions/{done['id']}").status_code == 404,
                     "the finished submission to be forgotten", seconds=30)
    finally:
        stop_server(server)


def test_internal_error_when_the_sandbox_cannot_start(tmp_path: Path) -> None:
    # A python image that is not an image (random bytes): accepted, then every sandbox fails.
    write_fake_rootfs(tmp_path / "data", "python", 1 << 20)
    server = start_server(tmp_path, env={**_env(tmp_path), "INFRA_OPERATOR_DATA_DIR": str(tmp_path / "data"),
                                         "INFRA_OPERATOR_BACKEND": "jail"})
    try:
        with server.client() as client:
            answer = client.post("/api/v1/submissions", params={"wait": "true"}, json={
                "language": "python", "code": "print(1)", "tests": [{"stdin": "", "expected_output": "1"}]})
            result = answer.json()["result"]
            assert result["verdict"] == "internal_error" and result["tests"][0]["verdict"] == "internal_error"
            plain = client.post("/api/v1/submissions", params={"wait": "true"},
                                json={"language": "python", "code": "print(1)"}).json()
            assert plain["status"] == "failed" and plain["error"]
    finally:
        stop_server(server)


def test_rate_limit_and_queue_caps_per_key(tmp_path: Path) -> None:
    require_images("python")
    keys = {"INFRA_OPERATOR_API_KEYS": json.dumps(["alice", "bob", "carol"])}
    server = start_server(tmp_path, env={**keys, **_env(tmp_path, rate_per_minute="3", max_queued_per_key="2",
                                                        max_queued="4", runners="1")})
    slow = {"language": "python", "code": "import time; time.sleep(30)", "timeout": 60}
    try:
        with server.client() as client:
            def post(key: str, body: dict[str, Any]) -> httpx.Response:
                return client.post("/api/v1/submissions", json=body, headers={"X-API-Key": key})
            # alice: two queued at most
            assert [post("alice", slow).status_code for _ in range(2)] == [202, 202]
            capped = post("alice", slow)
            assert capped.status_code == 429 and int(capped.headers["Retry-After"]) >= 1
            assert "queued" in capped.json()["error"]
            # bob is not limited by alice; the whole queue (4) fills with his second
            bobs = [post("bob", slow) for _ in range(2)]
            assert [answer.status_code for answer in bobs] == [202, 202]
            # and a submission is seen by the key that made it only
            mine = client.get(f"/api/v1/submissions/{bobs[0].json()['id']}", headers={"X-API-Key": "bob"})
            theirs = client.get(f"/api/v1/submissions/{bobs[0].json()['id']}", headers={"X-API-Key": "alice"})
            assert mine.status_code == 200 and theirs.status_code == 404
            full = post("carol", slow)
            assert full.status_code == 503 and int(full.headers["Retry-After"]) >= 1
    finally:
        stop_server(server)
    (tmp_path / "rated").mkdir()
    rated = start_server(tmp_path, env={**keys, **_env(tmp_path / "rated", rate_per_minute="3")})
    try:
        with rated.client() as client:
            quick = {"language": "python", "code": "print(1)"}
            statuses = [client.post("/api/v1/submissions", json=quick, headers={"X-API-Key": "carol"}).status_code
                        for _ in range(3)]
            assert statuses == [202, 202, 202]
            limited = client.post("/api/v1/submissions", json=quick, headers={"X-API-Key": "carol"})
            assert limited.status_code == 429 and "rate limit" in limited.json()["error"]
            assert 1 <= int(limited.headers["Retry-After"]) <= 61
            other = client.post("/api/v1/submissions", json=quick, headers={"X-API-Key": "alice"})
            assert other.status_code == 202
    finally:
        stop_server(rated)


def test_a_busy_host_delays_submissions_and_fails_none(tmp_path: Path) -> None:
    # One execution at a time and one waiting: four runners at once find the host full.
    require_images("python")
    server = start_server(tmp_path, env={**_env(tmp_path, runners="4"), "INFRA_OPERATOR_MAX_CONCURRENCY": "1",
                                         "INFRA_OPERATOR_MAX_QUEUE": "1"})
    try:
        with server.client() as client:
            batch = [{"language": "python", "code": f"import time; time.sleep(0.3); print({n})"} for n in range(6)]
            ids = client.post("/api/v1/submissions/batch", json={"submissions": batch}).json()["ids"]
            finished = [_finished(client, submission_id) for submission_id in ids]
        assert [f["status"] for f in finished] == ["done"] * 6, [f.get("error") for f in finished]
        assert [f["result"]["stdout"] for f in finished] == [f"{n}\n" for n in range(6)]
    finally:
        stop_server(server)
