"""The Firecracker driver against a Firecracker test double (tests/firecracker_double.py).

The double validates every request against Firecracker's published v1.16.1 API spec and
records it; these tests drive the backend through its real process-spawning path (the
double is started as an executable named ``firecracker``) and then check that record:
every request valid, in the order Firecracker requires. Executions are real: the double
hands the vsock connection to a real guest agent process.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

# The double lives beside the test folders, not in the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import wait_for  # noqa: E402
from firecracker_double import ApiSpec, read_records, write_fake_firecracker, write_fake_jailer  # noqa: E402

from infra_operator.backends.base import KernelFiles, Listener, SandboxSpec, State  # noqa: E402
from infra_operator.backends.firecracker import FirecrackerBackend  # noqa: E402
from infra_operator.backends.firecracker._api import FirecrackerApi  # noqa: E402
from infra_operator.config import Settings  # noqa: E402
from infra_operator.errors import AgentError, AgentTimeout, BackendUnavailable, BootFailed, InvalidRequest  # noqa: E402
from infra_operator.guest.messages import ExecuteRequest, StepLimits  # noqa: E402
from infra_operator.guest.protocol import b64decode, b64encode  # noqa: E402

pytestmark = pytest.mark.unit

# The interpreter the agent runs programs with (as uid 65534): the system's, not a pyenv shim.
GUEST_PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
LIMITS: StepLimits = {
    "wall_seconds": 10,
    "cpu_seconds": 10,
    "memory_bytes": 256 * 1024 * 1024,
    "processes": 256,
    "output_bytes": 65536,
    "file_bytes": 1 << 20,
}


@dataclass
class Rig:
    backend: FirecrackerBackend
    settings: Settings
    spec: SandboxSpec
    record: Path
    bin_dir: Path
    config: dict[str, Any]
    tmp: Path

    def reconfigure(self, **changes: Any) -> None:
        self.config.update(changes)
        write_fake_firecracker(self.bin_dir, self.config)

    def records(self) -> list[dict[str, Any]]:
        return read_records(self.record)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    # Agents run programs as uid 65534, which cannot enter pytest's 0700 tmp folders.
    work_root = Path(tempfile.mkdtemp(prefix="fc-double-", dir="/tmp"))
    work_root.chmod(0o755)
    record = tmp_path / "requests.jsonl"
    config: dict[str, Any] = {"record": str(record), "work_root": str(work_root)}
    bin_dir = tmp_path / "bin"
    firecracker = write_fake_firecracker(bin_dir, config)
    kernel_dir = tmp_path / "kernels" / "test"
    kernel_dir.mkdir(parents=True)
    (kernel_dir / "vmlinux").write_bytes(b"\x7fELF not really a kernel")
    (kernel_dir / "initramfs.cpio.gz").write_bytes(b"not really an initramfs")
    rootfs = tmp_path / "rootfs.ext4"
    rootfs.write_bytes(b"not really an ext4 image")
    settings = Settings(data_dir=tmp_path / "data", firecracker_bin=firecracker)
    kernel = KernelFiles(
        bzimage=kernel_dir / "vmlinuz",
        vmlinux=kernel_dir / "vmlinux",
        initramfs=kernel_dir / "initramfs.cpio.gz",
        sha256="0" * 64,
    )
    spec = SandboxSpec(rootfs=rootfs, rootfs_sha256="1" * 64, memory_mb=256, vcpus=1, kernel=kernel)
    # The double needs no KVM; on a busy machine it takes a while to start.
    backend = FirecrackerBackend(settings, boot_timeout=10.0, api_timeout=30.0, check_kvm=False)
    try:
        yield Rig(backend, settings, spec, record, bin_dir, config, tmp_path)
    finally:
        backend.sweep()
        _kill_processes_in(work_root)
        shutil.rmtree(work_root, ignore_errors=True)


def _kill_processes_in(folder: Path) -> None:
    """Programs the agents ran start their own sessions, so killing a double's process group
    does not reach them (in a real VM, killing the VM does): end those working in ``folder``."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cwd = Path(os.readlink(proc / "cwd"))
        except OSError:
            continue
        if cwd.is_relative_to(folder):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)


