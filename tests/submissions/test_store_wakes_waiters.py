"""A request waiting for a submission (``?wait=true``) is woken by its finish, not by a
timer: the wait here is a minute, and the finish must end it long before."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from infra_operator.submissions import SqliteStore, queued

pytestmark = pytest.mark.unit
WAIT_SECONDS = 60.0
WOKEN_WITHIN_SECONDS = 10.0
"""A bound on waiting, never a timing assertion: not woken, the waiter would sleep a minute."""


def test_a_finish_wakes_a_waiter_at_once(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "submissions.sqlite3")
    submission = queued("owner", {"language": "python", "code": "print(1)"}, None, None)
    store.add([submission])
    started = store.claim()
    assert started is not None
    waiting = threading.Event()

    def wait() -> None:
        waiting.set()
        store.wait_finished(submission["id"], WAIT_SECONDS)
    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    waiting.wait()
    deadline = time.monotonic() + WOKEN_WITHIN_SECONDS
    # Finish again until the waiter, once inside its wait, is woken (only the first outcome is kept).
    while waiter.is_alive() and time.monotonic() < deadline:
        store.finish(started, ("done", {"stdout": "1\n"}, None))
        waiter.join(0.05)
    assert not waiter.is_alive(), "finishing the submission did not wake the request waiting for it"
    kept = store.get(submission["id"])
    assert kept is not None and kept["status"] == "done"
    store.close()
