"""A cap on request bodies, answered with 413 before the body is read into memory.

A declared Content-Length over the cap is refused at once. A body without one
(chunked) is read here, counting, up to the cap: refused with 413 the moment it
passes it, else replayed to the app. Counting inside the app instead would not do:
FastAPI turns any failure while it reads a body into a 400.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._errors import error_response

UPLOADS = re.compile(r"^/api/v1/sessions/[^/]+/files/")
"""A session's file uploads: bodies as large as ``upload_bytes``; the route reads the body as it
streams, holding the file to its session's own limit."""


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, upload_bytes: int = 0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.upload_bytes = upload_bytes

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, cap: int) -> None:
        await error_response(413, f"request body larger than {cap} bytes")(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "PUT" and UPLOADS.match(scope["path"]):
            await self._limited(scope, receive, send, max(self.upload_bytes, self.max_bytes), buffer=False)
            return
        await self._limited(scope, receive, send, self.max_bytes, buffer=True)

    async def _limited(self, scope: Scope, receive: Receive, send: Send, cap: int, buffer: bool) -> None:
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit() or int(declared) > cap:
                await self._refuse(scope, receive, send, cap)
                return
            await self.app(scope, receive, send)
            return
        if not buffer:  # an upload is counted by its route as it streams, never buffered whole
            await self.app(scope, receive, send)
            return
        buffered: list[Message] = []
        seen = 0
        while True:
            message = await receive()
            buffered.append(message)
            if message["type"] != "http.request":
                break
            seen += len(message.get("body", b""))
            if seen > cap:
                await self._refuse(scope, receive, send, cap)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return buffered.pop(0) if buffered else await receive()

        await self.app(scope, replay, send)