def _execute(sandbox: Any, source: str) -> dict[str, Any]:
    message = {
        "op": "execute",
        "files": {"main.py": b64encode(source.encode())},
        "compile": None,
        "run": [GUEST_PYTHON, "main.py"],
        "env": {"PATH": "/usr/bin:/bin"},
        "stdin": "",
        "limits": LIMITS,
    }
    reply: dict[str, Any] = sandbox.call(message, time.monotonic() + 20)
    return reply


def _assert_all_valid(records: list[dict[str, Any]]) -> None:
    assert records, "the double recorded no request"
    for record in records:
        assert record["errors"] == [], f"{record['method']} {record['path']} violates the spec: {record}"
        assert record["response_errors"] == [], f"the double answered outside the spec: {record}"


def _saved_then_loaded(rig: Rig, why: str) -> dict[str, Any]:
    """Check the calls of a boot, a Full snapshot of the paused VM, and its load into a fresh
    Firecracker; the load's body."""
    records = rig.records()
    _assert_all_valid(records)
    _assert_paths_relative(records)
    instances = list(dict.fromkeys(r["instance"] for r in records))
    assert len(instances) == 2, why
    first = [r for r in records if r["instance"] == instances[0]]
    second = [r for r in records if r["instance"] == instances[1]]
    assert _steps(first) == [*BOOT_SEQUENCE, "PATCH /vm", "PUT /snapshot/create"]
    assert first[-2]["body"] == {"state": "Paused"}
    assert first[-1]["body"]["snapshot_type"] == "Full"
    assert _steps(second) == ["PUT /snapshot/load"]
    body: dict[str, Any] = second[-1]["body"]
    return body


def _steps(records: list[dict[str, Any]]) -> list[str]:
    return [f"{r['method']} {r['path']}" for r in records if r["method"] != "GET"]


def _run_folders(rig: Rig) -> list[Path]:
    return sorted(rig.settings.run_dir.glob("firecracker-*")) if rig.settings.run_dir.exists() else []


BOOT_SEQUENCE = [
    "PUT /boot-source",
    "PUT /drives/rootfs",
    "PUT /machine-config",
    "PUT /vsock",
    "PUT /actions",
]


def test_cold_boot_executes(rig: Rig) -> None:
    sandbox = rig.backend.start(rig.spec)
    try:
        assert sandbox.state is State.READY
        reply = _execute(sandbox, "print(6 * 7)")
        assert b64decode(reply["run"]["stdout"]) == b"42\n"
        assert reply["run"]["exit_code"] == 0
    finally:
        sandbox.destroy()
    records = rig.records()
    _assert_all_valid(records)
    assert _steps(records) == BOOT_SEQUENCE
    body = {f"{r['method']} {r['path']}": r["body"] for r in records}
    boot_args = body["PUT /boot-source"]["boot_args"].split()
    assert {"console=ttyS0", "reboot=k", "panic=1", "infra.channel=vsock:1024"} <= set(boot_args)
    # Relative to Firecracker's working directory, links there to the real files (see _vm).
    assert body["PUT /boot-source"]["kernel_image_path"] == "vmlinux"
    assert body["PUT /boot-source"]["initrd_path"] == "initramfs"
    assert body["PUT /drives/rootfs"] == {
        "drive_id": "rootfs",
        "path_on_host": "rootfs.ext4",
        "is_root_device": False,
        "is_read_only": True,
    }
    assert body["PUT /machine-config"] == {"vcpu_count": 1, "mem_size_mib": 256}
    assert body["PUT /vsock"]["guest_cid"] == 3
    assert body["PUT /actions"] == {"action_type": "InstanceStart"}


def test_full_cycle_boot_snapshot_load_execute_shutdown(rig: Rig) -> None:
    directory = rig.tmp / "snapshot"
    directory.mkdir()
    files = rig.backend.create_snapshot(rig.spec, directory)
    assert files.vmstate == directory / "vmstate" and files.vmstate.is_file()
    assert files.memory == directory / "mem" and files.memory.is_file()
    assert sorted(p.name for p in directory.iterdir()) == ["mem", "vmstate"]  # no temporary names left
    assert _run_folders(rig) == [], "the snapshot's VM was not cleaned up"

    sandbox = rig.backend.start(replace(rig.spec, snapshot=files))
    pid = sandbox.vm.process.pid  # type: ignore[union-attr]
    folder = sandbox.vm.folder
    reply = _execute(sandbox, "import sys; print(sum(range(10)), file=sys.stdout)")
    assert b64decode(reply["run"]["stdout"]) == b"45\n"
    sandbox.destroy()
    sandbox.destroy()  # twice is fine
    assert sandbox.state is State.DESTROYED
    assert not folder.exists()
    assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid)

    load = _saved_then_loaded(rig, "snapshot and restore must each get a fresh Firecracker process")
    assert load["mem_backend"]["backend_type"] == "File"
    assert load["resume_vm"] is True
    assert "mem_file_path" not in load  # deprecated in the spec; mem_backend replaces it


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True


