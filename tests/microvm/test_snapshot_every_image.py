"""``snapshot create --all``: a snapshot for every image built (what the install runs), so
nodejs restores rather than boots; and a snapshot saved by another QEMU is refused (the
execution boots) until ``--if-stale`` makes it again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Server

from .conftest import QEMU_VERSION, own_vm_server

pytestmark = pytest.mark.slow

LANGUAGES = ("python", "nodejs")


@pytest.fixture(scope="module")
def vm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with own_vm_server(tmp_path_factory.mktemp("every-image"), LANGUAGES) as server:
        yield server


def data_dir(server: Server) -> Path:
    return Path(server.log).parent / "data"


def snapshot_create(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "COLUMNS": "400"}  # one line per message, however long
    command = [sys.executable, "-m", "infra_operator", "snapshot", "create", *args, "--backend", "qemu",
               "--data-dir", str(data_dir(server))]
    done = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=900)
    print(done.stdout)
    return done


def metadata(server: Server, language: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads((data_dir(server) / "snapshots" / "qemu" / language / "metadata.json").read_text())
    return found


def run_nodejs(server: Server) -> dict[str, Any]:
    with server.client(timeout=300) as client:
        response = client.post("/api/v1/execute", json={"language": "nodejs", "backend": "qemu", "timeout": 120,
                                                        "code": "console.log(6 * 7)"})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert (body["stdout"], body["exit_code"]) == ("42\n", 0), body
    return body


def test_all_makes_a_snapshot_of_each_image_and_nodejs_restores_from_its_own(vm_server: Server) -> None:
    assert QEMU_VERSION is not None and QEMU_VERSION.startswith("QEMU emulator version")
    assert run_nodejs(vm_server)["sandbox_start"] == "boot"  # none yet
    done = snapshot_create(vm_server, "--all")
    assert done.returncode == 0, done.stdout + done.stderr
    for number, language in enumerate(sorted(LANGUAGES), start=1):
        assert f"[{number}/{len(LANGUAGES)}] snapshot of {language} for qemu" in done.stdout
        recorded = metadata(vm_server, language)
        assert (recorded["language"], recorded["vmm_version"]) == (language, QEMU_VERSION)
    assert run_nodejs(vm_server)["sandbox_start"] == "snapshot"


def test_a_snapshot_saved_by_another_qemu_is_refused_then_rebuilt(vm_server: Server) -> None:
    path = data_dir(vm_server) / "snapshots" / "qemu" / "nodejs" / "metadata.json"
    if not path.exists():
        assert snapshot_create(vm_server, "--lang", "nodejs").returncode == 0
    before = metadata(vm_server, "nodejs")
    path.write_text(json.dumps({**before, "vmm_version": "QEMU emulator version 6.2.0 (Debian 1:6.2+dfsg-2)"}))
    assert run_nodejs(vm_server)["sandbox_start"] == "boot", "a snapshot saved by another QEMU was restored"

    done = snapshot_create(vm_server, "--all", "--if-stale")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the qemu snapshot of python is up to date" in done.stdout
    assert "snapshot of nodejs for qemu" in done.stdout
    assert metadata(vm_server, "nodejs")["vmm_version"] == QEMU_VERSION
    assert run_nodejs(vm_server)["sandbox_start"] == "snapshot"
