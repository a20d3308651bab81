"""``infra.operator api``: the HTTP server."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
import uvicorn

from ._common import DataDir, RedisUrl, make_services


def api(
    port: Annotated[int, typer.Option(help="port to listen on")] = 8080,
    host: Annotated[str, typer.Option(help="address to listen on")] = "0.0.0.0",
    backend: Annotated[str | None, typer.Option(help="auto, jail, qemu or firecracker",
                                                envvar="INFRA_OPERATOR_BACKEND")] = None,
    data_dir: DataDir = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error")] = "info",
    redis: RedisUrl = None,
) -> None:
    """Serve the HTTP API."""
    from ..api import create_app

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    services = make_services(data_dir, backend=backend, redis_url=redis)
    uvicorn.run(create_app(services), host=host, port=port, log_level=log_level, timeout_graceful_shutdown=30)
