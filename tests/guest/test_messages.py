"""The frames that really cross the host/guest line have the keys ``guest/messages.py``
declares: mypy checks each side against the definition, this checks the JSON between them."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator

import pytest
from conftest import require_images

from infra_operator.backends import Sandbox
from infra_operator.config import Settings
from infra_operator.guest.messages import (
    CellReply,
    ExecuteReply,
    ExecuteRequest,
    FileDeleteReply,
    FileEntry,
    FileGetReply,
    FileListReply,
    FilePutReply,
    PingReply,
    SessionReply,
    StepResult,
)
from infra_operator.services import Services


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    require_images("python")
    services = Services(Settings())
    backend = services.backends.get("jail")
    started = backend.start(services.executor.default_spec(backend, "python"))
    try:
        yield started
    finally:
        started.destroy()
        backend.close()


def _execute(code: str) -> ExecuteRequest:
    return {
        "op": "execute",
        "files": {"main.py": base64.b64encode(code.encode()).decode()},
        "compile": None,
        "run": ["/usr/bin/python3", "main.py"],
        "env": {"PATH": "/usr/bin:/bin"},
        "stdin": "",
        "limits": {"wall_seconds": 10, "cpu_seconds": 10, "memory_bytes": 256 << 20, "processes": 32,
                   "output_bytes": 1 << 16, "file_bytes": 1 << 20},
        "entropy": base64.b64encode(b"\0" * 16).decode(),
        "clock": time.time(),
    }


def test_replies_carry_exactly_the_declared_keys(sandbox: Sandbox) -> None:
    ping = sandbox.call({"op": "ping"}, time.monotonic() + 10)
    assert set(ping) == PingReply.__required_keys__

    reply = sandbox.call(_execute("print('hi')"), time.monotonic() + 10)
    assert set(reply) == ExecuteReply.__required_keys__
    assert reply["op"] == "execute" and reply["run"] is not None
    assert set(reply["run"]) == StepResult.__required_keys__
    assert base64.b64decode(reply["run"]["stdout"]) == b"hi\n"


def test_session_cell_and_file_replies_carry_exactly_the_declared_keys(sandbox: Sandbox) -> None:
    deadline = time.monotonic() + 10
    limits = _execute("")["limits"]
    opened = sandbox.call({"op": "session", "kernel": "python", "source": "main.py", "compile": None,
                           "run": ["/usr/bin/python3", "main.py"], "env": {"PATH": "/usr/bin:/bin"},
                           "limits": limits, "entropy": "", "clock": time.time()}, deadline)
    assert set(opened) == SessionReply.__required_keys__
    ran = sandbox.call({"op": "cell", "code": "6 * 7", "stdin": "", "wall_seconds": 5, "stream": False}, deadline)
    assert set(ran) == CellReply.__required_keys__ and ran["op"] == "cell" and ran["run"] is not None
    assert set(ran["run"]) == StepResult.__required_keys__
    assert ran["results"] == [{"type": "text", "text": "42"}]
    put = sandbox.call({"op": "file_put", "path": "a", "data": base64.b64encode(b"xy").decode(), "offset": 0}, deadline)
    assert set(put) == FilePutReply.__required_keys__
    got = sandbox.call({"op": "file_get", "path": "a", "offset": 0, "length": 10}, deadline)
    assert set(got) == FileGetReply.__required_keys__
    listed = sandbox.call({"op": "file_list"}, deadline)
    assert set(listed) == FileListReply.__required_keys__ and listed["op"] == "file_list"
    assert [set(entry) for entry in listed["files"]] == [FileEntry.__required_keys__]
    assert set(sandbox.call({"op": "file_delete", "path": "a"}, deadline)) == FileDeleteReply.__required_keys__
