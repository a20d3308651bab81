"""Server-Sent Events, parsed incrementally (the WHATWG rules): bytes arrive in chunks that
may end anywhere, inside a line, between a ``\\r`` and its ``\\n`` or inside a UTF-8
character, and an event is dispatched only at its blank line. Then the client's events:
``stdout``/``stderr`` output, the one ``result``, and the server's ``error``."""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, cast

from ._exceptions import StreamError
from ._types import ExecuteResult


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    event: str
    data: str
    id: str | None = None


class SSEDecoder:
    """Feed it bytes as they come; it returns the events those bytes complete."""

    def __init__(self) -> None:
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        self._pending += self._text.decode(chunk)
        return self._lines(final=False)

    def close(self) -> list[ServerSentEvent]:
        """At the end of the stream: a last line without its line end still counts, but an
        event without its blank line is dropped, as the standard says."""
        self._pending += self._text.decode(b"", final=True)
        return self._lines(final=True)

    def _lines(self, final: bool) -> list[ServerSentEvent]:
        events: list[ServerSentEvent] = []
        text, start = self._pending, 0
        while True:
            cr, lf = text.find("\r", start), text.find("\n", start)
            if cr == -1 and lf == -1:
                break
            if cr == -1 or (lf != -1 and lf < cr):
                end, after = lf, lf + 1
            elif cr + 1 == len(text) and not final:
                break  # a "\r" at the end of what came so far: its "\n" may be in the next chunk
            else:
                end, after = cr, cr + 2 if text.startswith("\n", cr + 1) else cr + 1
            self._line(text[start:end], events)
            start = after
        self._pending = text[start:]
        if final and self._pending:
            self._line(self._pending, events)
            self._pending = ""
        return events

    def _line(self, line: str, events: list[ServerSentEvent]) -> None:
        if not line:
            if self._data:
                events.append(ServerSentEvent(self._event or "message", "\n".join(self._data), self._id))
            self._event, self._data = "", []
            return
        if line.startswith(":"):
            return  # a comment
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value


@dataclass(frozen=True, slots=True)
class Output:
    """Output as the program wrote it: ``stream`` is ``stdout`` or ``stderr``."""

    stream: Literal["stdout", "stderr"]
    text: str


@dataclass(frozen=True, slots=True)
class Result:
    """The last event: the whole answer a request without streaming would have had."""

    result: ExecuteResult


Event = Output | Result


def to_events(events: Iterable[ServerSentEvent]) -> list[Event]:
    """The client's events for the server's; an ``error`` event raises ``StreamError`` with its
    message, and events of kinds this client does not know are passed over."""
    found: list[Event] = []
    for event in events:
        if event.event in ("stdout", "stderr"):
            found.append(Output(cast(Literal["stdout", "stderr"], event.event), json.loads(event.data)["data"]))
        elif event.event == "result":
            found.append(Result(json.loads(event.data)))
        elif event.event == "error":
            raise StreamError(json.loads(event.data).get("error", event.data))
    return found
