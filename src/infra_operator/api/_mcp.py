"""The Model Context Protocol: the API's calls as tools an agent can use, with the official SDK.

A thin translation layer, never a second implementation: each tool is one HTTP request to
this API (``TOOLS``), its input schema is the request model of the call it stands for (so
the field names are the API's own: ``language``, ``code``, ``version``, ``stdin``, ...),
its answer is the API's answer, and the API's error (status and message) is the tool's
error result. Validation, limits, API keys, sessions per key, metrics and the request log
are therefore exactly those of the HTTP API.

Where the requests go is the client's transport (as in httpx): in the server at ``/mcp``,
an in-process ASGI transport to the same app, carrying the caller's own API key; in
``infra.operator mcp``, the same in-process transport to an app of its own, or the network
to a server given with ``--url``.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import signal
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

import anyio
import httpx
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from .. import __version__
from ..errors import InvalidRequest, OperatorError
from ..executor import check_path, file_from_json
from ._deps import require_api_key
from ._models import ExecuteRequest, FileIn, SessionCreateRequest, SessionExecuteRequest

if TYPE_CHECKING:
    from fastapi import FastAPI
    from mcp.server.context import ServerRequestContext
    from starlette.types import Receive, Scope, Send

FORWARDED_HEADERS = ("authorization", "x-api-key", "x-request-id")
"""What a call to ``/mcp`` hands on to the API requests it makes: who is calling, and its id."""
IN_PROCESS = "http://in-process"

SESSION_ID: dict[str, Any] = {"type": "string", "description": "the id create_session answered"}
INSTRUCTIONS = (
    "Runs code in a fresh isolated sandbox per call (execute), or in a session whose sandbox, files and "
    "top-level names last across calls (create_session, execute_in_session, write_file, read_file, "
    "list_files, close_session). Call list_languages first to see which languages are built here.")


def _schema(model: type[BaseModel] | None, **extra: dict[str, Any]) -> dict[str, Any]:
    """A tool's input: the API request model's own JSON schema, plus the call's path parameters."""
    schema: dict[str, Any] = model.model_json_schema() if model else {"type": "object", "additionalProperties": False}
    schema.pop("title", None)
    schema.pop("description", None)
    properties: dict[str, Any] = schema.get("properties", {})
    required: list[str] = schema.get("required", [])
    return {**schema, "properties": {**extra, **properties}, "required": [*extra, *required]}


@dataclass(frozen=True)
class Tool:
    """One tool: the API call it stands for (``path`` names its path parameters in braces)."""

    name: str
    description: str
    method: str
    path: str
    schema: dict[str, Any]
    read_only: bool = False
    raw_body: bool = False
    """Send ``content`` (as ``encoding`` says) as the raw body, like a file upload; else the arguments as JSON."""
    path_args: tuple[str, ...] = field(default=())

    def definition(self) -> types.Tool:
        return types.Tool(name=self.name, description=self.description, input_schema=self.schema,
                          annotations=types.ToolAnnotations(read_only_hint=self.read_only,
                                                            destructive_hint=self.name == "close_session",
                                                            open_world_hint=False))


