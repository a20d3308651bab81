"""Shared fixtures. Integration tests drive the real ``infra.operator api`` in a
subprocess on a free port; images come from the data directory that the
install script fills (INFRA_OPERATOR_DATA_DIR, default /var/lib/infra-operator)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

DATA_DIR = Path(os.environ.get("INFRA_OPERATOR_DATA_DIR", "/var/lib/infra-operator"))
SEED_LANGUAGES = ("python", "nodejs", "go", "rust")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120, **kwargs)  # type: ignore[arg-type]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def start_server(tmp: Path, *args: str, env: dict[str, str] | None = None) -> Server:
    port = free_port()
    log = tmp / f"server-{port}.log"
    environment = {**os.environ, "INFRA_OPERATOR_DATA_DIR": str(DATA_DIR), **(env or {})}
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "infra_operator", "api", "--host", "127.0.0.1", "--port", str(port), *args],
            stdout=output, stderr=subprocess.STDOUT, env=environment,
        )
    server = Server(url=f"http://127.0.0.1:{port}", process=process, log=log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {server.log_text()[-2000:]}")
        try:
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.1)
    stop_server(server)
    raise RuntimeError(f"server did not answer /health: {server.log_text()[-2000:]}")


def stop_server(server: Server) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The real API server with the default backend, shared by the session."""
    running = start_server(tmp_path_factory.mktemp("server"))
    try:
        yield running
    finally:
        stop_server(running)


@pytest.fixture(scope="session")
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as session:
        yield session


# Per backend, what the adversarial suite saw: case name -> what leaked or misbehaved ("" when contained).
ADVERSARIAL: dict[str, dict[str, str]] = {}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for backend, cases in ADVERSARIAL.items():
        failed = {name: why for name, why in cases.items() if why}
        terminalreporter.write_line(
            f"adversarial[{backend}]: {len(cases)} cases ran, {len(cases) - len(failed)} contained, "
            f"leaked or misbehaved: {failed or 'nothing'}")


def require_images(*languages: str) -> None:
    """Skip, saying why, when the install script has not built these images."""
    missing = [name for name in languages if not (DATA_DIR / "images" / f"rootfs-{name}.json").exists()]
    if missing:
        pytest.skip(f"rootfs not built for {', '.join(missing)} in {DATA_DIR}: run scripts/install.sh")