def fake_jailer(rig: Rig) -> Path:
    """The jailer double; the driver prepares a jail's chroot for the jail's own uid, as root only."""
    if os.geteuid() != 0:
        pytest.skip("the driver hands a jailer's chroot to the jail's uid, which needs root")
    return write_fake_jailer(rig.tmp / "bin")


def test_through_the_jailer_every_path_is_inside_the_chroot(rig: Rig) -> None:
    jailer = fake_jailer(rig)
    settings = rig.settings.model_copy(update={"jailer_bin": jailer})
    backend = FirecrackerBackend(settings, boot_timeout=10.0, api_timeout=30.0, check_kvm=False)
    directory = rig.tmp / "snapshot"
    directory.mkdir()
    files = backend.create_snapshot(rig.spec, directory)
    sandbox = backend.start(replace(rig.spec, snapshot=files))
    try:
        assert sandbox.vm.jailed and sandbox.vm.root.is_relative_to(sandbox.vm.folder)
        assert (sandbox.vm.root / "rootfs.ext4").samefile(rig.spec.rootfs)  # hard-linked, not copied
        reply = _execute(sandbox, "print('jailed')")
        assert b64decode(reply["run"]["stdout"]) == b"jailed\n"
    finally:
        sandbox.destroy()
    # A snapshot made in a jail restores without one: its recorded paths are relative.
    direct = rig.backend.start(replace(rig.spec, snapshot=files))
    try:
        assert b64decode(_execute(direct, "print('free')")["run"]["stdout"]) == b"free\n"
    finally:
        direct.destroy()
    records = rig.records()
    _assert_all_valid(records)
    _assert_paths_relative(records)
    outside = {record["instance"] for record in records if Path(record["cwd"]).name != "root"}
    assert outside == {direct.id}  # every jailed process ran in its chroot's root
    assert _run_folders(rig) == []


def _assert_paths_relative(records: list[dict[str, Any]]) -> None:
    """Every file path handed to Firecracker is relative to its working directory (see _vm)."""
    paths = [
        value
        for record in records
        for key, value in _flatten(record["body"])
        if key.endswith(("_path", "path_on_host"))
    ]
    assert paths and all(not value.startswith("/") for value in paths), paths


