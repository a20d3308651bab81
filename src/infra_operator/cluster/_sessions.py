"""Sessions in a cluster: each lives on the worker that made it, and any API process routes its
calls there.

An API process (``RoutedSessions``) sends a new session to a live worker that has the language,
the one with the fewest sessions (then the most free room), and records ``session:<id>``: the
worker, the owner and the session's last view, expiring with the session (each call renews it);
the id also joins ``sessions:<owner>``, which lists a key's sessions across workers. Every later
call goes to ``direct:<worker>``, a list only that worker pops (``serve`` runs the call on the
worker's own ``SessionManager``), and its answer comes back on ``reply:<call>``, as an execute's
does. A session whose worker no longer advertises itself is gone: 404, and its record is removed.
File bytes travel base64, one piece (``PIECE_BYTES``) per call. A streamed cell's output comes
as an execute's does (see ``_streaming``).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, cast

import redis

from ..errors import InvalidRequest, NotFound, OperatorError, Overloaded
from ..executor import (
    CellResult,
    ExecutionResult,
    Listener,
    NewSession,
    SessionView,
    check_path,
    file_pieces,
    file_stream,
)
from . import _keys
from ._dispatch import ANSWER_GRACE_SECONDS, WorkerRefused
from ._router import live_workers
from ._streaming import pushing, receive

if TYPE_CHECKING:
    from ..executor import SessionManager

log = logging.getLogger(__name__)
CALL_SECONDS = 60
"""How long a call other than a cell may take on its worker: a sandbox start, a file piece."""
RECORD_GRACE_SECONDS = 5
"""A record outlives its session's idle time by this much: the worker's reaper decides, not Redis."""


class RoutedSessions:
    """``SessionManager``'s calls, for an API process of a cluster: run by the session's worker."""

    def __init__(self, client: redis.Redis, language_name: Callable[[str], str], longest_cell: int) -> None:
        self.client = client
        self.language_name = language_name
        """A language's name from a name or alias (the catalog's; a 404 for neither)."""
        self.longest_cell = longest_cell

    def start(self) -> None:
        """Nothing runs here: the workers reap their own idle sessions."""

    def close(self) -> None:
        """Nothing is held here: the sessions go on on their workers."""

    # Sessions.
    def create(self, request: NewSession, owner: str) -> SessionView:
        language = self.language_name(request.language)
        worker = self._pick(language, request.backend)
        value = self._call(worker, "create", owner, "", dataclasses.asdict(request), CALL_SECONDS)
        return SessionView(**value)

    def _pick(self, language: str, backend: str | None) -> str:
        with _keys.unavailable_as_503():
            workers = live_workers(self.client)  # not the router's cached view: the session counts must be fresh
        able = [w for w in workers if language in w["languages"]
                and (backend in (None, "auto") or backend in w["backends"])]
        if not able:
            raise Overloaded(f"no worker of this cluster runs {language} sessions now", retry_after=5)
        chosen = min(able, key=lambda w: (w.get("sessions", 0), -w["free"]))
        return str(chosen["id"])

    def list_views(self, owner: str) -> list[SessionView]:
        """From Redis alone: no worker is asked."""
        with _keys.unavailable_as_503():
            ids = sorted(member.decode() for member in cast("set[bytes]", self.client.smembers(_keys.owner_sessions(owner))))
            if not ids:
                return []
            records = cast("list[bytes | None]", self.client.mget([_keys.session(i) for i in ids]))
            alive = {w["id"] for w in live_workers(self.client)}
            views = []
            for session_id, raw in zip(ids, records, strict=True):
                record = json.loads(raw) if raw is not None else None
                if record is None or record["worker"] not in alive:
                    self._forget(session_id, owner)
                else:
                    views.append(SessionView(**record["view"]))
        return sorted(views, key=lambda view: view.created_at)

    def get(self, session_id: str, owner: str) -> SessionView:
        return SessionView(**self._call(self._route(session_id, owner), "show", owner, session_id, {}, CALL_SECONDS))

    def delete(self, session_id: str, owner: str) -> None:
        wait = self.longest_cell + CALL_SECONDS  # a running cell is interrupted first
        self._call(self._route(session_id, owner), "delete", owner, session_id, {}, wait)

    def pause(self, session_id: str, owner: str) -> SessionView:
        # Saving a VM's RAM to disk takes seconds under TCG: the wait of a cell, not of a show.
        wait = self.longest_cell + CALL_SECONDS
        return SessionView(**self._call(self._route(session_id, owner), "pause", owner, session_id, {}, wait))

    # Cells.
    def execute(self, session_id: str, owner: str, code: str, stdin: str = "", timeout: int | None = None,
                listener: Listener | None = None) -> CellResult:
        worker = self._route(session_id, owner)
        wait = (timeout or self.longest_cell) + ANSWER_GRACE_SECONDS
        args = {"code": code, "stdin": stdin, "timeout": timeout, "stream": listener is not None}
        value = self._call(worker, "execute", owner, session_id, args, wait, listener)
        return CellResult(result=ExecutionResult(**value["result"]), results=value["results"], reset=value["reset"])

    # Files.
    def put_file(self, session_id: str, owner: str, path: str, pieces: Iterable[bytes],
                 offset: int = 0) -> tuple[str, int]:
        check_path(path)
        worker = self._route(session_id, owner)
        size = 0
        for piece in file_pieces(pieces):
            value = self._call(worker, "put_file", owner, session_id,
                               {"path": path, "offset": offset, "data": base64.b64encode(piece).decode("ascii")}, CALL_SECONDS)
            offset += len(piece)
            size = value["size"]
        return path, size

    def get_file(self, session_id: str, owner: str, path: str) -> tuple[int, Iterator[bytes]]:
        check_path(path)
        worker = self._route(session_id, owner)

        def read(offset: int, wait: float) -> tuple[bytes, int]:
            value = self._call(worker, "read_file", owner, session_id, {"path": path, "offset": offset, "wait": wait},
                               CALL_SECONDS + wait)
            return base64.b64decode(value["data"]), int(value["size"])

        return file_stream(read)

    def list_files(self, session_id: str, owner: str) -> list[dict[str, Any]]:
        value = self._call(self._route(session_id, owner), "list_files", owner, session_id, {}, CALL_SECONDS)
        return cast("list[dict[str, Any]]", value)

    def delete_file(self, session_id: str, owner: str, path: str) -> None:
        check_path(path)
        self._call(self._route(session_id, owner), "delete_file", owner, session_id, {"path": path}, CALL_SECONDS)

    # Routing.
    def _route(self, session_id: str, owner: str) -> str:
        """The live worker that holds the caller's session; 404 for another key's, or a gone one."""
        with _keys.unavailable_as_503():
            raw = cast("bytes | None", self.client.get(_keys.session(session_id)))
            record = json.loads(raw) if raw is not None else None
            if record is None or not secrets.compare_digest(record["owner"], owner):
                raise NotFound(f"session not found: {session_id}")
            if not self.client.exists(_keys.worker(record["worker"])):
                self._forget(session_id, owner)
                raise NotFound(f"session not found: {session_id} (its worker {record['worker']} is gone)")
        return str(record["worker"])

    def _call(self, worker: str, op: str, owner: str, session_id: str, args: dict[str, Any], wait: float,
              listener: Listener | None = None) -> Any:
        """Run ``op`` on ``worker`` and answer its value; its errors are raised here, with their status.
        With a ``listener``, the output the worker pushes goes to it as it comes."""
        call_id = uuid.uuid4().hex
        call = {"id": call_id, "op": op, "owner": owner, "session": session_id, "args": args,
                "deadline": time.time() + wait}
        with _keys.unavailable_as_503():
            with self.client.pipeline(transaction=True) as pipe:
                pipe.rpush(_keys.direct(worker), json.dumps(call))
                # Calls pushed to a worker that died meanwhile go, with the list, once stale.
                pipe.expire(_keys.direct(worker), self.longest_cell + CALL_SECONDS + ANSWER_GRACE_SECONDS)
                if session_id:  # a cell longer than the idle time must not outlive its record
                    pipe.expire(_keys.session(session_id), int(wait) + RECORD_GRACE_SECONDS, gt=True)
                pipe.execute()

            def still_there() -> None:
                if not self.client.exists(_keys.worker(worker)):
                    if not session_id:  # a create: nothing was made that lives on
                        raise Overloaded(f"worker {worker} stopped before it answered; try again", retry_after=1)
                    self._forget(session_id, owner)
                    raise NotFound(f"session not found: {session_id} (its worker {worker} is gone)")
            answer = receive(self.client, call_id, wait, listener, still_there)
            if answer.get("view") is not None:
                record(self.client, worker, owner, answer["view"])
            elif "view" in answer:
                self._forget(session_id, owner)
        if "error" in answer:
            raise WorkerRefused(answer["error"], int(answer["status"]), answer["headers"])
        return answer["value"]

    def _forget(self, session_id: str, owner: str) -> None:
        with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(_keys.session(session_id))
            pipe.srem(_keys.owner_sessions(owner), session_id)
            pipe.execute()


def record(client: redis.Redis, worker: str, owner: str, view: dict[str, Any]) -> None:
    """Route the session ``view`` names to ``worker``, until its idle time (and a grace) is up."""
    entry = {"worker": worker, "owner": owner, "view": view}
    with client.pipeline(transaction=True) as pipe:
        pipe.set(_keys.session(view["id"]), json.dumps(entry), ex=int(view["idle_timeout"]) + RECORD_GRACE_SECONDS)
        pipe.sadd(_keys.owner_sessions(owner), view["id"])
        pipe.execute()


def adopt(client: redis.Redis, sessions: SessionManager, worker_id: str) -> int:
    """Route to this worker every session it holds at its start: the paused ones a worker
    before it on this host left on disk, whose routes name that worker's id, gone with it.
    Answers how many."""
    held = sessions.held()
    for owner, view in held:
        record(client, worker_id, owner, dataclasses.asdict(view))
    return len(held)


def serve(client: redis.Redis, sessions: SessionManager, worker_id: str, call: dict[str, Any]) -> dict[str, Any]:
    """A worker's answer to one call for a session it holds: the value or the error, and the
    session's view after the call (null once it is gone), which the API process records."""
    if not call["args"].get("stream"):
        return _serve(sessions, worker_id, call, None)
    with pushing(client, call["id"]) as listener:
        return _serve(sessions, worker_id, call, listener)


