"""The checked-in OpenAPI document is the app's own: an API change must show in review."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import httpx
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "openapi.py"


@pytest.mark.unit
def test_checked_in_document_matches_the_app() -> None:
    spec = importlib.util.spec_from_file_location("openapi_script", SCRIPT)
    assert spec and spec.loader
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.DOCUMENT.read_text() == script.render(), (
        "docs/openapi.json is out of date: run `python scripts/openapi.py` and review the diff")


def test_a_request_that_fails_validation_is_answered_with_the_status_the_document_lists(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    execute = document["paths"]["/api/v1/execute"]["post"]["responses"]
    assert client.post("/api/v1/execute", json={"language": "python"}).status_code == 400
    assert execute["400"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
    listed = {status for operations in document["paths"].values() for operation in operations.values()
              for status in operation["responses"]}
    assert "422" not in listed, "the server never answers 422"
