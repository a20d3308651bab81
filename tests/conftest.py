"""Shared fixtures. Integration tests drive the real ``infra.operator api`` in a
subprocess on a free port; images come from the data directory that the
install script fills (INFRA_OPERATOR_DATA_DIR, default /var/lib/infra-operator)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import httpx
import pytest

from infra_operator.backends import Sandbox, SandboxSpec
from infra_operator.images.snapshots import FORMAT as SNAPSHOT_FORMAT
from infra_operator.languages import Catalog

DATA_DIR = Path(os.environ.get("INFRA_OPERATOR_DATA_DIR", "/var/lib/infra-operator"))
CATALOG = Catalog.load()
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
        return httpx.Client(base_url=self.url, **{"timeout": 120, **kwargs})  # type: ignore[arg-type]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def start_server(tmp: Path, *args: str, env: dict[str, str] | None = None, host: str | None = "127.0.0.1") -> Server:
    """``host=None`` leaves ``--host`` out, for the command's own default."""
    port = free_port()
    log = tmp / f"server-{port}.log"
    # No ready sandboxes unless a test asks for them: leak and start-up checks then see only
    # what executions made. The pool has servers of its own (tests/api/test_pool_server.py).
    no_pool = {"INFRA_OPERATOR_POOL__SIZE": "0", "INFRA_OPERATOR_POOL__MAX_SIZE": "0"}
    # Each server its own submissions, never those of another suite's server on the shared data dir.
    own_store = {"INFRA_OPERATOR_SUBMISSIONS__STORE": str(tmp / f"submissions-{port}.sqlite3")}
    environment = {**os.environ, "INFRA_OPERATOR_DATA_DIR": str(DATA_DIR), **no_pool, **own_store, **(env or {})}
    if os.environ.get("FIRECRACKER_BIN"):  # the same suites then run on Firecracker too
        environment.setdefault("INFRA_OPERATOR_FIRECRACKER_BIN", os.environ["FIRECRACKER_BIN"])
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "infra_operator", "api", *(["--host", host] if host else []), "--port", str(port), *args],
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


def failing_builds(data_dir: Path) -> dict[str, str]:
    """A server's settings for a data folder of its own whose rootfs builds fail at once (a
    Debian mirror where nothing listens), sharing the package cache."""
    return {"INFRA_OPERATOR_DATA_DIR": str(data_dir), "INFRA_OPERATOR_PACKAGE_CACHE_DIR": str(DATA_DIR / "cache"),
            "INFRA_OPERATOR_DEBIAN_MIRROR": "http://127.0.0.1:9"}


