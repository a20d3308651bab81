"""Sessions through real HTTP on the server's default backend (the jail here): cells that
keep their names, files in and out, time-outs and crashes a session survives, limits,
ownership, and an end with nothing left behind."""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from conftest import Server, require_images, start_server, stop_server, wait_for
from hostcheck import Footprint, cgroups_of, descendants, run_folders_of, settled_leaks
from sessionkit import SSE, cell, open_session, read_events, session


@pytest.fixture(autouse=True)
def _images() -> None:
    require_images("python")


def test_a_session_is_created_listed_shown_and_deleted(client: httpx.Client) -> None:
    created = client.post("/api/v1/sessions", json={"language": "py", "idle_timeout": 120})
    assert created.status_code == 201, created.text
    body = created.json()
    assert {"id", "language", "version", "backend", "created_at", "expires_at"} <= set(body)
    assert body["language"] == "python" and body["backend"] == "jail" and body["version"].startswith("Python 3")
    assert len(body["id"]) >= 22  # unguessable: 18 random bytes
    listed = client.get("/api/v1/sessions").json()["sessions"]
    assert body["id"] in [entry["id"] for entry in listed]
    assert client.get(f"/api/v1/sessions/{body['id']}").json()["id"] == body["id"]
    deleted = client.delete(f"/api/v1/sessions/{body['id']}")
    assert deleted.status_code == 204 and deleted.content == b""
    for response in (client.get(f"/api/v1/sessions/{body['id']}"),
                     client.post(f"/api/v1/sessions/{body['id']}/execute", json={"code": "1"}),
                     client.delete(f"/api/v1/sessions/{body['id']}")):
        assert response.status_code == 404
        assert response.json() == {"error": f"session not found: {body['id']}"}


def test_cells_keep_their_names_and_show_the_final_value(client: httpx.Client) -> None:
    with session(client) as sid:
        first = cell(client, sid, "x = 41\ndef double(n):\n    return 2 * n\nx")
        assert first["results"] == [{"type": "text", "text": "41", "data": None}]
        second = cell(client, sid, "print(x + 1)\ndouble(x)")
        assert second["stdout"] == "42\n" and second["exit_code"] == 0
        assert second["results"][0]["text"] == "82"
        assert second["sandbox_start"] == "session" and second["reset"] is False
        assert second["cpu_time_ms"] is not None and second["memory_kb"] > 1000


def test_a_cells_memory_is_its_own_peak_not_an_earlier_cells(client: httpx.Client) -> None:
    with session(client) as sid:
        big = cell(client, sid, "block = b'x' * (100 << 20)")
        assert big["memory_kb"] > 100 << 10, big
        cell(client, sid, "del block")
        after = cell(client, sid, "print(1)")
        # The interpreter alone holds some 15 MiB; the peak since it started would be over 100.
        assert after["memory_kb"] < 50 << 10, after


def test_an_exception_is_the_cells_result_and_the_names_stay(client: httpx.Client) -> None:
    with session(client) as sid:
        cell(client, sid, "y = 'kept'")
        failed = cell(client, sid, "1 / 0")
        assert failed["exit_code"] == 1 and "ZeroDivisionError" in failed["stderr"]
        assert "<cell 2>" in failed["stderr"] and failed["reset"] is False
        assert cell(client, sid, "print(y)")["stdout"] == "kept\n"


def test_a_cell_past_its_timeout_is_interrupted_and_the_names_survive(client: httpx.Client) -> None:
    with session(client) as sid:
        cell(client, sid, "z = 7")
        stopped = cell(client, sid, "while True:\n    pass", timeout=1)
        assert stopped["timed_out"] is True and stopped["reset"] is False
        assert "KeyboardInterrupt" in stopped["stderr"]
        assert cell(client, sid, "print(z)")["stdout"] == "7\n"


def test_a_cell_that_ignores_the_interrupt_resets_the_session(client: httpx.Client) -> None:
    with session(client) as sid:
        cell(client, sid, "z = 7")
        code = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(60)"
        stopped = cell(client, sid, code, timeout=1)
        assert stopped["timed_out"] is True and stopped["reset"] is True and stopped["signal"] == "SIGKILL"
        after = cell(client, sid, "print('z' in globals())")
        assert after["stdout"] == "False\n" and after["reset"] is False


