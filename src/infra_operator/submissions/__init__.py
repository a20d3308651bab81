"""Submissions: asynchronous, batched and judged work, kept until its retention ends."""

from __future__ import annotations

from ._callbacks import SIGNATURE_HEADER, TIMESTAMP_HEADER, CallbackRefused, CallbackSender, Resolver, signature
from ._judge import Outcome, Verdict, run, same_output, verdict
from ._limits import WINDOW_SECONDS, Limiter, MemoryLimiter, refuse
from ._local import LocalRunners
from ._record import FINISHED, Status, Submission, TestCase, queued, view
from ._service import NewSubmission, Submissions
from ._store import SqliteStore, Store

__all__ = [
    "FINISHED",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WINDOW_SECONDS",
    "CallbackRefused",
    "CallbackSender",
    "Limiter",
    "LocalRunners",
    "MemoryLimiter",
    "NewSubmission",
    "Outcome",
    "Resolver",
    "SqliteStore",
    "Status",
    "Store",
    "Submission",
    "Submissions",
    "TestCase",
    "Verdict",
    "queued",
    "refuse",
    "run",
    "same_output",
    "signature",
    "verdict",
    "view",
]