def stop_process(process: subprocess.Popen[bytes], seconds: float = 40) -> None:
    """SIGTERM, and SIGKILL when that has not ended it within ``seconds``."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def stop_server(server: Server) -> None:
    stop_process(server.process)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The real API server with the default backend, shared by the session."""
    running = start_server(tmp_path_factory.mktemp("server"))
    try:
        yield running
    finally:
        stop_server(running)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Starts servers of the test's own, configured by ``INFRA_OPERATOR_*`` settings given as
    keywords (``spawn(max_body_bytes="2048")``), and stops each after the test."""
    started: list[Server] = []

    def _spawn(**env: str) -> Server:
        server = start_server(tmp_path, env={f"INFRA_OPERATOR_{k.upper()}": v for k, v in env.items()})
        started.append(server)
        return server

    try:
        yield _spawn
    finally:
        for server in started:
            stop_server(server)


@pytest.fixture(scope="session")
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as session:
        yield session


CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's headless Chromium driven by Playwright (which cannot download a browser here).
    Per module: while Playwright's synchronous API runs, its event loop holds the main thread,
    and a later test's ``asyncio.run`` would fail."""
    playwright_sync = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the test extra)")
    if not shutil.which(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium")
    with playwright_sync.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


# Per backend, what the adversarial suite saw: case name -> what leaked or misbehaved ("" when contained).
ADVERSARIAL: dict[str, dict[str, str]] = {}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for backend, cases in ADVERSARIAL.items():
        failed = {name: why for name, why in cases.items() if why}
        terminalreporter.write_line(
            f"adversarial[{backend}]: {len(cases)} cases ran, {len(cases) - len(failed)} contained, "
            f"leaked or misbehaved: {failed or 'nothing'}")


def wait_for_job(client: httpx.Client, started: httpx.Response, seconds: float = 600) -> dict[str, Any]:
    """The outcome of the background job a 202 answer started, once it is no longer running."""
    assert started.status_code == 202, started.text
    job_id = started.json()["job"]["id"]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["state"] != "running":
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still running after {seconds}s")


def _built(name: str) -> bool:
    """``python@sid``: that release's image; ``python``: any release's, since a request without a
    version runs the default release, or the first built one while the default is not."""
    if "@" in name:
        return (DATA_DIR / "images" / f"rootfs-{name}.json").exists()
    return any((DATA_DIR / "images" / f"rootfs-{release.image}.json").exists()
               for release in CATALOG.releases(CATALOG.get(name)))


def require_images(*languages: str) -> None:
    """Skip, saying why, when these images are not built: a plain name by the install script, a
    release (``python@sid``) by ``infra.operator rootfs create --lang python --version sid``."""
    missing = [name for name in languages if not _built(name)]
    if missing:
        pytest.skip(f"rootfs not built for {', '.join(missing)} in {DATA_DIR}: run scripts/install.sh, or "
                    f"`infra.operator rootfs create --lang LANG --version SUITE` for a release")


@dataclass
class ObjectStore:
    """A real S3-compatible server (moto) for the tests; each test takes its own bucket."""

    url: str
    process: subprocess.Popen[bytes]

    def env(self, bucket: str) -> dict[str, str]:
        """What an infra.operator process needs to use this store and ``bucket``, nothing of the host's."""
        return {"INFRA_OPERATOR_S3_ENDPOINT_URL": self.url, "INFRA_OPERATOR_S3_BUCKET": bucket,
                "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}


@pytest.fixture(scope="session")
def object_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as output:
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=output, stderr=subprocess.STDOUT)
    store = ObjectStore(url=f"http://127.0.0.1:{port}", process=process)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto server did not start: {log.read_text(errors='replace')[-2000:]}")
            try:
                httpx.get(store.url, timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield store
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def write_fake_rootfs(data_dir: Path, language: str, size: int) -> str:
    """Random bytes standing in for an ext4 image, with a true record; returns its sha256. Stores
    and transfers never look inside an image, so this exercises them as a real one would."""
    images = data_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    content = os.urandom(size)
    (images / f"rootfs-{language}.ext4").write_bytes(content)
    digest = hashlib.sha256(content).hexdigest()
    record = {"language": language, "sha256": digest, "version": f"{language} 0.test", "packages": [],
              "built_at": 1.0, "build_seconds": 1.0}
    (images / f"rootfs-{language}.json").write_text(json.dumps(record))
    return digest


def write_fake_snapshot(data_dir: Path, backend: str, language: str, files: dict[str, bytes]) -> Path:
    """A snapshot folder with the metadata ``images.snapshots`` writes (made by that store's
    own code would need a booted VM), plus ``files``; ``images.list_snapshots`` reads it back."""
    folder = data_dir / "snapshots" / backend / language
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    metadata = {"format": SNAPSHOT_FORMAT, "language": language, "backend": backend,
                "kernel_sha256": "0" * 64, "rootfs_sha256": "1" * 64,
                "mem_mb": 256, "vcpus": 1, "created_at": "2026-11-28T00:00:00+00:00",
                "vmstate": "vmstate", "vmstate_size": len(files.get("vmstate", b"")),
                "memory": "memory" if "memory" in files else None, "mem_size": len(files.get("memory", b""))}
    (folder / "metadata.json").write_text(json.dumps(metadata))
    return folder


WAIT_SECONDS = 60.0


def wait_for(condition: Callable[[], object], what: str, seconds: float = WAIT_SECONDS, every: float = 0.02) -> None:
    """Poll ``condition`` every ``every`` seconds until it is true; a bound on waiting, never
    a timing assertion."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every)
    raise AssertionError(f"gave up waiting for {what}")


SandboxT = TypeVar("SandboxT", bound=Sandbox, covariant=True)


class Starts(Protocol[SandboxT]):
    """A backend as a test holds it: its own sandbox class, so tests reach that class's extras."""

    def start(self, spec: SandboxSpec, ahead: bool = False) -> SandboxT: ...

    def close(self) -> None: ...


class Sandboxes(Generic[SandboxT]):
    """Starts sandboxes through one backend and keeps them, so that a fixture can destroy
    every one after its test, whatever the test did: a failure then leaves nothing behind
    for the next test to trip on."""

    def __init__(self, backend: Starts[SandboxT]) -> None:
        self.backend = backend
        self.made: list[SandboxT] = []

    def start(self, spec: SandboxSpec, ahead: bool = False) -> SandboxT:
        sandbox = self.backend.start(spec, ahead)
        self.made.append(sandbox)
        return sandbox

    def destroy_all(self) -> None:
        for sandbox in self.made:
            sandbox.destroy()
