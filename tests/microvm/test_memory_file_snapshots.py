"""Clones that share memory: a snapshot keeps guest RAM in a file of its own, left out of
the migration stream, and every clone restored from it maps that file private, so the
clones share each page until one of them writes it. Compared with the "stream" layout
(RAM inside the stream, copied into each clone's own memory) on the same rootfs."""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Sandboxes, wait_for

from infra_operator.backends import MemoryUse, measure_memory
from infra_operator.backends.base import GuestImages, KernelFiles, SandboxSpec, SnapshotFiles
from infra_operator.backends.qemu import QemuBackend, QemuSandbox, _jail
from infra_operator.config import PoolSettings, Settings
from infra_operator.errors import SnapshotNotFound
from infra_operator.executor import Pool
from infra_operator.images import SnapshotInfo, create_snapshot, find_snapshot
from infra_operator.images._files import sha256_of

from .conftest import QEMU_VERSION, run_python

pytestmark = pytest.mark.slow

CLONES = 3
SHARED_RATIO = 0.6
"""A clone's PSS against its RSS: about 0.55 with three clones sharing their snapshot's
file, about 0.9 when each holds a private copy of the guest's RAM ("stream")."""


def memory_of(sandbox: QemuSandbox) -> MemoryUse:
    use = sandbox.memory()
    assert use is not None, f"sandbox {sandbox.id}: its QEMU could not be measured"
    return use


def settle(sandboxes: list[QemuSandbox]) -> list[MemoryUse]:
    """Each clone measured once the guests are idle: a guest just resumed is still
    touching pages (timers, the agent answering its ping) for a moment."""
    time.sleep(1.0)
    return [memory_of(sandbox) for sandbox in sandboxes]


def start_clones(factory: Sandboxes[QemuSandbox], spec: SandboxSpec, count: int) -> list[QemuSandbox]:
    """Clones as the pool holds them ready: restored, and their agent has answered a ping
    (an execution would make pages of its own: the program, the guest's page cache)."""
    clones = []
    for _ in range(count):
        clones.append(factory.start(spec))
        assert clones[-1].call({"op": "ping"}, time.monotonic() + 10)["op"] == "ping"
    return clones


def test_the_snapshot_keeps_ram_in_a_read_only_file_out_of_the_stream(snapshot: SnapshotInfo) -> None:
    memory = snapshot.path / "memory"
    assert snapshot.mem_size == memory.stat().st_size == 256 * 2**20
    assert snapshot.vmstate_size < 2**20, "the guest's RAM went into the stream"
    # The VMM's uid must open it read-write (QEMU 7.2), nobody else may write it.
    assert memory.stat().st_uid == _jail.VMM_UID and memory.stat().st_mode & 0o077 == 0
    assert (snapshot.path / "kernel-stub").stat().st_size < 64 * 2**10
    print(f"file layout: vmstate {snapshot.vmstate_size / 1024:.0f} KiB, memory file "
          f"{memory.stat().st_blocks * 512 / 2**20:.0f} MiB on disk of 256 MiB")


def test_clones_share_their_snapshots_pages(
    sandboxes: Sandboxes[QemuSandbox], restore_spec: SandboxSpec
) -> None:
    clones = start_clones(sandboxes, restore_spec, CLONES)
    # Started with the kernel stub and no initramfs: QEMU would keep a 12 MiB copy of both.
    argv = Path(f"/proc/{clones[0].pid}/cmdline").read_bytes().split(b"\0")
    assert b"-initrd" not in argv
    # QEMU is jailed: its -kernel is a path inside the jail, where the stub is bound.
    assert restore_spec.snapshot is not None
    inside = os.stat(f"/proc/{clones[0].pid}/root" + argv[argv.index(b"-kernel") + 1].decode())
    stub = os.stat(restore_spec.snapshot.directory / "kernel-stub")
    assert (inside.st_dev, inside.st_ino) == (stub.st_dev, stub.st_ino)
    uses = settle(clones)
    for use in uses:
        print(f"clone: PSS {use.pss_mb:.1f} MiB, RSS {use.rss_mb:.1f} MiB, shared {use.shared_mb:.1f} MiB")
        assert use.pss_mb < SHARED_RATIO * use.rss_mb, f"{CLONES} clones share too little: {use}"
    median = statistics.median(use.pss_mb for use in uses)
    print(f"median PSS of {CLONES} ready python clones: {median:.1f} MiB (goal: 32 MiB with a pool's worth)")
    # Generous for three clones of the test rootfs; a copy of the guest's RAM is 120+ MiB alone.
    assert median < 48


