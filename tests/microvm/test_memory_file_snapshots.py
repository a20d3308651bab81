"""Snapshots in "file" mode: guest RAM in a file of its own, mapped copy-on-write by
every restored clone, and left out of the migration stream."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Sandboxes

from infra_operator.backends.base import GuestImages, KernelFiles, SandboxSpec, SnapshotFiles
from infra_operator.backends.qemu import QemuBackend, QemuSandbox
from infra_operator.config import Settings
from infra_operator.errors import SnapshotNotFound
from infra_operator.images import SnapshotInfo, create_snapshot, find_snapshot
from infra_operator.images._files import sha256_of

from .conftest import QEMU_VERSION, run_python

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def file_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(data_dir=tmp_path_factory.mktemp("memfile"))


@pytest.fixture(scope="module")
def file_backend(file_settings: Settings, kernel: KernelFiles, backend: QemuBackend) -> QemuBackend:
    return QemuBackend(file_settings, GuestImages.fixed(kernel), snapshot_memory="file")


@pytest.fixture(scope="module")
def file_snapshot(file_settings: Settings, file_backend: QemuBackend, spec: SandboxSpec) -> SnapshotInfo:
    return create_snapshot(file_settings, file_backend, "python", spec, lambda line: None)


@pytest.fixture
def file_sandboxes(file_backend: QemuBackend, file_settings: Settings) -> Iterator[Sandboxes[QemuSandbox]]:
    factory = Sandboxes(file_backend)
    try:
        yield factory
    finally:
        factory.destroy_all()
    assert list(file_settings.run_dir.glob("qemu-*")) == []


def test_ram_is_a_file_and_out_of_the_stream(file_snapshot: SnapshotInfo) -> None:
    metadata = json.loads((file_snapshot.path / "metadata.json").read_text())
    assert metadata["memory"] == "memory"
    assert file_snapshot.mem_size == 256 * 2**20
    assert file_snapshot.vmstate_size < 2**20  # device state only
    print(f"file mode: vmstate {file_snapshot.vmstate_size / 1024:.0f} KiB, memory file 256 MiB (sparse)")


def test_clones_share_the_file_and_never_write_it(
    file_sandboxes: Sandboxes[QemuSandbox], file_settings: Settings, file_snapshot: SnapshotInfo, spec: SandboxSpec
) -> None:
    assert spec.kernel is not None
    files = find_snapshot(file_settings, "qemu", "python", spec.rootfs_sha256, spec.kernel.sha256, QEMU_VERSION)
    assert files is not None and files.memory is not None
    before = sha256_of(files.memory)
    restore = dataclasses.replace(spec, snapshot=files)
    seen = []
    for _ in range(2):
        started = time.monotonic()
        sandbox = file_sandboxes.start(restore)
        print(f"file mode restore to ready: {time.monotonic() - started:.2f} s")
        code = "import os; open('/work/x', 'wb').write(os.urandom(1 << 20)); print(os.urandom(8).hex())"
        result = run_python(sandbox, code)
        assert result["exit_code"] == 0, result
        seen.append(result["stdout_text"])
    assert seen[0] != seen[1]
    for sandbox in file_sandboxes.made:
        sandbox.destroy()
    assert sha256_of(files.memory) == before, "a clone wrote into the snapshot's memory file"


def test_memory_file_missing_is_snapshot_not_found(
    file_sandboxes: Sandboxes[QemuSandbox], file_snapshot: SnapshotInfo, spec: SandboxSpec, tmp_path: Path
) -> None:
    files = SnapshotFiles(file_snapshot.path, file_snapshot.path / "vmstate", tmp_path / "gone")
    with pytest.raises(SnapshotNotFound):
        file_sandboxes.start(dataclasses.replace(spec, snapshot=files))
