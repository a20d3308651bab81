"""Sessions: one sandbox kept across calls, with a notebook's cells and the working folder's files.

A session is a sandbox taken from the pool (or started) and told by a ``session``
request to keep a REPL kernel for its language (see ``guest/_cells.py``). The manager
owns every session: one call at a time each (a second concurrent call is a 409, so a
client never waits behind a long cell without knowing), an idle time-out enforced
by a reaper thread, a server-wide cap on open sessions (429 past it), and ``close``
when the server stops. A running session lives in this process only: a restarted server
knows none (404), and on the jail its sandbox died with the old server.

A session on a microVM backend can be paused (``pause``): its backend saves the sandbox
into the session's folder (``_paused``) and stops it, so it holds no memory; the next
call resumes it where it was. A paused session outlives the server: ``start`` finds the
saved ones again. The idle time-out applies to a paused session as to any other, and
deleting or expiring removes its folder.

Ids are unguessable (``secrets.token_urlsafe``). When API keys are configured, a session
belongs to the key that made it: any other key is told it does not exist (404).
A sandbox that dies under a cell (its agent killed with it, say by the OOM killer)
is replaced by a fresh one, and the answer says the session was ``reset``.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..backends import Listener
from ..errors import (
    AgentError,
    AgentTimeout,
    Conflict,
    InvalidRequest,
    NotFound,
    OperatorError,
    PayloadTooLarge,
    SandboxError,
    SessionBusy,
    TooManySessions,
)
from ..guest import b64decode, b64encode
from ..images import release_states
from . import _limits, _paused
from ._executor import BASE_ENV, HOST_GRACE_SECONDS, ExecutionResult, rootfs_for

if TYPE_CHECKING:
    from ..backends import Backend, Sandbox, SandboxSpec
    from ..config import Settings
    from ..guest.messages import CellReply, CellRequest, FileEntry, Kernel, RichResult, SessionRequest
    from ..images import RootfsInfo
    from ..languages import Language
    from ._executor import Executor

log = logging.getLogger(__name__)

KERNELS: dict[str, Kernel] = {"python": "python", "nodejs": "node", "bash": "bash"}
"""Languages whose cells run in a REPL kernel that keeps their names; others compile and run afresh."""


def kernel_of(language: Language) -> Kernel | None:
    """A language's kernel, or its base's: python-data and custom images run like their base."""
    return KERNELS.get(language.name) or (KERNELS.get(language.base) if language.base else None)

PIECE_BYTES = 1 << 20
"""A file crosses the agent channel in pieces this big."""
INTERRUPT_GRACE_SECONDS = 1.0
"""What the agent gives a kernel after SIGINT (``guest/_cells.py``), waited for here too."""
REAP_INTERVAL_SECONDS = 1.0

SessionState = Literal["idle", "busy", "paused"]
"""``busy`` while a call holds the session (a cell runs, a file moves): another call is a 409.
``paused``: saved to disk with no sandbox running; the next call resumes it."""


@dataclass(frozen=True)
class NewSession:
    """What a client asks of a new session."""

    language: str
    version: str | None = None
    idle_timeout: int | None = None
    backend: str | None = None
    memory_mb: int | None = None
    cpu_seconds: int | None = None
    processes: int | None = None
    output_kb: int | None = None
    file_mb: int | None = None


@dataclass(frozen=True)
class SessionView:
    id: str
    language: str
    version: str
    backend: str
    created_at: str
    expires_at: str
    idle_timeout: int
    file_mb: int
    state: SessionState


@dataclass(frozen=True)
class CellResult:
    result: ExecutionResult
    results: list[RichResult]
    reset: bool


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def check_path(path: str) -> str:
    """Refuse at once what the agent would refuse anyway: a path that leaves the working folder."""
    parts = path.split("/")
    if not path or "\0" in path or "\\" in path or any(part in ("", ".", "..") for part in parts):
        raise InvalidRequest(f"path {path!r} leaves the working folder: give a relative path without '.' or '..'")
    return path


@dataclass
class _Session:
    id: str
    owner: str
    language: Language
    rootfs: RootfsInfo
    backend: Backend
    limits: _limits.ResolvedLimits
    message: SessionRequest
    """The agent's ``session`` request, kept to open a replacement sandbox the same way."""
    idle_timeout: int
    sandbox: Sandbox | None
    """None while paused."""
    paused: Path | None = None
    """The session's folder of saved state while it is paused (see ``_paused``)."""
    created_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)
    cancel: threading.Event = field(default_factory=threading.Event)
    """The running cell's: set to interrupt it (its client went away, or the session is deleted)."""

    def view(self) -> SessionView:
        idle_for = time.monotonic() - self.last_used
        return SessionView(id=self.id, language=self.language.name, version=self.rootfs.version,
                           backend=self.backend.name, created_at=_iso(self.created_at),
                           expires_at=_iso(time.time() + max(0.0, self.idle_timeout - idle_for)),
                           idle_timeout=self.idle_timeout, file_mb=self.limits.file_mb,
                           state="busy" if self.lock.locked() else "paused" if self.paused else "idle")

    def expired(self, now: float) -> bool:
        return now - self.last_used > self.idle_timeout

    @property
    def live(self) -> Sandbox:
        """The running sandbox; ``SessionManager._use`` resumes a paused session before any call."""
        if self.sandbox is None:
            raise SandboxError(f"session {self.id} has no running sandbox")
        return self.sandbox

    def record(self) -> _paused.PausedRecord:
        return _paused.PausedRecord(
            id=self.id, owner=self.owner, language=self.language.name, backend=self.backend.name,
            rootfs_sha256=self.rootfs.sha256, limits=self.limits, idle_timeout=self.idle_timeout,
            created_at=self.created_at, last_used_at=time.time() - (time.monotonic() - self.last_used))


