"""What a real server tells its operators: ``GET /metrics`` (Prometheus text, read back with
prometheus-client's own parser) and one JSON log line per request, with its ``X-Request-ID``."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from conftest import Server, failing_builds, free_port, require_images, start_server, stop_server, wait_for
from prometheus_client.parser import text_string_to_metric_families

from infra_operator.api import create_app
from infra_operator.config import Settings
from infra_operator.services import Services

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
PYTHON_JAIL = {"language": "python", "backend": "jail"}


def scrape(client: httpx.Client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def execute(client: httpx.Client, code: str, **fields: object) -> httpx.Response:
    response = client.post("/api/v1/execute", json={"language": "python", "code": code, **fields})
    assert response.status_code == 200, response.text
    return response


def request_lines(server: Server) -> list[dict[str, Any]]:
    """The server's request log: every line that is a JSON object, each parsed whole."""
    lines = [line for line in server.log_text().splitlines() if line.startswith("{")]
    return [json.loads(line) for line in lines]


def logged(server: Server, request_id: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    def appeared() -> bool:  # written once the answer is sent, so maybe just after the client has it
        found[:] = [line for line in request_lines(server) if line["request_id"] == request_id]
        return bool(found)

    wait_for(appeared, f"the log line of request {request_id}")
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    require_images("python")
    running = start_server(tmp_path_factory.mktemp("observed"), env={
        "INFRA_OPERATOR_BACKEND": "jail", "INFRA_OPERATOR_POOL__SIZE": "1", "INFRA_OPERATOR_POOL__MAX_SIZE": "1",
        "INFRA_OPERATOR_POOL__PREWARM": '["python"]'})
    try:
        yield running
    finally:
        stop_server(running)


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as session:
        yield session


OUTCOMES = [
    ("ok", "print(1)", {}),
    ("nonzero_exit", "import sys; sys.exit(3)", {}),
    ("signal", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)", {}),
    ("timed_out", "while True: pass", {"timeout": 1}),
]


@pytest.mark.parametrize(("outcome", "code", "fields"), OUTCOMES, ids=[o[0] for o in OUTCOMES])
def test_an_execution_is_counted_by_language_backend_and_outcome(
        client: httpx.Client, outcome: str, code: str, fields: dict[str, object]) -> None:
    before = scrape(client)
    execute(client, code, **fields)
    after = scrape(client)
    name = "infra_operator_executions_total"
    assert value(after, name, **PYTHON_JAIL, outcome=outcome) == value(before, name, **PYTHON_JAIL, outcome=outcome) + 1
    others = {key for key in after if key[0] == name and ("outcome", outcome) not in key[1]}
    assert all(after[key] == before.get(key, 0.0) for key in others), "only the one outcome moved"


@pytest.mark.parametrize(("accept", "format_"), [
    ("application/openmetrics-text; version=1.0.0", "application/openmetrics-text"),
    ("application/openmetrics-text; version=x", "text/plain"),  # malformed: the plain format, not a 500
    ("*/*", "text/plain"),
])
def test_the_format_follows_the_accept_header(client: httpx.Client, accept: str, format_: str) -> None:
    response = client.get("/metrics", headers={"Accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(format_)
    assert "infra_operator_queue_waiting" in response.text


def test_a_refused_request_is_no_execution(client: httpx.Client) -> None:
    before = scrape(client)
    assert client.post("/api/v1/execute", json={"language": "no-such-language", "code": "x"}).status_code == 404
    after = scrape(client)
    counted = {key: v for key, v in after.items() if key[0] == "infra_operator_executions_total"}
    assert counted == {key: v for key, v in before.items() if key[0] == "infra_operator_executions_total"}


def test_latency_histograms_count_every_execution(client: httpx.Client) -> None:
    names = ["infra_operator_execution_load_seconds", "infra_operator_execution_exec_seconds",
             "infra_operator_execution_end_to_end_seconds"]
    before = scrape(client)
    for _ in range(3):
        execute(client, "print(2)")
    after = scrape(client)
    for name in names:
        assert value(after, f"{name}_count", **PYTHON_JAIL) == value(before, f"{name}_count", **PYTHON_JAIL) + 3
        assert value(after, f"{name}_bucket", **PYTHON_JAIL, le="+Inf") == value(after, f"{name}_count", **PYTHON_JAIL)
    sums = [value(after, f"{name}_sum", **PYTHON_JAIL) - value(before, f"{name}_sum", **PYTHON_JAIL) for name in names]
    load, run, end_to_end = sums
    assert run > 0
    assert end_to_end >= load + run, "the whole request holds its loading and its run"


def test_ready_sandboxes_and_the_queue_are_read_at_scrape_time(client: httpx.Client) -> None:
    def ready() -> float:  # the default release's pool: keys name the release (language=python,release=trixie)
        return sum(value for (name, labels), value in scrape(client).items()
                   if name == "infra_operator_pool_ready_sandboxes" and dict(labels).get("backend") == "jail"
                   and dict(labels).get("key", "").split(",")[0] == "language=python")

    wait_for(lambda: ready() == 1.0, "the pre-warmed python sandbox to show")
    samples = scrape(client)
    assert samples[("infra_operator_queue_waiting", frozenset())] == 0.0
    assert samples[("infra_operator_executions_running", frozenset())] == 0.0


def test_a_sessions_cell_is_counted_as_an_execution(client: httpx.Client) -> None:
    created = client.post("/api/v1/sessions", json={"language": "python"})
    assert created.status_code == 201, created.text
    cells = f"/api/v1/sessions/{created.json()['id']}/execute"
    try:
        before = scrape(client)
        for code, outcome in (("x = 1", "ok"), ("raise SystemExit(3)", "nonzero_exit")):
            assert client.post(cells, json={"code": code}).status_code == 200
            after = scrape(client)
            name = "infra_operator_executions_total"
            assert value(after, name, **PYTHON_JAIL, outcome=outcome) == value(before, name, **PYTHON_JAIL,
                                                                                outcome=outcome) + 1
            before = after
    finally:
        client.delete(f"/api/v1/sessions/{created.json()['id']}")


def test_open_sessions_are_read_at_scrape_time(client: httpx.Client) -> None:
    before = value(scrape(client), "infra_operator_sessions_open")
    created = client.post("/api/v1/sessions", json={"language": "python"})
    assert created.status_code == 201, created.text
    assert value(scrape(client), "infra_operator_sessions_open") == before + 1
    assert client.delete(f"/api/v1/sessions/{created.json()['id']}").status_code == 204
    assert value(scrape(client), "infra_operator_sessions_open") == before


def test_a_full_queue_counts_as_rejected(tmp_path: Path) -> None:
    require_images("python")
    # Nobody may wait, and the admission lets no one past without waiting first: every execution is refused.
    server = start_server(tmp_path, env={"INFRA_OPERATOR_BACKEND": "jail", "INFRA_OPERATOR_MAX_QUEUE": "0"})
    try:
        with server.client() as client:
            assert client.post("/api/v1/execute", json={"language": "python", "code": "1"}).status_code == 503
            samples = scrape(client)
    finally:
        stop_server(server)
    assert value(samples, "infra_operator_executions_total", **PYTHON_JAIL, outcome="rejected") == 1
    assert value(samples, "infra_operator_execution_end_to_end_seconds_count", **PYTHON_JAIL) == 0


def test_builds_show_as_jobs_by_kind_and_state(tmp_path: Path) -> None:
    server = start_server(tmp_path, env=failing_builds(tmp_path / "data"))
    try:
        with server.client() as client:
            assert client.post("/api/v1/rootfs", json={"language": "python"}).status_code == 202
            failed = ("infra_operator_jobs", frozenset({"kind": "rootfs", "state": "failed"}.items()))
            wait_for(lambda: scrape(client).get(failed) == 1.0, "the failed build to show", seconds=180)
            assert ("infra_operator_jobs", frozenset({"kind": "rootfs", "state": "running"}.items())) not in scrape(client)
    finally:
        stop_server(server)


def test_a_generated_request_id_is_answered_and_logged(server: Server, client: httpx.Client) -> None:
    response = execute(client, "print(3)")
    request_id = response.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    line = logged(server, request_id)
    assert line["method"] == "POST" and line["path"] == "/api/v1/execute" and line["status"] == 200
    assert line["language"] == "python" and line["backend"] == "jail" and line["outcome"] == "ok"
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] > 0
    assert line["client"] == "127.0.0.1" and "time" in line


def test_a_sane_client_request_id_is_echoed_and_logged(server: Server, client: httpx.Client) -> None:
    response = client.get("/api/v1/languages/nope", headers={"X-Request-ID": "trace-42.a:b_C"})
    assert response.status_code == 404
    assert response.headers["x-request-id"] == "trace-42.a:b_C"
    line = logged(server, "trace-42.a:b_C")
    assert line["status"] == 404 and line["path"] == "/api/v1/languages/nope" and "language" not in line


@pytest.mark.parametrize("offered", ["has space", "x" * 129, "quote\"", "ünïcode"])
def test_an_odd_client_request_id_is_replaced(server: Server, client: httpx.Client, offered: str) -> None:
    response = client.get("/health", headers={b"X-Request-ID": offered.encode()})
    request_id = response.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    assert logged(server, request_id)["path"] == "/health"
    assert offered not in server.log_text()


def test_every_request_line_is_one_json_object(server: Server, client: httpx.Client) -> None:
    client.post("/api/v1/execute", content=b"{not json",
                headers={"content-type": "application/json", "X-Request-ID": "malformed-1"})
    assert logged(server, "malformed-1")["status"] == 400
    for line in request_lines(server):
        assert {"time", "request_id", "method", "path", "status", "duration_ms", "client"} <= set(line)
    assert "GET /health HTTP/1.1" not in server.log_text(), "uvicorn's access line would say it twice"


def test_an_unexpected_error_is_logged_and_answered_with_its_request_id(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Starlette answers an unexpected error from its outermost middleware; the request log must
    sit outside even that. No route of the real server fails on purpose, so this app gets one,
    served over a real socket by uvicorn in a thread."""
    app = create_app(Services(Settings(data_dir=tmp_path)))

    def fails() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/fails", fails)
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), lifespan="off", log_level="critical")
    served = uvicorn.Server(config)
    thread = threading.Thread(target=served.run)
    thread.start()
    try:
        wait_for(lambda: served.started, "the in-thread server to start")
        with caplog.at_level(logging.INFO, logger="infra_operator.requests"):
            response = httpx.get(f"http://127.0.0.1:{config.port}/fails", headers={"X-Request-ID": "bug-1"})
            wait_for(lambda: any("bug-1" in r.getMessage() for r in caplog.records), "the request's line")
    finally:
        served.should_exit = True
        thread.join()
    assert response.status_code == 500 and response.json() == {"error": "internal error: RuntimeError"}
    assert response.headers["x-request-id"] == "bug-1"
    [line] = [json.loads(r.getMessage()) for r in caplog.records if r.name == "infra_operator.requests"]
    assert line["status"] == 500 and line["path"] == "/fails"
