"""What the session tests share: opening a session, running a cell, reading an SSE answer,
and sending a path exactly as written (httpx would tidy ``..`` away before it left)."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlparse

import httpx
from conftest import WAIT_SECONDS, wait_for

Body = dict[str, Any]
SSE = {"accept": "text/event-stream"}


def open_session(client: httpx.Client, language: str = "python", **fields: object) -> str:
    response = client.post("/api/v1/sessions", json={"language": language, **fields})
    assert response.status_code == 201, response.text
    session_id: str = response.json()["id"]
    return session_id


@contextmanager
def session(client: httpx.Client, language: str = "python", **fields: object) -> Iterator[str]:
    """A session deleted after use, whatever the test did."""
    session_id = open_session(client, language, **fields)
    try:
        yield session_id
    finally:
        client.delete(f"/api/v1/sessions/{session_id}")


def cell(client: httpx.Client, session_id: str, code: str, **fields: object) -> Body:
    response = client.post(f"/api/v1/sessions/{session_id}/execute", json={"code": code, **fields})
    assert response.status_code == 200, response.text
    body: Body = response.json()
    return body


@contextmanager
def held_by_a_slow_cell(client: httpx.Client, session_id: str, wait_seconds: float = WAIT_SECONDS) -> Iterator[None]:
    """For the block, a cell sleeping 5 s holds the session. Only its shown state is watched:
    a probing call would take the session itself, and the cell would be the one refused."""
    with ThreadPoolExecutor(1) as background:
        slow = background.submit(cell, client, session_id, "import time\ntime.sleep(5)")
        wait_for(lambda: client.get(f"/api/v1/sessions/{session_id}").json()["state"] == "busy",
                 "the slow cell to hold the session", seconds=wait_seconds)
        yield
        assert slow.result()["exit_code"] == 0


def read_events(response: httpx.Response) -> Iterator[tuple[str, Body, float]]:
    """Each event of an SSE answer as it arrives: its name, its data and when it came."""
    name = ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[len("event: "):]
        elif line.startswith("data: "):
            yield name, json.loads(line[len("data: "):]), time.monotonic()


def events(client: httpx.Client, url: str, body: Body) -> list[tuple[str, Body, float]]:
    with client.stream("POST", url, json=body, headers=SSE) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(read_events(response))


def leave_mid_cell_then_check_names(client: httpx.Client, base_url: str, session_id: str) -> None:
    """Define a name, start a long cell as a stream and leave once it printed; the session then
    answers again (the cell was interrupted, not left to run out its 280 s) with the name kept."""
    cell(client, session_id, "kept = 1", timeout=120)
    url = f"{base_url}/api/v1/sessions/{session_id}/execute"
    with httpx.stream("POST", url, json={"code": "import time\nprint('on', flush=True)\ntime.sleep(280)",
                                         "timeout": 290}, headers=SSE, timeout=120) as response:
        for _ in read_events(response):
            break

    def answered() -> bool:
        after = client.post(f"/api/v1/sessions/{session_id}/execute", json={"code": "print(kept)"})
        return after.status_code == 200 and after.json()["stdout"] == "1\n"

    wait_for(answered, "the session to answer with its names after its client left")


def raw_request(base_url: str, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """Send ``path`` byte for byte: no client-side normalisation of dot segments or escapes."""
    url = urlparse(base_url)
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 80, timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()
