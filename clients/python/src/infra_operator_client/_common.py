"""What the synchronous and the asyncio client share besides the calls: their settings, the
translation of httpx's exceptions, a stream's state and a submission's polling."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self

import httpx

from ._calls import EVENT_STREAM, FINISHED, POLL_FIRST_SECONDS, Call, next_poll
from ._exceptions import StreamError, Timeout, TransportError, WaitTimeout, error_for
from ._sse import Event, Result, SSEDecoder, to_events
from ._types import ExecuteResult, Submission

__version__ = "1.0.0"
DEFAULT_BASE_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
"""A call that runs a program waits longer: its own ``timeout`` plus a margin (see ``_calls``)."""

TimeoutTypes = float | httpx.Timeout | None


def http_settings(base_url: str, api_key: str | None, timeout: TimeoutTypes,
                  headers: Mapping[str, str] | None) -> dict[str, Any]:
    """The keyword arguments of the httpx client underneath."""
    merged = {"user-agent": f"infra-operator-client-python/{__version__}", **(headers or {})}
    if api_key:
        merged["authorization"] = f"Bearer {api_key}"
    return {"base_url": base_url, "timeout": timeout, "headers": merged}


@contextmanager
def translated() -> Iterator[None]:
    """httpx's exceptions as this client's, chained."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise Timeout(f"no answer in time: {exc}") from exc
    except httpx.TransportError as exc:
        raise TransportError(f"{type(exc).__name__}: {exc}") from exc


def refused(call: Call[Any], response: httpx.Response) -> Exception | None:
    """What an answer whose body is not read yet should raise: its error, or for a call that asked
    for events, an answer that is not an event stream (a server that does not stream)."""
    if response.is_error:
        return error_for(response)
    kind = response.headers.get("content-type", "")
    if call.headers.get("accept") == EVENT_STREAM and not kind.startswith(EVENT_STREAM):
        return StreamError(f"the server answered {kind or 'no content type'}, not {EVENT_STREAM}: it does not stream")
    return None


class StreamState:
    """Bytes in, events out; remembers the result and raises when the stream ends without one."""

    def __init__(self) -> None:
        self._decoder = SSEDecoder()
        self.result: ExecuteResult | None = None

    def feed(self, chunk: bytes) -> list[Event]:
        return self._seen(to_events(self._decoder.feed(chunk)))

    def end(self) -> list[Event]:
        events = self._seen(to_events(self._decoder.close()))
        if self.result is None:
            raise StreamError("the stream ended before its result event")
        return events

    def _seen(self, events: list[Event]) -> list[Event]:
        for event in events:
            if isinstance(event, Result):
                self.result = event.result
        return events


class Events:
    """What a stream of events holds, synchronous or not: the answer underneath and what it has said."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self._state = StreamState()

    @property
    def result(self) -> ExecuteResult | None:
        """The answer, once the ``Result`` event has come."""
        return self._state.result


class Poller:
    """When to look at a submission again, and when to give up."""

    def __init__(self, submission_id: str, timeout: float | None) -> None:
        self.submission_id = submission_id
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._interval = POLL_FIRST_SECONDS

    def finished(self, submission: Submission) -> bool:
        return submission["status"] in FINISHED

    def delay(self, submission: Submission) -> float:
        """Seconds to wait before the next look; raises ``WaitTimeout`` past the deadline."""
        delay, self._interval = self._interval, next_poll(self._interval)
        if self._deadline is not None:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(f"submission {self.submission_id} is still {submission['status']}",
                                  self.submission_id)
            delay = min(delay, left)
        return delay


class Closing:
    """``with`` closes it."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


class AsyncClosing:
    """``async with`` closes it."""

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.aclose()
