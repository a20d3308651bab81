"""The pool inside the real server: pre-warmed at start-up, used by executions, reported
in /health, and emptied on shutdown so nothing of the server keeps running."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from conftest import require_images, start_server, stop_server, wait_for

CGROUP_PARENTS = [Path("/sys/fs/cgroup") / name / "infra-operator" for name in ("memory", "pids")] + [
    Path("/sys/fs/cgroup/infra-operator")
]


def leftovers_of(pid: int) -> list[str]:
    """The cgroups, and the processes in them, of sandboxes that server ``pid`` started."""
    groups = [str(g) for parent in CGROUP_PARENTS if parent.exists() for g in parent.glob(f"{pid}-*")]
    marker = f"infra-operator/{pid}-"
    processes = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker in (entry / "cgroup").read_text():
                processes.append(f"process {entry.name}")
        except OSError:
            continue
    return groups + processes


def pool_of(client: httpx.Client, language: str) -> dict[str, Any]:
    entries: list[dict[str, Any]] = [
        # Keys are per release (``language=python,release=trixie``): the default release's pool.
        e for e in client.get("/health").json()["pool"] if e["key"].split(",")[0] == f"language={language}"]
    assert len(entries) == 1, entries
    return entries[0]


def test_the_server_prewarms_serves_from_the_pool_and_leaves_nothing(tmp_path: Path) -> None:
    require_images("python")
    server = start_server(tmp_path, env={"INFRA_OPERATOR_POOL__SIZE": "2", "INFRA_OPERATOR_POOL__MAX_SIZE": "8"})
    try:
        with server.client() as client:
            wait_for(lambda: pool_of(client, "python")["ready"] == 2, "the python pool to fill")
            response = client.post("/api/v1/execute", json={"language": "python", "code": "print(6*7)"})
            assert response.status_code == 200, response.text
            assert response.json()["stdout"] == "42\n"
            assert pool_of(client, "python")["takes"] == 1
    finally:
        stop_server(server)
    assert "shutdown: in-flight executions finished" in server.log_text()  # the lifespan's shutdown ran
    assert leftovers_of(server.process.pid) == []


def test_a_server_without_prewarm_starts_sandboxes_on_demand(tmp_path: Path) -> None:
    require_images("python")
    server = start_server(tmp_path, env={"INFRA_OPERATOR_POOL__PREWARM": "[]"})
    try:
        with server.client() as client:
            assert client.get("/health").json()["pool"] == []
            for _ in range(2):
                response = client.post("/api/v1/execute", json={"language": "python", "code": "print(1)"})
                assert response.status_code == 200, response.text
                assert response.json()["stdout"] == "1\n"
            entry = pool_of(client, "python")  # the first request's miss made the key known
            assert entry["misses"] >= 1
    finally:
        stop_server(server)
    assert leftovers_of(server.process.pid) == []
