"""The cluster: API processes and workers on many hosts, joined by Redis (streams with a
consumer group for the work; plain keys for submissions, adverts and answers; a list per worker
for the calls of the sessions it holds)."""

from __future__ import annotations

from ._dispatch import Dispatcher, WorkerRefused
from ._router import Router
from ._sessions import RoutedSessions
from ._store import RedisLimiter, RedisStore
from ._worker import Advert, Worker, default_worker_id

__all__ = ["Advert", "Dispatcher", "RedisLimiter", "RedisStore", "RoutedSessions", "Router", "Worker",
           "WorkerRefused", "default_worker_id"]
