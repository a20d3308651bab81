"""The two ways the benchmark reaches the executor: a real server over HTTP (what users
see, the default) or the executor in this process (no HTTP, to see what HTTP costs)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import httpx

from ..errors import OperatorError, SandboxError
from ..executor import ExecutionRequest

if TYPE_CHECKING:
    from ..services import Services

READY_SECONDS = 60.0


@dataclass(frozen=True)
class Sample:
    """One execution as the client saw it."""

    end_to_end_ms: float
    load_ms: float
    exec_ms: float
    stdout: str
    exit_code: int
    from_pool: bool
    """Served by a sandbox the pool held ready (``sandbox_start`` "pool")."""


class Target(Protocol):
    server_pid: int
    """The process whose children are the sandboxes: the server, or this process."""

    def execute(self, language: str, code: str) -> Sample: ...
    def wait_warm(self, languages: list[str]) -> None: ...
    def close(self) -> None: ...


class InProcess:
    """``Executor.execute`` directly, with the pool started as the server starts it."""

    def __init__(self, services: Services, backend: str | None) -> None:
        self.services = services
        self.backend = backend
        self.server_pid = os.getpid()
        services.start_pool()

    def execute(self, language: str, code: str) -> Sample:
        started = time.perf_counter()
        result = self.services.executor.execute(
            ExecutionRequest(language=language, code=code, backend=self.backend)
        )
        return Sample(
            (time.perf_counter() - started) * 1000,
            result.load_ms,
            result.exec_ms,
            result.stdout,
            result.exit_code,
            result.sandbox_start == "pool",
        )

    def wait_warm(self, languages: list[str]) -> None:
        wait_until(lambda: _warm(self.services.pool.stats(), languages))

    def close(self) -> None:
        self.services.close()


class OverHttp:
    """A real ``infra.operator api`` in a subprocess on a free loopback port; each thread
    that executes gets its own keep-alive connection, as a real client would."""

    def __init__(self, backend: str | None, env: dict[str, str] | None = None, args: Sequence[str] = ()) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        self.url = f"http://127.0.0.1:{port}"
        self.log = Path(tempfile.mkstemp(prefix="infra-operator-benchmark-", suffix=".log")[1])
        argv = [
            sys.executable,
            "-m",
            "infra_operator",
            "api",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]
        if backend:
            argv += ["--backend", backend]
        argv += args
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                argv, stdout=output, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
            )
        self.server_pid = self.process.pid
        self._clients: dict[int, httpx.Client] = {}
        try:
            wait_until(self._healthy)
        except BaseException:
            self.close()
            raise

    def _client(self) -> httpx.Client:
        ident = threading.get_ident()
        if ident not in self._clients:
            self._clients[ident] = httpx.Client(base_url=self.url, timeout=300)
        return self._clients[ident]

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            raise SandboxError(
                f"the benchmark's server exited: {self.log.read_text(errors='replace')[-1000:]}"
            )
        try:
            return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def execute(self, language: str, code: str) -> Sample:
        started = time.perf_counter()
        response = self._client().post("/api/v1/execute", json={"language": language, "code": code})
        elapsed = (time.perf_counter() - started) * 1000
        body = response.json()
        if response.status_code != 200:
            raise OperatorError(
                f"{language}: the server answered {response.status_code}: {body.get('error')}"
            )
        return Sample(
            elapsed,
            float(body["load_time_ms"]),
            float(body["exec_time_ms"]),
            body["stdout"],
            int(body["exit_code"]),
            body.get("sandbox_start") == "pool",
        )

    def wait_warm(self, languages: list[str]) -> None:
        wait_until(
            lambda: _warm(httpx.get(f"{self.url}/health", timeout=5).json().get("pool", []), languages)
        )

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        stop_process(self.process)
        self.log.unlink(missing_ok=True)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a server drains), and SIGKILL a minute later if that did not end it."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _warm(stats: list[dict[str, object]], languages: list[str]) -> bool:
    """Whether every language's pool holds its pre-warmed number (a pool that is off counts as
    warm). What demand added on top may never fit the memory budget again: not waited for."""
    for language in languages:
        # A key names the language among its labels ("language=python,release=trixie").
        entries = [e for e in stats if f"language={language}" in str(e.get("key", "")).split(",")]
        if any(int(e["ready"]) < min(int(e["base"]), int(e["target"])) for e in entries):  # type: ignore[call-overload]
            return False
    return True


def wait_until(condition: Callable[[], bool], what: str = "the benchmark's target to be ready",
               seconds: float = READY_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise SandboxError(f"gave up waiting {seconds:.0f}s for {what}")
