"""The QEMU backend against real QEMU microVMs (TCG on hosts without usable KVM)."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from conftest import Sandboxes

from infra_operator.backends.base import KernelFiles, SandboxSpec, SnapshotFiles, State
from infra_operator.backends.qemu import QemuBackend, QemuSandbox, _probe
from infra_operator.config import Settings
from infra_operator.errors import AgentError, BootFailed, SnapshotNotFound

from .conftest import execute_message, qemu_alive, run_python, run_step

pytestmark = pytest.mark.slow


def test_capabilities_report_evidence(backend: QemuBackend) -> None:
    caps = backend.capabilities()
    assert caps.name == "qemu" and caps.isolation == "vm" and caps.snapshots
    assert caps.usable and caps.missing == ()
    assert caps.accelerator in ("kvm", "tcg")
    assert any("qemu-system-x86_64" in line for line in caps.evidence)
    flags = Path("/proc/cpuinfo").read_text()
    if " vmx" not in flags and " svm" not in flags:
        assert caps.accelerator == "tcg"  # /dev/kvm alone is no evidence


def test_capabilities_name_what_is_missing(settings: Settings) -> None:
    caps = QemuBackend(settings, binary="qemu-system-nonexistent").capabilities()
    assert not caps.usable
    assert any("qemu-system-x86" in line for line in caps.missing)
    assert any("kernel" in line for line in caps.missing)


def test_cold_boot_runs_python_as_nobody(sandboxes: Sandboxes[QemuSandbox], spec: SandboxSpec, settings: Settings) -> None:
    started = time.monotonic()
    sandbox = sandboxes.start(spec)
    print(f"cold boot to ready agent: {time.monotonic() - started:.2f} s")
    assert sandbox.state is State.READY
    assert (settings.run_dir / f"qemu-{sandbox.id}").is_dir()
    result = run_python(sandbox, "import os; print(1 + 1, os.getuid(), os.getcwd())")
    assert result["exit_code"] == 0, result
    assert result["stdout_text"] == "2 65534 /work\n"
    sandbox.destroy()
    assert sandbox.state is State.DESTROYED  # type: ignore[comparison-overlap]
    assert not qemu_alive(sandbox)
    assert not (settings.run_dir / f"qemu-{sandbox.id}").exists()
    sandbox.destroy()  # twice is fine


def test_boot_failure_is_reported_and_cleaned(
    sandboxes: Sandboxes[QemuSandbox], spec: SandboxSpec, tmp_path: Path, settings: Settings
) -> None:
    broken = tmp_path / "not-ext4.img"
    broken.write_bytes(b"\0" * (1 << 20))
    with pytest.raises(BootFailed):
        sandboxes.start(SandboxSpec(rootfs=broken, rootfs_sha256="0" * 64, kernel=spec.kernel))
    assert list(settings.run_dir.glob("qemu-*")) == []


def test_restore_from_snapshot_runs_python(sandboxes: Sandboxes[QemuSandbox], restore_spec: SandboxSpec) -> None:
    started = time.monotonic()
    sandbox = sandboxes.start(restore_spec)
    restored = time.monotonic() - started
    started = time.monotonic()
    result = run_python(sandbox, "print(sum(range(10)))")
    first = time.monotonic() - started
    print(f"restore to ready agent: {restored:.2f} s, first execute after restore: {first:.2f} s")
    assert result["exit_code"] == 0 and result["stdout_text"] == "45\n", result


def test_files_of_one_execution_are_absent_in_the_next_vm(
    sandboxes: Sandboxes[QemuSandbox], restore_spec: SandboxSpec
) -> None:
    first = sandboxes.start(restore_spec)
    code = (
        "open('/work/left.txt', 'w').write('secret'); open('/tmp/left.txt', 'w').write('secret'); print('ok')"
    )
    assert run_python(first, code)["stdout_text"] == "ok\n"
    first.destroy()
    second = sandboxes.start(restore_spec)
    check = "import os; print(sorted(os.listdir('/work')), os.path.exists('/tmp/left.txt'))"
    assert run_python(second, check)["stdout_text"] == "['main.py'] False\n"
    # The rootfs itself is mounted read-only.
    probe = "import os; print(os.statvfs('/').f_flag & os.ST_RDONLY != 0)"
    assert run_python(second, probe, name="second.py")["stdout_text"] == "True\n"


def test_clones_of_one_snapshot_differ_in_entropy_and_have_a_current_clock(
    sandboxes: Sandboxes[QemuSandbox], restore_spec: SandboxSpec
) -> None:
    one = sandboxes.start(restore_spec)
    two = sandboxes.start(restore_spec)
    code = "import time, json; print(json.dumps([open('/dev/urandom', 'rb').read(16).hex(), time.time()]))"
    seen = []
    for sandbox in (one, two):
        result = run_python(sandbox, code)
        assert result["exit_code"] == 0, result
        random_hex, clock = json.loads(result["stdout_text"])
        assert abs(clock - time.time()) < 30, "the guest's clock was not set from the host's"
        seen.append(random_hex)
    assert seen[0] != seen[1]


def test_killing_qemu_during_an_execution_raises_agent_error(
    sandboxes: Sandboxes[QemuSandbox], restore_spec: SandboxSpec, settings: Settings
) -> None:
    sandbox = sandboxes.start(restore_spec)
    pid = sandbox.pid  # QEMU's own, not bwrap's which waits for it
    timer = threading.Timer(1.0, os.kill, (pid, signal.SIGKILL))
    timer.start()
    try:
        with pytest.raises(AgentError):
            run_python(sandbox, "import time; time.sleep(30)")
    finally:
        timer.cancel()
    assert not qemu_alive(sandbox)
    assert not Path(f"/proc/{pid}").exists()
    assert not (settings.run_dir / f"qemu-{sandbox.id}").exists()
    assert sandbox.state is State.DESTROYED
    with pytest.raises(AgentError):
        run_python(sandbox, "print(1)")


def test_sweep_kills_vms_of_a_dead_server(
    sandboxes: Sandboxes[QemuSandbox], restore_spec: SandboxSpec, backend: QemuBackend
) -> None:
    alive = sandboxes.start(restore_spec)
    orphan = sandboxes.start(restore_spec)
    # Make the orphan look as if its server died: an owner pid that no longer runs.
    (orphan.folder / "owner").write_text("999999999 0\n")
    swept = backend.sweep()
    assert any(str(orphan.folder) in line for line in swept), swept
    assert not orphan.folder.exists()
    assert not qemu_alive(orphan)
    assert alive.folder.exists() and qemu_alive(alive)
    assert run_python(alive, "print('still here')")["stdout_text"] == "still here\n"


def test_memory_limit_is_enforced_in_the_guest_cgroup(
    sandboxes: Sandboxes[QemuSandbox], restore_spec: SandboxSpec
) -> None:
    sandbox = sandboxes.start(restore_spec)
    message = execute_message("x = bytearray(150 * 2**20); print('survived')")
    message["limits"] = {**message["limits"], "memory_bytes": 48 << 20}
    result = run_step(sandbox, message)
    assert result["exit_code"] != 0 or result["signal"] is not None, result
    assert result["oom_killed"], result


def test_restores_in_parallel_threads(sandboxes: Sandboxes[QemuSandbox], restore_spec: SandboxSpec) -> None:
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        started = list(pool.map(lambda _: sandboxes.start(restore_spec), range(3)))
        results = list(pool.map(lambda sandbox: run_python(sandbox, "print('hi')"), started))
    assert [result["stdout_text"] for result in results] == ["hi\n"] * 3
    assert len({sandbox.id for sandbox in started}) == 3


def test_guest_time_runs_at_the_host_rate(sandboxes: Sandboxes[QemuSandbox], restore_spec: SandboxSpec) -> None:
    sandbox = sandboxes.start(restore_spec)
    started = time.monotonic()
    result = run_python(
        sandbox, "import time; t = time.monotonic(); time.sleep(2); print(time.monotonic() - t)"
    )
    host = time.monotonic() - started
    guest = float(result["stdout_text"])
    assert 1.9 <= guest <= host + 0.1, (guest, host)


def test_probe_boot_reaches_userspace(backend: QemuBackend, kernel: KernelFiles) -> None:
    # The KVM probe's mechanism, run under TCG so it is checked on hosts without KVM too.
    ok, line = _probe.probe_boot("qemu-system-x86_64", kernel, "tcg", timeout=120)
    assert ok, line


def test_restore_from_a_missing_snapshot_file(
    sandboxes: Sandboxes[QemuSandbox], restore_spec: SandboxSpec, tmp_path: Path, settings: Settings
) -> None:
    gone = SnapshotFiles(directory=tmp_path, vmstate=tmp_path / "vmstate", memory=None)
    with pytest.raises(SnapshotNotFound):
        sandboxes.start(dataclasses.replace(restore_spec, snapshot=gone))
