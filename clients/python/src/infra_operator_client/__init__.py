"""A client of infra.operator's HTTP API: ``Client`` (synchronous) and ``AsyncClient`` (asyncio).

    from infra_operator_client import Client

    with Client("http://127.0.0.1:8080", api_key=None) as client:
        print(client.execute("python", "print(2 ** 10)")["stdout"])    # 1024
"""

from __future__ import annotations

from ._async_client import AsyncClient, AsyncEventStream, AsyncSession, Opening
from ._client import Client, EventStream, Session
from ._common import DEFAULT_BASE_URL, __version__
from ._exceptions import (
    APIError,
    BadRequest,
    Conflict,
    InfraOperatorError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    StreamError,
    Timeout,
    TransportError,
    Unauthorized,
    WaitTimeout,
)
from ._sse import Event, Output, Result, ServerSentEvent, SSEDecoder
from ._types import (
    CellResult,
    ExecuteResult,
    FileEntry,
    Files,
    FileSource,
    Health,
    Languages,
    LanguageSummary,
    RichResult,
    RunOptions,
    SessionInfo,
    SessionOptions,
    Submission,
    SubmissionResult,
    SubmissionSpec,
    SubmissionStatus,
    TestCase,
    TestResult,
    WrittenFile,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "APIError",
    "AsyncClient",
    "AsyncEventStream",
    "AsyncSession",
    "BadRequest",
    "CellResult",
    "Client",
    "Conflict",
    "Event",
    "EventStream",
    "ExecuteResult",
    "FileEntry",
    "FileSource",
    "Files",
    "Health",
    "InfraOperatorError",
    "LanguageSummary",
    "Languages",
    "NotFound",
    "Opening",
    "Output",
    "PayloadTooLarge",
    "RateLimited",
    "Result",
    "RichResult",
    "RunOptions",
    "SSEDecoder",
    "ServerError",
    "ServerSentEvent",
    "ServiceUnavailable",
    "Session",
    "SessionInfo",
    "SessionOptions",
    "StreamError",
    "Submission",
    "SubmissionResult",
    "SubmissionSpec",
    "SubmissionStatus",
    "TestCase",
    "TestResult",
    "Timeout",
    "TransportError",
    "Unauthorized",
    "WaitTimeout",
    "WrittenFile",
    "__version__",
]
