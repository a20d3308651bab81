"""Where submissions are kept. ``Store`` is what the API side needs, whatever holds them;
``SqliteStore`` is the embedded one of a single process (the cluster's is in Redis).

A submission is written before its 202 is answered (sqlite commits with ``synchronous=FULL``),
so a process killed at any point after that loses nothing: at start-up, what was running
when it died is queued again, since it never finished."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

if TYPE_CHECKING:
    from ._judge import Outcome
    from ._record import Submission


class Store(Protocol):
    def add(self, submissions: list[Submission]) -> None:
        """Keep these, queued, all or none."""

    def get(self, submission_id: str) -> Submission | None: ...

    def unfinished(self, owner: str | None = None) -> int:
        """Queued and running submissions, of ``owner`` or of everyone."""

    def wait_finished(self, submission_id: str, seconds: float) -> None:
        """Return soon after the submission finishes, or after ``seconds``; the caller looks
        again either way (a finish just before the wait began is seen only then)."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS submissions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    status TEXT NOT NULL,
    finished_at REAL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS submissions_status ON submissions (status, seq);
CREATE INDEX IF NOT EXISTS submissions_owner ON submissions (owner, status);
"""


class SqliteStore:
    """One file, one connection behind a lock: the runners of one process and its API share it."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self.work = threading.Condition()
        """Notified when submissions are added, so idle runners wake."""
        self._finished = threading.Condition()
        """Notified when a submission finishes, so requests waiting for one answer at once."""

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, submissions: list[Submission]) -> None:
        rows = [(s["id"], s["owner"], s["status"], json.dumps(s)) for s in submissions]
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT INTO submissions (id, owner, status, record) VALUES (?, ?, ?, ?)", rows)
        with self.work:
            self.work.notify_all()

    def get(self, submission_id: str) -> Submission | None:
        with self._lock:
            row = self._db.execute("SELECT record FROM submissions WHERE id = ?", (submission_id,)).fetchone()
        return cast("Submission", json.loads(row[0])) if row else None

    def unfinished(self, owner: str | None = None) -> int:
        query = "SELECT count(*) FROM submissions WHERE status IN ('queued', 'running')"
        with self._lock:
            if owner is None:
                return int(self._db.execute(query).fetchone()[0])
            return int(self._db.execute(query + " AND owner = ?", (owner,)).fetchone()[0])

    def claim(self) -> Submission | None:
        """The oldest queued submission, now running; None when none is queued."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute(
                "SELECT id, record FROM submissions WHERE status = 'queued' ORDER BY seq LIMIT 1").fetchone()
            if row is None:
                return None
            submission = cast("Submission", json.loads(row[1]))
            submission["status"], submission["started_at"] = "running", time.time()
            submission["attempts"] += 1
            self._db.execute("UPDATE submissions SET status = 'running', record = ? WHERE id = ?",
                             (json.dumps(submission), row[0]))
        return submission

    def finish(self, submission: Submission, outcome: Outcome) -> Submission:
        finished: Submission = {**submission, "status": outcome[0], "result": outcome[1], "error": outcome[2],
                                "finished_at": time.time()}
        with self._lock, self._db:
            # Only the first outcome counts (as in the cluster's store).
            self._db.execute("UPDATE submissions SET status = ?, finished_at = ?, record = ? "
                             "WHERE id = ? AND status NOT IN ('done', 'failed')",
                             (finished["status"], finished["finished_at"], json.dumps(finished), finished["id"]))
        with self._finished:
            self._finished.notify_all()
        return finished

    def wait_finished(self, submission_id: str, seconds: float) -> None:
        with self._finished:
            self._finished.wait(seconds)

    def requeue_running(self) -> int:
        """At start-up: what a killed process was running never finished; run it again."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            rows = self._db.execute("SELECT id, record FROM submissions WHERE status = 'running'").fetchall()
            for submission_id, record in rows:
                submission = cast("Submission", {**json.loads(record), "status": "queued"})
                self._db.execute("UPDATE submissions SET status = 'queued', record = ? WHERE id = ?",
                                 (json.dumps(submission), submission_id))
        return len(rows)

    def forget(self, finished_before: float) -> int:
        with self._lock, self._db:
            return self._db.execute("DELETE FROM submissions WHERE finished_at < ?", (finished_before,)).rowcount
