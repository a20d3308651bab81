"""POST /api/v1/rootfs builds for real in the background; progress and outcome show in the API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from conftest import DATA_DIR, failing_builds, start_server, stop_server, wait_for


def wait_for_build(client: httpx.Client, seconds: float) -> list[dict[str, Any]]:
    """Every state of python's build seen through the API, polled until it stops running."""
    seen: list[dict[str, Any]] = []

    def finished() -> bool:
        seen.append(client.get("/api/v1/languages/python").json()["rootfs"]["build"])
        return bool(seen[-1]["state"] != "running")

    wait_for(finished, "python's rootfs build to finish", seconds, every=0.5)  # each poll asks the server
    return seen


def test_build_in_background_joins_duplicates_and_reports_outcome(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = start_server(tmp_path, env={"INFRA_OPERATOR_DATA_DIR": str(data_dir),
                                         "INFRA_OPERATOR_PACKAGE_CACHE_DIR": str(DATA_DIR / "cache")})
    try:
        with server.client() as client:
            missing = client.post("/api/v1/execute", json={"language": "python", "code": "print(1)"})
            assert missing.status_code == 404
            assert "rootfs create --lang python" in missing.json()["error"]

            first = client.post("/api/v1/rootfs", json={"language": "py"})
            assert first.status_code == 202
            assert first.json()["message"] == "rootfs creation started"
            assert first.json()["language"] == "python"
            second = client.post("/api/v1/rootfs", json={"language": "python", "size_mb": 1024})
            assert second.status_code == 202
            assert second.json()["message"] == "rootfs creation already in progress"
            assert second.json()["job"]["id"] == first.json()["job"]["id"]

            builds = wait_for_build(client, 300)
            assert builds[-1]["state"] == "succeeded", builds[-1]
            assert len({str(build["progress"]) for build in builds}) > 2, "progress should move while the build runs"

            listed = client.get("/api/v1/rootfs").json()["rootfs"]
            assert [entry["language"] for entry in listed] == ["python"]
            assert Path(listed[0]["path"]).parent == data_dir / "images"
            assert not list((data_dir / "images").glob(".*tmp*")), "no half-written files remain"
            ran = client.post("/api/v1/execute", json={"language": "python", "code": "print(6 * 7)"})
            assert ran.json()["stdout"] == "42\n"
    finally:
        stop_server(server)


def test_failed_build_reports_its_error(tmp_path: Path) -> None:
    server = start_server(tmp_path, env=failing_builds(tmp_path / "data"))
    try:
        with server.client() as client:
            assert client.post("/api/v1/rootfs", json={"language": "python"}).status_code == 202
            build = wait_for_build(client, 120)[-1]
            assert build["state"] == "failed"
            assert "mmdebstrap failed" in build["error"]
            assert client.get("/api/v1/languages/python").json()["rootfs"]["exists"] is False
    finally:
        stop_server(server)
