"""Every operation of the API as data: which request to send, and how to read its answer.
``Client`` and ``AsyncClient`` only send these; neither builds a request or reads an answer
itself, so the two cannot drift apart."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Generic, TypeVar, cast
from urllib.parse import quote

import httpx

from ._types import (
    CellResult,
    ExecuteResult,
    FileEntry,
    Files,
    FileSource,
    Health,
    Languages,
    RunOptions,
    SessionInfo,
    SessionOptions,
    Submission,
    SubmissionSpec,
    TestCase,
    WrittenFile,
)

T = TypeVar("T")

API = "/api/v1"
TIMEOUT_MARGIN_SECONDS = 30.0
"""How much longer than a program's own ``timeout`` a call that runs it waits for its answer
(getting a sandbox ready, compiling, the answer's way back)."""
EVENT_STREAM = "text/event-stream"


def _json(response: httpx.Response) -> Any:
    return response.json()


def _nothing(response: httpx.Response) -> None:
    return None


def _bytes(response: httpx.Response) -> bytes:
    return response.content


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    json: Any = None
    content: bytes | None = None
    params: Mapping[str, str] | None = None
    runs_for: float | None = None
    """The program's own time limit in seconds, when the call runs one: the read timeout is
    then at least that plus ``TIMEOUT_MARGIN_SECONDS``."""
    headers: Mapping[str, str] = field(default_factory=dict)

    def request(self, http: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        request = http.build_request(self.method, self.path, json=self.json, content=self.content, params=self.params,
                                     headers=self.headers or None)
        read = http.timeout.read
        if self.runs_for is not None and read is not None:
            request.extensions["timeout"] = {**request.extensions["timeout"],
                                             "read": max(read, self.runs_for + TIMEOUT_MARGIN_SECONDS)}
        return request


def _file(path: str, source: FileSource) -> dict[str, str]:
    if isinstance(source, str):
        return {"path": path, "content": source}
    return {"path": path, "content": base64.b64encode(read_source(source)).decode("ascii"), "encoding": "base64"}


def read_source(source: bytes | os.PathLike[str] | IO[bytes]) -> bytes:
    if isinstance(source, bytes):
        return source
    if isinstance(source, os.PathLike):
        with open(source, "rb") as opened:
            return opened.read()
    return source.read()


def upload_body(source: FileSource) -> bytes:
    """A session file's body: text as UTF-8; bytes; a path's file or a file object, read."""
    return source.encode("utf-8") if isinstance(source, str) else read_source(source)


def _body(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The request's JSON: fields left out (None) are the server's defaults; ``files`` go as the API wants them."""
    body = {name: value for name, value in fields.items() if value is not None}
    files: Files | None = body.pop("files", None)
    if files is not None:
        body["files"] = [_file(path, source) for path, source in files.items()]
    if "args" in body:
        body["args"] = list(body["args"])
    return body


def health() -> Call[Health]:
    return Call("GET", "/health", _json)


def languages() -> Call[Languages]:
    return Call("GET", f"{API}/languages", _json)


def language(name: str) -> Call[dict[str, Any]]:
    return Call("GET", f"{API}/languages/{quote(name, safe='')}", _json)


def execute(language: str, code: str | None, timeout: int | None, options: RunOptions,
            stream: bool = False) -> Call[ExecuteResult]:
    body = _body({"language": language, "code": code, "timeout": timeout, **options})
    return Call("POST", f"{API}/execute", _json, json=body, runs_for=float(timeout or 30),
                headers={"accept": EVENT_STREAM} if stream else {})


def create_session(language: str, options: SessionOptions) -> Call[SessionInfo]:
    return Call("POST", f"{API}/sessions", _json, json=_body({"language": language, **options}))


def list_sessions() -> Call[list[SessionInfo]]:
    return Call("GET", f"{API}/sessions", lambda response: cast(list[SessionInfo], response.json()["sessions"]))


def session_info(session_id: str) -> Call[SessionInfo]:
    return Call("GET", f"{API}/sessions/{quote(session_id, safe='')}", _json)


def delete_session(session_id: str) -> Call[None]:
    return Call("DELETE", f"{API}/sessions/{quote(session_id, safe='')}", _nothing)


def pause_session(session_id: str) -> Call[SessionInfo]:
    # Saving a VM's memory to disk takes seconds under emulation: a call's wait, not a glance's.
    return Call("POST", f"{API}/sessions/{quote(session_id, safe='')}/pause", _json, runs_for=60.0)


def run_cell(session_id: str, code: str, stdin: str | None, timeout: int | None,
             stream: bool = False) -> Call[CellResult]:
    return Call("POST", f"{API}/sessions/{quote(session_id, safe='')}/execute", _json,
                json=_body({"code": code, "stdin": stdin, "timeout": timeout}), runs_for=float(timeout or 30),
                headers={"accept": EVENT_STREAM} if stream else {})


def _file_url(session_id: str, path: str) -> str:
    """Each part of ``path`` percent-encoded, dots of ``.`` and ``..`` too: left as they are, the
    URL would be normalised to another path (``a/../b`` to ``b``) instead of refused by the server."""
    parts = (quote(part, safe="") if part.strip(".") else part.replace(".", "%2E") for part in path.split("/"))
    return f"{API}/sessions/{quote(session_id, safe='')}/files/{'/'.join(parts)}"


def write_file(session_id: str, path: str, source: FileSource) -> Call[WrittenFile]:
    return Call("PUT", _file_url(session_id, path), _json, content=upload_body(source),
                headers={"content-type": "application/octet-stream"})


def read_file(session_id: str, path: str) -> Call[bytes]:
    return Call("GET", _file_url(session_id, path), _bytes)


def delete_file(session_id: str, path: str) -> Call[None]:
    return Call("DELETE", _file_url(session_id, path), _nothing)


def list_files(session_id: str) -> Call[list[FileEntry]]:
    return Call("GET", f"{API}/sessions/{quote(session_id, safe='')}/files",
                lambda response: cast(list[FileEntry], response.json()["files"]))


WAIT_GRACE_SECONDS = 60.0
"""How long past a submission's own time limits ``?wait=true`` may hold the answer (the server's grace)."""


def submit(spec: SubmissionSpec, wait: bool) -> Call[Submission]:
    runs = 1 + len(spec.get("tests") or ())
    return Call("POST", f"{API}/submissions", _json, json=submission_body(spec),
                params={"wait": "true"} if wait else None,
                runs_for=runs * float(spec.get("timeout") or 30) + WAIT_GRACE_SECONDS if wait else None)


def submission_body(spec: SubmissionSpec) -> dict[str, Any]:
    body = _body(cast(Mapping[str, Any], spec))
    if "tests" in body:
        body["tests"] = [dict(test) for test in body["tests"]]
    return body


def submit_batch(specs: Sequence[SubmissionSpec]) -> Call[list[str]]:
    return Call("POST", f"{API}/submissions/batch", lambda response: cast(list[str], response.json()["ids"]),
                json={"submissions": [submission_body(spec) for spec in specs]})


def submission(submission_id: str) -> Call[Submission]:
    return Call("GET", f"{API}/submissions/{quote(submission_id, safe='')}", _json)


def spec(language: str, code: str | None, timeout: int | None, tests: Sequence[TestCase] | None,
         callback_url: str | None, options: RunOptions) -> SubmissionSpec:
    found: dict[str, Any] = {"language": language, "code": code, "timeout": timeout, "tests": tests,
                             "callback_url": callback_url, **options}
    return cast(SubmissionSpec, {name: value for name, value in found.items() if value is not None})


FINISHED = ("done", "failed")
POLL_FIRST_SECONDS = 0.05
POLL_MOST_SECONDS = 1.0


def next_poll(interval: float) -> float:
    """Polls start quick and slow down, up to once a second."""
    return min(interval * 2, POLL_MOST_SECONDS)