TOOLS = [
    Tool("list_languages", "List the languages this server knows, with their file extension, aliases and "
         "whether each one's image is built (rootfs_built), which version it runs by default and which "
         "releases it offers (versions: pass one as `version` in the other tools). Only languages with "
         "rootfs_built true can run; use their name as `language` in the other tools.",
         "GET", "/api/v1/languages", _schema(None), read_only=True),
    Tool("execute", "Run a program once, in a fresh sandbox destroyed afterwards, and get its stdout, stderr, "
         "exit_code, timings (load_time, exec_time, cpu_time_ms, memory_kb) and flags (timed_out, oom_killed, "
         "signal, truncation). A program that fails is still a result: read exit_code and stderr. Give "
         "`language` and `code` (or `files`, the first one being the program); optional `stdin`, `args`, "
         "`timeout` (seconds, default 30) and limits. Nothing persists: use a session for that.",
         "POST", "/api/v1/execute", _schema(ExecuteRequest)),
    Tool("create_session", "Open a session: a sandbox that lives across calls until close_session or "
         "`idle_timeout` seconds (default 300) without a call. Answers its `id`. For python, nodejs and bash, "
         "names defined by one execute_in_session call stay defined in the next, like notebook cells; files "
         "written by one call are there for the next. Close it when done.",
         "POST", "/api/v1/sessions", _schema(SessionCreateRequest)),
    Tool("execute_in_session", "Run `code` as the next cell of a session (by `session_id`) and get stdout, "
         "stderr, exit_code and timings as for execute, plus `results`: what a notebook would show (a final "
         "expression's value as text; for python, each matplotlib figure as a PNG image, also returned as "
         "image content). `reset` true means the interpreter was restarted and earlier names are gone.",
         "POST", "/api/v1/sessions/{session_id}/execute", _schema(SessionExecuteRequest, session_id=SESSION_ID),
         path_args=("session_id",)),
    Tool("write_file", "Write a file into a session's working folder (the folder programs run in), making "
         "parent folders. `path` is relative (no '..', not absolute); `content` is text, or base64 with "
         "`encoding` \"base64\" for binary data.",
         "PUT", "/api/v1/sessions/{session_id}/files/{path}", _schema(FileIn, session_id=SESSION_ID),
         raw_body=True, path_args=("session_id", "path")),
    Tool("read_file", "Read a file from a session's working folder: answers `path`, `size`, and `content` as "
         "UTF-8 text (`encoding` \"utf8\") or, when it is not text, base64 (`encoding` \"base64\").",
         "GET", "/api/v1/sessions/{session_id}/files/{path}",
         _schema(None, session_id=SESSION_ID, path={"type": "string", "description": "relative to the working folder"}),
         read_only=True, path_args=("session_id", "path")),
    Tool("list_files", "List every file and folder in a session's working folder, with sizes.",
         "GET", "/api/v1/sessions/{session_id}/files", _schema(None, session_id=SESSION_ID), read_only=True,
         path_args=("session_id",)),
    Tool("close_session", "Close a session: its sandbox, files and names are destroyed at once.",
         "DELETE", "/api/v1/sessions/{session_id}", _schema(None, session_id=SESSION_ID), path_args=("session_id",)),
]
BY_NAME = {tool.name: tool for tool in TOOLS}


def _error(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=message)], is_error=True)


