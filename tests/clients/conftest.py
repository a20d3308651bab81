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
from conftest import Server  # noqa: E402
from infra_operator_client import AsyncClient, Client  # noqa: E402

__all__ = ["CLIENTS", "AsyncClient", "Client", "sdk"]


@pytest.fixture
def client(server: Server) -> Iterator[Client]:  # the SDK's, in place of tests/conftest.py's httpx one
    with Client(server.url) as client:
        yield client
