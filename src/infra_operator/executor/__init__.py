"""Running one execution: limits, admission, timing, sandbox lifetime."""

from __future__ import annotations

from ._admission import Admission
from ._executor import ExecutionRequest, ExecutionResult, Executor
from ._limits import ResolvedLimits, resolve
from ._pool import Pool, spec_key

__all__ = [
    "Admission",
    "ExecutionRequest",
    "ExecutionResult",
    "Executor",
    "Pool",
    "ResolvedLimits",
    "resolve",
    "spec_key",
]
