"""The service under stress and failure, each against its own real server: body cap,
a full queue, API keys, graceful shutdown, and the start-up sweep after a crash."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from conftest import Server, require_images, wait_for
from hostcheck import cgroups_of, descendants, run_folders_of

SLEEP = "import time\nprint('start', flush=True)\ntime.sleep({seconds})\nprint('end')\n"


def _in_background(
    work: Callable[[], httpx.Response],
) -> tuple[threading.Thread, list[httpx.Response | Exception]]:
    out: list[httpx.Response | Exception] = []

    def target() -> None:
        try:
            out.append(work())
        except Exception as exc:  # recorded for the assertion, which names it
            out.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    return thread, out


class TestBodyLimit:
    def test_declared_length_over_the_cap_is_413(self, spawn: Callable[..., Server]) -> None:
        server = spawn(max_body_bytes="2048")
        body = json.dumps({"language": "python", "code": "#" * 4096})
        response = httpx.post(
            f"{server.url}/api/v1/execute", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 413
        assert response.json() == {"error": "request body larger than 2048 bytes"}

    def test_chunked_body_without_length_over_the_cap_is_413(self, spawn: Callable[..., Server]) -> None:
        server = spawn(max_body_bytes="2048")

        def chunks() -> Iterator[bytes]:
            yield b'{"language": "python", "code": "'
            for _ in range(64):
                yield b"#" * 256
            yield b'"}'

        response = httpx.post(
            f"{server.url}/api/v1/execute", content=chunks(), headers={"content-type": "application/json"}
        )
        assert response.request.headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in response.request.headers
        assert response.status_code == 413
        assert response.json() == {"error": "request body larger than 2048 bytes"}

    def test_a_small_chunked_body_still_works(self, spawn: Callable[..., Server]) -> None:
        require_images("python")
        server = spawn(max_body_bytes="2048")
        response = httpx.post(
            f"{server.url}/api/v1/execute",
            timeout=60,
            content=iter([b'{"language": "python", ', b'"code": "print(7)"}']),
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 200 and response.json()["stdout"] == "7\n"


def test_a_burst_past_the_queue_gets_503_with_retry_after(spawn: Callable[..., Server]) -> None:
    require_images("python")
    server = spawn(max_concurrency="1", max_queue="1")
    code = SLEEP.format(seconds=2)
    with httpx.Client(base_url=server.url, timeout=120, limits=httpx.Limits(max_connections=10)) as client:
        threads = [
            _in_background(lambda: client.post("/api/v1/execute", json={"language": "python", "code": code}))
            for _ in range(6)
        ]
        for thread, _ in threads:
            thread.join(timeout=120)
    answers = [out[0] for _, out in threads]
    assert all(isinstance(answer, httpx.Response) for answer in answers), answers
    statuses = sorted(answer.status_code for answer in answers if isinstance(answer, httpx.Response))
    assert set(statuses) <= {200, 503} and statuses.count(200) >= 1 and statuses.count(503) >= 1, statuses
    for answer in answers:
        assert isinstance(answer, httpx.Response)
        if answer.status_code == 503:
            assert int(answer.headers["retry-after"]) >= 1
            assert "error" in answer.json()
        else:
            assert answer.json()["stdout"] == "start\nend\n"


class TestApiKeys:
    @pytest.fixture
    def server(self, spawn: Callable[..., Server]) -> Server:
        return spawn(api_keys='["key-one", "key-two"]')

    def test_health_stays_open(self, server: Server) -> None:
        assert httpx.get(f"{server.url}/health").status_code == 200

    @pytest.mark.parametrize(
        "headers",
        [
            {},
            {"Authorization": "Bearer wrong"},
            {"X-API-Key": "wrong"},
            {"Authorization": "Basic a2V5LW9uZQ=="},
            {"Authorization": "key-one"},
        ],
    )
    def test_without_a_valid_key_is_401_json(self, server: Server, headers: dict[str, str]) -> None:
        for response in (
            httpx.get(f"{server.url}/api/v1/languages", headers=headers),
            httpx.post(f"{server.url}/api/v1/execute", headers=headers, content=b"{not json"),
        ):
            assert response.status_code == 401
            assert "API key" in response.json()["error"]

    @pytest.mark.parametrize(
        "headers",
        [{"Authorization": "Bearer key-one"}, {"authorization": "bearer key-two"}, {"X-API-Key": "key-two"}],
    )
    def test_a_valid_key_is_let_in(self, server: Server, headers: dict[str, str]) -> None:
        response = httpx.get(f"{server.url}/api/v1/languages", headers=headers)
        assert response.status_code == 200 and response.json()["count"] >= 1


def _leftovers(pid: int) -> dict[str, object]:
    return {"cgroups": cgroups_of(pid), "run folders": run_folders_of(pid), "processes": descendants(pid)}


def test_sigterm_during_an_execution_finishes_it_and_leaves_nothing(spawn: Callable[..., Server]) -> None:
    require_images("python")
    server = spawn()
    pid = server.process.pid
    code = SLEEP.format(seconds=3)
    thread, out = _in_background(
        lambda: httpx.post(
            f"{server.url}/api/v1/execute", timeout=60, json={"language": "python", "code": code}
        )
    )
    wait_for(lambda: cgroups_of(pid), "the execution to start", seconds=30)
    server.process.send_signal(signal.SIGTERM)
    thread.join(timeout=60)
    assert isinstance(out[0], httpx.Response), out
    assert out[0].status_code == 200 and out[0].json()["stdout"] == "start\nend\n"
    # uvicorn re-raises the signal once it has shut down cleanly, so the exit is by SIGTERM.
    assert server.process.wait(timeout=40) in (0, -signal.SIGTERM)
    assert _leftovers(pid) == {"cgroups": set(), "run folders": set(), "processes": set()}
    assert "in-flight executions finished" in server.log_text()


def test_start_up_sweep_clears_what_a_killed_server_left(spawn: Callable[..., Server]) -> None:
    require_images("python")
    crashed = spawn()
    pid = crashed.process.pid
    code = SLEEP.format(seconds=60)
    thread, _ = _in_background(
        lambda: httpx.post(
            f"{crashed.url}/api/v1/execute",
            timeout=90,
            json={"language": "python", "code": code, "timeout": 90},
        )
    )
    wait_for(lambda: cgroups_of(pid) and run_folders_of(pid), "the execution to start", seconds=30)
    sandbox_processes = descendants(pid)
    assert sandbox_processes, "the execution's sandbox was not found"
    os.kill(pid, signal.SIGKILL)
    crashed.process.wait()
    thread.join(timeout=30)
    # The jail template exits when its server's end of the socket closes, its sandboxes with it.
    wait_for(lambda: not any(Path(f"/proc/{p}").exists() for p in sandbox_processes), "the sandbox to die", seconds=15)
    left = _leftovers(pid)
    assert left["cgroups"] and left["run folders"], (
        f"nothing left to sweep, so the test proves nothing: {left}"
    )

    still_there = _leftovers(pid)
    successor = spawn()
    assert _leftovers(pid) == {"cgroups": set(), "run folders": set(), "processes": set()}
    # Any server starting on this host sweeps a dead server's leftovers, and others may be
    # starting now (the host is shared): what was still there when ours started, ours removed.
    log = successor.log_text()
    named = [f"cgroup {group}" for group in still_there["cgroups"]]  # type: ignore[attr-defined]
    named += [f"run folder {folder}" for folder in still_there["run folders"]]  # type: ignore[attr-defined]
    unreported = [item for item in named if f"start-up sweep removed {item}" not in log]
    assert len(unreported) < len(named) or not named, f"the successor did not sweep {unreported}"
