"""Long operations (image builds, snapshots) run in the background with visible progress.

One job per (kind, subject) at a time: asking again while one runs joins it, so two
builds of one image never interleave. Finished jobs stay listed with their outcome.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import OperatorError

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
JobState = Literal["running", "succeeded", "failed"]
_KEPT_LINES = 20


@dataclass
class Job:
    id: str
    kind: str
    subject: str
    state: JobState = "running"
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    error: str | None = None
    lines: list[str] = field(default_factory=list)

    def progress(self, line: str) -> None:
        self.lines = [*self.lines[-(_KEPT_LINES - 1):], line]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "subject": self.subject, "state": self.state,
            "started_at": self.started_at, "finished_at": self.finished_at, "error": self.error,
            "progress": self.lines[-1] if self.lines else "", "log": list(self.lines),
        }


class JobBoard:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._threads: list[threading.Thread] = []

    def start(self, kind: str, subject: str, work: Callable[[Progress], object]) -> tuple[Job, bool]:
        """Start ``work`` unless the same job runs already; returns the job and whether it is new."""
        with self._lock:
            running = self.latest(kind, subject)
            if running is not None and running.state == "running":
                return running, False
            job = Job(id=uuid.uuid4().hex[:12], kind=kind, subject=subject)
            self._jobs[job.id] = job
            thread = threading.Thread(target=self._run, args=(job, work), name=f"job-{kind}-{subject}", daemon=True)
            self._threads.append(thread)
        thread.start()
        return job, True

    def _run(self, job: Job, work: Callable[[Progress], object]) -> None:
        try:
            work(job.progress)
            job.state = "succeeded"
        except OperatorError as exc:
            job.state, job.error = "failed", exc.message
        except Exception as exc:
            log.exception("job %s %s %s failed", job.kind, job.subject, job.id)
            job.state, job.error = "failed", f"{type(exc).__name__}: {exc}"
        job.finished_at = time.time()
        log.info("job %s %s %s: %s%s", job.kind, job.subject, job.id, job.state, f" ({job.error})" if job.error else "")

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def latest(self, kind: str, subject: str) -> Job | None:
        matching = [job for job in self._jobs.values() if job.kind == kind and job.subject == subject]
        return max(matching, key=lambda job: job.started_at) if matching else None

    def list(self) -> list[Job]:
        return sorted(self._jobs.values(), key=lambda job: job.started_at)

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
