"""A submission as it is stored: plain JSON, the same in the embedded store and in Redis."""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal, TypedDict

Status = Literal["queued", "running", "done", "failed"]
FINISHED: frozenset[str] = frozenset({"done", "failed"})


class TestCase(TypedDict):
    stdin: str
    expected_output: str


class Submission(TypedDict):
    id: str
    status: Status
    owner: str
    """Whose it is (a digest of the API key), for the per-key caps."""
    request: dict[str, Any]
    """The execute fields, as ``executor.ExecutionRequest`` takes them."""
    tests: list[TestCase] | None
    callback_url: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    attempts: int
    """How many times a runner started it; more than one means a runner died with it."""
    worker: str | None
    """The cluster worker that last started it (None in a single process)."""
    result: dict[str, Any] | None
    error: str | None


def queued(owner: str, request: dict[str, Any], tests: list[TestCase] | None, callback_url: str | None) -> Submission:
    return {"id": uuid.uuid4().hex, "status": "queued", "owner": owner, "request": request, "tests": tests,
            "callback_url": callback_url, "created_at": time.time(), "started_at": None, "finished_at": None,
            "attempts": 0, "worker": None, "result": None, "error": None}


def view(submission: Submission) -> dict[str, Any]:
    """What GET /api/v1/submissions/{id} answers: the contract's fields, then times and a reason."""
    shown: dict[str, Any] = {"id": submission["id"], "status": submission["status"]}
    if submission["result"] is not None:
        shown["result"] = submission["result"]
    if submission["error"] is not None:
        shown["error"] = submission["error"]
    return {**shown, "created_at": submission["created_at"], "started_at": submission["started_at"],
            "finished_at": submission["finished_at"], "attempts": submission["attempts"],
            "worker": submission.get("worker")}
