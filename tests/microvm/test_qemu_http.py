"""The qemu backend through the real HTTP API: cold boots, snapshots made through the
API and used by the next executions, a rebuilt rootfs retiring its snapshot, and a VM
killed while it serves a request."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Server, wait_for, wait_for_job
from hostcheck import descendants

from .conftest import own_vm_server

GO_HELLO = 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("Hello from Go in a VM") }\n'


@pytest.fixture(scope="module")
def vm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server over a data dir of its own (images and kernel hard-linked from the shared
    one), so snapshots and rebuilds here touch nothing else."""
    with own_vm_server(tmp_path_factory.mktemp("vm"), ("python", "go")) as server:
        yield server


@pytest.fixture(scope="module")
def vm(vm_server: Server) -> Iterator[httpx.Client]:
    with vm_server.client(timeout=300) as client:
        yield client


def run(client: httpx.Client, language: str, code: str, **extra: object) -> dict[str, Any]:
    response = client.post("/api/v1/execute", json={"language": language, "code": code, "backend": "qemu", **extra})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["backend"] == "qemu"
    return body


def test_cold_boots_run_python_and_a_compiled_language(vm: httpx.Client) -> None:
    python = run(vm, "python", "import os\nprint(sum(range(100)), os.getuid())", timeout=120)
    assert (python["stdout"], python["exit_code"], python["sandbox_start"]) == ("4950 65534\n", 0, "boot")
    go = run(vm, "go", GO_HELLO, timeout=240)
    assert (go["stdout"], go["exit_code"], go["compile_exit_code"]) == ("Hello from Go in a VM\n", 0, 0)


def test_snapshot_through_the_api_serves_the_next_executions(vm: httpx.Client) -> None:
    job = wait_for_job(vm, vm.post("/api/v1/snapshots", json={"language": "python", "mem_mb": 256, "vcpus": 1,
                                                              "backend": "qemu"}))
    assert job["state"] == "succeeded", job
    [snapshot] = [s for s in vm.get("/api/v1/snapshots").json()["snapshots"] if s["language"] == "python"]
    assert snapshot["backend"] == "qemu" and snapshot["mem_size"] == 256 << 20 and snapshot["vmstate_size"] > 0
    assert vm.get("/api/v1/languages/python").json()["snapshot"]["exists"] is True

    probe = "import os, time\nprint(os.urandom(16).hex(), time.time())\nopen('/work/left', 'w').write('x')"
    first, second = run(vm, "python", probe, timeout=60), run(vm, "python", probe, timeout=60)
    for body in (first, second):
        assert body["sandbox_start"] == "snapshot" and body["exit_code"] == 0, body
        assert abs(float(body["stdout"].split()[1]) - time.time()) < 60, "the clock was set on restore"
    assert first["stdout"].split()[0] != second["stdout"].split()[0], "clones must not share random state"
    after = run(vm, "python", "import os\nprint(os.path.exists('/work/left'))", timeout=60)
    assert (after["stdout"], after["sandbox_start"]) == ("False\n", "snapshot")


def test_a_rebuilt_rootfs_retires_its_snapshot(vm: httpx.Client) -> None:
    assert run(vm, "python", "print(1)", timeout=60)["sandbox_start"] == "snapshot"
    rebuilt = wait_for_job(vm, vm.post("/api/v1/rootfs", json={"language": "python"}))
    assert rebuilt["state"] == "succeeded", rebuilt
    body = run(vm, "python", "print(2)", timeout=120)
    assert (body["stdout"], body["sandbox_start"]) == ("2\n", "boot"), "a snapshot of the old rootfs must not be used"


def test_a_vm_killed_while_it_serves_a_request_is_a_clear_error_and_leaves_nothing(
    vm_server: Server, vm: httpx.Client,
) -> None:
    """Killed as soon as the request's VM shows on the host: booting, restoring or running
    the program (no host-side sign tells these apart), the answer and the cleanup are the same."""
    answers: list[httpx.Response] = []

    def qemus() -> set[int]:
        """Live QEMUs of this server: grandchildren (its child is bwrap, which jails each)."""
        found = set()
        for pid in descendants(vm_server.process.pid):
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{pid}/stat").read_text()
                if stat.rsplit(")", 1)[1].split()[0] != "Z" and stat.split("(", 1)[1].startswith("qemu-system"):
                    found.add(pid)
        return found

    # A VM of an earlier request may still be on its way out; it is not this request's.
    earlier = qemus()
    request = threading.Thread(target=lambda: answers.append(vm.post("/api/v1/execute", json={
        "language": "python", "code": "import time\nprint('up', flush=True)\ntime.sleep(120)", "backend": "qemu",
        "timeout": 200})))
    request.start()
    victims: list[int] = []

    def vm_found() -> bool:
        victims.extend(qemus() - earlier)
        return bool(victims)

    wait_for(vm_found, "the request's VM", seconds=120)
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    request.join(timeout=60)
    [answer] = answers
    assert answer.status_code == 500
    assert "sandbox" in answer.json()["error"] and "Traceback" not in answer.text
    run_dir = Path(vm_server.log).parent / "data" / "run"
    wait_for(lambda: not list(run_dir.glob("qemu-*")), "the VM's run folder to be removed")
    assert run(vm, "python", "print('still serving')", timeout=60)["stdout"] == "still serving\n"
