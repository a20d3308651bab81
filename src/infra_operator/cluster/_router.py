"""Which stream a piece of work goes to: an execute where a live worker keeps the language's
sandboxes ready when there is one with room, else (and every submission) to any worker that
has the language."""

from __future__ import annotations

import json
import time
from typing import Any, cast

import redis

from ..errors import Overloaded
from . import _keys

_CACHE_SECONDS = 1.0
"""Advertisements are renewed every second; a second-old view of them is as good."""


def live_workers(client: redis.Redis) -> list[dict[str, Any]]:
    names = [name for name in client.scan_iter(match=_keys.WORKERS_PATTERN, count=1000)]
    if not names:
        return []
    values = cast("list[bytes | None]", client.mget(names))
    return [json.loads(value) for value in values if value is not None]


def ensure_group(client: redis.Redis, stream: str) -> None:
    """The stream and its consumer group, made by whoever comes first (from its first entry on)."""
    try:
        client.xgroup_create(stream, _keys.GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class Router:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._workers: list[dict[str, Any]] = []
        self._read_at = float("-inf")
        self._grouped: set[str] = set()

    def workers(self) -> list[dict[str, Any]]:
        if time.monotonic() - self._read_at > _CACHE_SECONDS:
            self._workers, self._read_at = live_workers(self.client), time.monotonic()
        return self._workers

    def execute_stream(self, language: str) -> str:
        """Where an execute goes: to a worker keeping ``language`` warm with room, if any; a 503
        when no live worker has the language at all (the caller waits for the answer)."""
        workers = self.workers()
        if any(language in w["warm"] and w["free"] > 0 for w in workers):
            return self._grouped_stream(_keys.warm_stream(language))
        if not any(language in w["languages"] for w in workers):
            raise Overloaded(f"no worker of this cluster runs {language} now", retry_after=5)
        return self._grouped_stream(_keys.work_stream(language))

    def capacity(self, language: str) -> int:
        """Executions the live workers with ``language`` run at once, together."""
        return sum(int(w["capacity"]) for w in self.workers() if language in w["languages"])

    def submission_stream(self, language: str) -> str:
        """Where a submission goes: to every worker with the language, so a batch is shared out;
        it may wait there for a worker to come."""
        return self._grouped_stream(_keys.work_stream(language))

    def _grouped_stream(self, stream: str) -> str:
        if stream not in self._grouped:
            ensure_group(self.client, stream)
            self._grouped.add(stream)
        return stream
