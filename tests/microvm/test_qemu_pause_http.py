"""Paused sessions on the qemu backend through the real HTTP API: a session saved to disk
holds no VM, resumes with its names and files at its next call, outlives a server restart,
and leaves nothing on disk once deleted."""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import Server, start_server, stop_server, wait_for
from sessionkit import cell, open_session, session

from .conftest import own_vm_server


@pytest.fixture(scope="module")
def vm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with own_vm_server(tmp_path_factory.mktemp("vm-pause"), ("python",)) as server:
        yield server


def _data(server: Server) -> Path:
    return Path(server.log).parent / "data"


def _qemus_under(data: Path) -> list[int]:
    """Pids of QEMU processes whose run folder is under ``data``: a paused session has none."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if b"qemu-system" in (entry / "cmdline").read_bytes() and \
                    Path(os.readlink(entry / "cwd")).is_relative_to(data):
                found.append(int(entry.name))
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return found


def _ran(client: httpx.Client, sid: str, code: str, **fields: object) -> dict[str, object]:
    """A cell that must succeed; its whole answer is the message when it does not."""
    answer = cell(client, sid, code, **fields)
    assert answer["exit_code"] == 0 and answer["reset"] is False, answer
    return answer


def _pause(client: httpx.Client, sid: str) -> dict[str, object]:
    response = client.post(f"/api/v1/sessions/{sid}/pause")
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_a_paused_session_holds_no_vm_and_resumes_with_its_names_and_files(vm_server: Server) -> None:
    data = _data(vm_server)
    with vm_server.client(timeout=300) as vm, session(vm, backend="qemu") as sid:
        _ran(vm, sid, "x = 41", timeout=120)
        assert vm.put(f"/api/v1/sessions/{sid}/files/notes/a.txt", content=b"kept").status_code == 201
        assert _qemus_under(data), "the session's VM should run before the pause"

        paused = _pause(vm, sid)
        assert paused["state"] == "paused" and paused["id"] == sid
        assert _qemus_under(data) == [], "a paused session's QEMU still runs"
        assert list((data / "run").glob("qemu-*")) == []
        assert (data / "sessions" / sid / "session.json").is_file()
        assert vm.get(f"/api/v1/sessions/{sid}").json()["state"] == "paused"
        assert [s["state"] for s in vm.get("/api/v1/sessions").json()["sessions"]] == ["paused"]
        assert _pause(vm, sid)["state"] == "paused", "pausing a paused session answers it as it is"

        # A file call resumes it as a cell does.
        assert vm.get(f"/api/v1/sessions/{sid}/files/notes/a.txt").content == b"kept"
        assert vm.get(f"/api/v1/sessions/{sid}").json()["state"] == "idle"
        assert not (data / "sessions" / sid).exists(), "a resumed session's saved state stays on disk"
        assert _ran(vm, sid, "print(x + 1)")["stdout"] == "42\n"

        _pause(vm, sid)
        assert _ran(vm, sid, "print(x + 1, open('notes/a.txt').read())")["stdout"] == "42 kept\n"

        # Deleting a paused session removes its folder.
        _pause(vm, sid)
        assert vm.delete(f"/api/v1/sessions/{sid}").status_code == 204
        assert not (data / "sessions" / sid).exists()
        assert vm.get(f"/api/v1/sessions/{sid}").status_code == 404
    assert _qemus_under(data) == []


def test_a_paused_session_survives_a_server_restart(tmp_path: Path) -> None:
    with own_vm_server(tmp_path, ("python",)) as first:
        _pause_and_restart(first, tmp_path)


def _pause_and_restart(vm_server: Server, tmp_path: Path) -> None:
    data = _data(vm_server)
    with vm_server.client(timeout=300) as vm:
        sid = open_session(vm, backend="qemu", idle_timeout=600)
        _ran(vm, sid, "x = 41\nopen('out.txt', 'w').write('from before')", timeout=120)
        before = vm.get(f"/api/v1/sessions/{sid}").json()
        _pause(vm, sid)
    stop_server(vm_server)
    again = start_server(tmp_path, env={"INFRA_OPERATOR_DATA_DIR": str(data),
                                        "INFRA_OPERATOR_PACKAGE_CACHE_DIR": os.environ.get(
                                            "INFRA_OPERATOR_PACKAGE_CACHE_DIR", str(data / "cache"))})
    try:
        with again.client(timeout=300) as vm:
            listed = vm.get("/api/v1/sessions").json()["sessions"]
            assert [(s["id"], s["state"]) for s in listed] == [(sid, "paused")]
            assert listed[0]["created_at"] == before["created_at"]
            assert _ran(vm, sid, "print(x + 1, open('out.txt').read())")["stdout"] == "42 from before\n"
            assert vm.delete(f"/api/v1/sessions/{sid}").status_code == 204
    finally:
        stop_server(again)


def test_pausing_a_busy_session_is_a_409(vm_server: Server) -> None:
    with vm_server.client(timeout=300) as vm, session(vm, backend="qemu") as sid:
        _ran(vm, sid, "import time", timeout=120)
        sleeper = threading.Thread(target=cell, args=(vm_server.client(timeout=300), sid, "time.sleep(4)"))
        sleeper.start()
        try:
            wait_for(lambda: vm.get(f"/api/v1/sessions/{sid}").json()["state"] == "busy", "the cell to hold the session")
            refused = vm.post(f"/api/v1/sessions/{sid}/pause")
            assert refused.status_code == 409 and "busy" in refused.json()["error"]
        finally:
            sleeper.join()
        assert vm.get(f"/api/v1/sessions/{sid}").json()["state"] == "idle"
        assert vm.post("/api/v1/sessions/no-such-session-id/pause").status_code == 404


def test_a_paused_session_past_its_idle_timeout_goes_with_its_folder(vm_server: Server) -> None:
    data = _data(vm_server)
    # The time-out counts from the last call: the pause.
    with vm_server.client(timeout=300) as vm, session(vm, backend="qemu", idle_timeout=6) as sid:
        assert _pause(vm, sid)["state"] == "paused"
        assert (data / "sessions" / sid).is_dir()
        wait_for(lambda: vm.get(f"/api/v1/sessions/{sid}").status_code == 404, "the paused session to expire", 60)
        # The reaper takes the session out of the table first, then removes its folder.
        wait_for(lambda: not (data / "sessions" / sid).exists(), "the expired session's folder to go", 10)
        assert _qemus_under(data) == []


def test_pause_and_resume_times(vm_server: Server) -> None:
    """Measured, not asserted against a target: the figures the benchmark reports too."""
    with vm_server.client(timeout=300) as vm, session(vm, backend="qemu") as sid:
        _ran(vm, sid, "x = 1", timeout=120)
        pauses, resumes, sizes = [], [], []
        for _ in range(5):
            started = time.perf_counter()
            _pause(vm, sid)
            pauses.append(time.perf_counter() - started)
            sizes.append(sum(f.stat().st_size for f in (_data(vm_server) / "sessions" / sid).rglob("*") if f.is_file()))
            started = time.perf_counter()
            _ran(vm, sid, "x += 1\nprint(x)")
            resumes.append(time.perf_counter() - started)
        assert cell(vm, sid, "print(x)")["stdout"] == "6\n"
        print(f"pause median {statistics.median(pauses) * 1000:.0f} ms {[round(p * 1000) for p in pauses]}; "
              f"resume + first cell median {statistics.median(resumes) * 1000:.0f} ms {[round(r * 1000) for r in resumes]}; "
              f"saved {statistics.median(sizes) / 2**20:.0f} MiB")
        assert min(sizes) > 16 << 20, "a paused session's folder holds less than its guest's RAM in use"
