"""Every error the API answers becomes ``{"error": "..."}`` here, and only here.

Routes raise; they never build error responses. Our own errors carry their status;
validation (malformed JSON included) is a 400 rather than FastAPI's 422; anything
unexpected is a 500 with a one-line message, its traceback only in the log.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ..errors import OperatorError

log = logging.getLogger(__name__)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _location(error: dict[str, Any]) -> str:
    return ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"


def _describe(exc: RequestValidationError) -> str:
    errors = exc.errors()
    for error in errors:
        if error.get("type") == "json_invalid":
            return f"malformed JSON: {error.get('ctx', {}).get('error', error.get('msg'))}"
    # Every unknown field is named, however many: each is something the client expects done.
    unknown = [_location(error) for error in errors if error.get("type") == "extra_forbidden"]
    problems = [f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}: not supported by this server"
                ] if unknown else []
    problems += [f"{_location(error)}: {error.get('msg')}"
                 for error in errors if error.get("type") != "extra_forbidden"][:5]
    return "invalid request: " + "; ".join(problems)


async def _operator_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OperatorError)
    if exc.status >= 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc.message)
    return error_response(exc.status, exc.message, exc.headers())


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(400, _describe(exc))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = f"path not found: {request.url.path}"
    return error_response(exc.status_code, message, dict(exc.headers or {}))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s: unexpected error", request.method, request.url.path)
    return error_response(500, f"internal error: {type(exc).__name__}")


def install(app: FastAPI) -> None:
    app.add_exception_handler(OperatorError, _operator_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
