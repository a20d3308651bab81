"""The one exception hierarchy of infra.operator.

It sits at the bottom of the package and imports nothing from it. Every failure of
ours is an ``OperatorError`` whose class carries the HTTP status it becomes; the API
and the CLI translate these in one place each. A user's program that fails is not an
error: it is a result (see ``executor``).

    OperatorError (500)
    ├── InvalidRequest (400)
    │   └── BackendUnavailable        a backend this host cannot run was asked for
    ├── Unauthorized (401)
    ├── NotFound (404)
    │   ├── LanguageNotFound
    │   ├── RootfsNotFound
    │   └── SnapshotNotFound
    ├── PayloadTooLarge (413)
    ├── Overloaded (503, Retry-After)
    │   └── RateLimited (429)          one API key asked too much, or has too much queued
    ├── RemoteStoreError (502)        the object store is unreachable, refuses us, or sent a corrupt object
    ├── BuildFailed (500)             an image, kernel or snapshot could not be made
    └── SandboxError (500)
        ├── BootFailed
        ├── AgentTimeout
        └── AgentError
"""

from __future__ import annotations


class OperatorError(Exception):
    status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def headers(self) -> dict[str, str]:
        return {}


class InvalidRequest(OperatorError):
    status = 400


class BackendUnavailable(InvalidRequest):
    """A request asked for a backend this host cannot run; never silently replaced."""


class Unauthorized(OperatorError):
    status = 401


class NotFound(OperatorError):
    status = 404


class LanguageNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"language not found: {name}")


class RootfsNotFound(NotFound):
    pass


class SnapshotNotFound(NotFound):
    pass


class PayloadTooLarge(OperatorError):
    status = 413


class Overloaded(OperatorError):
    status = 503

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class RateLimited(Overloaded):
    status = 429


class RemoteStoreError(OperatorError):
    """The S3-compatible object store failed us; a gateway's fault, not the request's."""

    status = 502


class BuildFailed(OperatorError):
    pass


class SandboxError(OperatorError):
    """Our sandbox failed (not the user's program)."""


class BootFailed(SandboxError):
    pass


class AgentTimeout(SandboxError):
    pass


class AgentError(SandboxError):
    pass
