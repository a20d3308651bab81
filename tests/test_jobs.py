"""The job board forgets finished jobs after the retention time or past the newest few, and
never a running one; a clock handed to it stands in for the passing hours."""

from __future__ import annotations

import threading

import pytest
from conftest import WAIT_SECONDS, wait_for

from infra_operator.config import JobSettings
from infra_operator.errors import BuildFailed
from infra_operator.jobs import Job, JobBoard, Progress

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def finished(board: JobBoard, kind: str, subject: str) -> Job:
    def work(progress: Progress) -> None:
        progress("working")
        if subject == "broken":
            raise BuildFailed("no such package")

    job, new = board.start(kind, subject, work)
    assert new
    wait_for(lambda: job.state != "running", f"the {kind} job of {subject} to finish")
    return job


def test_a_finished_job_is_kept_for_the_retention_then_forgotten() -> None:
    clock = Clock()
    board = JobBoard(JobSettings(retention_seconds=60), clock)
    succeeded, failed = finished(board, "rootfs", "python"), finished(board, "rootfs", "broken")
    assert (succeeded.state, failed.state, failed.error) == ("succeeded", "failed", "no such package")
    clock.now += 60
    assert board.get(succeeded.id) is succeeded and board.get(failed.id) is failed
    assert board.latest("rootfs", "python") is succeeded
    assert board.list() == [succeeded, failed]
    clock.now += 1
    assert board.get(succeeded.id) is None and board.get(failed.id) is None
    assert board.latest("rootfs", "python") is None
    assert board.list() == []


def test_a_running_job_is_never_forgotten() -> None:
    clock = Clock()
    board = JobBoard(JobSettings(retention_seconds=60, keep_finished=1), clock)
    release = threading.Event()
    running, _ = board.start("snapshot", "go", lambda progress: release.wait(WAIT_SECONDS))
    clock.now += 10 ** 6
    finished(board, "rootfs", "python")
    finished(board, "rootfs", "nodejs")
    assert board.get(running.id) is running and running.state == "running"
    assert [job.subject for job in board.list()] == ["go", "nodejs"]
    clock.now += 1
    release.set()
    wait_for(lambda: running.state != "running", "the released job to finish")
    after = board.get(running.id)
    assert after is running and after.state == "succeeded", "retention counts from the end"
    assert [job.subject for job in board.list()] == ["go"]
    clock.now += 61
    assert board.list() == []


def test_only_the_newest_finished_jobs_are_kept() -> None:
    clock = Clock()
    board = JobBoard(JobSettings(keep_finished=2), clock)
    jobs = []
    for subject in ("python", "nodejs", "go"):
        jobs.append(finished(board, "rootfs", subject))
        clock.now += 1
    assert board.list() == jobs[1:]
    assert board.get(jobs[0].id) is None
    assert board.latest("rootfs", "go") is jobs[2]
