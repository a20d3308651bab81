"""What the API asks of submissions, wherever they are kept and run: accept (within the
caps and rate limits), look up, wait for."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequest, NotFound, Overloaded, RateLimited
from . import _record
from ._record import FINISHED, Submission, TestCase

if TYPE_CHECKING:
    from ..config import SubmissionSettings
    from ._callbacks import CallbackSender
    from ._limits import Limiter
    from ._store import Store

QUEUE_RETRY_SECONDS = 5
_WAIT_POLL_SECONDS = (0.005, 0.1)


@dataclass(frozen=True)
class NewSubmission:
    request: dict[str, Any]
    tests: list[TestCase] | None = None
    callback_url: str | None = None


class Submissions:
    def __init__(self, store: Store, limiter: Limiter, callbacks: CallbackSender, settings: SubmissionSettings,
                 validate: Callable[[dict[str, Any]], None]) -> None:
        self.store = store
        self.limiter = limiter
        self.callbacks = callbacks
        self.settings = settings
        self.validate = validate
        """Raises for a request no runner could run (unknown language, a limit out of range)."""

    def submit(self, owner: str, new: list[NewSubmission]) -> list[str]:
        """Keep ``new``, queued, all or none; their ids in the same order."""
        if len(new) > self.settings.max_batch:
            raise InvalidRequest(f"a batch holds {self.settings.max_batch} submissions at most, not {len(new)}")
        for item in new:
            if item.tests is not None and len(item.tests) > self.settings.max_tests:
                raise InvalidRequest(f"a submission has {self.settings.max_tests} tests at most, not {len(item.tests)}")
            self.validate(item.request)
            if item.callback_url is not None:
                self.callbacks.check(item.callback_url)
        if self.store.unfinished() + len(new) > self.settings.max_queued:
            raise Overloaded(f"the queue is full ({self.settings.max_queued} submissions); try again later",
                             retry_after=QUEUE_RETRY_SECONDS)
        if self.store.unfinished(owner) + len(new) > self.settings.max_queued_per_key:
            raise RateLimited(f"this API key has {self.settings.max_queued_per_key} submissions queued at most; "
                              "wait for some to finish", retry_after=QUEUE_RETRY_SECONDS)
        self.limiter.take(owner, len(new))
        records = [_record.queued(owner, item.request, item.tests, item.callback_url) for item in new]
        self.store.add(records)
        return [record["id"] for record in records]

    def get(self, submission_id: str, owner: str) -> Submission:
        """The submission, to the API key that made it only: to any other it does not exist."""
        found = self.store.get(submission_id)
        if found is None or found["owner"] != owner:
            raise NotFound(f"submission not found: {submission_id}")
        return found

    def wait(self, submission_id: str, owner: str, seconds: float) -> Submission:
        """The submission once finished, or as it is after ``seconds``."""
        deadline = time.monotonic() + seconds
        pause = _WAIT_POLL_SECONDS[0]
        while True:
            found = self.get(submission_id, owner)
            remaining = deadline - time.monotonic()
            if found["status"] in FINISHED or remaining <= 0:
                return found
            self.store.wait_finished(submission_id, min(pause, remaining))
            pause = min(pause * 2, _WAIT_POLL_SECONDS[1])
