"""Running one execution: limits, admission, timing, sandbox lifetime."""

from __future__ import annotations

from ..backends import Listener
from ._admission import Admission
from ._executor import BASE_ENV, Compiled, ExecutionRequest, ExecutionResult, Executor, SandboxStart, file_from_json
from ._limits import ResolvedLimits, resolve
from ._pool import Pool, spec_key
from ._sessions import (
    CellResult,
    NewSession,
    SessionManager,
    SessionView,
    check_path,
    file_pieces,
    file_stream,
)

__all__ = [
    "BASE_ENV",
    "Admission",
    "CellResult",
    "Compiled",
    "ExecutionRequest",
    "ExecutionResult",
    "Executor",
    "Listener",
    "NewSession",
    "Pool",
    "ResolvedLimits",
    "SandboxStart",
    "SessionManager",
    "SessionView",
    "check_path",
    "resolve",
    "file_from_json",
    "file_pieces",
    "file_stream",
    "spec_key",
]
