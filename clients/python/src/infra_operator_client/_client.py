"""The synchronous client."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, Unpack

import httpx

from . import _calls as calls
from . import _types as types
from ._common import (
    DEFAULT_BASE_URL,
    DEFAULT_TIMEOUT,
    Closing,
    Events,
    Poller,
    TimeoutTypes,
    http_settings,
    refused,
    translated,
)
from ._exceptions import NotFound, error_for
from ._sse import Event

T = TypeVar("T")


class Client(Closing):
    """A client of one infra.operator server.

    ``with Client() as client: client.execute("python", "print(2 ** 10)")["stdout"]``

    ``api_key`` is sent as ``Authorization: Bearer``. ``timeout`` (seconds, or an
    ``httpx.Timeout``) bounds every call; a call that runs a program waits at least the
    program's own ``timeout`` plus 30 seconds. ``transport`` replaces the network (for
    example ``httpx.MockTransport``)."""

    def __init__(self, base_url: str = DEFAULT_BASE_URL, *, api_key: str | None = None,
                 timeout: TimeoutTypes = DEFAULT_TIMEOUT, headers: Mapping[str, str] | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._http = httpx.Client(transport=transport, **http_settings(base_url, api_key, timeout, headers))

    def close(self) -> None:
        self._http.close()

    def _send(self, call: calls.Call[T]) -> T:
        with translated():
            response = self._http.send(call.request(self._http))
        if response.is_error:
            raise error_for(response)
        return call.parse(response)

    def _open(self, call: calls.Call[Any]) -> httpx.Response:
        """The answer, its body not read yet; an error answer raises."""
        with translated():
            response = self._http.send(call.request(self._http), stream=True)
            if response.is_error:
                response.read()  # for the error's message
            if failure := refused(call, response):
                response.close()
                raise failure
        return response

    def health(self) -> types.Health:
        return self._send(calls.health())

    def languages(self) -> types.Languages:
        return self._send(calls.languages())

    def language(self, name: str) -> dict[str, Any]:
        return self._send(calls.language(name))

    def execute(self, language: str, code: str | None = None, timeout: int | None = None,
                **options: Unpack[types.RunOptions]) -> types.ExecuteResult:
        """Runs ``code`` in a fresh sandbox. A program that fails is a result, not an exception."""
        return self._send(calls.execute(language, code, timeout, options))

    def stream(self, language: str, code: str | None = None, timeout: int | None = None,
               **options: Unpack[types.RunOptions]) -> EventStream:
        """As ``execute``, its output as events while the program runs, then the result."""
        return EventStream(self._open(calls.execute(language, code, timeout, options, stream=True)))

    def session(self, language: str, **options: Unpack[types.SessionOptions]) -> Session:
        """A new session; ``with client.session("python") as session:`` closes it at the end."""
        return Session(self, self._send(calls.create_session(language, options)))

    def attach(self, session_id: str) -> Session:
        """An open session, by its id."""
        return Session(self, self._send(calls.session_info(session_id)))

    def sessions(self) -> list[types.SessionInfo]:
        return self._send(calls.list_sessions())

    def submit(self, language: str, code: str | None = None, timeout: int | None = None, *,
               tests: Sequence[types.TestCase] | None = None, callback_url: str | None = None, wait: bool = False,
               **options: Unpack[types.RunOptions]) -> types.Submission:
        """Queues a submission; with ``wait=True``, answers once it has finished."""
        found = self._send(calls.submit(calls.spec(language, code, timeout, tests, callback_url, options), wait))
        return self.wait(found["id"]) if wait and found["status"] not in calls.FINISHED else found

    def submit_batch(self, submissions: Sequence[types.SubmissionSpec]) -> list[str]:
        """Queues several submissions; their ids, in the same order."""
        return self._send(calls.submit_batch(submissions))

    def submission(self, submission_id: str) -> types.Submission:
        """The submission as it is now (one poll)."""
        return self._send(calls.submission(submission_id))

    def wait(self, submission_id: str, timeout: float | None = None) -> types.Submission:
        """Polls until the submission is done or failed; ``WaitTimeout`` after ``timeout`` seconds."""
        poller = Poller(submission_id, timeout)
        while not poller.finished(found := self.submission(submission_id)):
            time.sleep(poller.delay(found))
        return found


class EventStream(Events, Closing):
    """Events as they come: ``Output`` (``stdout``/``stderr`` text), then one ``Result``.
    Iterate it once; ``result`` holds the answer afterwards. Leaving a ``with`` block or
    ``close()`` before the end hangs up, which stops the program."""

    def __iter__(self) -> Iterator[Event]:
        try:
            with translated():
                for chunk in self._response.iter_bytes():
                    yield from self._state.feed(chunk)
            yield from self._state.end()
        finally:
            self.close()

    def close(self) -> None:
        self._response.close()


class Session(Closing):
    """A sandbox kept across calls: names one cell defines are there for the next, and so are
    its files. A context manager: the session is deleted at the end of the ``with`` block."""

    def __init__(self, client: Client, info: types.SessionInfo) -> None:
        self._client = client
        self.info = info
        self.id = info["id"]

    def close(self) -> None:
        """Deletes the session; one already gone (expired, deleted) is no error."""
        try:
            self._client._send(calls.delete_session(self.id))
        except NotFound:
            pass

    def refresh(self) -> types.SessionInfo:
        self.info = self._client._send(calls.session_info(self.id))
        return self.info

    def pause(self) -> types.SessionInfo:
        """Saves the session to disk and stops its VM (qemu, Firecracker; the jail answers 409,
        ``Conflict``); the next call resumes it where it was, also after a server restart."""
        self.info = self._client._send(calls.pause_session(self.id))
        return self.info

    def execute(self, code: str, *, stdin: str | None = None, timeout: int | None = None) -> types.CellResult:
        return self._client._send(calls.run_cell(self.id, code, stdin, timeout))

    def stream(self, code: str, *, stdin: str | None = None, timeout: int | None = None) -> EventStream:
        return EventStream(self._client._open(calls.run_cell(self.id, code, stdin, timeout, stream=True)))

    def write(self, path: str, source: types.FileSource) -> types.WrittenFile:
        """Writes a file: ``str`` is text, ``bytes`` bytes, a ``pathlib.Path`` a local file to upload."""
        return self._client._send(calls.write_file(self.id, path, source))

    def read(self, path: str) -> bytes:
        return self._client._send(calls.read_file(self.id, path))

    def download(self, path: str, destination: str | os.PathLike[str]) -> Path:
        """Saves a file of the session to a local path, as it streams."""
        target = Path(destination)
        response = self._client._open(calls.read_file(self.id, path))
        try:
            with target.open("wb") as out, translated():
                for chunk in response.iter_bytes():
                    out.write(chunk)
        finally:
            response.close()
        return target

    def files(self) -> list[types.FileEntry]:
        return self._client._send(calls.list_files(self.id))

    def delete_file(self, path: str) -> None:
        self._client._send(calls.delete_file(self.id, path))
