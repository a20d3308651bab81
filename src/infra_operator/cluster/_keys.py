"""Every Redis key the cluster uses, in one place, and the edge where Redis's errors become ours."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis

from ..errors import Overloaded

PREFIX = "infra-operator"
GROUP = "workers"
"""The one consumer group every worker of every stream belongs to."""
UNFINISHED = f"{PREFIX}:unfinished"
"""A hash: owner (and ``*`` for everyone) to queued and running submissions."""
ALL = "*"
UNANSWERED_EXECUTES = f"{PREFIX}:unanswered-executes"
"""A sorted set: plain executes sent to a stream and not yet answered by a worker, each scored
by the time its caller stops waiting, so one whose API process died leaves the count on its own."""


def submission(submission_id: str) -> str:
    return f"{PREFIX}:submission:{submission_id}"


def finished(submission_id: str) -> str:
    """A list its finisher pushes to, so a request waiting for the submission answers at once."""
    return f"{PREFIX}:finished:{submission_id}"


def work_stream(language: str) -> str:
    """Work for ``language`` that any worker with its image may take."""
    return f"{PREFIX}:work:{language}"


def warm_stream(language: str) -> str:
    """Work for ``language`` sent where a pool keeps its sandboxes ready."""
    return f"{PREFIX}:warm:{language}"


def worker(worker_id: str) -> str:
    """A live worker's advertisement; it expires unless the worker renews it."""
    return f"{PREFIX}:worker:{worker_id}"


WORKERS_PATTERN = f"{PREFIX}:worker:*"


def reply(execution_id: str) -> str:
    """A list the worker pushes an execute's answer to; the API process that asked pops it."""
    return f"{PREFIX}:reply:{execution_id}"


def session(session_id: str) -> str:
    """Where a session lives (its worker), whose it is and its last view; it expires with the session."""
    return f"{PREFIX}:session:{session_id}"


def owner_sessions(owner: str) -> str:
    """A set: the ids of an API key's sessions, across workers (a member may have expired)."""
    return f"{PREFIX}:sessions:{owner}"


def direct(worker_id: str) -> str:
    """A list of calls for the sessions one worker holds: only that worker pops it."""
    return f"{PREFIX}:direct:{worker_id}"


def output(call_id: str) -> str:
    """A list of a streaming cell's output, pushed by its worker as the program writes."""
    return f"{PREFIX}:output:{call_id}"


def cancel(call_id: str) -> str:
    """Set when a streaming cell's client went away: its worker interrupts the cell."""
    return f"{PREFIX}:cancel:{call_id}"


def rate(owner: str, window: int) -> str:
    return f"{PREFIX}:rate:{owner}:{window}"


@contextmanager
def unavailable_as_503() -> Iterator[None]:
    """Redis down (restarting, unreachable) is a 503 the client may retry, never a traceback."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise Overloaded(f"the cluster's Redis is unavailable: {exc}", retry_after=1) from exc
