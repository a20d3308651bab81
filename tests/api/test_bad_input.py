"""Input no sandbox can take is a 400 naming the field, never a 500 from deep inside."""

from __future__ import annotations

import httpx
import pytest
from conftest import require_images


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"language": "python", "code": "print(1) # \\ud800"}', "code: Value error, not valid Unicode"),
        (b'{"language": "python", "code": "print(input())", "stdin": "\\udfff"}', "stdin: Value error"),
        (b'{"language": "python", "code": "pass", "args": ["\\ud800"]}', "args.0: Value error"),
        (b'{"language": "python", "code": "pass", "args": ["a\\u0000b"]}', "cannot contain a NUL"),
        (b'{"language": "\\ud800", "code": "pass"}', "language"),
        (b'{"language": "python", "code": "print(1)\xff"}', "error parsing the body"),
        (b"[" * 500_000, "error parsing the body"),  # deeper than any JSON parser recurses
    ],
)
def test_text_no_sandbox_can_hold_is_400(client: httpx.Client, body: bytes, fragment: str) -> None:
    response = client.post("/api/v1/execute", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"]


def test_unicode_text_arguments_and_stdin_arrive_intact(client: httpx.Client) -> None:
    require_images("python")
    response = client.post("/api/v1/execute", json={
        "language": "python", "code": "import sys\nprint(sys.argv[1:], input())",
        "args": ["é", "x y", "", "--flag"], "stdin": "ünï 😀\n"})
    assert response.status_code == 200
    assert response.json()["stdout"] == "['é', 'x y', '', '--flag'] ünï 😀\n"
