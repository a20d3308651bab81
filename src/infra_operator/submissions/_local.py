"""The runners of a single process (no ``--redis``): threads that take the oldest queued
submission from the embedded store, run it and keep its outcome."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from . import _judge
from ._record import view

if TYPE_CHECKING:
    from ..config import SubmissionSettings
    from ..executor import Executor
    from ._callbacks import CallbackSender
    from ._store import SqliteStore

log = logging.getLogger(__name__)
_IDLE_SECONDS = 1.0
_FORGET_EVERY_SECONDS = 30.0


class LocalRunners:
    def __init__(self, store: SqliteStore, executor: Executor, callbacks: CallbackSender,
                 settings: SubmissionSettings) -> None:
        self.store = store
        self.executor = executor
        self.callbacks = callbacks
        self.settings = settings
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._forgot_at = 0.0

    def start(self) -> None:
        requeued = self.store.requeue_running()
        if requeued:
            log.info("submissions: %d were running when this server last stopped; queued again", requeued)
        for number in range(self.settings.runners):
            thread = threading.Thread(target=self._loop, name=f"submissions-{number}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._run_one()
            except Exception:  # the store failed us (a full disk): keep the runner, try again
                log.exception("submissions: a runner failed")
                self._stopping.wait(_IDLE_SECONDS)

    def _run_one(self) -> None:
        submission = self.store.claim()
        if submission is None:
            self._forget_expired()
            with self.store.work:
                self.store.work.wait(_IDLE_SECONDS)
            return
        finished = self.store.finish(submission, _judge.run(self.executor, submission))
        if finished["callback_url"] is not None:
            self.callbacks.deliver(finished["callback_url"], view(finished))

    def _forget_expired(self) -> None:
        now = time.time()
        if now - self._forgot_at >= min(_FORGET_EVERY_SECONDS, self.settings.retention_seconds / 2):
            self._forgot_at = now
            forgotten = self.store.forget(now - self.settings.retention_seconds)
            if forgotten:
                log.info("submissions: forgot %d finished more than %.0fs ago", forgotten,
                         self.settings.retention_seconds)

    def close(self, timeout: float) -> None:
        """Stop taking work; wait up to ``timeout`` for what runs (what does not finish is queued
        again at the next start)."""
        self._stopping.set()
        with self.store.work:
            self.store.work.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
