"""Pausing a QEMU sandbox to disk and resuming it, at the backend's level, on real QEMU:
a python session's names, its working folder's files and a current clock come back.
The guest kernel here is built from this checkout, so the agent is the one under test."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
from conftest import Sandboxes

from infra_operator.backends.base import GuestImages, KernelFiles, SandboxSpec
from infra_operator.backends.qemu import QemuBackend, QemuSandbox
from infra_operator.config import Settings
from infra_operator.errors import SnapshotNotFound
from infra_operator.images import create_snapshot, find_snapshot

from .conftest import QEMU_VERSION, open_session, qemu_alive, run_cell


def test_a_paused_session_resumes_with_its_names_files_and_a_current_clock(
    sandboxes: Sandboxes[QemuSandbox], backend: QemuBackend, spec: SandboxSpec, tmp_path: Path
) -> None:
    sandbox = sandboxes.start(spec)
    open_session(sandbox)
    run_cell(sandbox, "x = 41\nopen('note.txt', 'w').write('kept')")
    saved = tmp_path / "paused"
    saved.mkdir()
    sandbox.pause(saved)
    assert not qemu_alive(sandbox), "QEMU still runs after pause"
    assert sorted(path.name for path in saved.iterdir()) == ["machine.json", "vmstate"]
    time.sleep(3)  # the guest's clock stands still meanwhile; resume must set it
    resumed = backend.resume(spec, saved)
    sandboxes.made.append(resumed)
    out = run_cell(resumed, "import time\nprint(x + 1, open('note.txt').read(), time.time())")
    answer, note, guest_time = out.split()
    assert (answer, note) == ("42", "kept")
    assert abs(float(guest_time) - time.time()) < 2.0, f"guest clock off by {time.time() - float(guest_time):.1f} s"
    # The saved state is left for its owner to remove: resuming twice from it works too.
    resumed.destroy()
    again = backend.resume(spec, saved)
    sandboxes.made.append(again)
    assert run_cell(again, "print(x)") == "41\n"


def test_resume_of_a_folder_with_nothing_paused(backend: QemuBackend, spec: SandboxSpec, tmp_path: Path) -> None:
    with pytest.raises(SnapshotNotFound, match="vmstate"):
        backend.resume(spec, tmp_path)


def test_a_clone_of_a_memory_file_snapshot_pauses_with_all_its_ram(
    kernel: KernelFiles, spec: SandboxSpec, tmp_path: Path
) -> None:
    """A clone maps its snapshot's memory file private, and its restore turned x-ignore-shared
    on: its pause must still carry every page in the stream (its names come back)."""
    settings = Settings(data_dir=tmp_path / "data")
    backend = QemuBackend(settings, GuestImages.fixed(kernel), snapshot_memory="file")
    create_snapshot(settings, backend, "python", spec, lambda line: None)
    assert spec.kernel is not None
    files = find_snapshot(settings, "qemu", "python", spec.rootfs_sha256, spec.kernel.sha256, QEMU_VERSION)
    assert files is not None and files.memory is not None
    clones = Sandboxes(backend)
    try:
        clone = clones.start(dataclasses.replace(spec, snapshot=files))
        assert clone.machine.memory_file is not None
        open_session(clone)
        run_cell(clone, "x = 41")
        saved = tmp_path / "paused"
        saved.mkdir()
        clone.pause(saved)
        assert (saved / "vmstate").stat().st_size > 16 << 20, "the guest's RAM is not in the saved stream"
        resumed = backend.resume(dataclasses.replace(spec, snapshot=None), saved)
        clones.made.append(resumed)
        assert run_cell(resumed, "print(x + 1)") == "42\n"
    finally:
        clones.destroy_all()
    assert list(settings.run_dir.glob("qemu-*")) == []
