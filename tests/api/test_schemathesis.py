"""Schemathesis against the real server's own OpenAPI document: whatever it sends, the
server never answers with a 5xx. The two operations that start background image and
snapshot builds are left out, so the run does not start a build per example."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import Server

BUILDS = ("create_rootfs_api_v1_rootfs_post", "create_snapshot_api_v1_snapshots_post")
# Schemathesis fuzzes until its time budget runs out: the budget is the bound.
BUDGET_SECONDS = 60


def _schemathesis() -> str:
    beside = Path(sys.executable).parent / "schemathesis"
    found = str(beside) if beside.exists() else shutil.which("schemathesis")
    if found is None:
        pytest.skip("schemathesis is not installed (pip install -e '.[test]')")
    return found


@pytest.mark.timeout(BUDGET_SECONDS * 4)
def test_no_server_errors_for_generated_requests(server: Server, tmp_path: Path) -> None:
    excluded = [argument for operation in BUILDS for argument in ("--exclude-operation-id", operation)]
    result = subprocess.run(
        [_schemathesis(), "run", f"{server.url}/openapi.json", "--checks", "not_a_server_error",
         "--phases", "examples,coverage,fuzzing", "--max-examples", "10", "--max-time", str(BUDGET_SECONDS),
         "--seed", "1", "--no-shrink", "--request-timeout", "60", *excluded],
        capture_output=True, text=True, cwd=tmp_path, timeout=BUDGET_SECONDS * 3,
    )
    output = result.stdout + result.stderr
    # The sessions the run opened would hold sandboxes (and the server's session limit) for the tests after it.
    for opened in httpx.get(f"{server.url}/api/v1/sessions").json()["sessions"]:
        httpx.delete(f"{server.url}/api/v1/sessions/{opened['id']}", timeout=60)
    assert result.returncode == 0, output[-4000:]
    operations = sum(len(methods) for methods in httpx.get(f"{server.url}/openapi.json").json()["paths"].values())
    assert f"{operations - len(BUILDS)} selected / {operations} total" in output, output[-2000:]
    assert "failed" not in output.split("SUMMARY")[-1], output[-2000:]
    assert "500 Internal Server Error" not in server.log_text()
