"""Server-Sent Events for an execution: its output as the program writes it, then its answer.

The work runs in a thread of its own with a ``Listener`` whose output lands on the
event loop's queue. Events: ``stdout`` and ``stderr`` with ``{"data": text}``, then
exactly one ``result`` whose data is the answer a plain request would have had. A
failure of ours before any output is an ordinary JSON error with its status; after
output has gone out (the answer is already a 200) it is one ``error`` event.
A client that goes away sets the listener's ``cancel``: the agent stops the program
(a one-shot sandbox is then destroyed as always; a session's cell is interrupted).
"""

from __future__ import annotations

import asyncio
import codecs
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from ..backends import Listener
from ..errors import OperatorError

log = logging.getLogger(__name__)

EVENT_STREAM = "text/event-stream"
DISCONNECT_POLL_SECONDS = 0.1
"""How often a quiet stream looks whether its client is still there."""

Event = tuple[str, Any]


def wants_events(request: Request) -> bool:
    return EVENT_STREAM in request.headers.get("accept", "")


def _event(name: str, data: object) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def stream(request: Request, work: Callable[[Listener], BaseModel]) -> StreamingResponse:
    """Run ``work`` with a listener, answering its output and result as events."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Event] = asyncio.Queue()
    decoders = {name: codecs.getincrementaldecoder("utf-8")(errors="replace") for name in ("stdout", "stderr")}

    def on_output(name: str, data: bytes) -> None:
        text = decoders[name].decode(data) if name in decoders else ""
        if text:
            loop.call_soon_threadsafe(queue.put_nowait, (name, text))

    listener = Listener(on_output)

    def run() -> None:
        try:
            answer: Event = ("result", work(listener).model_dump(mode="json"))
        except OperatorError as exc:
            answer = ("failed", exc)
        except Exception as exc:  # noqa: BLE001  # the loop must hear of every end, or the client hangs
            log.exception("%s %s: streaming execution failed", request.method, request.url.path)
            answer = ("failed", OperatorError(f"internal error: {type(exc).__name__}"))
        loop.call_soon_threadsafe(queue.put_nowait, answer)

    threading.Thread(target=run, name="sse-execution", daemon=True).start()
    try:
        first = await _next(request, queue, listener)
    except BaseException:
        listener.cancel.set()
        raise
    if first[0] == "failed":
        raise first[1]  # nothing went out yet: an ordinary error answer, with its status

    async def events() -> AsyncIterator[bytes]:
        item = first
        try:
            while True:
                name, data = item
                if name == "gone":
                    return
                if name == "failed":
                    yield _event("error", {"error": data.message})
                    return
                yield _event(name, data if name == "result" else {"data": data})
                if name == "result":
                    return
                item = await _next(request, queue, listener)
        finally:
            listener.cancel.set()  # a no-op once the work is done; else the client went away

    return StreamingResponse(events(), media_type=EVENT_STREAM, headers={"Cache-Control": "no-cache"})


async def _next(request: Request, queue: asyncio.Queue[Event], listener: Listener) -> Event:
    """The next event; ``gone`` when the client left while none came (the work is then cancelled)."""
    while True:
        try:
            return await asyncio.wait_for(queue.get(), DISCONNECT_POLL_SECONDS)
        except TimeoutError:
            if await request.is_disconnected():
                listener.cancel.set()
                return ("gone", None)
