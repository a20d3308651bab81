"""The asyncio client: ``AsyncClient`` is ``Client`` with every call awaited."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Coroutine, Generator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar, Unpack

import httpx

from . import _calls as calls
from . import _types as types
from ._common import (
    DEFAULT_BASE_URL,
    DEFAULT_TIMEOUT,
    AsyncClosing,
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
C = TypeVar("C", bound="_Closable")


class _Closable(Protocol):
    async def aclose(self) -> None: ...


class Opening(Generic[C]):
    """Something being opened (a session, a stream): ``await`` it for the thing, or use it in
    ``async with`` to have the thing closed at the end of the block."""

    def __init__(self, opening: Coroutine[Any, Any, C]) -> None:
        self._opening = opening
        self._opened: C | None = None

    def __await__(self) -> Generator[Any, None, C]:
        return self._opening.__await__()

    async def __aenter__(self) -> C:
        self._opened = await self._opening
        return self._opened

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        if self._opened is not None:
            await self._opened.aclose()


class AsyncClient(AsyncClosing):
    """``Client`` for asyncio, every call awaited:
    ``async with AsyncClient() as client: (await client.execute("python", "print(2 ** 10)"))["stdout"]``.
    Sessions and streams open with ``async with`` (or ``await`` them and ``aclose()``)."""

    def __init__(self, base_url: str = DEFAULT_BASE_URL, *, api_key: str | None = None,
                 timeout: TimeoutTypes = DEFAULT_TIMEOUT, headers: Mapping[str, str] | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._http = httpx.AsyncClient(transport=transport, **http_settings(base_url, api_key, timeout, headers))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: calls.Call[T]) -> T:
        with translated():
            response = await self._http.send(call.request(self._http))
        if response.is_error:
            raise error_for(response)
        return call.parse(response)

    async def _open(self, call: calls.Call[Any]) -> httpx.Response:
        """The answer, its body not read yet; an error answer raises."""
        with translated():
            response = await self._http.send(call.request(self._http), stream=True)
            if response.is_error:
                await response.aread()  # for the error's message
            if failure := refused(call, response):
                await response.aclose()
                raise failure
        return response

    async def health(self) -> types.Health:
        return await self._send(calls.health())

    async def languages(self) -> types.Languages:
        return await self._send(calls.languages())

    async def language(self, name: str) -> dict[str, Any]:
        return await self._send(calls.language(name))

    async def execute(self, language: str, code: str | None = None, timeout: int | None = None,
                      **options: Unpack[types.RunOptions]) -> types.ExecuteResult:
        """Runs ``code`` in a fresh sandbox. A program that fails is a result, not an exception."""
        return await self._send(calls.execute(language, code, timeout, options))

    def stream(self, language: str, code: str | None = None, timeout: int | None = None,
               **options: Unpack[types.RunOptions]) -> Opening[AsyncEventStream]:
        """As ``execute``, its output as events while the program runs, then the result:
        ``async with client.stream(...) as events: async for event in events: ...``."""
        return Opening(self._stream(calls.execute(language, code, timeout, options, stream=True)))

    async def _stream(self, call: calls.Call[Any]) -> AsyncEventStream:
        return AsyncEventStream(await self._open(call))

    def session(self, language: str, **options: Unpack[types.SessionOptions]) -> Opening[AsyncSession]:
        """A new session: ``async with client.session("python") as session:`` closes it at the
        end; ``await client.session("python")`` leaves that to ``aclose()``."""
        return Opening(self._create_session(language, options))

    async def _create_session(self, language: str, options: types.SessionOptions) -> AsyncSession:
        return AsyncSession(self, await self._send(calls.create_session(language, options)))

    async def attach(self, session_id: str) -> AsyncSession:
        """An open session, by its id."""
        return AsyncSession(self, await self._send(calls.session_info(session_id)))

    async def sessions(self) -> list[types.SessionInfo]:
        return await self._send(calls.list_sessions())

    async def submit(self, language: str, code: str | None = None, timeout: int | None = None, *,
                     tests: Sequence[types.TestCase] | None = None, callback_url: str | None = None,
                     wait: bool = False, **options: Unpack[types.RunOptions]) -> types.Submission:
        """Queues a submission; with ``wait=True``, answers once it has finished."""
        found = await self._send(calls.submit(calls.spec(language, code, timeout, tests, callback_url, options), wait))
        return await self.wait(found["id"]) if wait and found["status"] not in calls.FINISHED else found

    async def submit_batch(self, submissions: Sequence[types.SubmissionSpec]) -> list[str]:
        """Queues several submissions; their ids, in the same order."""
        return await self._send(calls.submit_batch(submissions))

    async def submission(self, submission_id: str) -> types.Submission:
        """The submission as it is now (one poll)."""
        return await self._send(calls.submission(submission_id))

    async def wait(self, submission_id: str, timeout: float | None = None) -> types.Submission:
        """Polls until the submission is done or failed; ``WaitTimeout`` after ``timeout`` seconds."""
        poller = Poller(submission_id, timeout)
        while not poller.finished(found := await self.submission(submission_id)):
            await asyncio.sleep(poller.delay(found))
        return found


class AsyncEventStream(Events, AsyncClosing):
    """Events as they come: ``Output`` (``stdout``/``stderr`` text), then one ``Result``.
    Iterate it once; ``result`` holds the answer afterwards. Leaving an ``async with`` block or
    ``aclose()`` before the end hangs up, which stops the program."""

    async def __aiter__(self) -> AsyncIterator[Event]:
        try:
            with translated():
                async for chunk in self._response.aiter_bytes():
                    for event in self._state.feed(chunk):
                        yield event
            for event in self._state.end():
                yield event
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        await self._response.aclose()


class AsyncSession(AsyncClosing):
    """A sandbox kept across calls: names one cell defines are there for the next, and so are
    its files. A context manager: the session is deleted at the end of the ``async with`` block."""

    def __init__(self, client: AsyncClient, info: types.SessionInfo) -> None:
        self._client = client
        self.info = info
        self.id = info["id"]

    async def aclose(self) -> None:
        """Deletes the session; one already gone (expired, deleted) is no error."""
        try:
            await self._client._send(calls.delete_session(self.id))
        except NotFound:
            pass

    async def refresh(self) -> types.SessionInfo:
        self.info = await self._client._send(calls.session_info(self.id))
        return self.info

    async def pause(self) -> types.SessionInfo:
        """Saves the session to disk and stops its VM (qemu, Firecracker; the jail answers 409,
        ``Conflict``); the next call resumes it where it was, also after a server restart."""
        self.info = await self._client._send(calls.pause_session(self.id))
        return self.info

    async def execute(self, code: str, *, stdin: str | None = None, timeout: int | None = None) -> types.CellResult:
        return await self._client._send(calls.run_cell(self.id, code, stdin, timeout))

    def stream(self, code: str, *, stdin: str | None = None, timeout: int | None = None) -> Opening[AsyncEventStream]:
        return Opening(self._client._stream(calls.run_cell(self.id, code, stdin, timeout, stream=True)))

    async def write(self, path: str, source: types.FileSource) -> types.WrittenFile:
        """Writes a file: ``str`` is text, ``bytes`` bytes, a ``pathlib.Path`` a local file to upload."""
        return await self._client._send(calls.write_file(self.id, path, source))

    async def read(self, path: str) -> bytes:
        return await self._client._send(calls.read_file(self.id, path))

    async def download(self, path: str, destination: str | os.PathLike[str]) -> Path:
        """Saves a file of the session to a local path, as it streams."""
        target = Path(destination)
        response = await self._client._open(calls.read_file(self.id, path))
        try:
            with target.open("wb") as out, translated():
                async for chunk in response.aiter_bytes():
                    out.write(chunk)
        finally:
            await response.aclose()
        return target

    async def files(self) -> list[types.FileEntry]:
        return await self._client._send(calls.list_files(self.id))

    async def delete_file(self, path: str) -> None:
        await self._client._send(calls.delete_file(self.id, path))
