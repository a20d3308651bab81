"""A request field the server does not know is a 400 naming it, on every endpoint that takes a
JSON body: a client asking for something the server does not do is told so, not served
something else (``"version": "2.7"`` must not quietly run the default release)."""

from __future__ import annotations

import re
from collections import defaultdict

import httpx


def test_execute_names_every_unknown_field(client: httpx.Client) -> None:
    response = client.post("/api/v1/execute", json={
        "language": "python", "network": True, "code": "print(1)", "priority": 1})
    assert response.status_code == 400, response.text
    assert response.json() == {
        "error": "invalid request: unknown fields network, priority: not supported by this server"}


def test_a_release_that_is_not_there_is_never_quietly_replaced(client: httpx.Client) -> None:
    response = client.post("/api/v1/execute", json={"language": "python", "version": "2.7", "code": "print(1)"})
    assert response.status_code == 404, response.text
    assert response.json()["error"].startswith("version not found: python 2.7 (available: 3.")


def test_every_json_body_refuses_an_unknown_field(client: httpx.Client) -> None:
    """Every operation of the server's own OpenAPI document that takes JSON, so an endpoint added
    later is held to it too. An unknown language (or session) would be a 404: the 400 must come first."""
    document = client.get("/openapi.json").json()
    operations = [(method, path) for path, methods in document["paths"].items()
                  for method, operation in methods.items()
                  if "application/json" in operation.get("requestBody", {}).get("content", {})]
    assert len(operations) >= 7, operations
    for method, path in operations:
        url = path.format_map(defaultdict(lambda: "x"))
        response = client.request(method, url, json={"language": "ruby2", "surprise": 1})
        assert response.status_code == 400, (method, path, response.text)
        # A body without a top-level language (a batch) names that one too: "unknown fields language, surprise".
        assert re.search(r"unknown fields? (\w+, )*surprise: not supported by this server",
                         response.json()["error"]), (method, path)
