"""Sessions, streaming and multi-file executes on the qemu backend through the real HTTP API:
each session is a microVM kept across calls."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import Server, start_server, stop_server, wait_for
from hostcheck import cmdline, descendants
from sessionkit import cell, events, held_by_a_slow_cell, leave_mid_cell_then_check_names, open_session, session

from .conftest import own_vm_data, own_vm_server

LANGUAGES = ("python", "nodejs", "bash")


@pytest.fixture(scope="module")
def vm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with own_vm_server(tmp_path_factory.mktemp("vm-sessions"), LANGUAGES) as server:
        yield server


@pytest.fixture(scope="module")
def vm(vm_server: Server) -> Iterator[httpx.Client]:
    with vm_server.client(timeout=300) as client:
        yield client


def _vm_leftovers(vm_server: Server) -> list[Path]:
    return list((Path(vm_server.log).parent / "data" / "run").glob("qemu-*"))


def test_a_python_session_in_a_vm_keeps_names_files_and_survives_crashes(vm_server: Server, vm: httpx.Client) -> None:
    payload = os.urandom(2 * 1024 * 1024 + 3)
    with session(vm, backend="qemu") as sid:
        assert vm.get(f"/api/v1/sessions/{sid}").json()["backend"] == "qemu"
        assert cell(vm, sid, "x = 41\nx", timeout=120)["results"][0]["text"] == "41"
        assert cell(vm, sid, "print(x + 1)")["stdout"] == "42\n"
        stopped = cell(vm, sid, "while True:\n    pass", timeout=2)
        assert stopped["timed_out"] is True and stopped["reset"] is False
        assert cell(vm, sid, "print(x)")["stdout"] == "41\n"
        assert vm.put(f"/api/v1/sessions/{sid}/files/in/blob", content=payload).json()["size"] == len(payload)
        ran = cell(vm, sid, "import os\nprint(os.path.getsize('in/blob'), os.stat('in/blob').st_uid)\n"
                            "os.symlink('/etc/passwd', 'passwd')\nopen('out.txt', 'w').write('from the VM')")
        assert ran["stdout"] == f"{len(payload)} 65534\n", ran
        assert vm.get(f"/api/v1/sessions/{sid}/files/in/blob").content == payload
        assert vm.get(f"/api/v1/sessions/{sid}/files/out.txt").content == b"from the VM"
        refused = vm.get(f"/api/v1/sessions/{sid}/files/passwd")
        assert refused.status_code == 400 and "root:" not in refused.text
        crashed = cell(vm, sid, "import os\nos._exit(9)")
        assert (crashed["exit_code"], crashed["reset"]) == (9, True)
        assert cell(vm, sid, "print('alive')")["stdout"] == "alive\n"
    wait_for(lambda: not _vm_leftovers(vm_server), "the session's VM to be gone")


@pytest.mark.parametrize(("language", "define", "use", "expected"), [
    ("nodejs", "let x = 41", "console.log(x + 1)", "42\n"),
    ("bash", "x=41", "echo $((x + 1))", "42\n"),
])
def test_nodejs_and_bash_cells_in_a_vm(vm: httpx.Client, language: str, define: str, use: str,
                                       expected: str) -> None:
    with session(vm, language, backend="qemu") as sid:
        assert cell(vm, sid, define, timeout=120)["exit_code"] == 0
        assert cell(vm, sid, use)["stdout"] == expected


def test_streaming_and_files_on_execute_in_a_vm(vm_server: Server, vm: httpx.Client) -> None:
    code = "import time\nprint('first', flush=True)\ntime.sleep(2)\nprint(open('lib/data.txt').read())"
    received = events(vm, "/api/v1/execute", {"language": "python", "code": code, "backend": "qemu", "timeout": 120,
                                              "files": [{"path": "lib/data.txt", "content": "second"}]})
    assert [name for name, _, _ in received].count("result") == 1 and received[-1][0] == "result"
    assert received[-1][1]["stdout"] == "first\nsecond\n" and received[-1][1]["cpu_time_ms"] is not None
    first_at = next(at for name, data, at in received if name == "stdout" and "first" in str(data["data"]))
    assert received[-1][2] - first_at > 1.0, "the first line came only with the answer"
    with session(vm, backend="qemu") as sid:
        leave_mid_cell_then_check_names(vm, vm_server.url, sid)


def test_a_vm_session_answers_crashes_stuck_cells_busy_calls_and_idleness_as_the_jails_does(
        vm_server: Server, vm: httpx.Client) -> None:
    with session(vm, backend="qemu") as sid:
        assert cell(vm, sid, "z = 7", timeout=120)["exit_code"] == 0
        crashed = cell(vm, sid, "import ctypes\nctypes.string_at(0)")
        assert (crashed["exit_code"], crashed["signal"], crashed["reset"]) == (139, "SIGSEGV", True), crashed
        assert cell(vm, sid, "z = 8\nprint(6 * 7)")["stdout"] == "42\n"
        stuck = cell(vm, sid, "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(60)",
                     timeout=2)
        assert (stuck["timed_out"], stuck["reset"], stuck["signal"]) == (True, True, "SIGKILL"), stuck
        assert cell(vm, sid, "print('z' in globals())")["stdout"] == "False\n"
        with held_by_a_slow_cell(vm, sid):
            busy = vm.post(f"/api/v1/sessions/{sid}/execute", json={"code": "1"})
            assert busy.status_code == 409 and "busy" in busy.json()["error"], busy.text
    idle = open_session(vm, backend="qemu", idle_timeout=1)
    wait_for(lambda: vm.get(f"/api/v1/sessions/{idle}").status_code == 404, "the idle VM session to go")
    wait_for(lambda: not _vm_leftovers(vm_server), "the sessions' VMs to be gone")


def test_a_vm_session_ends_with_the_server_and_a_new_one_knows_none(tmp_path: Path) -> None:
    env = own_vm_data(tmp_path, ("python",))
    run = Path(env["INFRA_OPERATOR_DATA_DIR"]) / "run"
    server = start_server(tmp_path, env=env)
    try:
        with server.client(timeout=300) as client:
            sid = open_session(client, backend="qemu")
            assert cell(client, sid, "x = 1\nx", timeout=120)["results"][0]["text"] == "1"
            vmms = {pid for pid in descendants(server.process.pid) if "qemu-system" in cmdline(pid)}
            assert vmms and list(run.glob("qemu-*"))
    finally:
        stop_server(server)
    alive = {pid for pid in vmms if Path(f"/proc/{pid}").exists()}
    assert not alive, f"the session's VMM outlived the server: {alive}"
    assert not list(run.glob("qemu-*")), "a VM's run folder outlived the server"
    again = start_server(tmp_path, env=env)
    try:
        assert httpx.get(f"{again.url}/api/v1/sessions/{sid}").status_code == 404
    finally:
        stop_server(again)
