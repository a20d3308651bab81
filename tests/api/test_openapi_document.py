"""The checked-in OpenAPI document is the app's own: an API change must show in review."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "openapi.py"


def test_checked_in_document_matches_the_app() -> None:
    spec = importlib.util.spec_from_file_location("openapi_script", SCRIPT)
    assert spec and spec.loader
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.DOCUMENT.read_text() == script.render(), (
        "docs/openapi.json is out of date: run `python scripts/openapi.py` and review the diff")