def _serve(sessions: SessionManager, worker_id: str, call: dict[str, Any], listener: Listener | None) -> dict[str, Any]:
    session_id, owner = call["session"], call["owner"]
    answer: dict[str, Any]
    try:
        value = _run(sessions, worker_id, call["op"], session_id, owner, call["args"], listener)
        answer = {"value": value}
        if call["op"] == "create":
            session_id = value["id"]
    except OperatorError as exc:
        answer = {"error": exc.message, "status": exc.status, "headers": exc.headers()}
    except Exception as exc:  # noqa: BLE001  # the API process waits for an answer: it must get one
        log.exception("worker %s: session call %s failed", worker_id, call["op"])
        answer = {"error": f"internal error: {type(exc).__name__}", "status": 500, "headers": {}}
    if session_id:
        try:
            answer["view"] = dataclasses.asdict(sessions.get(session_id, owner))
        except NotFound:
            answer["view"] = None
    return answer


def _run(sessions: SessionManager, worker_id: str, op: str, session_id: str, owner: str, args: dict[str, Any],
         listener: Listener | None) -> Any:
    match op:
        case "create":
            return dataclasses.asdict(sessions.create(NewSession(**args), owner))
        case "show":
            return dataclasses.asdict(sessions.get(session_id, owner))
        case "delete":
            sessions.delete(session_id, owner)
            return None
        case "pause":
            return dataclasses.asdict(sessions.pause(session_id, owner))
        case "execute":
            cell = sessions.execute(session_id, owner, args["code"], args["stdin"], args["timeout"], listener)
            result = dataclasses.replace(cell.result, worker=worker_id)
            return {"result": dataclasses.asdict(result), "results": cell.results, "reset": cell.reset}
        case "put_file":
            _, size = sessions.put_file(session_id, owner, args["path"], [base64.b64decode(args["data"])], args["offset"])
            return {"size": size}
        case "read_file":
            data, size = sessions.read_file(session_id, owner, args["path"], args["offset"], args["wait"])
            return {"data": base64.b64encode(data).decode("ascii"), "size": size}
        case "list_files":
            return sessions.list_files(session_id, owner)
        case "delete_file":
            sessions.delete_file(session_id, owner, args["path"])
            return None
    raise InvalidRequest(f"no such session call: {op}")