def _flatten(body: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if not isinstance(body, dict):
        return [(prefix, body)]
    return [item for key, value in body.items() for item in _flatten(value, key)]


def test_fault_message_becomes_boot_failed(rig: Rig) -> None:
    rig.reconfigure(faults={"PUT /machine-config": "Invalid Memory Configuration: MemoryTooBig"})
    with pytest.raises(BootFailed, match="Invalid Memory Configuration: MemoryTooBig") as caught:
        rig.backend.start(rig.spec)
    assert "PUT /machine-config" in caught.value.message
    records = rig.records()
    _assert_all_valid(records)
    assert _steps(records) == BOOT_SEQUENCE[:3]  # it stops at the refusal
    assert records[-1]["status"] == 400
    assert _run_folders(rig) == []


def test_guest_that_never_answers_times_out(rig: Rig) -> None:
    rig.reconfigure(guest="silent")
    backend = FirecrackerBackend(rig.settings, boot_timeout=0.5, api_timeout=30.0, check_kvm=False)
    with pytest.raises(AgentTimeout, match="no agent on vsock port 1024"):
        backend.start(rig.spec)
    # Bounded from InstanceStart (the last request) by boot_timeout, plus scheduling slack.
    assert time.time() - rig.records()[-1]["at"] < 2.0
    assert _run_folders(rig) == []


def test_process_dying_is_boot_failed(rig: Rig) -> None:
    rig.reconfigure(exit_on="PUT /actions")
    with pytest.raises(BootFailed, match="exited with code 3"):
        rig.backend.start(rig.spec)
    assert _run_folders(rig) == []


def test_host_deadline_bounds_a_call(rig: Rig) -> None:
    sandbox = rig.backend.start(rig.spec)
    try:
        message: ExecuteRequest = {
            "op": "execute",
            "files": {"main.py": b64encode(b"import time; time.sleep(30)")},
            "compile": None,
            "run": [GUEST_PYTHON, "main.py"],
            "env": {},
            "stdin": "",
            "limits": {**LIMITS, "wall_seconds": 60},
            "entropy": b64encode(os.urandom(64)),
            "clock": time.time(),
        }
        started = time.monotonic()
        with pytest.raises(AgentTimeout):
            sandbox.call(message, time.monotonic() + 0.5)
        assert time.monotonic() - started < 3
        with pytest.raises(AgentError, match="no agent"):  # a late answer is never read as the next one
            sandbox.call({"op": "ping"}, time.monotonic() + 1)
    finally:
        sandbox.destroy()


def test_vm_dying_during_a_call_is_agent_error(rig: Rig) -> None:
    sandbox = rig.backend.start(rig.spec)
    try:
        sandbox.vm.kill()
        with pytest.raises(AgentError, match="microVM died"):
            _execute(sandbox, "print(1)")
    finally:
        sandbox.destroy()
    with pytest.raises(AgentError, match="destroyed"):
        _execute(sandbox, "print(1)")


def test_unusable_kvm_is_backend_unavailable(rig: Rig) -> None:
    backend = FirecrackerBackend(rig.settings)  # check_kvm: the default
    if all(probe.ok for probe in backend._kvm_probes()):
        pytest.skip("KVM is usable on this host: nothing to refuse")
    with pytest.raises(BackendUnavailable, match="KVM is not usable"):
        backend.start(rig.spec)
    assert rig.records() == []  # refused before any process started


def test_api_client_through_a_mock_transport() -> None:
    """In process, no socket: each request the client makes is checked against the spec."""
    spec = ApiSpec()
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        errors = spec.request_errors(request.method, request.url.path, body)
        assert errors == [], errors
        seen.append(f"{request.method} {request.url.path}")
        if request.url.path == "/snapshot/create":
            return httpx.Response(400, json={"fault_message": "Cannot create snapshot: not paused"})
        return httpx.Response(204)

    api = FirecrackerApi(Path("/nonexistent"), "unit", transport=httpx.MockTransport(handler))
    api.boot_source("vmlinux", "initrd", "console=ttyS0")
    api.drive("rootfs", "rootfs.ext4", read_only=True)
    api.machine_config(2, 512)
    api.vsock(3, "vsock.sock")
    api.start()
    api.pause()
    api.load_snapshot("vmstate", "mem", "vsock.sock")
    with pytest.raises(BootFailed, match="not paused"):
        api.create_snapshot("vmstate", "mem")
    assert seen == [
        "PUT /boot-source",
        "PUT /drives/rootfs",
        "PUT /machine-config",
        "PUT /vsock",
        "PUT /actions",
        "PATCH /vm",
        "PUT /snapshot/load",
        "PUT /snapshot/create",
    ]


def test_missing_binary_is_backend_unavailable(rig: Rig) -> None:
    settings = Settings(data_dir=rig.settings.data_dir, firecracker_bin=rig.tmp / "no-such-firecracker")
    with pytest.raises(BackendUnavailable, match="no-such-firecracker"):
        FirecrackerBackend(settings, check_kvm=False).start(rig.spec)
    with pytest.raises(BackendUnavailable, match="not configured"):
        FirecrackerBackend(Settings(data_dir=rig.settings.data_dir), check_kvm=False).start(rig.spec)


@pytest.mark.parametrize("jailed", [False, True])
def test_sweep_kills_leftovers_and_removes_folders(rig: Rig, jailed: bool) -> None:
    settings = rig.settings
    if jailed:
        settings = settings.model_copy(update={"jailer_bin": fake_jailer(rig)})
    sandbox = FirecrackerBackend(settings, api_timeout=30.0, check_kvm=False).start(rig.spec)
    pid = sandbox.vm.process.pid  # type: ignore[union-attr]
    # A new server process knows nothing of the old one's sandboxes.
    lines = FirecrackerBackend(settings, check_kvm=False).sweep()
    assert any(f"killed firecracker pid {pid}" in line for line in lines)
    assert _run_folders(rig) == []
    sandbox.vm.process.wait(timeout=5)  # type: ignore[union-attr]


def test_capabilities_name_the_evidence(rig: Rig) -> None:
    caps = FirecrackerBackend(rig.settings).capabilities()
    assert caps.name == "firecracker" and caps.isolation == "vm" and caps.snapshots
    assert any("--version: Firecracker v1.16.1" in line for line in caps.evidence)
    cpu = Path("/proc/cpuinfo").read_text()
    if " vmx" not in cpu and " svm" not in cpu:
        assert not caps.usable
        assert any("neither vmx nor svm" in line for line in caps.missing)
    assert any("no guest vmlinux" in line for line in caps.missing)  # data_dir has no kernels/


# -- the double itself must be able to say no ------------------------------------------


@pytest.fixture
def double(rig: Rig) -> Iterator[httpx.Client]:
    socket_path = rig.tmp / "api.sock"
    process = subprocess.Popen([str(rig.settings.firecracker_bin), "--api-sock", str(socket_path)])
    try:
        wait_for(lambda: socket_path.exists() or process.poll() is not None, "the double's API socket", seconds=10)
        assert process.poll() is None, "the double did not start"
        with httpx.Client(
            transport=httpx.HTTPTransport(uds=str(socket_path)), base_url="http://localhost"
        ) as c:
            yield c
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize(
    ("path", "body", "why"),
    [
        ("/drives/rootfs", {"drive_id": "rootfs", "path_on_host": "/x"}, "is_root_device"),  # required field
        ("/drives/rootfs", {"drive_id": "rootfs", "is_root_device": "no"}, "is not of type 'boolean'"),
        ("/machine-config", {"vcpu_count": 0, "mem_size_mib": 128}, "less than the minimum"),
        ("/vsock", {"guest_cid": 3, "uds_path": "v.sock", "cid": 3}, "Additional properties"),
        ("/actions", {"action_type": "Start"}, "is not one of"),
        ("/snapshot/create", {"snapshot_path": "s"}, "mem_file_path"),
    ],
)
def test_double_rejects_requests_that_violate_the_spec(
    double: httpx.Client, rig: Rig, path: str, body: dict[str, Any], why: str
) -> None:
    response = double.put(path, json=body)
    assert response.status_code == 400
    assert why in response.json()["fault_message"]
    (record,) = rig.records()
    assert record["errors"] and why in " ".join(record["errors"])


def test_double_rejects_unknown_paths_and_models_state(double: httpx.Client, rig: Rig) -> None:
    assert double.put("/no-such-thing", json={}).status_code == 400
    assert (
        double.patch("/vm", json={"state": "Paused"})
        .json()["fault_message"]
        .startswith("The requested operation is not supported before starting")
    )
    # The spec's Logger level "Off" must stay a string when the spec is loaded.
    assert double.put("/logger", json={"level": "Off"}).status_code == 204
    assert double.put("/actions", json={"action_type": "InstanceStart"}).json()["fault_message"] == (
        "Cannot start microvm without kernel configuration."
    )
    info = double.get("/").json()
    assert info["state"] == "Not started"


def test_spec_copy_is_the_published_one() -> None:
    import hashlib

    spec = Path(__file__).resolve().parents[1] / "reference" / "firecracker-api.yaml"
    assert hashlib.sha256(spec.read_bytes()).hexdigest() == (
        "a514abec7b29700c5ca8bdaebbb960e4ffb46fe1fd4869094c6c63630a6fa41c"
    )
    loaded = ApiSpec(spec)
    assert loaded.version == "1.16.1"
    logger = loaded.document["definitions"]["Logger"]["properties"]["level"]["enum"]
    assert "Off" in logger


def test_a_session_over_vsock_keeps_names_streams_and_guards_its_files(rig: Rig) -> None:
    """Sessions on Firecracker: the session, cell, file and interrupt frames over the vsock
    channel, to a real agent and its python kernel."""
    sandbox = rig.backend.start(rig.spec)
    try:
        sandbox.call({"op": "session", "kernel": "python", "source": "main.py", "compile": None,
                      "run": [GUEST_PYTHON, "main.py"], "env": {"PATH": "/usr/bin:/bin"}, "limits": LIMITS,
                      "entropy": "", "clock": time.time()}, time.monotonic() + 20)
        heard: list[tuple[str, bytes]] = []
        listener = Listener(lambda stream, data: heard.append((stream, data)))
        first = sandbox.call({"op": "cell", "code": "x = 41\nprint('streamed')\nx", "stdin": "", "wall_seconds": 10,
                              "stream": True}, time.monotonic() + 20, listener)
        assert first["op"] == "cell" and first["results"] == [{"type": "text", "text": "41"}]
        assert b"".join(data for stream, data in heard if stream == "stdout") == b"streamed\n"
        put = sandbox.call({"op": "file_put", "path": "d/f.bin", "data": b64encode(b"\x00\x01"), "offset": 0},
                           time.monotonic() + 20)
        assert put["op"] == "file_put" and put["size"] == 2
        second = sandbox.call({"op": "cell", "code": "import os\nprint(x + 1, open('d/f.bin', 'rb').read())\n"
                               "print(os.getcwd())", "stdin": "", "wall_seconds": 10, "stream": False},
                              time.monotonic() + 20)
        assert second["op"] == "cell" and second["run"] is not None
        answer, work = b64decode(second["run"]["stdout"]).decode().splitlines()
        assert answer == "42 b'\\x00\\x01'"
        (Path(work) / "p").symlink_to("/etc/passwd")  # as a program would plant it (the double's folder is root's)
        with pytest.raises(InvalidRequest):
            sandbox.call({"op": "file_get", "path": "p", "offset": 0, "length": 100}, time.monotonic() + 20)
        cancelled = Listener(lambda stream, data: None)
        cancelled.cancel.set()  # the client went away: the cell is interrupted, the names stay
        stopped = sandbox.call({"op": "cell", "code": "import time\ntime.sleep(60)", "stdin": "", "wall_seconds": 30,
                                "stream": True}, time.monotonic() + 20, cancelled)
        assert stopped["op"] == "cell" and stopped["reset"] is False and stopped["run"] is not None
        assert b"KeyboardInterrupt" in b64decode(stopped["run"]["stderr"])
    finally:
        sandbox.destroy()
    _assert_all_valid(rig.records())


def test_a_paused_sandbox_is_a_full_snapshot_loaded_again_on_resume(rig: Rig) -> None:
    """Pause: PATCH /vm Paused, PUT /snapshot/create (Full) into the given folder, the process
    gone; resume: a fresh process that loads it with resume_vm and answers the agent. (The
    double holds no guest memory, so the names a cell defined are not what it can show: the
    QEMU tests check those.)"""
    sandbox = rig.backend.start(rig.spec)
    pid = sandbox.vm.process.pid  # type: ignore[union-attr]
    saved = rig.tmp / "paused"
    saved.mkdir()
    sandbox.pause(saved)
    assert sandbox.state is State.DESTROYED
    assert sorted(p.name for p in saved.iterdir()) == ["mem", "vmstate"]
    assert _run_folders(rig) == [], "the paused VM's run folder is left"
    assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid)

    resumed = rig.backend.resume(rig.spec, saved)
    try:
        assert b64decode(_execute(resumed, "print(6 * 7)")["run"]["stdout"]) == b"42\n"
    finally:
        resumed.destroy()
    assert saved.is_dir(), "resume leaves the saved folder to its owner"

    assert _saved_then_loaded(rig, "the resumed sandbox must be a fresh Firecracker process")["resume_vm"] is True


def test_a_sandbox_busy_in_a_call_cannot_pause(rig: Rig) -> None:
    sandbox = rig.backend.start(rig.spec)
    try:
        sandbox.state = State.RUNNING  # as during a call
        with pytest.raises(AgentError, match="only a ready sandbox"):
            sandbox.pause(rig.tmp)
        sandbox.state = State.READY
        assert _execute(sandbox, "print(1)")["run"]["exit_code"] == 0, "a refused pause touched the sandbox"
    finally:
        sandbox.destroy()