@pytest.mark.parametrize(("code", "exit_code", "signal"), [
    ("import os\nos._exit(3)", 3, None),
    ("import ctypes\nctypes.string_at(0)", 139, "SIGSEGV"),
])
def test_a_cell_that_kills_its_interpreter_answers_and_the_next_works(
        client: httpx.Client, code: str, exit_code: int, signal: str | None) -> None:
    with session(client) as sid:
        crashed = cell(client, sid, code)
        assert (crashed["exit_code"], crashed["signal"], crashed["reset"]) == (exit_code, signal, True)
        assert cell(client, sid, "print(6 * 7)")["stdout"] == "42\n"


def test_stdin_reaches_the_cell(client: httpx.Client) -> None:
    with session(client) as sid:
        assert cell(client, sid, "print(input()[::-1])", stdin="abc\n")["stdout"] == "cba\n"


def test_files_go_in_and_out_as_bytes_in_pieces(client: httpx.Client) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 17)  # three and a bit of the channel's 1 MiB pieces
    with session(client) as sid:
        put = client.put(f"/api/v1/sessions/{sid}/files/data/blob.bin", content=payload)
        assert put.status_code == 201, put.text
        assert put.json() == {"path": "data/blob.bin", "size": len(payload)}
        ran = cell(client, sid, "import hashlib\nprint(hashlib.sha256(open('data/blob.bin','rb').read()).hexdigest())\n"
                                "open('out.txt', 'w').write('written by the program')")
        assert ran["stdout"].strip() == __import__("hashlib").sha256(payload).hexdigest()
        got = client.get(f"/api/v1/sessions/{sid}/files/data/blob.bin")
        assert got.status_code == 200 and got.headers["content-type"] == "application/octet-stream"
        assert got.content == payload
        assert client.get(f"/api/v1/sessions/{sid}/files/out.txt").content == b"written by the program"
        files = client.get(f"/api/v1/sessions/{sid}/files").json()["files"]
        assert {"path": "data", "size": 0, "type": "dir"} in files
        assert {"path": "data/blob.bin", "size": len(payload), "type": "file"} in files
        assert client.delete(f"/api/v1/sessions/{sid}/files/data/blob.bin").status_code == 204
        missing = client.get(f"/api/v1/sessions/{sid}/files/data/blob.bin")
        assert missing.status_code == 404 and "no such file" in missing.json()["error"]
        assert client.put(f"/api/v1/sessions/{sid}/files/empty", content=b"").json() == {"path": "empty", "size": 0}


def test_a_sessions_files_are_never_in_another(client: httpx.Client) -> None:
    with session(client) as one, session(client) as two:
        client.put(f"/api/v1/sessions/{one}/files/mine.txt", content=b"one's")
        cell(client, one, "open('/tmp/scratch', 'w').write('one')")
        assert client.get(f"/api/v1/sessions/{two}/files/mine.txt").status_code == 404
        looked = cell(client, two, "import os\nprint(os.listdir('.'), os.path.exists('/tmp/scratch'))")
        assert looked["stdout"] == "[] False\n"


def test_an_upload_past_file_mb_is_413_and_nothing_is_kept(client: httpx.Client) -> None:
    with session(client, file_mb=1) as sid:
        too_big = client.put(f"/api/v1/sessions/{sid}/files/big", content=b"x" * (1024 * 1024 + 1))
        assert too_big.status_code == 413 and "file_mb" in too_big.json()["error"]

        def chunked() -> Iterator[bytes]:  # no Content-Length: counted as it streams
            for _ in range(5):
                yield b"y" * (300 * 1024)

        assert client.put(f"/api/v1/sessions/{sid}/files/big", content=chunked()).status_code == 413
        assert client.get(f"/api/v1/sessions/{sid}/files").json()["files"] == []
        fits = client.put(f"/api/v1/sessions/{sid}/files/fits", content=b"z" * (1024 * 1024))
        assert fits.status_code == 201


