"""``infra.operator worker --redis URL``: takes work from the cluster's streams and runs it here.

Each runner thread reads one entry at a time with XREADGROUP (consumer group ``workers``,
consumer = this worker). A heartbeat thread, every second: renews this worker's
advertisement (backends, languages, warm pools, free capacity); re-claims the entries this
worker holds (XCLAIM with JUSTID resets their idle time, so they are plainly alive); and
takes over entries idle past ``claim_idle_seconds`` (XAUTOCLAIM): those of a worker that died.
A submission is acknowledged only after its outcome is kept; one whose runners died
``max_attempts`` times ends ``failed`` with that reason instead of running again.
The calls for the sessions this worker holds come on a list of its own (``direct:<id>``),
popped by one thread and each run in a thread of a pool (see ``_sessions``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

import redis

from ..errors import OperatorError
from ..executor import ExecutionRequest
from ..submissions import run, view
from . import _keys
from ._router import ensure_group, live_workers
from ._sessions import adopt, serve
from ._store import RedisStore
from ._streaming import pushing

if TYPE_CHECKING:
    from ..executor import Executor, SessionManager
    from ..submissions import CallbackSender, Outcome, Submission
    from ._router import Router

log = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 1.0
ADVERT_TTL_SECONDS = 5
_READ_BLOCK_MS = 1000
_REDIS_RETRY_SECONDS = 0.5
Entry = tuple[str, str, dict[str, str]]
"""A stream, an entry id and its fields."""
T = TypeVar("T")


@dataclass(frozen=True)
class Advert:
    """What a worker tells the cluster about itself."""

    id: str
    backends: list[str]
    languages: list[str]
    warm: list[str]
    capacity: int


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Worker:
    def __init__(self, client: redis.Redis, router: Router, executor: Executor, sessions: SessionManager,
                 callbacks: CallbackSender, advert: Advert, retention_seconds: float, claim_idle_seconds: float = 10.0,
                 max_attempts: int = 3) -> None:
        self.client = client
        self.executor = executor
        self.sessions = sessions
        self.callbacks = callbacks
        self.advert = advert
        self.store = RedisStore(client, router, retention_seconds)
        self.claim_idle_ms = int(claim_idle_seconds * 1000)
        self.max_attempts = max_attempts
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._held: dict[str, set[str]] = {}
        """Entries taken and not yet acknowledged, by stream: re-claimed each heartbeat."""
        self._claimed: queue.Queue[Entry] = queue.Queue()
        self._streams: list[str] = []
        self._threads: list[threading.Thread] = []

    # ---- running

    def run(self) -> None:
        """Serve until ``stop``; then finish what runs, and leave."""
        self.sessions.start()
        self._heartbeat_once()
        if adopted := adopt(self.client, self.sessions, self.advert.id):
            log.info("worker %s: took back %d paused sessions", self.advert.id, adopted)
        self._threads = [threading.Thread(target=self._runner, name=f"runner-{n}", daemon=True)
                         for n in range(self.advert.capacity)]
        self._threads.append(threading.Thread(target=self._session_calls, name="session-calls", daemon=True))
        for thread in self._threads:
            thread.start()
        while not self.stopping.wait(HEARTBEAT_SECONDS):
            self._heartbeat_once()
        for thread in self._threads:
            thread.join()
        with contextlib.suppress(redis.RedisError):
            self.client.delete(_keys.worker(self.advert.id))
        log.info("worker %s: drained and left", self.advert.id)

    def stop(self) -> None:
        self.stopping.set()

    def _runner(self) -> None:
        while not self.stopping.is_set():
            entry: Entry | None
            try:
                entry = self._claimed.get_nowait()
            except queue.Empty:
                entry = self._read()
            if entry is None:
                continue
            try:
                self._handle(*entry)
            except Exception:  # a fault of ours with one entry must not end the runner
                # Unacknowledged, the entry goes idle: another worker takes it, and after
                # max_attempts it ends failed.
                log.exception("worker %s: entry %s of %s failed", self.advert.id, entry[1], entry[0])

    def _read(self) -> Entry | None:
        streams = self._streams
        if not streams:
            self.stopping.wait(HEARTBEAT_SECONDS)
            return None
        try:
            answer = self.client.xreadgroup(_keys.GROUP, self.advert.id, dict.fromkeys(streams, ">"), count=1,
                                            block=_READ_BLOCK_MS)
        except redis.ResponseError as exc:  # NOGROUP: Redis lost the group (restarted without its file)
            log.warning("worker %s: %s; making the groups again", self.advert.id, exc)
            self._ensure_groups()
            return None
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("worker %s: Redis unavailable: %s", self.advert.id, exc)
            self.stopping.wait(_REDIS_RETRY_SECONDS)
            return None
        for stream, entries in cast("list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]", answer or []):
            for entry_id, fields in entries:
                return _entry(stream, entry_id, fields)
        return None

    def _handle(self, stream: str, entry_id: str, fields: dict[str, str]) -> None:
        with self._lock:
            self._held.setdefault(stream, set()).add(entry_id)
        try:
            if fields.get("kind") == "execute":
                self._execute(fields)
            else:
                self._submission(fields["id"])
            _until_done(lambda: self._acknowledge(stream, entry_id))
        finally:
            with self._lock:
                self._held[stream].discard(entry_id)

    def _acknowledge(self, stream: str, entry_id: str) -> None:
        with self.client.pipeline(transaction=True) as pipe:
            pipe.xack(stream, _keys.GROUP, entry_id)
            pipe.xdel(stream, entry_id)
            pipe.execute()

    def _submission(self, submission_id: str) -> None:
        submission = _until_done(lambda: self.store.start(submission_id, self.advert.id))
        if submission is None:
            return  # finished already (by a runner that died before acknowledging it) or forgotten
        if submission["attempts"] > self.max_attempts:
            outcome: Outcome = ("failed", None, f"the workers running it stopped {submission['attempts'] - 1} times "
                                       "before it finished; not run again")
        else:
            outcome = run(self.executor, submission)
        self._finish(submission, outcome)

    def _finish(self, submission: Submission, outcome: Outcome) -> None:
        finished = _until_done(lambda: self.store.finish(submission, outcome))
        if finished is None:
            log.info("submission %s was finished by another worker first; this outcome is dropped", submission["id"])
        elif finished["callback_url"] is not None:
            self.callbacks.deliver(finished["callback_url"], view(finished))

    def _execute(self, fields: dict[str, str]) -> None:
        if float(fields["deadline"]) < time.time():
            return  # the API process that asked stopped waiting
        request = ExecutionRequest.from_json(json.loads(fields["request"]))
        try:
            if fields.get("stream") == "1":
                with pushing(self.client, fields["id"]) as listener:
                    result = self.executor.execute(request, listener)
            else:
                result = self.executor.execute(request)
            answer: dict[str, Any] = {"result": dataclasses.asdict(dataclasses.replace(result, worker=self.advert.id))}
        except OperatorError as exc:
            answer = {"error": exc.message, "status": exc.status, "headers": exc.headers()}
        self._answer(fields["id"], answer)

    def _answer(self, call_id: str, answer: dict[str, Any]) -> None:
        key = _keys.reply(call_id)

        def push() -> None:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.rpush(key, json.dumps(answer))
                pipe.expire(key, 60)
                pipe.zrem(_keys.UNANSWERED_EXECUTES, call_id)  # an execute's count ends (a session call has none)
                pipe.execute()
        _until_done(push)

    def _session_calls(self) -> None:
        """Pop the calls for this worker's sessions, each run in a thread of its own: a long cell
        keeps no other session waiting (a second call to a busy session is refused, 409)."""
        with ThreadPoolExecutor(self.sessions.settings.sessions.max_open, thread_name_prefix="session-call") as pool:
            while not self.stopping.is_set():
                try:
                    popped = cast("tuple[bytes, bytes] | None",
                                  self.client.blpop([_keys.direct(self.advert.id)], timeout=_READ_BLOCK_MS // 1000))
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    log.warning("worker %s: Redis unavailable: %s", self.advert.id, exc)
                    self.stopping.wait(_REDIS_RETRY_SECONDS)
                    continue
                if popped is not None:
                    pool.submit(self._session_call, json.loads(popped[1]))

    def _session_call(self, call: dict[str, Any]) -> None:
        if float(call["deadline"]) < time.time():
            return  # the API process that asked stopped waiting
        self._answer(call["id"], serve(self.client, self.sessions, self.advert.id, call))

    # ---- the heartbeat

    def _heartbeat_once(self) -> None:
        try:
            self._advertise()
            self._streams = self._choose_streams()
            self._ensure_groups()
            self._keep_held()
            self._take_over_abandoned()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("worker %s: heartbeat: Redis unavailable: %s", self.advert.id, exc)

    def _advertise(self) -> None:
        with self._lock:
            busy = sum(len(held) for held in self._held.values())
        advert = {**dataclasses.asdict(self.advert), "free": max(0, self.advert.capacity - busy),
                  "sessions": self.sessions.count(), "at": time.time()}
        self.client.set(_keys.worker(self.advert.id), json.dumps(advert), ex=ADVERT_TTL_SECONDS)

    def _choose_streams(self) -> list[str]:
        """Its languages' general streams, the warm streams of its pools, and the warm stream of a
        language no live worker keeps warm any more (so nothing sent there waits forever)."""
        warm_elsewhere = {language for worker in live_workers(self.client) for language in worker["warm"]}
        warm = [language for language in self.advert.languages
                if language in self.advert.warm or language not in warm_elsewhere]
        return [*(_keys.warm_stream(language) for language in warm),
                *(_keys.work_stream(language) for language in self.advert.languages)]

    def _ensure_groups(self) -> None:
        for stream in self._streams:
            ensure_group(self.client, stream)

    def _keep_held(self) -> None:
        with self._lock:
            held = {stream: sorted(ids) for stream, ids in self._held.items() if ids}
        for stream, ids in held.items():
            self.client.xclaim(stream, _keys.GROUP, self.advert.id, 0, list[Any](ids), justid=True)

    def _take_over_abandoned(self) -> None:
        room = self.advert.capacity - self._claimed.qsize()
        for stream in self._streams:
            if room <= 0:
                return
            answer = cast("list[Any]", self.client.xautoclaim(stream, _keys.GROUP, self.advert.id,
                                                               self.claim_idle_ms, start_id="0-0", count=room))
            for entry_id, fields in answer[1]:
                if fields is None:
                    continue  # deleted while pending
                log.warning("worker %s: took over %s from a worker that stopped", self.advert.id, entry_id)
                entry = _entry(stream.encode(), entry_id, fields)
                with self._lock:
                    self._held.setdefault(entry[0], set()).add(entry[1])
                self._claimed.put(entry)
                room -= 1


def _entry(stream: bytes, entry_id: bytes, fields: dict[bytes, bytes]) -> Entry:
    return stream.decode(), entry_id.decode(), {k.decode(): v.decode() for k, v in fields.items()}


def _until_done(action: Callable[[], T]) -> T:
    """Retry ``action`` while Redis is unavailable (restarting): what was run must be kept."""
    while True:
        try:
            return action()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("Redis unavailable (%s); retrying", exc)
            time.sleep(_REDIS_RETRY_SECONDS)
