"""A paused session in a cluster outlives its worker: a worker that starts again on the same
host (under a new id, as a restarted ``infra.operator worker`` without ``--id`` has) takes
the session back from disk and routes it to itself, so the API finds it. Real Redis, a real
worker on the qemu backend and a real API process, on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from conftest import free_port, start_server, stop_process, stop_server, wait_for
from netns import redis_command
from sessionkit import cell, open_session

from .conftest import own_vm_data

pytestmark = pytest.mark.slow


def workers(client: redis.Redis) -> set[str]:
    return {key.decode().rsplit(":", 1)[1] for key in client.scan_iter("infra-operator:worker:*")}


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    (tmp_path / "redis").mkdir()
    with (tmp_path / "redis.log").open("wb") as log:
        process = subprocess.Popen(redis_command(tmp_path / "redis", "127.0.0.1", port), stdout=log,
                                   stderr=subprocess.STDOUT)
    client = redis.Redis(port=port)

    def answers() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    try:
        wait_for(answers, "redis to answer")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_process(process)


def test_a_paused_session_comes_back_with_a_restarted_worker(tmp_path: Path, redis_url: str) -> None:
    env = {**os.environ, **own_vm_data(tmp_path, ("python",)), "INFRA_OPERATOR_BACKEND": "qemu",
           "INFRA_OPERATOR_POOL__SIZE": "0", "INFRA_OPERATOR_POOL__MAX_SIZE": "0"}
    client = redis.Redis.from_url(redis_url)

    def start_worker(name: str) -> subprocess.Popen[bytes]:
        known = workers(client)
        with (tmp_path / f"{name}.log").open("wb") as log:
            worker = subprocess.Popen([sys.executable, "-m", "infra_operator", "worker", "--redis", redis_url],
                                      stdout=log, stderr=subprocess.STDOUT, env=env)
        wait_for(lambda: workers(client) - known, f"{name} to advertise", seconds=120)
        return worker

    first = start_worker("first worker")
    api = start_server(tmp_path, "--redis", redis_url, env=own_vm_env(env))
    try:
        with api.client(timeout=300) as http:
            session_id = open_session(http, "python", backend="qemu")
            assert cell(http, session_id, "x = 41\nopen('note.txt', 'w').write('kept')")["exit_code"] == 0
            assert http.post(f"/api/v1/sessions/{session_id}/pause").json()["state"] == "paused"
            before = workers(client)
            stop_process(first)  # drained: it leaves the cluster, its paused session on disk
            wait_for(lambda: not workers(client) & before, "the first worker to leave")
            assert http.get(f"/api/v1/sessions/{session_id}").status_code == 404  # no worker holds it now

            second = start_worker("second worker")
            try:
                assert workers(client).isdisjoint(before), "the restarted worker kept its id: nothing to show"
                shown = http.get(f"/api/v1/sessions/{session_id}")
                assert shown.status_code == 200 and shown.json()["state"] == "paused", shown.text
                assert cell(http, session_id, "print(x + 1, open('note.txt').read())")["stdout"] == "42 kept\n"
                assert http.delete(f"/api/v1/sessions/{session_id}").status_code == 204
            finally:
                stop_process(second)
    finally:
        stop_server(api)


def own_vm_env(env: dict[str, str]) -> dict[str, str]:
    """What the API process needs of the workers' environment: their data dir (for its catalog)."""
    return {key: value for key, value in env.items() if key.startswith("INFRA_OPERATOR_")}
