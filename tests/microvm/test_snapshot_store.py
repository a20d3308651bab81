"""The snapshot store: layout, metadata, and offering a snapshot only for the kernel
and rootfs it was made from."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from infra_operator.backends.base import SandboxSpec
from infra_operator.backends.qemu._jail import VMM_UID
from infra_operator.config import Settings
from infra_operator.images import SnapshotInfo, find_snapshot, list_snapshots
from infra_operator.images._files import sweep_partials
from infra_operator.images.snapshots import FORMAT

from .conftest import QEMU_VERSION

pytestmark = pytest.mark.slow


def test_snapshot_layout_and_metadata(settings: Settings, snapshot: SnapshotInfo, spec: SandboxSpec) -> None:
    assert spec.kernel is not None
    assert snapshot.path == settings.snapshots_dir / "qemu" / "python"
    metadata = json.loads((snapshot.path / "metadata.json").read_text())
    assert metadata["language"] == "python" and metadata["backend"] == "qemu"
    assert metadata["kernel_sha256"] == spec.kernel.sha256
    assert metadata["rootfs_sha256"] == spec.rootfs_sha256
    assert (metadata["mem_mb"], metadata["vcpus"]) == (256, 1)
    assert metadata["format"] == FORMAT == 2
    assert metadata["vmstate_size"] == (snapshot.path / "vmstate").stat().st_size > 0
    # The guest's RAM is a file of its own, out of the stream, which holds device state only.
    assert metadata["memory"] == "memory" and metadata["mem_size"] == 256 * 2**20
    assert metadata["vmm_version"] == snapshot.vmm_version == QEMU_VERSION
    assert snapshot.vmstate_size < 2**20
    # QEMU 7.2 opens it read-write even to map it private (backends/qemu/_jail.py): only the VMM's uid may.
    memory = (snapshot.path / "memory").stat()
    assert memory.st_uid == VMM_UID and memory.st_mode & 0o077 == 0, "the memory file is open to others"
    print(f"snapshot of a 256 MiB python guest: vmstate {snapshot.vmstate_size / 2**10:.0f} KiB, "
          f"memory file {(snapshot.path / 'memory').stat().st_blocks * 512 / 2**20:.1f} MiB on disk")
    assert list_snapshots(settings) == [snapshot]
    # Nothing half-made beside it.
    assert [p.name for p in snapshot.path.parent.iterdir()] == ["python"]


def test_find_snapshot_only_for_matching_checksums(
    settings: Settings, snapshot: SnapshotInfo, spec: SandboxSpec
) -> None:
    assert spec.kernel is not None
    rootfs, kernel = spec.rootfs_sha256, spec.kernel.sha256
    assert find_snapshot(settings, "qemu", "python", rootfs, kernel, QEMU_VERSION) is not None
    assert find_snapshot(settings, "qemu", "python", "0" * 64, kernel, QEMU_VERSION) is None
    assert find_snapshot(settings, "qemu", "python", rootfs, "0" * 64, QEMU_VERSION) is None
    assert find_snapshot(settings, "firecracker", "python", rootfs, kernel, QEMU_VERSION) is None
    assert find_snapshot(settings, "qemu", "node", rootfs, kernel, QEMU_VERSION) is None
    assert find_snapshot(settings, "qemu", "../python", rootfs, kernel, QEMU_VERSION) is None


def _copy_store(snapshot: SnapshotInfo, data: Path) -> Settings:
    settings = Settings(data_dir=data)
    target = settings.snapshots_dir / "qemu" / "python"
    target.mkdir(parents=True)
    for path in snapshot.path.iterdir():
        os.link(path, target / path.name)  # hard links: no 100 MB copies
    return settings


def test_find_snapshot_checks_metadata_and_files(
    tmp_path: Path, snapshot: SnapshotInfo, spec: SandboxSpec
) -> None:
    assert spec.kernel is not None
    rootfs, kernel = spec.rootfs_sha256, spec.kernel.sha256
    settings = _copy_store(snapshot, tmp_path / "a")
    assert find_snapshot(settings, "qemu", "python", rootfs, kernel, QEMU_VERSION) is not None
    metadata_path = settings.snapshots_dir / "qemu" / "python" / "metadata.json"
    metadata = json.loads(metadata_path.read_text())

    metadata_path.unlink()
    metadata_path.write_text(json.dumps({**metadata, "rootfs_sha256": "f" * 64}))
    assert find_snapshot(settings, "qemu", "python", rootfs, kernel, QEMU_VERSION) is None

    metadata_path.write_text(json.dumps({**metadata, "vmstate_size": metadata["vmstate_size"] + 1}))
    assert find_snapshot(settings, "qemu", "python", rootfs, kernel, QEMU_VERSION) is None

    metadata_path.write_text("{not json")
    assert find_snapshot(settings, "qemu", "python", rootfs, kernel, QEMU_VERSION) is None
    assert list_snapshots(settings) == []

    # Made by a release before the memory file: refused, so it is remade, never restored.
    metadata_path.write_text(json.dumps({key: value for key, value in metadata.items() if key != "format"}))
    assert find_snapshot(settings, "qemu", "python", rootfs, kernel, QEMU_VERSION) is None
    metadata_path.write_text(json.dumps({**metadata, "format": FORMAT - 1}))
    assert find_snapshot(settings, "qemu", "python", rootfs, kernel, QEMU_VERSION) is None
    assert list_snapshots(settings) == []

    metadata_path.write_text(json.dumps(metadata))
    assert find_snapshot(settings, "qemu", "python", rootfs, kernel, QEMU_VERSION) is not None
    (settings.snapshots_dir / "qemu" / "python" / "vmstate").unlink()
    assert find_snapshot(settings, "qemu", "python", rootfs, kernel, QEMU_VERSION) is None


def test_a_snapshot_saved_by_another_qemu_is_stale(tmp_path: Path, snapshot: SnapshotInfo, spec: SandboxSpec) -> None:
    """A migration stream need not load under another QEMU (or loads wrong): such a snapshot
    is not offered, nor one made before the version was recorded."""
    assert spec.kernel is not None and QEMU_VERSION is not None
    rootfs, kernel = spec.rootfs_sha256, spec.kernel.sha256
    settings = _copy_store(snapshot, tmp_path / "a")
    metadata_path = settings.snapshots_dir / "qemu" / "python" / "metadata.json"
    metadata = json.loads(metadata_path.read_text())
    metadata_path.unlink()  # a hard link to the fixture's: write a file of our own
    metadata_path.write_text(json.dumps({**metadata, "vmm_version": "QEMU emulator version 7.1.0"}))
    assert find_snapshot(settings, "qemu", "python", rootfs, kernel, QEMU_VERSION) is None
    metadata_path.write_text(json.dumps({key: value for key, value in metadata.items() if key != "vmm_version"}))
    assert find_snapshot(settings, "qemu", "python", rootfs, kernel, QEMU_VERSION) is None
    metadata_path.write_text(json.dumps(metadata))
    assert find_snapshot(settings, "qemu", "python", rootfs, kernel, QEMU_VERSION) is not None


def test_no_snapshot_in_an_empty_store(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert list_snapshots(settings) == []
    assert find_snapshot(settings, "qemu", "python", "0" * 64, "0" * 64, QEMU_VERSION) is None


def test_sweep_partials_removes_only_dead_writers(tmp_path: Path) -> None:
    dead = tmp_path / ".python.tmp-999999999-abcd1234"
    live = tmp_path / f".python.tmp-{os.getpid()}-abcd1234"
    other = tmp_path / ".node.tmp-999999999-abcd1234"
    for path in (dead, live, other):
        path.mkdir()
    assert sweep_partials(tmp_path, ".python.*") == [f"removed {dead}"]
    assert live.exists() and other.exists()
