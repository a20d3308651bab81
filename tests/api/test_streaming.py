"""Server-Sent Events for executes and session cells, through real HTTP: output arrives
while the program runs, then exactly one result; a client that leaves stops the program."""

from __future__ import annotations

import httpx
import pytest
from conftest import Server, require_images, wait_for
from sessionkit import SSE, events, read_events, session

# Prints, then waits long enough that an answer made only at the end would come much later.
SLOW = "import time\nprint('first', flush=True)\ntime.sleep(2)\nprint('second')\n"


@pytest.fixture(autouse=True)
def _images() -> None:
    require_images("python")


def _check_stream(received: list[tuple[str, dict[str, object], float]]) -> dict[str, object]:
    names = [name for name, _, _ in received]
    assert names.count("result") == 1 and names[-1] == "result", names
    result = received[-1][1]
    streamed = "".join(str(data["data"]) for name, data, _ in received if name == "stdout")
    assert streamed == result["stdout"] == "first\nsecond\n"
    first_at = next(at for name, data, at in received if name == "stdout" and "first" in str(data["data"]))
    # 'first' came while the program slept, not with the answer at its end.
    assert received[-1][2] - first_at > 1.0
    return result


def test_execute_streams_output_as_it_is_written(client: httpx.Client) -> None:
    result = _check_stream(events(client, "/api/v1/execute", {"language": "python", "code": SLOW}))
    assert result["exit_code"] == 0 and result["cpu_time_ms"] is not None and result["memory_kb"] is not None


def test_a_session_cell_streams_too(client: httpx.Client) -> None:
    with session(client) as sid:
        result = _check_stream(events(client, f"/api/v1/sessions/{sid}/execute", {"code": SLOW}))
        assert result["reset"] is False and result["results"] == []


def test_stderr_is_its_own_event_and_text_split_mid_character_arrives_whole(client: httpx.Client) -> None:
    code = "import sys, os\nos.write(2, 'é'.encode()[:1])\nos.write(2, 'é'.encode()[1:])\n"
    received = events(client, "/api/v1/execute", {"language": "python", "code": code})
    assert "".join(str(data["data"]) for name, data, _ in received if name == "stderr") == "é"


def test_without_the_header_the_answer_is_plain_json(client: httpx.Client) -> None:
    response = client.post("/api/v1/execute", json={"language": "python", "code": "print(1)"})
    assert response.headers["content-type"] == "application/json" and response.json()["stdout"] == "1\n"


def test_an_error_before_any_output_is_an_ordinary_json_error(client: httpx.Client) -> None:
    response = client.post("/api/v1/execute", json={"language": "nope", "code": "1"}, headers=SSE)
    assert response.status_code == 404 and response.json() == {"error": "language not found: nope"}
    gone = client.post("/api/v1/sessions/no-such-session/execute", json={"code": "1"}, headers=SSE)
    assert gone.status_code == 404


def test_a_client_that_leaves_stops_the_program(server: Server, client: httpx.Client) -> None:
    code = "import time\nprint('started', flush=True)\ntime.sleep(280)\n"
    with httpx.stream("POST", f"{server.url}/api/v1/execute", json={"language": "python", "code": code,
                                                                   "timeout": 290}, headers=SSE, timeout=60) as response:
        for name, _, _ in read_events(response):
            assert name == "stdout"
            break
    # Without the interrupt the execution would hold its slot for 280 s.
    wait_for(lambda: client.get("/health").json()["load"]["running"] == 0, "the program to be stopped")


def test_a_session_whose_client_leaves_interrupts_the_cell_and_keeps_the_names(client: httpx.Client,
                                                                               server: Server) -> None:
    with session(client) as sid:
        client.post(f"/api/v1/sessions/{sid}/execute", json={"code": "kept = 1"})
        url = f"{server.url}/api/v1/sessions/{sid}/execute"
        with httpx.stream("POST", url, json={"code": "import time\nprint('on', flush=True)\ntime.sleep(280)",
                                             "timeout": 290}, headers=SSE, timeout=60) as response:
            for _ in read_events(response):
                break

        def answered() -> bool:
            after = client.post(f"/api/v1/sessions/{sid}/execute", json={"code": "print(kept)"})
            return after.status_code == 200 and after.json()["stdout"] == "1\n"

        wait_for(answered, "the session to answer with its names after the interrupt")