class SessionManager:
    def __init__(self, settings: Settings, executor: Executor) -> None:
        self.settings = settings
        self.executor = executor
        self._sessions: dict[str, _Session] = {}
        self._opening = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None

    # Lifecycle of the manager.
    def start(self) -> None:
        """Find the sessions paused by an earlier server, and start the reaper of idle sessions."""
        if self._reaper is None:
            self._load_paused()
            self._reaper = threading.Thread(target=self._reap, name="session-reaper", daemon=True)
            self._reaper.start()

    def close(self) -> None:
        """Destroy every running session: the server is stopping. Paused ones stay on disk
        for the next server."""
        self._stop.set()
        if self._reaper is not None:
            self._reaper.join(timeout=5)
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for session in sessions:
            if session.paused is None or session.lock.locked():
                self._end(session, wait=2.0)

    def _reap(self) -> None:
        while not self._stop.wait(REAP_INTERVAL_SECONDS):
            now = time.monotonic()
            with self._lock:
                idle = [s for s in self._sessions.values() if s.expired(now) and not s.lock.locked()]
                for session in idle:
                    del self._sessions[session.id]
            for session in idle:
                log.info("session %s: idle for %d s, destroyed", session.id, session.idle_timeout)
                self._end(session, wait=0.0)

    def _end(self, session: _Session, wait: float) -> None:
        """Destroy a session already taken out of the table: its cell is interrupted first."""
        session.cancel.set()
        acquired = session.lock.acquire(timeout=wait) if wait > 0 else session.lock.acquire(blocking=False)
        try:
            if session.sandbox is not None:
                self.executor.pool.dispose(session.sandbox)
                session.sandbox = None
            if session.paused is not None:
                _paused.remove(session.paused)
                session.paused = None
        finally:
            if acquired:
                session.lock.release()

    # Sessions.
    def create(self, request: NewSession, owner: str) -> SessionView:
        language = self.executor.catalog.get(request.language)
        rootfs = rootfs_for(self.executor, language, request.version)
        allowed = self.settings.limits
        limits = _limits.resolve(
            allowed, cpu_seconds=request.cpu_seconds or allowed.cpu_seconds.maximum, memory_mb=request.memory_mb,
            processes=request.processes, output_kb=request.output_kb, file_mb=request.file_mb)
        idle = _limits.pick("idle_timeout", request.idle_timeout, self.settings.sessions.idle_timeout_seconds)
        backend = self.executor.backends.choose(request.backend)
        spec = self.executor.spec_for(backend, language, rootfs, limits)
        message = self._message(language, limits)
        with self._lock:
            if len(self._sessions) + self._opening >= self.settings.sessions.max_open:
                raise TooManySessions(f"the server holds {self.settings.sessions.max_open} sessions, its limit: "
                                      "delete one or try later")
            self._opening += 1
        try:
            sandbox = self._open(backend, message, spec)
        finally:
            with self._lock:
                self._opening -= 1
        session = _Session(id=secrets.token_urlsafe(18), owner=owner, language=language, rootfs=rootfs,
                           backend=backend, limits=limits, message=message, idle_timeout=idle, sandbox=sandbox)
        with self._lock:
            self._sessions[session.id] = session
        return session.view()

    def _message(self, language: Language, limits: _limits.ResolvedLimits) -> SessionRequest:
        return {
            "op": "session",
            "kernel": kernel_of(language),
            "source": language.source,
            "compile": list(language.compile) if language.compile else None,
            "run": list(language.run),
            "env": {**BASE_ENV, **language.env},
            "limits": {**limits.for_agent(), "wall_seconds": self.settings.limits.timeout_seconds.maximum},
            "entropy": "",
            "clock": 0.0,
        }

    def _open(self, backend: Backend, message: SessionRequest, spec: SandboxSpec) -> Sandbox:
        sandbox = self.executor.pool.take(backend, spec) or backend.start(spec)
        try:
            # Fresh per sandbox: clones of one snapshot must not share random state or a stale clock.
            sandbox.call({**message, "entropy": b64encode(secrets.token_bytes(64)), "clock": time.time()},
                         time.monotonic() + 30)
        except BaseException:
            self.executor.pool.dispose(sandbox)
            raise
        return sandbox

    def held(self) -> list[tuple[str, SessionView]]:
        """Every session here, with its owner: what a cluster's worker announces as its own
        when it starts (the paused ones an earlier worker left, see ``cluster.adopt``)."""
        with self._lock:
            sessions = list(self._sessions.values())
        return [(session.owner, session.view()) for session in sessions]

    def list_views(self, owner: str) -> list[SessionView]:
        with self._lock:
            mine = [s for s in self._sessions.values() if s.owner == owner]
        return [session.view() for session in sorted(mine, key=lambda s: s.created_at)]

    def get(self, session_id: str, owner: str) -> SessionView:
        return self._find(session_id, owner).view()

    def delete(self, session_id: str, owner: str) -> None:
        with self._lock:
            session = self._find(session_id, owner)
            del self._sessions[session.id]
        grace = self.settings.limits.timeout_seconds.maximum + INTERRUPT_GRACE_SECONDS + HOST_GRACE_SECONDS
        self._end(session, wait=grace)

    def count(self) -> int:
        with self._lock:
            return len(self._sessions)

    def _find(self, session_id: str, owner: str) -> _Session:
        session = self._sessions.get(session_id)
        if session is None or not secrets.compare_digest(session.owner, owner):
            raise NotFound(f"session not found: {session_id}")
        return session

    @contextmanager
    def _use(self, session_id: str, owner: str, wait: float = 0.0, resume: bool = True) -> Iterator[_Session]:
        """Hold the session for one call (409 while another holds it), resuming it first when
        it is paused, unless ``resume`` is False."""
        with self._lock:
            session = self._find(session_id, owner)
        acquired = session.lock.acquire(timeout=wait) if wait > 0 else session.lock.acquire(blocking=False)
        if not acquired:
            raise SessionBusy(f"session {session_id} is busy with another call: one call at a time")
        try:
            with self._lock:  # the reaper takes a session out only while its lock is free, under this one
                if self._sessions.get(session_id) is not session:
                    raise NotFound(f"session not found: {session_id}")
            session.last_used = time.monotonic()
            if resume and session.paused is not None:
                self._wake(session)
            yield session
        finally:
            session.last_used = time.monotonic()
            session.lock.release()

    # Cells.
    def execute(self, session_id: str, owner: str, code: str, stdin: str = "", timeout: int | None = None,
                listener: Listener | None = None) -> CellResult:
        wall = _limits.pick("timeout", timeout, self.settings.limits.timeout_seconds)
        with self._use(session_id, owner) as session:
            # Its cancel interrupts the cell: set by the client going away, or by a delete.
            heard = listener or Listener(_ignore)
            session.cancel = heard.cancel
            message: CellRequest = {
                "op": "cell", "code": code, "stdin": b64encode(stdin.encode("utf-8")), "wall_seconds": wall,
                "stream": listener is not None}
            if kernel_of(session.language) is None:  # its file's name may follow what the code declares
                program = session.language.program(code)
                message["program"] = {"source": program.source, "run": list(program.run),
                                      "compile": list(program.compile) if program.compile else None}
            deadline = time.monotonic() + wall + INTERRUPT_GRACE_SECONDS + HOST_GRACE_SECONDS
            with self.executor.admission.slot():
                started = time.monotonic()
                try:
                    answer = session.live.call(message, deadline, heard)
                    assert answer["op"] == "cell"  # Sandbox.call answers the request's op or raises
                    reply: CellReply | None = answer
                    outcome = session.live.outcome()
                except (AgentTimeout, AgentError):
                    reply, outcome = None, session.live.outcome()
                    self._replace_sandbox(session)
                finished = time.monotonic()
            result = self.executor.result_from(session.language, session.rootfs, session.backend.name, reply,
                                               outcome, 0.0, (finished - started) * 1000)
            result = dataclasses.replace(result, sandbox_start="session")
            if reply is None:
                return CellResult(result=result, results=[], reset=True)
            return CellResult(result=result, results=reply["results"], reset=reply["reset"])

    def _replace_sandbox(self, session: _Session) -> None:
        """The sandbox died under a cell: the session goes on in a fresh one, reset."""
        log.warning("session %s: its sandbox died during a cell; starting a fresh one", session.id)
        self.executor.pool.dispose(session.live)
        spec = self.executor.spec_for(session.backend, session.language, session.rootfs, session.limits)
        session.sandbox = self._open(session.backend, session.message, spec)

    # Pausing.
    def pause(self, session_id: str, owner: str) -> SessionView:
        """Save the session to disk and stop its sandbox (a paused one stays as it is). A busy
        session is a 409, as is one whose backend cannot pause (the jail)."""
        with self._use(session_id, owner, resume=False) as session:
            if session.paused is None:
                self._pause(session)
        return session.view()

    def _pause(self, session: _Session) -> None:
        sandbox = session.live
        folder = _paused.folder(self.settings.paused_sessions_dir, session.id)
        saved = _paused.sandbox_dir(folder)
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            folder.mkdir(mode=0o700)  # guest memory, the owner's secrets: root only
            _paused.claim(folder)
            saved.mkdir()
            started = time.monotonic()
            sandbox.pause(saved)
            _paused.write(folder, session.record())
        except BaseException:
            _paused.remove(folder)
            raise
        # Whatever the pause left of the sandbox (it destroyed its VM) goes as any used one.
        self.executor.pool.dispose(sandbox)
        session.sandbox, session.paused = None, folder
        log.info("session %s: paused in %.0f ms to %s", session.id, (time.monotonic() - started) * 1000, folder)

    def _wake(self, session: _Session) -> None:
        """Resume a paused session in a fresh sandbox; its folder goes once the sandbox runs."""
        assert session.paused is not None
        started = time.monotonic()
        try:
            current = self.executor.rootfs.get(session.rootfs.image or session.language.name)  # its own release
            if current.sha256 != session.rootfs.sha256:
                raise Conflict(f"session {session.id} was paused on a {session.language.name} image that has been "
                               "rebuilt since: it cannot resume; delete it")
            spec = self.executor.spec_for(session.backend, session.language, session.rootfs, session.limits)
            session.sandbox = session.backend.resume(spec, _paused.sandbox_dir(session.paused))
        except NotFound as exc:
            # What is missing is the saved state's (an image, a kernel file), not the session: not a 404.
            raise SandboxError(f"session {session.id} cannot resume: {exc.message}") from exc
        _paused.remove(session.paused)
        session.paused = None
        log.info("session %s: resumed in %.0f ms", session.id, (time.monotonic() - started) * 1000)

    def _load_paused(self) -> None:
        """Take back the sessions an earlier server paused; expired ones are removed."""
        root = self.settings.paused_sessions_dir
        for folder in _paused.scan(root):
            try:
                record = _paused.read(folder)
                language = self.executor.catalog.get(record.language)
                # The release it was paused on: the image with its checksum, else the default one.
                built = [state.rootfs for state in release_states(self.executor.catalog, language, self.executor.rootfs)
                         if state.rootfs is not None]
                rootfs = next((info for info in built if info.sha256 == record.rootfs_sha256), None) \
                    or rootfs_for(self.executor, language, None)
                backend = self.executor.backends.get(record.backend)
            except (OSError, ValueError, OperatorError) as exc:
                log.warning("paused session in %s cannot be taken back, left as it is: %s", folder, exc)
                continue
            idle_for = max(0.0, time.time() - record.last_used_at)
            if idle_for > record.idle_timeout:
                log.info("paused session %s: idle for %d s, removed", record.id, record.idle_timeout)
                _paused.remove(folder)
                continue
            if rootfs.sha256 != record.rootfs_sha256:
                # Kept as it was paused: a resume then says why it cannot (see _wake).
                rootfs = dataclasses.replace(rootfs, sha256=record.rootfs_sha256)
            _paused.claim(folder)
            session = _Session(id=record.id, owner=record.owner, language=language, rootfs=rootfs, backend=backend,
                               limits=record.limits, message=self._message(language, record.limits),
                               idle_timeout=record.idle_timeout, sandbox=None, paused=folder,
                               created_at=record.created_at, last_used=time.monotonic() - idle_for)
            with self._lock:
                self._sessions[session.id] = session
            log.info("paused session %s (%s on %s) taken back from %s", record.id, language.name, backend.name, folder)

    # Files.
    def put_file(self, session_id: str, owner: str, path: str, pieces: Iterable[bytes],
                 offset: int = 0) -> tuple[str, int]:
        """Write a file from its bytes, piece by piece (from ``offset``: the rest of a file whose
        start an earlier call wrote); its path and size."""
        check_path(path)
        with self._use(session_id, owner) as session:
            limit = session.limits.file_mb * 1024 * 1024
            size = 0
            for piece in file_pieces(pieces):
                if offset + len(piece) > limit:
                    raise PayloadTooLarge(f"file {path} is larger than the session's file_mb ({session.limits.file_mb} MiB)")
                reply = session.live.call({"op": "file_put", "path": path, "data": b64encode(piece), "offset": offset},
                                             time.monotonic() + 60)
                assert reply["op"] == "file_put"
                offset += len(piece)
                size = reply["size"]
            return path, size

    def get_file(self, session_id: str, owner: str, path: str) -> tuple[int, Iterator[bytes]]:
        """A file's size and its bytes, piece by piece (see ``file_stream``)."""
        check_path(path)
        return file_stream(lambda offset, wait: self.read_file(session_id, owner, path, offset, wait))

    def read_file(self, session_id: str, owner: str, path: str, offset: int, wait: float = 0.0) -> tuple[bytes, int]:
        """One piece of a file from ``offset``, and the file's size."""
        check_path(path)
        with self._use(session_id, owner, wait) as session:
            return self._piece(session, path, offset)

    @staticmethod
    def _piece(session: _Session, path: str, offset: int) -> tuple[bytes, int]:
        reply = session.live.call({"op": "file_get", "path": path, "offset": offset, "length": PIECE_BYTES},
                                     time.monotonic() + 60)
        assert reply["op"] == "file_get"
        return b64decode(reply["data"]), reply["size"]

    def list_files(self, session_id: str, owner: str) -> list[FileEntry]:
        with self._use(session_id, owner) as session:
            reply = session.live.call({"op": "file_list"}, time.monotonic() + 60)
        assert reply["op"] == "file_list"
        return reply["files"]

    def delete_file(self, session_id: str, owner: str, path: str) -> None:
        check_path(path)
        with self._use(session_id, owner) as session:
            session.live.call({"op": "file_delete", "path": path}, time.monotonic() + 60)


def _ignore(stream: str, data: bytes) -> None:
    """Output of a cell nobody streams: it is in the answer."""


PIECE_WAIT_SECONDS = 60.0
"""Between pieces of a file another call may have the session: wait this long for it, not refuse."""


def file_stream(read: Callable[[int, float], tuple[bytes, int]]) -> tuple[int, Iterator[bytes]]:
    """A file's size and its bytes, piece by piece, from ``read(offset, wait)`` (a piece and the
    file's size): the first is read now (so a bad path fails here, before any answer starts),
    the rest as the caller iterates."""
    first, size = read(0, 0.0)

    def rest() -> Iterator[bytes]:
        yield first
        offset = len(first)
        while offset < size:
            piece, _ = read(offset, PIECE_WAIT_SECONDS)
            if not piece:
                return  # the file shrank meanwhile
            offset += len(piece)
            yield piece

    return size, rest()


def file_pieces(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """The body in pieces of at most ``PIECE_BYTES``; one empty piece for an empty file."""
    sent = False
    for chunk in pieces:
        for start in range(0, len(chunk), PIECE_BYTES):
            sent = True
            yield chunk[start:start + PIECE_BYTES]
    if not sent:
        yield b""
