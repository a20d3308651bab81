"""The Python SDK against the real server: real sandboxes, real HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Server, require_images

from .conftest import API_KEY, AsyncClient, Client, sdk


@pytest.fixture(autouse=True)
def _images() -> None:
    require_images("python", "nodejs")


def test_the_seed_shape_keeps_working(client: Client) -> None:
    assert client.execute("python", "print(2 ** 10)")["stdout"] == "1024\n"
    assert client.execute("python", "print(2 ** 10)", 30)["stdout"] == "1024\n"


def test_a_failing_program_is_a_result_with_every_answer_field(client: Client) -> None:
    result = client.execute("python", "import sys; print('out'); sys.exit(3)", stdin="", args=["a"])
    assert (result["exit_code"], result["stdout"], result["timed_out"]) == (3, "out\n", False)
    assert result["load_time"].endswith("ms") and isinstance(result["memory_kb"], int)


def test_server_errors_carry_status_and_message(client: Client) -> None:
    with pytest.raises(sdk.NotFound) as missing:
        client.execute("ruby2", "puts 1")
    assert missing.value.status == 404 and "language not found: ruby2" in missing.value.message
    with pytest.raises(sdk.BadRequest) as bad:
        client.execute("python", "print(1)", timeout=100000)
    assert bad.value.status == 400 and "timeout" in bad.value.message



def test_a_closed_port_is_a_transport_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with Client(f"http://127.0.0.1:{port}") as client, pytest.raises(sdk.TransportError) as raised:
        client.health()
    assert not isinstance(raised.value, sdk.Timeout)


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A server that accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        done.set()
        listener.close()
        for connection in accepted:
            connection.close()


def test_no_answer_within_the_timeout_is_a_timeout(silent_server: str) -> None:
    with Client(silent_server, timeout=0.3) as client, pytest.raises(sdk.Timeout):
        client.health()


def test_api_keys_as_bearer(keyed_server: Server) -> None:
    with Client(keyed_server.url) as anonymous:
        assert anonymous.health()["status"] in ("healthy", "degraded")  # /health needs no key
        with pytest.raises(sdk.Unauthorized) as refused:
            anonymous.execute("python", "print(1)")
        assert refused.value.status == 401 and "API key" in refused.value.message
    with Client(keyed_server.url, api_key="wrong") as wrong, pytest.raises(sdk.Unauthorized):
        wrong.languages()
    with Client(keyed_server.url, api_key=API_KEY) as keyed:
        assert keyed.execute("python", "print(7)")["stdout"] == "7\n"


def test_languages(client: Client) -> None:
    listed = client.languages()
    assert listed["count"] == len(listed["languages"]) and "python" in {entry["name"] for entry in listed["languages"]}
    assert client.language("python")["name"] == "python"


def test_execute_with_files_as_text_bytes_and_paths(client: Client, tmp_path: Path) -> None:
    local = tmp_path / "local.bin"
    local.write_bytes(bytes(range(256)))
    code = "import hashlib; print(open('note.txt').read(), len(open('raw.bin','rb').read()), " \
           "hashlib.sha256(open('local.bin','rb').read()).hexdigest()[:12])"
    result = client.execute("python", code, files={"note.txt": "héllo", "raw.bin": b"\x00\x01\x02", "local.bin": local})
    assert result["stdout"] == f"héllo 3 {hashlib.sha256(bytes(range(256))).hexdigest()[:12]}\n", result["stderr"]


# Streaming and sessions (api-contract.md, second release).

def test_stream_a_one_shot_execute(client: Client) -> None:
    code = "import sys\nprint('to out', flush=True)\nprint('to err', file=sys.stderr, flush=True)\nprint('more')"
    with client.stream("python", code) as events:
        seen = list(events)
    assert isinstance(seen[-1], sdk.Result) and sum(isinstance(e, sdk.Result) for e in seen) == 1
    outputs = [event for event in seen if isinstance(event, sdk.Output)]
    assert "".join(e.text for e in outputs if e.stream == "stdout") == "to out\nmore\n"
    assert "".join(e.text for e in outputs if e.stream == "stderr") == "to err\n"
    assert events.result is not None and events.result["stdout"] == "to out\nmore\n" and events.result["exit_code"] == 0


def test_stream_errors_before_output_are_exceptions(client: Client) -> None:
    with pytest.raises(sdk.NotFound, match="language not found"):
        client.stream("ruby2", "x")


def test_output_reaches_the_client_while_the_program_runs(client: Client) -> None:
    """The cell prints, then loops until it is killed at its timeout: output seen before that
    timeout can only have come while it ran. The test then hangs up, which interrupts the cell."""
    with client.session("python") as session:
        cell = "import time\nprint('waiting', flush=True)\nwhile True: time.sleep(0.05)"
        started = time.monotonic()
        with session.stream(cell, timeout=CELL_TIMEOUT) as events:
            first = next(iter(events))
            elapsed = time.monotonic() - started
        assert isinstance(first, sdk.Output) and (first.stream, first.text.rstrip()) == ("stdout", "waiting")
        assert events.result is None and elapsed < CELL_TIMEOUT, (elapsed, events.result)


CELL_TIMEOUT = 20


def test_a_session_keeps_names_and_files_and_is_deleted_at_the_end(client: Client, tmp_path: Path) -> None:
    local = tmp_path / "upload.bin"
    local.write_bytes(b"\x00\xffbinary")
    with client.session("python", idle_timeout=120) as session:
        assert session.info["language"] == "python" and session.id in {s["id"] for s in client.sessions()}
        session.execute("x = 41")
        cell = session.execute("x + 1")
        assert cell["results"] == [{"type": "text", "text": "42", "data": None}] or cell["results"][0]["text"] == "42"
        assert session.write("notes/a.txt", "héllo") == {"path": "notes/a.txt", "size": len("héllo".encode())}
        assert session.write("raw.bin", b"\x01\x02")["size"] == 2
        assert session.write("upload.bin", local)["size"] == 8
        assert session.read("notes/a.txt") == "héllo".encode()
        assert session.execute("print(open('upload.bin','rb').read())")["stdout"] == "b'\\x00\\xffbinary'\n"
        session.execute("open('made.txt', 'w').write('by the program')")
        saved = session.download("made.txt", tmp_path / "made.txt")
        assert saved.read_text() == "by the program"
        listed = {entry["path"]: entry["type"] for entry in session.files()}
        assert listed["notes"] == "dir" and listed["notes/a.txt"] == "file" and "made.txt" in listed
        session.delete_file("raw.bin")
        with pytest.raises(sdk.NotFound):
            session.read("raw.bin")
        with pytest.raises(sdk.BadRequest):
            session.write("../escape.txt", "x")
        with pytest.raises(sdk.BadRequest):
            session.write("/etc/passwd", "x")
        assert client.attach(session.id).info["id"] == session.id
        assert session.refresh()["id"] == session.id
        with pytest.raises(sdk.Conflict, match="cannot pause"):  # this server's backend is the jail
            session.pause()
    with pytest.raises(sdk.NotFound):
        client.attach(session.id)
    session.close()  # closing again is no error


def test_the_async_client(server: Server) -> None:
    async def main() -> None:
        async with AsyncClient(server.url) as client:
            assert (await client.execute("nodejs", "console.log(2 ** 10)"))["stdout"] == "1024\n"
            async with client.stream("python", "print('a', flush=True)\nprint('b')") as events:
                texts = [event.text async for event in events if isinstance(event, sdk.Output)]
            assert "".join(texts) == "a\nb\n" and events.result is not None
            async with client.session("python") as session:
                await session.execute("y = 'kept'")
                assert (await session.execute("print(y)"))["stdout"] == "kept\n"
                await session.write("f.bin", b"\x07")
                assert await session.read("f.bin") == b"\x07"
                async with session.stream("print(y * 2)") as cell:
                    last = [event async for event in cell][-1]
                    assert cell.result is not None and last == sdk.Result(cell.result)
            with pytest.raises(sdk.NotFound):
                await client.attach(session.id)
            with pytest.raises(sdk.NotFound, match="language not found"):
                await client.execute("ruby2", "x")

    asyncio.run(main())


# Submissions (api-contract.md, second release).

def test_submit_and_wait(client: Client) -> None:
    queued = client.submit("python", "print(6 * 7)")
    assert queued["status"] in ("queued", "running", "done")
    done = client.wait(queued["id"], timeout=120)
    assert done["status"] == "done" and done.get("result", {}).get("stdout") == "42\n"
    assert client.submission(queued["id"])["status"] == "done"


def test_submit_with_tests_waits_for_the_verdicts(client: Client) -> None:
    judged = client.submit("python", "print(int(input()) * 2)", wait=True,
                        tests=[{"stdin": "2", "expected_output": "4"}, {"stdin": "3", "expected_output": "7"}])
    assert judged["status"] == "done"
    result = judged["result"]
    assert result["verdict"] == "wrong_answer"
    assert [test["verdict"] for test in result["tests"]] == ["accepted", "wrong_answer"]


def test_a_batch_keeps_its_order(client: Client) -> None:
    ids = client.submit_batch([{"language": "python", "code": f"print({n})"} for n in range(5)])
    assert [client.wait(found, timeout=120)["result"]["stdout"] for found in ids] == [f"{n}\n" for n in range(5)]


def test_an_unknown_submission_is_not_found(client: Client) -> None:
    with pytest.raises(sdk.NotFound):
        client.submission("no-such-submission")


def test_async_submissions(server: Server) -> None:
    async def main() -> None:
        async with AsyncClient(server.url) as client:
            done = await client.submit("python", "print('async')", wait=True)
            assert done["status"] == "done" and done["result"]["stdout"] == "async\n"

    asyncio.run(main())
