"""The FastAPI application: routes, error handlers, body limit, metrics, request log, start-up and shutdown."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from starlette.types import ASGIApp

from .. import __version__
from ..errors import OperatorError
from ..services import Services
from . import _errors
from ._body_limit import BodyLimit
from ._metrics import Metrics
from ._metrics import router as metrics_router
from ._request_log import RequestLog
from ._routes import api, public

log = logging.getLogger("infra_operator")
SHUTDOWN_GRACE_SECONDS = 30.0


def _announce(services: Services) -> None:
    """The first log line says which backend serves, and why."""
    try:
        backend = services.backends.default
        capabilities = backend.capabilities()
        log.info("infra.operator %s serving with backend %s (%s; %s)", __version__, backend.name,
                 capabilities.isolation, "; ".join(capabilities.evidence))
    except OperatorError as exc:
        log.error("infra.operator %s has no usable backend: %s", __version__, exc.message)


class _App(FastAPI):
    """FastAPI with this server's OpenAPI document and its request log outermost."""

    def openapi(self) -> dict[str, Any]:
        """FastAPI's document, without the 422 it lists for every operation with parameters: this
        server answers a request that fails validation with 400 (see ``_errors``), never 422."""
        if self.openapi_schema is not None:
            return self.openapi_schema
        schema = super().openapi()
        for operations in schema["paths"].values():
            for operation in operations.values():
                operation["responses"].pop("422", None)
        for unused in ("HTTPValidationError", "ValidationError"):
            schema["components"]["schemas"].pop(unused, None)
        return schema

    def build_middleware_stack(self) -> ASGIApp:
        """The request log goes around everything, Starlette's ServerErrorMiddleware included
        (``add_middleware`` puts middleware inside it), so that the 500 it answers for an
        unexpected error is logged with its status and carries the request id like any answer."""
        return RequestLog(super().build_middleware_stack(), self.state.metrics)


def create_app(services: Services) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _announce(services)
        await anyio.to_thread.run_sync(services.sweep)
        await anyio.to_thread.run_sync(services.start)
        # Requests waiting for a sandbox slot wait in threads: leave room for all of them.
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = max(limiter.total_tokens, services.settings.max_concurrency + services.settings.max_queue + 16)
        yield
        drained = await anyio.to_thread.run_sync(services.executor.admission.drain, SHUTDOWN_GRACE_SECONDS)
        log.info("shutdown: %s", "in-flight executions finished" if drained else "gave up waiting for executions")
        await anyio.to_thread.run_sync(services.close)

    app = _App(
        title="infra.operator",
        version=__version__,
        description="Runs untrusted code in many languages, each execution in a fresh sandbox.",
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.metrics = Metrics(services)
    _errors.install(app)
    app.include_router(public)
    app.include_router(api)
    app.include_router(metrics_router)
    app.add_middleware(BodyLimit, max_bytes=services.settings.max_body_bytes)
    return app
