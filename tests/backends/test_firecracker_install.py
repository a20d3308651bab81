"""install_firecracker against a local HTTP server serving archives the tests make."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from infra_operator.backends.firecracker import (
    FIRECRACKER_VERSION,
    InstallFailed,
    firecracker_release_url,
    install_firecracker,
)
from infra_operator.errors import InvalidRequest

pytestmark = pytest.mark.unit

TAG = f"{FIRECRACKER_VERSION}-x86_64"


def _archive(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644  # the installer, not the archive, decides the mode
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buffer.getvalue()


RELEASE = {
    f"release-{TAG}/firecracker-{TAG}": b"#!/bin/sh\necho Firecracker v1.16.1\n",
    f"release-{TAG}/jailer-{TAG}": b"#!/bin/sh\necho Jailer v1.16.1\n",
    f"release-{TAG}/SHA256SUMS": b"ignored\n",
}


@pytest.fixture
def serve() -> Iterator[dict[str, bytes]]:
    """Files by URL path, served on 127.0.0.1; yields the dict with ``base`` set."""
    files: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = files.get(self.path)
            if data is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    files["base"] = f"http://127.0.0.1:{server.server_address[1]}".encode()
    try:
        yield files
    finally:
        server.shutdown()
        server.server_close()


def _publish(files: dict[str, bytes], name: str, data: bytes) -> str:
    files[f"/{name}"] = data
    return f"{files['base'].decode()}/{name}"


def test_default_url_is_the_pinned_github_release() -> None:
    assert firecracker_release_url() == (
        "https://github.com/firecracker-microvm/firecracker/releases/download/"
        "v1.16.1/firecracker-v1.16.1-x86_64.tgz"
    )


def test_installs_both_binaries_executable(serve: dict[str, bytes], tmp_path: Path) -> None:
    data = _archive(RELEASE)
    url = _publish(serve, f"firecracker-{TAG}.tgz", data)
    seen: list[tuple[int, int | None]] = []
    sha = hashlib.sha256(data).hexdigest()
    installed = install_firecracker(
        url, sha, tmp_path / "bin", lambda done, total: seen.append((done, total))
    )
    assert installed == tmp_path / "bin" / "firecracker"
    for name in ("firecracker", "jailer"):
        path = tmp_path / "bin" / name
        assert path.read_bytes() == RELEASE[f"release-{TAG}/{name}-{TAG}"]
        assert path.stat().st_mode & 0o777 == 0o755
    assert sorted(p.name for p in (tmp_path / "bin").iterdir()) == [
        "firecracker",
        "jailer",
    ]  # no scratch left
    assert seen[-1] == (len(data), len(data))


def test_checksum_mismatch_installs_nothing(serve: dict[str, bytes], tmp_path: Path) -> None:
    data = _archive(RELEASE)
    url = _publish(serve, "release.tgz", data)
    with pytest.raises(InvalidRequest, match="checksum mismatch"):
        install_firecracker(url, "0" * 64, tmp_path / "bin", lambda done, total: None)
    assert list((tmp_path / "bin").iterdir()) == []


def test_traversal_member_is_refused(serve: dict[str, bytes], tmp_path: Path) -> None:
    evil = {**RELEASE, "../../escaped": b"owned\n"}
    data = _archive(evil)
    url = _publish(serve, "evil.tgz", data)
    with pytest.raises(InstallFailed, match="escape"):
        install_firecracker(url, hashlib.sha256(data).hexdigest(), tmp_path / "bin", lambda done, total: None)
    assert list((tmp_path / "bin").iterdir()) == []
    assert not (tmp_path / "escaped").exists() and not Path("/escaped").exists()


def test_symlink_out_of_the_archive_is_refused(serve: dict[str, bytes], tmp_path: Path) -> None:
    data = _archive(RELEASE, links={f"release-{TAG}/link": "/etc/passwd"})
    url = _publish(serve, "link.tgz", data)
    with pytest.raises(InstallFailed, match="escape"):
        install_firecracker(url, hashlib.sha256(data).hexdigest(), tmp_path / "bin", lambda done, total: None)


def test_archive_without_the_binaries_is_refused(serve: dict[str, bytes], tmp_path: Path) -> None:
    data = _archive({f"release-{TAG}/firecracker-{TAG}": b"x"})
    url = _publish(serve, "half.tgz", data)
    with pytest.raises(InstallFailed, match="jailer"):
        install_firecracker(url, hashlib.sha256(data).hexdigest(), tmp_path / "bin", lambda done, total: None)
    assert list((tmp_path / "bin").iterdir()) == []


def test_http_error_is_refused(serve: dict[str, bytes], tmp_path: Path) -> None:
    with pytest.raises(InstallFailed, match="HTTP 404"):
        install_firecracker(f"{serve['base'].decode()}/missing.tgz", "0" * 64, tmp_path, lambda d, t: None)


def test_exported_members() -> None:
    import infra_operator.backends.firecracker as firecracker

    assert sorted(firecracker.__all__) == [
        "BOOT_ARGS",
        "FIRECRACKER_ARCH",
        "FIRECRACKER_URL_TEMPLATE",
        "FIRECRACKER_VERSION",
        "FirecrackerBackend",
        "FirecrackerSandbox",
        "GUEST_CID",
        "InstallFailed",
        "firecracker_release_url",
        "install_firecracker",
    ]
    assert all(hasattr(firecracker, name) for name in firecracker.__all__)


def test_setup_command_installs_and_refuses_a_bad_checksum(serve: dict[str, bytes], tmp_path: Path) -> None:
    import subprocess
    import sys

    data = _archive(RELEASE)
    url = _publish(serve, f"firecracker-{TAG}.tgz", data)

    def setup(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "infra_operator", "setup", "--install-firecracker", "--firecracker-url", url,
             "--install-dir", str(tmp_path / "bin"), "--data-dir", str(tmp_path / "data"), *extra],
            capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "400"})

    sha256 = hashlib.sha256(data).hexdigest()
    refused = setup("--firecracker-sha256", "0" * 64)
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[-1] == (  # after the download's progress
        f"error: checksum mismatch for {url}: expected sha256 {'0' * 64}, got {sha256}; nothing installed")
    assert not (tmp_path / "bin" / "firecracker").exists()
    unchecked = setup()  # no checksum given: refused, not trusted
    assert unchecked.returncode == 2
    assert unchecked.stderr == "error: --firecracker-sha256 is required: the SHA-256 of the release archive\n"
    assert not (tmp_path / "bin" / "firecracker").exists()

    installed = setup("--firecracker-sha256", sha256)
    assert installed.returncode == 0, installed.stderr
    binaries = tmp_path / "bin"
    assert installed.stdout.splitlines()[0] == f"installed {binaries / 'firecracker'} and {binaries / 'jailer'}"
    for name, says in (("firecracker", "Firecracker v1.16.1\n"), ("jailer", "Jailer v1.16.1\n")):
        assert subprocess.run([binaries / name], capture_output=True, text=True, check=True).stdout == says
