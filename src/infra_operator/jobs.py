"""Long operations (image builds, snapshots) run in the background with visible progress.

One job per (kind, subject) at a time: asking again while one runs joins it, so two
builds of one image never interleave. Finished jobs stay listed with their outcome for a
while (``config.JobSettings``), then are forgotten, so a long-running server's board does
not grow without end; a running job is never forgotten.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .errors import OperatorError

if TYPE_CHECKING:
    from .config import JobSettings

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
    def __init__(self, settings: JobSettings, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._threads: list[threading.Thread] = []

    def start(self, kind: str, subject: str, work: Callable[[Progress], object]) -> tuple[Job, bool]:
        """Start ``work`` unless the same job runs already; returns the job and whether it is new."""
        with self._lock:
            self._forget()
            running = self._latest(kind, subject)
            if running is not None and running.state == "running":
                return running, False
            job = Job(id=uuid.uuid4().hex[:12], kind=kind, subject=subject, started_at=self._clock())
            self._jobs[job.id] = job
            thread = threading.Thread(target=self._run, args=(job, work), name=f"job-{kind}-{subject}", daemon=True)
            self._threads = [*(alive for alive in self._threads if alive.is_alive()), thread]
        thread.start()
        return job, True

    def _run(self, job: Job, work: Callable[[Progress], object]) -> None:
        state: JobState = "succeeded"
        error = None
        try:
            work(job.progress)
        except OperatorError as exc:
            state, error = "failed", exc.message
        except Exception as exc:
            log.exception("job %s %s %s failed", job.kind, job.subject, job.id)
            state, error = "failed", f"{type(exc).__name__}: {exc}"
        with self._lock:
            job.state, job.error, job.finished_at = state, error, self._clock()
        log.info("job %s %s %s: %s%s", job.kind, job.subject, job.id, job.state, f" ({job.error})" if job.error else "")

    def _forget(self) -> None:
        """Drop finished jobs older than the retention, and all but the newest ``keep_finished``."""
        # Newest first; of jobs that finished at the same moment, the one started last.
        finished = sorted((job for job in reversed(self._jobs.values()) if job.finished_at is not None),
                          key=lambda job: job.finished_at or 0.0, reverse=True)
        oldest_kept = self._clock() - self._settings.retention_seconds
        for rank, job in enumerate(finished):
            if rank >= self._settings.keep_finished or (job.finished_at or 0.0) < oldest_kept:
                del self._jobs[job.id]

    def _latest(self, kind: str, subject: str) -> Job | None:
        matching = [job for job in self._jobs.values() if job.kind == kind and job.subject == subject]
        return max(matching, key=lambda job: job.started_at) if matching else None

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            self._forget()
            return self._jobs.get(job_id)

    def latest(self, kind: str, subject: str) -> Job | None:
        with self._lock:
            self._forget()
            return self._latest(kind, subject)

    def list(self) -> list[Job]:
        with self._lock:
            self._forget()
            return sorted(self._jobs.values(), key=lambda job: job.started_at)

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
