"""``infra.operator api``: the HTTP server."""

from __future__ import annotations

import ipaddress
import logging
from typing import Annotated

import typer
import uvicorn
from pydantic import ValidationError

from ..errors import InvalidRequest
from ..services import Services
from ._common import DataDir, RedisUrl, make_services, reporting_errors

log = logging.getLogger("infra_operator")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: it could resolve to anything
        return False


def _check_exposure(host: str, services: Services, allow_unauthenticated: bool) -> None:
    """Without API keys anyone who reaches the port can run code here: only loopback, unless asked."""
    if services.settings.api_keys or _loopback(host):
        return
    if not allow_unauthenticated:
        raise InvalidRequest(
            f"refusing to listen on {host} without API keys: anyone who can reach it could run code on this host. "
            "Set INFRA_OPERATOR_API_KEYS or INFRA_OPERATOR_API_KEYS_FILE, or pass --allow-unauthenticated "
            "to serve without keys on purpose.")
    log.warning("listening on %s without API keys (--allow-unauthenticated): anyone who can reach it can run code",
                host)


def services_from(data_dir: DataDir, backend: str | None, redis_url: str | None = None) -> Services:
    """The services, with a settings mistake (a bad value, an unreadable keys file) told in one line."""
    try:
        return make_services(data_dir, backend=backend, redis_url=redis_url)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            problems.append(f"{where + ': ' if where else ''}{error['msg'].removeprefix('Value error, ')}")
        raise InvalidRequest("invalid settings: " + "; ".join(problems)) from exc


def _log_requests_as_json() -> None:
    """The request lines are JSON objects with their own time: printed bare, a log shipper parses them as they are."""
    requests = logging.getLogger("infra_operator.requests")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    requests.addHandler(handler)
    requests.propagate = False


def api(
    port: Annotated[int, typer.Option(help="port to listen on")] = 8080,
    host: Annotated[str, typer.Option(help="address to listen on; other than loopback only with API keys")] = "127.0.0.1",
    allow_unauthenticated: Annotated[bool, typer.Option(
        "--allow-unauthenticated", help="listen on an address other than loopback without API keys, on purpose")] = False,
    backend: Annotated[str | None, typer.Option(help="auto, jail, qemu or firecracker",
                                                envvar="INFRA_OPERATOR_BACKEND")] = None,
    data_dir: DataDir = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error")] = "info",
    redis: RedisUrl = None,
) -> None:
    """Serve the HTTP API."""
    from ..api import create_app

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _log_requests_as_json()
    with reporting_errors():
        services = services_from(data_dir, backend, redis)
        _check_exposure(host, services, allow_unauthenticated)
    # Each request's line comes from the app (api._request_log); uvicorn's access line would repeat it.
    uvicorn.run(create_app(services), host=host, port=port, log_level=log_level, timeout_graceful_shutdown=30,
                access_log=False)
