"""One JSON line per request, and the request's id in ``X-Request-ID``.

Pure ASGI rather than Starlette's ``BaseHTTPMiddleware``, which runs each request
through an extra task and memory stream: an execution takes a few milliseconds end to
end, and this must cost microseconds of it. The id is the client's ``X-Request-ID``
when it is a sane token (letters, digits, ``._:-``, up to 128), so a caller's trace
goes through; anything else is replaced by a fresh one rather than written to the log.

The line is ``{"time", "request_id", "method", "path", "status", "duration_ms",
"client"}``, plus ``language``, ``backend`` and ``outcome`` for an execution (left in
the scope by ``_metrics.Metrics.counting``). The duration runs from the request's
arrival to its answer's last byte, and is also the execution's end-to-end latency.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ._metrics import EXECUTION_SCOPE_KEY

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from ._metrics import Metrics

log = logging.getLogger("infra_operator.requests")
_SANE_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


def _request_id(headers: list[tuple[bytes, bytes]]) -> bytes:
    for name, value in headers:
        if name == b"x-request-id" and _SANE_ID.fullmatch(value):
            return value
    return os.urandom(16).hex().encode()  # as random as a uuid4, at a third of its cost


class RequestLog:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope["headers"])
        status = 500  # what the client gets if nothing answers at all

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            execution = scope.get(EXECUTION_SCOPE_KEY)
            if execution is not None:
                self.metrics.ended(execution, seconds)
            if log.isEnabledFor(logging.INFO):
                line: dict[str, Any] = {
                    "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                    "request_id": request_id.decode(), "method": scope["method"], "path": scope["path"],
                    "status": status, "duration_ms": round(seconds * 1000, 3),
                    "client": scope["client"][0] if scope.get("client") else None,
                }
                if execution is not None:
                    line["language"], line["backend"], line["outcome"] = execution
                log.info(json.dumps(line))
