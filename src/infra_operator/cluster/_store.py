"""Submissions kept in Redis (the cluster's store), and the per-key rate limit.

A submission's record and its stream entry are written in one MULTI, so it is in the
store exactly when it is in a queue. Updates from workers are optimistic transactions
(WATCH the record, check its status, write): whoever finishes a submission first is the
only one whose outcome is kept, so nothing runs twice to completion."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar, cast

import redis

from ..submissions import FINISHED, WINDOW_SECONDS, Outcome, Submission, refuse
from . import _keys

if TYPE_CHECKING:
    from ._router import Router

T = TypeVar("T")
FINISHED_SIGNAL_SECONDS = 60
"""How long a finish's signal waits for a request to take it (one may start waiting just after)."""


def _atomically(client: redis.Redis, key: str, update: Callable[[redis.client.Pipeline], T]) -> T:
    """Run ``update`` with ``key`` watched: what it queues after ``pipe.multi()`` is written only
    if nobody changed the key meanwhile, else it runs again on the new value."""
    with client.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(key)  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
                value = update(pipe)
                if pipe.explicit_transaction:
                    pipe.execute()
                return value
            except redis.WatchError:
                continue


class RedisStore:
    def __init__(self, client: redis.Redis, router: Router, retention_seconds: float) -> None:
        self.client = client
        self.router = router
        self.retention = max(1, int(retention_seconds))

    def add(self, submissions: list[Submission]) -> None:
        with _keys.unavailable_as_503():
            streams = [self.router.submission_stream(s["request"]["language"]) for s in submissions]
            with self.client.pipeline(transaction=True) as pipe:
                for submission, stream in zip(submissions, streams, strict=True):
                    pipe.set(_keys.submission(submission["id"]), json.dumps(submission))
                    pipe.hincrby(_keys.UNFINISHED, submission["owner"], 1)
                    pipe.hincrby(_keys.UNFINISHED, _keys.ALL, 1)
                    pipe.xadd(stream, {"kind": "submission", "id": submission["id"]})
                pipe.execute()

    def get(self, submission_id: str) -> Submission | None:
        with _keys.unavailable_as_503():
            raw = cast("bytes | None", self.client.get(_keys.submission(submission_id)))
        return cast("Submission", json.loads(raw)) if raw is not None else None

    def unfinished(self, owner: str | None = None) -> int:
        with _keys.unavailable_as_503():
            count = self.client.hget(_keys.UNFINISHED, owner or _keys.ALL)
        return int(cast("bytes | None", count) or 0)

    def wait_finished(self, submission_id: str, seconds: float) -> None:
        # One waiter takes the signal; another waiting for the same submission looks again
        # when its own pause ends.
        with _keys.unavailable_as_503():
            self.client.blpop([_keys.finished(submission_id)], timeout=seconds)

    def start(self, submission_id: str, worker_id: str) -> Submission | None:
        """Mark it running here, one more attempt; None when it is finished or forgotten."""
        key = _keys.submission(submission_id)

        def update(pipe: redis.client.Pipeline) -> Submission | None:
            raw = cast("bytes | None", pipe.get(key))
            if raw is None:
                return None
            submission = cast("Submission", json.loads(raw))
            if submission["status"] in FINISHED:
                return None
            submission["status"], submission["started_at"] = "running", time.time()
            submission["attempts"] += 1
            submission["worker"] = worker_id
            pipe.multi()
            pipe.set(key, json.dumps(submission))
            return submission

        return _atomically(self.client, key, update)

    def finish(self, submission: Submission, outcome: Outcome) -> Submission | None:
        """Keep the outcome unless another runner finished it first; the finished submission, or None."""
        key = _keys.submission(submission["id"])
        finished: Submission = {**submission, "status": outcome[0], "result": outcome[1], "error": outcome[2],
                                "finished_at": time.time()}

        def update(pipe: redis.client.Pipeline) -> bool:
            raw = cast("bytes | None", pipe.get(key))
            if raw is None:
                return False
            current = json.loads(raw)
            if current["status"] in FINISHED:
                return False
            # Every start counts, also one by a worker that took it over while this one ran.
            finished["attempts"] = current["attempts"]
            pipe.multi()
            pipe.set(key, json.dumps(finished), ex=self.retention)
            pipe.hincrby(_keys.UNFINISHED, submission["owner"], -1)
            pipe.hincrby(_keys.UNFINISHED, _keys.ALL, -1)
            pipe.rpush(_keys.finished(submission["id"]), 1)
            pipe.expire(_keys.finished(submission["id"]), FINISHED_SIGNAL_SECONDS)
            return True

        kept = _atomically(self.client, key, update)
        return finished if kept else None


class RedisLimiter:
    """The rate limit shared by every API process: one counter per key and minute in Redis."""

    def __init__(self, client: redis.Redis, rate_per_minute: int) -> None:
        self.client = client
        self.rate = rate_per_minute

    def take(self, owner: str, count: int) -> None:
        if not self.rate:
            return
        now = time.time()
        window = int(now // WINDOW_SECONDS)
        key = _keys.rate(owner, window)
        with _keys.unavailable_as_503(), self.client.pipeline(transaction=True) as pipe:
            pipe.incrby(key, count)
            pipe.expire(key, 2 * WINDOW_SECONDS)
            taken = pipe.execute()[0]
            if int(taken) > self.rate:
                self.client.decrby(key, count)
                raise refuse(self.rate, window, now)
