"""The FastAPI application: routes, error handlers, body limit, start-up and shutdown."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from .. import __version__
from ..errors import OperatorError
from ..services import Services
from . import _errors
from ._body_limit import BodyLimit
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

    app = FastAPI(
        title="infra.operator",
        version=__version__,
        description="Runs untrusted code in many languages, each execution in a fresh sandbox.",
        lifespan=lifespan,
    )
    app.state.services = services
    _errors.install(app)
    app.include_router(public)
    app.include_router(api)
    app.add_middleware(BodyLimit, max_bytes=services.settings.max_body_bytes)
    return app