def test_a_clones_writes_stay_its_own(
    sandboxes: Sandboxes[QemuSandbox], restore_spec: SandboxSpec, snapshot: SnapshotInfo
) -> None:
    memory_file = snapshot.path / "memory"
    before = sha256_of(memory_file)
    first, second = start_clones(sandboxes, restore_spec, 2)
    quiet = settle([second])[0]
    # A file in the first clone's tmpfs, and 24 MiB of its guest RAM written.
    write = "open('/tmp/marker', 'w').write('A'); print(len(bytearray(b'A' * (24 << 20))))"
    result = run_python(first, write)
    assert result["exit_code"] == 0 and result["stdout_text"].strip() == str(24 << 20), result
    after = settle([first, second])
    print(f"after one execution writing 24 MiB in a clone: its PSS {after[0].pss_mb:.1f} MiB, "
          f"the idle one's {after[1].pss_mb:.1f} MiB (was {quiet.pss_mb:.1f})")
    assert after[0].pss_mb > after[1].pss_mb + 24, "the writer's pages were not its own"
    # The idle clone's share of pages the writer has now copied grows; nothing more.
    assert after[1].pss_mb < quiet.pss_mb + 8, "the idle clone paid for the writer's pages"
    result = run_python(second, "import os; print(os.path.exists('/tmp/marker'))")
    assert result["stdout_text"].strip() == "False", "the second clone saw the first one's file"
    for clone in (first, second):
        clone.destroy()
    assert sha256_of(memory_file) == before, "a clone wrote into the snapshot's memory file"


def test_a_missing_memory_file_is_snapshot_not_found(
    sandboxes: Sandboxes[QemuSandbox], snapshot: SnapshotInfo, spec: SandboxSpec, tmp_path: Path
) -> None:
    files = SnapshotFiles(snapshot.path, snapshot.path / "vmstate", tmp_path / "gone")
    with pytest.raises(SnapshotNotFound):
        sandboxes.start(dataclasses.replace(spec, snapshot=files))


def test_the_pool_counts_a_ready_clone_at_its_pss(backend: QemuBackend, restore_spec: SandboxSpec) -> None:
    with Pool(PoolSettings(workers=1)) as pool:
        pool.warm(backend, restore_spec, 2)
        wait_for(lambda: pool.stats()[0]["ready"] == 2, "two ready clones in the pool", seconds=120)
        counted = pool.stats()[0]["memory_mb"]
        print(f"the pool counts a ready clone at {counted} MiB; its RAM is {restore_spec.memory_mb} MiB")
        assert counted < restore_spec.memory_mb / 2, "counted at its RAM, not at what it holds"
        # And at what this test measures of those same processes, within what a moment changes.
        pids = [int(path.read_text()) for path in backend.settings.run_dir.glob("qemu-*/qemu.pid")]
        measured = [use.pss_mb for pid in pids if (use := measure_memory(pid)) is not None]
        assert len(measured) == 2
        assert abs(counted - statistics.median(measured)) < 0.3 * counted + 4


@pytest.fixture(scope="module")
def stream_backend(tmp_path_factory: pytest.TempPathFactory, kernel: KernelFiles) -> QemuBackend:
    settings = Settings(data_dir=tmp_path_factory.mktemp("stream"))
    return QemuBackend(settings, GuestImages.fixed(kernel), snapshot_memory="stream")


@pytest.fixture
def stream_sandboxes(stream_backend: QemuBackend) -> Iterator[Sandboxes[QemuSandbox]]:
    factory = Sandboxes(stream_backend)
    try:
        yield factory
    finally:
        factory.destroy_all()


def test_the_stream_layout_shares_no_guest_ram(
    stream_backend: QemuBackend, stream_sandboxes: Sandboxes[QemuSandbox], spec: SandboxSpec
) -> None:
    """The bound above is one the old layout fails: it shows what the memory file buys."""
    assert spec.kernel is not None
    settings = stream_backend.settings
    create_snapshot(settings, stream_backend, "python", spec, lambda line: None)
    files = find_snapshot(settings, "qemu", "python", spec.rootfs_sha256, spec.kernel.sha256, QEMU_VERSION)
    assert files is not None and files.memory is None
    clones = start_clones(stream_sandboxes, dataclasses.replace(spec, snapshot=files), CLONES)
    uses = settle(clones)
    median = statistics.median(use.pss_mb for use in uses)
    print(f"stream layout, {CLONES} clones: median PSS {median:.1f} MiB, RSS "
          f"{statistics.median(use.rss_mb for use in uses):.1f} MiB")
    assert all(use.pss_mb >= SHARED_RATIO * use.rss_mb for use in uses)