def _request(tool: Tool, arguments: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The URL and httpx keyword arguments of the API request a tool call stands for."""
    rest = dict(arguments)
    parts: dict[str, str] = {}
    for name in tool.path_args:
        value = rest.pop(name, None)
        if not isinstance(value, str) or not value:
            raise InvalidRequest(f"{name} is required: a non-empty string")
        # A client library would tidy `..` away before the API saw it: refuse it here, as the API would.
        parts[name] = quote(check_path(value), safe="/") if name == "path" else quote(value, safe="")
    url = tool.path.format(**parts)
    if tool.raw_body:
        try:
            file = FileIn.model_validate({**rest, "path": arguments["path"]})
        except ValidationError as exc:
            raise InvalidRequest("; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}"
                                      for e in exc.errors())) from exc
        _, content = file_from_json(file.model_dump())
        return url, {"content": content, "headers": {"content-type": "application/octet-stream"}}
    if tool.method in ("GET", "DELETE"):
        if rest:
            raise InvalidRequest(f"unknown arguments: {', '.join(sorted(rest))}")
        return url, {}
    return url, {"json": rest}


def _answer(tool: Tool, arguments: Mapping[str, Any], response: httpx.Response) -> types.CallToolResult:
    """The API's answer as the tool's result: JSON as structured content (and text), a file as text or base64,
    and each PNG a session cell made as image content."""
    if response.status_code >= 400:
        try:
            message = response.json()["error"]
        except (ValueError, KeyError, TypeError):
            message = response.text or response.reason_phrase
        return _error(f"{response.status_code}: {message}")
    if tool.name == "read_file":
        try:
            body: Any = {"path": arguments["path"], "size": len(response.content),
                         "content": response.content.decode("utf-8"), "encoding": "utf8"}
        except UnicodeDecodeError:
            body = {"path": arguments["path"], "size": len(response.content),
                    "content": base64.b64encode(response.content).decode(), "encoding": "base64"}
    elif response.status_code == 204:
        body = {"closed": arguments.get("session_id")}
    else:
        body = response.json()
    content: list[types.ContentBlock] = [types.TextContent(text=json.dumps(body, ensure_ascii=False))]
    content += [types.ImageContent(data=entry["data"], mime_type="image/png")
                for entry in body.get("results", []) if entry.get("type") == "image/png" and entry.get("data")]
    return types.CallToolResult(content=content, structured_content=body)


def build_server(client: httpx.AsyncClient) -> Server[Any]:
    """An MCP server whose tools send their requests with ``client`` (see the module's docstring)."""

    async def list_tools(ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None,
                         ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[tool.definition() for tool in TOOLS])

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        tool = BY_NAME.get(params.name)
        if tool is None:
            return _error(f"unknown tool {params.name!r}: the tools are {', '.join(BY_NAME)}")
        arguments = params.arguments or {}
        incoming = ctx.request.headers if isinstance(ctx.request, Request) else {}
        headers = {name: incoming[name] for name in FORWARDED_HEADERS if name in incoming}
        try:
            url, sending = _request(tool, arguments)
            sending["headers"] = {**sending.get("headers", {}), **headers}
            response = await client.request(tool.method, url, **sending)
        except OperatorError as exc:  # a call that cannot be made as asked, told as the API would
            return _error(f"{exc.status}: {exc.message}")
        except httpx.HTTPError as exc:
            return _error(f"the API at {client.base_url} could not be reached: {type(exc).__name__}: {exc}")
        return _answer(tool, arguments, response)

    return Server("infra.operator", version=__version__, title="infra.operator",
                  description="Runs untrusted code in many languages, each execution in a fresh sandbox.",
                  instructions=INSTRUCTIONS, on_list_tools=list_tools, on_call_tool=call_tool)


class McpEndpoint:
    """``/mcp``: Streamable HTTP (stateless: any API process can answer any request, and no MCP session
    outlives its request), behind the same API-key check as ``/api/v1``. The tools reach the API through
    the app itself, in process, with the caller's key."""

    def __init__(self, app: FastAPI) -> None:
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=IN_PROCESS, timeout=None)
        self.manager = StreamableHTTPSessionManager(app=build_server(self.client), stateless=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        require_api_key(request, request.app.state.services)  # raises Unauthorized: a 401 like /api/v1's
        await self.manager.handle_request(scope, receive, send)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with self.client, self.manager.run():
            yield


async def serve_stdio(client: httpx.AsyncClient, app: FastAPI | None = None) -> None:
    """Serve MCP on stdin and stdout until stdin closes or SIGTERM comes (how an agent's host ends it).
    With ``app`` (the in-process case), its start-up and shutdown run around the serving, after the SDK
    has moved stdout aside (so nothing a sandbox or a log prints can reach the protocol's stream): the
    shutdown destroys the sessions' sandboxes either way."""
    server = build_server(client)
    stdin = _StdinLines()
    lines = cast("anyio.AsyncFile[str]", stdin)  # the SDK only iterates it, line by line
    async with stdio_server(stdin=lines) as (read_stream, write_stream), _lifespan(app), client, \
            anyio.create_task_group() as watching:
        watching.start_soon(_end_on_sigterm, stdin)
        await server.run(read_stream, write_stream, server.create_initialization_options())
        watching.cancel_scope.cancel()


class _StdinLines:
    """stdin as lines of text, read as the event loop finds it readable rather than in a thread (the SDK's
    own reader, which nothing can stop before stdin closes), so that ``end`` can end it as if stdin had
    closed. Like the SDK, it takes stdin for itself: fd 0 becomes /dev/null for everything else (a
    sandbox's process must never read the protocol's bytes)."""

    def __init__(self) -> None:
        self.fd = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 3)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.set_blocking(self.fd, False)
        self.pending = b""
        self.ended = False
        self.waiting: anyio.CancelScope | None = None

    def end(self) -> None:
        self.ended = True
        if self.waiting is not None:
            self.waiting.cancel()

    def __aiter__(self) -> _StdinLines:
        return self

    async def __anext__(self) -> str:
        while b"\n" not in self.pending:
            with anyio.CancelScope() as self.waiting:
                await anyio.wait_readable(self.fd)
            if self.ended:
                raise StopAsyncIteration
            try:
                chunk = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                continue
            if not chunk:
                if not self.pending:
                    raise StopAsyncIteration
                chunk = b"\n"
            self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\n")
        return line.decode("utf-8", errors="replace")


async def _end_on_sigterm(stdin: _StdinLines) -> None:
    """SIGTERM ends the serving as the end of stdin does: the shutdown then runs whole."""
    with anyio.open_signal_receiver(signal.SIGTERM) as signals:
        async for _ in signals:
            stdin.end()
            return


@asynccontextmanager
async def _lifespan(app: FastAPI | None) -> AsyncIterator[None]:
    if app is None:
        yield
        return
    async with app.router.lifespan_context(app):
        yield
