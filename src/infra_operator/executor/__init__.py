"""Running one execution: limits, admission, timing, sandbox lifetime."""

from __future__ import annotations

from ._admission import Admission
from ._executor import BASE_ENV, Compiled, ExecutionRequest, ExecutionResult, Executor, SandboxStart
from ._limits import ResolvedLimits, resolve
from ._pool import Pool, spec_key

__all__ = [
    "BASE_ENV",
    "Admission",
    "Compiled",
    "ExecutionRequest",
    "ExecutionResult",
    "Executor",
    "Pool",
    "ResolvedLimits",
    "SandboxStart",
    "resolve",
    "spec_key",
]
