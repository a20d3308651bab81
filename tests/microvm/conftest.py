"""Session fixtures for the microVM tests: one guest kernel, one small python rootfs,
one snapshot, all built once; and a factory that destroys every sandbox a test made.

The rootfs and the kernel .deb are cached between sessions in a scratch folder
(``INFRA_OPERATOR_TEST_CACHE``, default ``/var/tmp/infra-operator-tests``), never in
the service's data directory.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import DATA_DIR, Sandboxes, Server, require_images, start_server, stop_server

from infra_operator.backends.base import GuestImages, KernelFiles, SandboxSpec
from infra_operator.backends.qemu import QemuBackend, QemuSandbox, _probe
from infra_operator.config import Settings
from infra_operator.guest.messages import CellRequest, ExecuteRequest, SessionRequest, StepLimits, StepResult
from infra_operator.images import SnapshotInfo, build_kernel, create_snapshot, find_snapshot
from infra_operator.images._files import sha256_of

CACHE = Path(os.environ.get("INFRA_OPERATOR_TEST_CACHE", "/var/tmp/infra-operator-tests"))
QEMU_VERSION = _probe.qemu_version("qemu-system-x86_64")
"""What the backend records in each snapshot it makes here, and looks for in each it restores."""
ROOTFS_DIRS = ("work", "tmp", "opt/infra-operator", "proc", "sys", "dev")

LIMITS: StepLimits = {
    "wall_seconds": 20,
    "cpu_seconds": 20,
    "memory_bytes": 128 << 20,
    "processes": 64,
    "output_bytes": 1 << 16,
    "file_bytes": 1 << 20,
}


def need(tool: str) -> None:
    """Skip, saying why, when the host lacks QEMU; every other tool is expected to be there."""
    if shutil.which(tool) is None:
        print(f"skipping: {tool} is not installed")
        pytest.skip(f"{tool} is not installed")


def execute_message(code: str, name: str = "main.py") -> ExecuteRequest:
    """An execute request as the executor sends it: fresh entropy and the host's clock."""
    return {
        "op": "execute",
        "files": {name: base64.b64encode(code.encode()).decode()},
        "compile": None,
        "run": ["/usr/bin/python3", name],
        "env": {},
        "stdin": "",
        "limits": LIMITS,
        "entropy": base64.b64encode(os.urandom(64)).decode(),
        "clock": time.time(),
    }


def run_step(sandbox: QemuSandbox, message: ExecuteRequest, timeout: float = 60.0) -> StepResult:
    """The run step's result of one execute call."""
    reply = sandbox.call(message, time.monotonic() + timeout)
    assert reply["op"] == "execute" and reply["run"] is not None, reply
    return reply["run"]


def run_python(
    sandbox: QemuSandbox, code: str, timeout: float = 60.0, name: str = "main.py"
) -> dict[str, Any]:
    return run_decoded(sandbox, execute_message(code, name), timeout)


def run_decoded(sandbox: QemuSandbox, message: ExecuteRequest, timeout: float = 60.0) -> dict[str, Any]:
    """The run step's result of ``message``, with its output also as text."""
    result: dict[str, Any] = dict(run_step(sandbox, message, timeout))
    result["stdout_text"] = base64.b64decode(result["stdout"]).decode()
    result["stderr_text"] = base64.b64decode(result["stderr"]).decode()
    return result


def open_session(sandbox: QemuSandbox) -> None:
    """Make ``sandbox`` a python session's, as the executor does."""
    message: SessionRequest = {
        "op": "session", "kernel": "python", "source": "main.py", "compile": None,
        "run": ["/usr/bin/python3", "main.py"], "env": {}, "limits": LIMITS,
        "entropy": base64.b64encode(os.urandom(64)).decode(), "clock": time.time()}
    sandbox.call(message, time.monotonic() + 60)


def run_cell(sandbox: QemuSandbox, code: str) -> str:
    """The stdout of a cell that must succeed."""
    message: CellRequest = {"op": "cell", "code": code, "stdin": "", "wall_seconds": 60, "stream": False}
    reply = sandbox.call(message, time.monotonic() + 90)
    assert reply["op"] == "cell" and reply["run"] is not None, reply
    assert reply["run"]["exit_code"] == 0, base64.b64decode(reply["run"]["stderr"]).decode()
    return base64.b64decode(reply["run"]["stdout"]).decode()


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    data = tmp_path_factory.mktemp("data")
    CACHE.mkdir(parents=True, exist_ok=True)
    # The .deb cache is shared between sessions, so a rebuild fetches nothing.
    (data / "cache").symlink_to(CACHE, target_is_directory=True)
    return Settings(data_dir=data)


@pytest.fixture(scope="session")
def kernel(settings: Settings) -> KernelFiles:
    return build_kernel(settings, lambda line: print(f"kernel: {line}"))


