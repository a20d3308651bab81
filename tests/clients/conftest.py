"""The SDKs in clients/ are tested from here, in the same pytest run as the server: the Python
SDK imported from its source folder (never installed into the service's environment), the
JavaScript SDK through Node's own test runner in a subprocess. Live tests use the session's
real server (``server`` in tests/conftest.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

CLIENTS = Path(__file__).resolve().parents[2] / "clients"
sys.path.insert(0, str(CLIENTS / "python" / "src"))

import infra_operator_client as sdk  # noqa: E402
from conftest import Server, start_server, stop_server  # noqa: E402
from infra_operator_client import AsyncClient, Client  # noqa: E402

__all__ = ["API_KEY", "CLIENTS", "AsyncClient", "Client", "sdk"]
API_KEY = "sdk-key-1"


@pytest.fixture
def client(server: Server) -> Iterator[Client]:  # the SDK's, in place of tests/conftest.py's httpx one
    with Client(server.url) as client:
        yield client


@pytest.fixture(scope="package")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with an API key configured (``API_KEY``)."""
    running = start_server(tmp_path_factory.mktemp("keyed"), env={"INFRA_OPERATOR_API_KEYS": f'["{API_KEY}"]'})
    try:
        yield running
    finally:
        stop_server(running)
