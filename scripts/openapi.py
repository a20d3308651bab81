"""Writes the API's OpenAPI document to docs/openapi.json, so API changes show in review.

    /opt/infra-operator/venv/bin/python scripts/openapi.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from infra_operator.api import create_app
from infra_operator.config import Settings
from infra_operator.services import Services

DOCUMENT = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"


def render() -> str:
    with tempfile.TemporaryDirectory() as data_dir:
        schema = create_app(Services(Settings(data_dir=Path(data_dir)))).openapi()
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    DOCUMENT.write_text(render())
    sys.stdout.write(f"wrote {DOCUMENT}\n")