def test_a_second_call_while_a_cell_runs_is_409(client: httpx.Client) -> None:
    with session(client) as sid:
        url = f"{str(client.base_url).rstrip('/')}/api/v1/sessions/{sid}/execute"
        code = "import time\nprint('running', flush=True)\ntime.sleep(30)"
        with httpx.stream("POST", url, json={"code": code}, headers=SSE, timeout=60) as streaming:
            for name, data, _ in read_events(streaming):
                assert name == "stdout" and data["data"].startswith("running")
                busy = client.post(f"/api/v1/sessions/{sid}/execute", json={"code": "1"})
                assert busy.status_code == 409 and "busy" in busy.json()["error"]
                assert client.get(f"/api/v1/sessions/{sid}/files").status_code == 409
                break
        # The client went away: the cell is interrupted and the session free again.
        wait_for(lambda: client.post(f"/api/v1/sessions/{sid}/execute", json={"code": "2"}).status_code == 200,
                 "the session to be free after its client left")


def test_pausing_a_jail_session_is_a_409_and_it_goes_on(client: httpx.Client) -> None:
    with session(client) as sid:
        assert client.get(f"/api/v1/sessions/{sid}").json()["backend"] == "jail"
        assert cell(client, sid, "x = 41")["exit_code"] == 0
        refused = client.post(f"/api/v1/sessions/{sid}/pause")
        assert refused.status_code == 409 and "jail" in refused.json()["error"], refused.text
        assert client.get(f"/api/v1/sessions/{sid}").json()["state"] == "idle"
        assert cell(client, sid, "print(x + 1)")["stdout"] == "42\n"
    assert client.post("/api/v1/sessions/no-such-session-id/pause").status_code == 404


def test_bad_requests_are_clear_json_errors(client: httpx.Client) -> None:
    assert client.post("/api/v1/sessions", json={"language": "cobol-2099"}).status_code == 404
    assert client.post("/api/v1/sessions", json={"language": "python", "idle_timeout": 0}).status_code == 400
    too_long = client.post("/api/v1/sessions", json={"language": "python", "idle_timeout": 10**9})
    assert too_long.status_code == 400 and "idle_timeout" in too_long.json()["error"], too_long.text
    wrong_version = client.post("/api/v1/sessions", json={"language": "python", "version": "2.7"})
    assert wrong_version.status_code == 404 and wrong_version.json()["error"].startswith("version not found: python 2.7")
    with session(client) as sid:
        assert client.post(f"/api/v1/sessions/{sid}/execute", json={"code": 5}).status_code == 400
        assert client.post(f"/api/v1/sessions/{sid}/execute", content=b"{").status_code == 400


def test_an_idle_session_is_destroyed(spawn: Callable[..., Server]) -> None:
    server = spawn()
    with server.client() as client:
        client.post("/api/v1/execute", json={"language": "python", "code": "pass"})  # the template, shared
        baseline = Footprint.of(server.process.pid)
        sid = open_session(client, idle_timeout=1)
        wait_for(lambda: client.get(f"/api/v1/sessions/{sid}").status_code == 404, "the idle session to go")
        assert not settled_leaks(server.process.pid, baseline)


def test_past_the_session_limit_is_429(spawn: Callable[..., Server]) -> None:
    server = spawn(sessions__max_open="2")
    with server.client() as client:
        first, _ = open_session(client), open_session(client)
        refused = client.post("/api/v1/sessions", json={"language": "python"})
        assert refused.status_code == 429 and "limit" in refused.json()["error"]
        client.delete(f"/api/v1/sessions/{first}")
        open_session(client)


def test_a_session_belongs_to_the_key_that_made_it(spawn: Callable[..., Server]) -> None:
    server = spawn(api_keys='["key-one", "key-two"]')
    one = server.client(headers={"authorization": "Bearer key-one"})
    two = server.client(headers={"x-api-key": "key-two"})
    with one, two:
        sid = open_session(one)
        assert two.get(f"/api/v1/sessions/{sid}").status_code == 404
        assert two.post(f"/api/v1/sessions/{sid}/execute", json={"code": "1"}).status_code == 404
        assert two.delete(f"/api/v1/sessions/{sid}").status_code == 404
        assert two.get("/api/v1/sessions").json() == {"sessions": []}
        assert [entry["id"] for entry in one.get("/api/v1/sessions").json()["sessions"]] == [sid]
        assert httpx.get(f"{server.url}/api/v1/sessions").status_code == 401
        assert cell(one, sid, "print(1)")["stdout"] == "1\n"


