"""Listening safely (api-contract.md, second release): without API keys the server listens on
loopback only, another address needs keys or ``--allow-unauthenticated``; keys can come from a file."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import Server, free_port, start_server, stop_server

KEY_VARIABLES = ("INFRA_OPERATOR_API_KEYS", "INFRA_OPERATOR_API_KEYS_FILE")


def _listening_on(server: Server) -> set[str]:
    """The addresses the server's port listens on, as the kernel reports them (/proc/net/tcp, tcp6)."""
    port = urlsplit(server.url).port
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, _, hex_port = fields[1].partition(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)  # each 32-bit word in the host's (little-endian) order
                found.add(str(ipaddress.ip_address(b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4)))))
    return found


def _without_keys() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name not in KEY_VARIABLES}


def _refused(*args: str, env: dict[str, str]) -> tuple[int, str]:
    """Exit code and words of ``infra.operator api ARGS``, which must stop by itself."""
    finished = subprocess.run([sys.executable, "-m", "infra_operator", "api", "--port", str(free_port()), *args],
                              env=env, capture_output=True, text=True, timeout=60)
    return finished.returncode, " ".join((finished.stdout + finished.stderr).split())


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    """Servers a test started, stopped after it whatever happened."""
    started: list[Server] = []
    try:
        yield started
    finally:
        for server in started:
            stop_server(server)


def test_without_keys_the_default_is_loopback_only(tmp_path: Path, servers: list[Server]) -> None:
    server = start_server(tmp_path, env=_without_keys(), host=None)
    servers.append(server)
    assert _listening_on(server) == {"127.0.0.1"}


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1"])
def test_another_address_without_keys_is_refused_at_start(host: str) -> None:
    code, words = _refused("--host", host, env=_without_keys())
    assert code == 2, words
    assert f"refusing to listen on {host} without API keys" in words
    assert "--allow-unauthenticated" in words and "INFRA_OPERATOR_API_KEYS_FILE" in words


def test_allow_unauthenticated_listens_anywhere_on_purpose(tmp_path: Path, servers: list[Server]) -> None:
    server = start_server(tmp_path, "--allow-unauthenticated", env=_without_keys(), host="0.0.0.0")
    servers.append(server)
    assert _listening_on(server) == {"0.0.0.0"}
    assert httpx.get(f"{server.url}/api/v1/languages").status_code == 200
    assert "listening on 0.0.0.0 without API keys (--allow-unauthenticated)" in server.log_text()


def test_keys_from_a_file_guard_the_api_and_permit_any_address(tmp_path: Path, servers: list[Server]) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# issued to the build farm\nkey-from-file\n\n  second-key  \n#commented-out\n")
    env = {**_without_keys(), "INFRA_OPERATOR_API_KEYS_FILE": str(keys)}
    server = start_server(tmp_path, env=env, host="0.0.0.0")
    servers.append(server)
    assert _listening_on(server) == {"0.0.0.0"}
    languages = f"{server.url}/api/v1/languages"
    assert httpx.get(languages).status_code == 401
    assert httpx.get(languages, headers={"X-API-Key": "#commented-out"}).status_code == 401
    assert httpx.get(languages, headers={"X-API-Key": "# issued to the build farm"}).status_code == 401
    assert httpx.get(languages, headers={"Authorization": "Bearer key-from-file"}).status_code == 200
    assert httpx.get(languages, headers={"X-API-Key": "second-key"}).status_code == 200
    # Metrics show who uses the service how much: guarded like the API; /health stays open.
    assert httpx.get(f"{server.url}/metrics").status_code == 401
    assert httpx.get(f"{server.url}/metrics", headers={"X-API-Key": "second-key"}).status_code == 200
    assert httpx.get(f"{server.url}/health").status_code == 200


@pytest.mark.parametrize(
    ("kind", "reason"),
    [("missing", "No such file or directory"), ("comments only", "holds no key"), ("a folder", "Is a directory")],
)
def test_a_bad_keys_file_stops_the_start_clearly(tmp_path: Path, kind: str, reason: str) -> None:
    keys = tmp_path / "keys"
    if kind == "comments only":
        keys.write_text("# only a comment\n\n")
    elif kind == "a folder":
        keys.mkdir()
    code, words = _refused(env={**_without_keys(), "INFRA_OPERATOR_API_KEYS_FILE": str(keys)})
    assert code == 2, words
    assert f"API keys file {keys}" in words and reason in words
    assert "Traceback" not in words
