"""One exception hierarchy for everything the client raises:

    InfraOperatorError
    ├── TransportError            the server could not be reached, or the connection failed
    │   └── Timeout               no answer within the client's timeout
    ├── WaitTimeout               a submission did not finish within ``wait``'s timeout
    ├── StreamError               a stream ended without its result, or the server reported an error in it
    └── APIError                  the server answered an error status; ``status``, ``message``
        ├── BadRequest            400
        ├── Unauthorized          401
        ├── NotFound              404
        ├── Conflict              409
        ├── PayloadTooLarge       413
        ├── RateLimited           429 (``retry_after``)
        └── ServerError           5xx
            └── ServiceUnavailable  503 (``retry_after``)

A program that fails, is killed or runs out of time is not an error: that is a result.
"""

from __future__ import annotations

import httpx


class InfraOperatorError(Exception):
    """Anything this client raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TransportError(InfraOperatorError):
    """The request did not get an answer: connection refused or reset, DNS, TLS."""


class Timeout(TransportError):
    """The server did not answer within the client's timeout."""


class WaitTimeout(InfraOperatorError):
    """A submission was still queued or running when ``wait`` gave up; ``submission_id`` names it."""

    def __init__(self, message: str, submission_id: str) -> None:
        super().__init__(message)
        self.submission_id = submission_id


class StreamError(InfraOperatorError):
    """A stream of events ended without its ``result`` event, or carried an ``error`` event."""


class APIError(InfraOperatorError):
    """The server answered with an error status. ``message`` is its ``{"error": ...}`` text."""

    def __init__(self, message: str, status: int, response: httpx.Response) -> None:
        super().__init__(message)
        self.status = status
        self.response = response
        self.request_id = response.headers.get("x-request-id")

    def __str__(self) -> str:
        return f"{self.status}: {self.message}"


class BadRequest(APIError):
    """400: malformed or out-of-range request fields."""


class Unauthorized(APIError):
    """401: API keys are configured and the request had no valid one."""


class NotFound(APIError):
    """404: an unknown language, version, session, file, submission or path."""


class Conflict(APIError):
    """409: the operation does not fit the resource's state."""


class PayloadTooLarge(APIError):
    """413: the request, or a session's file, is larger than allowed."""


class _RetryAfter(APIError):
    def __init__(self, message: str, status: int, response: httpx.Response) -> None:
        super().__init__(message, status, response)
        value = response.headers.get("retry-after", "")
        self.retry_after: float | None = float(value) if value.replace(".", "", 1).isdigit() else None
        """Seconds the server asked to wait before trying again, when it said."""


class RateLimited(_RetryAfter):
    """429: a limit of requests, queued submissions or open sessions was reached."""


class ServerError(APIError):
    """5xx: a fault of the server or of a sandbox."""


class ServiceUnavailable(ServerError, _RetryAfter):
    """503: too much work waiting, or the server is shutting down."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequest, 401: Unauthorized, 404: NotFound, 409: Conflict, 413: PayloadTooLarge,
    429: RateLimited, 503: ServiceUnavailable,
}


def error_for(response: httpx.Response) -> APIError:
    """The exception for an error answer (already read), with the server's message."""
    message = response.text
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        message = body["error"]
    status = response.status_code
    kind = _BY_STATUS.get(status) or (ServerError if status >= 500 else APIError)
    return kind(message or response.reason_phrase, status, response)