def test_sessions_end_with_the_server_and_a_new_one_knows_none(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        with server.client() as client:
            sid = open_session(client)
            cell(client, sid, "x = 1")
            held = descendants(server.process.pid)
            groups = cgroups_of(server.process.pid)
            assert held and groups
    finally:
        stop_server(server)
    alive = {pid for pid in held if Path(f"/proc/{pid}").exists()}
    assert not alive, f"the session's processes outlived the server: {alive}"
    assert not cgroups_of(server.process.pid) and not run_folders_of(server.process.pid)
    again = start_server(tmp_path)
    try:
        assert httpx.get(f"{again.url}/api/v1/sessions/{sid}").status_code == 404
    finally:
        stop_server(again)


def test_a_compiled_language_keeps_its_files_and_compiles_afresh(client: httpx.Client) -> None:
    require_images("go")
    with session(client, "go") as sid:
        write = ('package main\nimport "os"\nfunc main() { os.WriteFile("note.txt", []byte("kept"), 0o644) }\n')
        assert cell(client, sid, write)["compile_exit_code"] == 0
        read = 'package main\nimport ("fmt"; "os")\nfunc main() { b, _ := os.ReadFile("note.txt"); fmt.Println(string(b)) }\n'
        assert cell(client, sid, read)["stdout"] == "kept\n"


def test_many_cells_in_parallel_sessions_do_not_mix(client: httpx.Client) -> None:
    ids = [open_session(client) for _ in range(4)]
    failures: list[str] = []

    def work(index: int, sid: str) -> None:
        for step in range(5):
            body = cell(client, sid, f"v = {index * 100 + step}\nprint(v)")
            if body["stdout"] != f"{index * 100 + step}\n":
                failures.append(f"session {index}: {body['stdout']!r}")

    threads = [threading.Thread(target=work, args=(i, sid)) for i, sid in enumerate(ids)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for sid in ids:
        client.delete(f"/api/v1/sessions/{sid}")
    assert not failures


def test_execute_with_files_runs_a_multi_file_program(client: httpx.Client) -> None:
    files = [{"path": "app.py", "content": "from lib.util import answer\nprint(answer(), open('data.bin','rb').read())"},
             {"path": "lib/util.py", "content": "def answer():\n    return 42\n"},
             {"path": "lib/__init__.py", "content": ""},
             {"path": "data.bin", "content": base64.b64encode(b"\x00\xff").decode(), "encoding": "base64"}]
    response = client.post("/api/v1/execute", json={"language": "python", "files": files})
    assert response.status_code == 200, response.text
    assert response.json()["stdout"] == "42 b'\\x00\\xff'\n"
    with_code = client.post("/api/v1/execute", json={"language": "python", "code": "import lib.util as u\nprint(u.answer())",
                                                     "files": files[1:3]})
    assert with_code.json()["stdout"] == "42\n"


@pytest.mark.parametrize("path", ["../escape.py", "/etc/passwd", "a/../../b", "./a", "a//b", ""])
def test_execute_files_that_leave_the_working_folder_are_400(client: httpx.Client, path: str) -> None:
    response = client.post("/api/v1/execute", json={"language": "python", "code": "print(1)",
                                                    "files": [{"path": path, "content": "x"}]})
    assert response.status_code == 400 and "files" in response.json()["error"]


def test_execute_needs_code_or_files(client: httpx.Client) -> None:
    response = client.post("/api/v1/execute", json={"language": "python"})
    assert response.json() == {"error": "code: give the program as code, or as the first of files"}
    assert response.status_code == 400
    clash = client.post("/api/v1/execute", json={"language": "python", "code": "1",
                                                 "files": [{"path": "main.py", "content": "2"}]})
    assert clash.status_code == 400 and clash.json()["error"].startswith("files: main.py is where code goes")


@pytest.mark.parametrize(("language", "define", "use", "expected"), [
    ("nodejs", "let x = 41; const f = (n) => n * 2; var y = 1", "console.log(x + 1, f(y))", "42 2\n"),
    ("bash", "x=41; f() { echo \"f:$1\"; }", "echo $((x + 1)); f y", "42\nf:y\n"),
])
def test_nodejs_and_bash_cells_keep_their_names(client: httpx.Client, language: str, define: str, use: str,
                                                 expected: str) -> None:
    require_images(language)
    with session(client, language) as sid:
        assert cell(client, sid, define)["exit_code"] == 0
        used = cell(client, sid, use)
        assert (used["stdout"], used["exit_code"], used["reset"]) == (expected, 0, False)


def test_a_nodejs_cell_past_its_timeout_keeps_the_names(client: httpx.Client) -> None:
    require_images("nodejs")
    with session(client, "nodejs") as sid:
        cell(client, sid, "var kept = 'yes'")
        stopped = cell(client, sid, "while (true) {}", timeout=1)
        assert stopped["timed_out"] is True and stopped["reset"] is False and "SIGINT" in stopped["stderr"]
        assert cell(client, sid, "kept")["results"][0]["text"] == "'yes'"
        ended = cell(client, sid, "process.exit(5)")
        assert (ended["exit_code"], ended["reset"]) == (5, True)
        assert cell(client, sid, "typeof kept")["results"][0]["text"] == "'undefined'"


def test_a_bash_cell_past_its_timeout_keeps_the_names_unless_the_shell_itself_spins(client: httpx.Client) -> None:
    require_images("bash")
    with session(client, "bash") as sid:
        cell(client, sid, "kept=yes")
        # The interrupt stops the command the shell waits for, and the shell goes on.
        stopped = cell(client, sid, "sleep 30", timeout=1)
        assert stopped["timed_out"] is True and stopped["reset"] is False, stopped
        assert cell(client, sid, 'echo "$kept"')["stdout"] == "yes\n"
        # A loop of builtins runs in the shell, which a trapped interrupt does not stop: it is
        # started afresh, and the answer says so (the contract's "reset").
        spun = cell(client, sid, "while true; do :; done", timeout=1)
        assert spun["timed_out"] is True and spun["reset"] is True, spun
        assert cell(client, sid, 'echo "${kept:-gone}"')["stdout"] == "gone\n"


def test_deleting_a_session_while_its_cell_runs_interrupts_the_cell(client: httpx.Client) -> None:
    sid = open_session(client)
    url = f"/api/v1/sessions/{sid}/execute"
    answers: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: answers.append(client.post(url, json={"code": "import time\ntime.sleep(120)",
                                                                                  "timeout": 150})))
    thread.start()
    # Only the state is watched: a probing call could take the session before the cell does.
    wait_for(lambda: client.get(f"/api/v1/sessions/{sid}").json()["state"] == "busy", "the cell to be running")
    assert client.post(url, json={"code": "1"}).status_code == 409
    assert client.delete(f"/api/v1/sessions/{sid}").status_code == 204
    thread.join(timeout=60)
    assert not thread.is_alive(), "the cell went on after its session was deleted"
    assert answers[0].status_code == 200 and "KeyboardInterrupt" in answers[0].json()["stderr"]
    assert client.get(f"/api/v1/sessions/{sid}").status_code == 404


@pytest.mark.parametrize("content", ["not base64!", "é", "QUJ"])
def test_execute_files_that_are_not_base64_are_400(client: httpx.Client, content: str) -> None:
    response = client.post("/api/v1/execute", json={"language": "python", "code": "1",
                                                    "files": [{"path": "a.bin", "content": content,
                                                               "encoding": "base64"}]})
    assert response.status_code == 400 and response.json()["error"].startswith("files: a.bin: content is not base64")


def test_a_cells_file_is_named_as_its_code_declares(client: httpx.Client) -> None:
    require_images("java")
    with session(client, "java") as sid:
        write = ('public class Writer { public static void main(String[] a) throws Exception {\n'
                 '  java.nio.file.Files.writeString(java.nio.file.Path.of("note.txt"), "kept"); } }\n')
        assert cell(client, sid, write, timeout=120)["compile_exit_code"] == 0
        read = ('public class Reader { public static void main(String[] a) throws Exception {\n'
                '  System.out.println(java.nio.file.Files.readString(java.nio.file.Path.of("note.txt"))); } }\n')
        assert cell(client, sid, read, timeout=120)["stdout"] == "kept\n"
        names = {entry["path"] for entry in client.get(f"/api/v1/sessions/{sid}/files").json()["files"]}
        assert {"Writer.java", "Reader.java", "note.txt"} <= names