@pytest.fixture(scope="session")
def rootfs() -> tuple[Path, str]:
    """A small Debian rootfs with python3, shaped like the real images."""
    image = CACHE / "rootfs-python-test.ext4"
    if not image.exists():
        tree = CACHE / "rootfs-python-test.tree"
        shutil.rmtree(tree, ignore_errors=True)
        subprocess.run(
            ["mmdebstrap", "--quiet", "--variant=essential", "--include=python3", "bookworm", str(tree)],
            check=True,
        )
        for name in ROOTFS_DIRS:
            (tree / name).mkdir(parents=True, exist_ok=True)
        partial = image.with_name(image.name + ".partial")
        subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(tree), str(partial), "400M"], check=True)
        partial.rename(image)
        shutil.rmtree(tree, ignore_errors=True)
    return image, sha256_of(image)


@pytest.fixture(scope="session")
def backend(settings: Settings, kernel: KernelFiles) -> QemuBackend:
    need("qemu-system-x86_64")
    return QemuBackend(settings, GuestImages.fixed(kernel))


@pytest.fixture(scope="session")
def spec(rootfs: tuple[Path, str], kernel: KernelFiles) -> SandboxSpec:
    return SandboxSpec(
        rootfs=rootfs[0],
        rootfs_sha256=rootfs[1],
        memory_mb=256,
        vcpus=1,
        kernel=kernel,
        labels={"language": "python"},
    )


@pytest.fixture(scope="session")
def snapshot(settings: Settings, backend: QemuBackend, spec: SandboxSpec) -> SnapshotInfo:
    return create_snapshot(settings, backend, "python", spec, lambda line: print(f"snapshot: {line}"))


@pytest.fixture(scope="session")
def restore_spec(settings: Settings, spec: SandboxSpec, snapshot: SnapshotInfo) -> SandboxSpec:
    assert spec.kernel is not None
    files = find_snapshot(settings, "qemu", "python", spec.rootfs_sha256, spec.kernel.sha256, QEMU_VERSION)
    assert files is not None
    return dataclasses.replace(spec, snapshot=files)


def qemu_alive(sandbox: QemuSandbox) -> bool:
    """QEMU itself runs: bwrap, its parent, reaps it and exits a moment after it dies."""
    if sandbox.process.poll() is not None:
        return False  # bwrap gone: QEMU was reaped before it, its pid may name another process
    try:
        state = Path(f"/proc/{sandbox.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def sandboxes(backend: QemuBackend, settings: Settings) -> Iterator[Sandboxes[QemuSandbox]]:
    """Destroys every sandbox after the test and checks nothing is left behind."""
    factory = Sandboxes(backend)
    try:
        yield factory
    finally:
        factory.destroy_all()
    for sandbox in factory.made:
        assert not qemu_alive(sandbox), f"QEMU {sandbox.process.pid} survived destroy()"
    leftovers = list(settings.run_dir.glob("qemu-*")) if settings.run_dir.exists() else []
    assert leftovers == [], f"run folders left behind: {leftovers}"


def own_vm_data(root: Path, languages: tuple[str, ...]) -> dict[str, str]:
    """A data dir of its own under ``root`` (the ``languages``' images and the kernel hard-linked
    from the shared one), so snapshots and rebuilds there touch nothing else: the environment
    that points a command at it. Skipped, saying why, where QEMU cannot run."""
    require_images(*languages)
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
    if not (DATA_DIR / "kernels" / "kernel.json").exists():
        pytest.skip(f"no guest kernel in {DATA_DIR}: run `infra.operator kernel build`")
    data = root / "data"
    (data / "images").mkdir(parents=True)
    for language in languages:
        # The record and its image, ext4 or squashfs, whichever the shared store holds.
        for path in (DATA_DIR / "images").glob(f"rootfs-{language}.*"):
            os.link(path, data / "images" / path.name)
    subprocess.run(["cp", "-al", str(DATA_DIR / "kernels"), str(data / "kernels")], check=True)
    return {"INFRA_OPERATOR_DATA_DIR": str(data), "INFRA_OPERATOR_PACKAGE_CACHE_DIR": str(DATA_DIR / "cache")}


@contextmanager
def own_vm_server(root: Path, languages: tuple[str, ...]) -> Iterator[Server]:
    """A server over a data dir of its own (``own_vm_data``)."""
    server = start_server(root, env=own_vm_data(root, languages))
    try:
        health = httpx.get(f"{server.url}/health").json()
        qemu = next(b for b in health["backends"] if b["name"] == "qemu")
        if not qemu["usable"]:
            pytest.skip(f"qemu cannot run here: {'; '.join(qemu['missing'])}")
        yield server
    finally:
        stop_server(server)
