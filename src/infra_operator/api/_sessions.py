"""The session endpoints of api-contract.md: a sandbox kept across calls, its cells and its files.

Routes translate between HTTP and ``executor.SessionManager``; they raise, never build
error answers. Files travel as raw bytes: an upload is read as it streams (counted
against the session's ``file_mb``, 413 past it) and a download streams piece by piece.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse

from ..errors import PayloadTooLarge
from ..executor import NewSession, SessionView, check_path
from ._deps import OwnerDep, ServicesDep, require_api_key
from ._metrics import metrics_of
from ._models import (
    FileEntryView,
    FileListResponse,
    FilePutResponse,
    RichResult,
    SessionCreateRequest,
    SessionExecuteRequest,
    SessionExecuteResponse,
    SessionListResponse,
    SessionResponse,
)
from ._routes import ERRORS, STREAMS
from ._streaming import stream, wants_events

if TYPE_CHECKING:
    from ..backends import Listener

SPOOL_BYTES = 1 << 20
"""An upload stays in memory up to this much, then goes to a host temporary file (never the sandbox's)."""
ERRORS_TOO: dict[int | str, dict[str, Any]] = {**ERRORS, 409: ERRORS[400], 429: ERRORS[400]}

sessions = APIRouter(prefix="/api/v1/sessions", dependencies=[Depends(require_api_key)], responses=ERRORS_TOO)


def _view(session: SessionView) -> SessionResponse:
    return SessionResponse(**dataclasses.asdict(session))


@sessions.post("", status_code=201, response_model=SessionResponse)
def create_session(body: SessionCreateRequest, services: ServicesDep, owner: OwnerDep) -> SessionResponse:
    return _view(services.sessions.create(NewSession(**body.model_dump()), owner))


@sessions.get("", response_model=SessionListResponse)
def list_sessions(services: ServicesDep, owner: OwnerDep) -> SessionListResponse:
    return SessionListResponse(sessions=[_view(session) for session in services.sessions.list_views(owner)])


@sessions.get("/{session_id}", response_model=SessionResponse)
def show_session(session_id: str, services: ServicesDep, owner: OwnerDep) -> SessionResponse:
    return _view(services.sessions.get(session_id, owner))


@sessions.delete("/{session_id}", status_code=204)
def delete_session(session_id: str, services: ServicesDep, owner: OwnerDep) -> Response:
    services.sessions.delete(session_id, owner)
    return Response(status_code=204)


@sessions.post("/{session_id}/pause", response_model=SessionResponse)
def pause_session(session_id: str, services: ServicesDep, owner: OwnerDep) -> SessionResponse:
    """Save a microVM session to disk and stop its VM; its next call resumes it (409 on the jail,
    or while a call holds it)."""
    return _view(services.sessions.pause(session_id, owner))


@sessions.post("/{session_id}/execute", response_model=SessionExecuteResponse, responses=STREAMS)
async def execute_cell(session_id: str, body: SessionExecuteRequest, request: Request, services: ServicesDep,
                       owner: OwnerDep) -> SessionExecuteResponse | Response:
    def work(listener: Listener | None) -> SessionExecuteResponse:
        cell = services.sessions.execute(session_id, owner, body.code, body.stdin, body.timeout, listener)
        metrics_of(request).ran(request, cell.result)
        return SessionExecuteResponse(**cell.result.answer(), reset=cell.reset,
                                      results=[RichResult(**entry) for entry in cell.results])

    if wants_events(request):
        return await stream(request, work)
    return await anyio.to_thread.run_sync(work, None)


@sessions.get("/{session_id}/files", response_model=FileListResponse)
def list_files(session_id: str, services: ServicesDep, owner: OwnerDep) -> FileListResponse:
    return FileListResponse(files=[FileEntryView(**entry) for entry in services.sessions.list_files(session_id, owner)])


def _pieces(spool: IO[bytes]) -> Iterator[bytes]:
    spool.seek(0)
    while piece := spool.read(SPOOL_BYTES):
        yield piece


@sessions.put("/{session_id}/files/{path:path}", status_code=201, response_model=FilePutResponse,
              openapi_extra={"requestBody": {"content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                                "format": "binary"}}},
                                             "required": True}})
async def put_file(session_id: str, path: str, request: Request, services: ServicesDep,
                   owner: OwnerDep) -> FilePutResponse:
    check_path(path)
    limit = services.sessions.get(session_id, owner).file_mb * 1024 * 1024
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"file {path} is larger than the session's file_mb ({limit >> 20} MiB)")
            await anyio.to_thread.run_sync(spool.write, chunk)
        written, final = await anyio.to_thread.run_sync(
            services.sessions.put_file, session_id, owner, path, _pieces(spool))
    return FilePutResponse(path=written, size=final)


@sessions.get("/{session_id}/files/{path:path}", response_class=StreamingResponse,
              responses={200: {"content": {"application/octet-stream": {}}, "description": "the file's bytes"}})
def get_file(session_id: str, path: str, services: ServicesDep, owner: OwnerDep) -> StreamingResponse:
    # No Content-Length: a program may change the file while it streams, and the answer then
    # carries what was read rather than breaking off short of a promised length.
    _, pieces = services.sessions.get_file(session_id, owner, path)
    return StreamingResponse(pieces, media_type="application/octet-stream")


@sessions.delete("/{session_id}/files/{path:path}", status_code=204)
def delete_file(session_id: str, path: str, services: ServicesDep, owner: OwnerDep) -> Response:
    services.sessions.delete_file(session_id, owner, path)
    return Response(status_code=204)
