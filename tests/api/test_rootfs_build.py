"""POST /api/v1/rootfs builds for real in the background; progress and outcome show in the API."""

from __future__ import annotations

import time
from pathlib import Path

from conftest import DATA_DIR, failing_builds, start_server, stop_server


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

            seen_progress: set[str] = set()
            deadline = time.monotonic() + 300
            build: dict[str, object] = {}
            while time.monotonic() < deadline:
                details = client.get("/api/v1/languages/python").json()
                build = details["rootfs"]["build"]
                seen_progress.add(str(build["progress"]))
                if build["state"] != "running":
                    break
                time.sleep(0.5)
            assert build["state"] == "succeeded", build
            assert len(seen_progress) > 2, "progress should move while the build runs"

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
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                build = client.get("/api/v1/languages/python").json()["rootfs"]["build"]
                if build["state"] != "running":
                    break
                time.sleep(0.5)
            assert build["state"] == "failed"
            assert "mmdebstrap failed" in build["error"]
            assert client.get("/api/v1/languages/python").json()["rootfs"]["exists"] is False
    finally:
        stop_server(server)
