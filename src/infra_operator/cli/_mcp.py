"""``infra.operator mcp``: the Model Context Protocol on stdin and stdout, for an agent that starts it.

By default it runs the services in this process, as ``infra.operator run`` does: an agent's
host launches the command and needs no server running, and the sessions it opens end with
it. With ``--url`` it sends every tool call to a running server instead (its sandboxes, its
sessions, its API keys). Either way the tools are the API's own calls (``api._mcp``).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Annotated

import anyio
import httpx
import typer

from ..errors import InvalidRequest
from ._common import DataDir, make_services, reporting_errors

URL_TIMEOUT = httpx.Timeout(10.0, read=None)
"""Connecting must be quick; an answer takes as long as the program it runs (the server bounds that)."""


def mcp(
    url: Annotated[str | None, typer.Option(help="send the tools' calls to the server at this URL, "
                                            "e.g. http://127.0.0.1:8080; default: run them in this process",
                                            show_default=False)] = None,
    api_key: Annotated[str | None, typer.Option(help="with --url: the key to send as Bearer",
                                                envvar="INFRA_OPERATOR_API_KEY", show_default=False)] = None,
    backend: Annotated[str | None, typer.Option(help="without --url: auto, jail, qemu or firecracker",
                                                envvar="INFRA_OPERATOR_BACKEND", show_default=False)] = None,
    data_dir: DataDir = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error (the log goes to stderr)")] = "warning",
) -> None:
    """Serve the Model Context Protocol over stdio: tools to list languages, execute, and use sessions."""
    from ..api import IN_PROCESS, create_app, serve_stdio

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with reporting_errors():
        if url is None and api_key is not None:
            raise InvalidRequest("--api-key goes with --url: in process, API keys do not apply")
        if url is not None:
            if not url.startswith(("http://", "https://")):
                raise InvalidRequest(f"--url {url}: give the server's address, e.g. http://127.0.0.1:8080")
            headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
            client = httpx.AsyncClient(base_url=url, headers=headers, timeout=URL_TIMEOUT)
            anyio.run(serve_stdio, client)
            return
        services = make_services(data_dir, backend=backend)
        # The caller already holds this host (it could `infra.operator run`): keys guard the network only.
        services = dataclasses.replace(services, settings=services.settings.model_copy(update={"api_keys": []}))
        app = create_app(services)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=IN_PROCESS, timeout=None)
        anyio.run(serve_stdio, client, app)
