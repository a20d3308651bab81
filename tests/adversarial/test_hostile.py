"""Hostile programs through the HTTP API of the real server, once per backend.

Each case is a program that tries to escape, exhaust or outlive its sandbox. A case
is contained when its answer is a clean result that says what happened, the next
ordinary request is answered correctly, and nothing of it is left on the host. The
summary line per backend (cases ran, contained, what leaked) is printed at the end
of the run. A backend the host cannot run (per /health) is skipped, saying why.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from conftest import ADVERSARIAL, Server, require_images, wait_for
from hostcheck import Footprint, cmdline, descendants, host_uid, processes_with, settled_leaks

BACKENDS = ("jail", "qemu")
Body = dict[str, Any]


@dataclass
class Context:
    client: httpx.Client
    backend: str
    port: int
    host_address: str
    unix_socket: str
    """The name of an abstract unix socket a host process listens on."""
    token: str
    secret_file: Path
    secret: str

    @property
    def token_digits(self) -> str:
        """The token as digits, for places that take only a number (a sleep's duration)."""
        return str(int(self.token, 16))[:9]

    def run(self, code: str, **extra: object) -> Body:
        response = self.client.post(
            "/api/v1/execute", json={"language": "python", "code": code, "backend": self.backend, **extra}
        )
        assert response.status_code == 200, response.text
        body: Body = response.json()
        return body


@dataclass(frozen=True)
class Case:
    name: str
    code: Callable[[Context], str]
    check: Callable[[Body, Context], str]
    """Returns "" when the answer shows the program contained, else what went wrong."""
    extra: dict[str, object] = field(default_factory=dict)


def _expect(condition: bool, problem: str) -> str:
    return "" if condition else problem


def _flags(body: Body) -> str:
    keys = ("exit_code", "signal", "timed_out", "oom_killed", "stdout_truncated", "output_limit_exceeded")
    return json.dumps({key: body.get(key) for key in keys})


def _markers_absent(body: Body, ctx: Context) -> str:
    # The case wrote markers everywhere writable; a fresh sandbox must see none.
    look = ctx.run(f"""
import os
for d in ('/work', '/tmp', '/dev/shm', os.environ.get('HOME', '/tmp'), '/var/tmp'):
    try:
        names = os.listdir(d)
    except OSError:
        continue
    for name in names:
        if '{ctx.token}' in name:
            print('FOUND', d, name)
print('done')
""")
    return _expect(look["stdout"] == "done\n", f"marker seen by the next execution: {look['stdout']!r}")


def _no_token_process(body: Body, ctx: Context) -> str:
    deadline = time.monotonic() + 2
    while processes_with(ctx.token) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = processes_with(ctx.token)
    return _expect(
        body["exit_code"] == 0 and not left,
        f"background process outlived the answer: pids {left}, uid {[host_uid(p) for p in left]}",
    )


# Each process is smaller than the agent, so an OOM killer left to itself may pick the agent.
MANY_SMALL_ALLOCATIONS = """
import os, time
for _ in range(40):
    if os.fork() == 0:
        try:
            block = bytearray(2 << 20)
            block[::4096] = b'y' * len(block[::4096])
        except MemoryError:
            pass
        time.sleep(5)
        os._exit(0)
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
"""

CASES = [
    Case(
        "busy_loop_past_timeout",
        lambda c: "while True:\n    pass\n",
        lambda b, c: _expect(
            b["timed_out"] or b["signal"] in ("SIGXCPU", "SIGKILL"), f"not stopped: {_flags(b)}"
        ),
        {"timeout": 2},
    ),
    Case(
        "sleep_past_timeout",
        lambda c: "import time\nprint('start', flush=True)\ntime.sleep(120)\n",
        lambda b, c: _expect(b["timed_out"] and b["stdout"] == "start\n", f"not timed out: {_flags(b)}"),
        {"timeout": 2},
    ),
    Case(
        "fork_bomb",
        lambda c: "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
        lambda b, c: _expect(
            b["timed_out"] or b["exit_code"] != 0, f"fork bomb ended as a success: {_flags(b)}"
        ),
        {"timeout": 4, "processes": 32},
    ),
    Case(
        "memory_bomb",
        lambda c: "blocks = []\nwhile True:\n    blocks.append(bytearray(8 << 20))\n",
        lambda b, c: _expect(b["oom_killed"] and b["exit_code"] != 0, f"not OOM-killed: {_flags(b)}"),
        {"timeout": 20, "memory_mb": 64},
    ),
    Case(
        "memory_bomb_of_many_small_processes",
        lambda c: MANY_SMALL_ALLOCATIONS,
        # Where cgroups can kill a group whole (v2, and inside a VM) the program dies; on a cgroup
        # v1 host the OOM killer takes processes one by one and a parent that outlives its
        # children may exit 0: either way the bound held and the result says so.
        lambda b, c: _expect(b["oom_killed"], f"not OOM-killed: {_flags(b)}"),
        {"timeout": 20, "memory_mb": 48},
    ),
    Case(
        "output_flood",
        lambda c: "import sys\nwhile True:\n    sys.stdout.write('A' * 65536)\n",
        lambda b, c: _expect(
            b["output_limit_exceeded"] and b["stdout_truncated"] and len(b["stdout"]) <= 16 * 1024,
            f"flood not capped: {_flags(b)}, {len(b['stdout'])} chars kept",
        ),
        {"timeout": 10, "output_kb": 16},
    ),
    Case(
        "connect_to_api_port",
        lambda c: (
            f"""
import socket
for host in ('127.0.0.1', '{c.host_address}', 'localhost'):
    try:
        socket.create_connection((host, {c.port}), timeout=2).close()
        print('CONNECTED', host)
    except OSError as exc:
        print('refused', host, type(exc).__name__)
"""
        ),
        lambda b, c: _expect(
            "CONNECTED" not in b["stdout"] and b["stdout"].count("refused") == 3,
            f"reached the API: {b['stdout']!r}",
        ),
        {"timeout": 10},
    ),
    Case(
        "connect_to_host_unix_socket",
        lambda c: (
            f"""
import socket
probe = socket.socket(socket.AF_UNIX)
try:
    probe.connect('\\0{c.unix_socket}')
    print('CONNECTED')
except OSError as exc:
    print('refused', type(exc).__name__)
"""
        ),
        lambda b, c: _expect(b["stdout"].startswith("refused"), f"reached a host socket: {b['stdout']!r}"),
    ),
    Case(
        "read_host_file",
        lambda c: (
            f"""
import os
try:
    print(open('{c.secret_file}').read())
except OSError as exc:
    print('unreadable', type(exc).__name__)
for top in ('/', '/var/tmp', '/root', '/tmp'):
    for root, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if os.path.join(root, d) not in ('/proc', '/sys')]
        if '{c.secret_file.name}' in files:
            print('VISIBLE', root)
"""
        ),
        lambda b, c: _expect(
            c.secret not in b["stdout"] and "VISIBLE" not in b["stdout"] and "unreadable" in b["stdout"],
            f"host file reached: {b['stdout'][-300:]!r}",
        ),
        {"timeout": 20},
    ),
    Case(
        "write_host_paths",
        lambda c: (
            """
import os
for path in ('/etc/passwd', '/usr/bin/python3', '/opt/infra-operator/guest/agent.py', '/root/x', '/x'):
    try:
        with open(path, 'a') as handle:
            handle.write('#')
        print('WROTE', path)
    except OSError as exc:
        print('refused', path, type(exc).__name__)
for path in ('/proc/sys/kernel/printk_ratelimit', '/proc/sys/vm/drop_caches', '/proc/sysrq-trigger'):
    try:
        os.close(os.open(path, os.O_WRONLY))
        print('WROTE', path)
    except OSError as exc:
        print('refused', path, type(exc).__name__)
"""
        ),
        lambda b, c: _expect(
            "WROTE" not in b["stdout"] and b["stdout"].count("refused") == 8,
            f"wrote outside its sandbox: {b['stdout']!r}",
        ),
    ),
    Case(
        "marker_for_next_execution",
        lambda c: (
            f"""
import os
for d in ('/work', '/tmp', '/dev/shm', os.environ.get('HOME', '/tmp'), '/var/tmp'):
    try:
        with open(os.path.join(d, 'marker-{c.token}'), 'w') as handle:
            handle.write('x')
    except OSError:
        pass
"""
        ),
        _markers_absent,
    ),
    Case(
        "background_process_outlives_program",
        lambda c: (
            f"""
import os
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.closerange(0, 3)
        os.execvp('sleep', ['sleep', '300.{c.token_digits}'])
    os._exit(0)
os.wait()
print('parent done')
"""
        ),
        _no_token_process,
    ),
    Case(
        "kill_everything",
        lambda c: (
            "import os, signal\nprint('before', flush=True)\nos.kill(-1, signal.SIGKILL)\n"
            "os.kill(1, signal.SIGKILL)\nprint('survived')\n"
        ),
        lambda b, c: _expect(
            b["stdout"].startswith("before"), f"no clean answer: {b['stdout']!r} {_flags(b)}"
        ),
    ),
    Case(
        "non_utf8_output",
        lambda c: (
            "import sys\nsys.stdout.buffer.write(b'ok \\xff\\xfe end\\n')\n"
            "sys.stderr.buffer.write(b'\\xc3\\x28')\n"
        ),
        lambda b, c: _expect(
            b["stdout"] == "ok \ufffd\ufffd end\n" and "\ufffd" in b["stderr"],
            f"bytes not replaced: {b['stdout']!r} {b['stderr']!r}",
        ),
    ),
    Case(
        "stdin_at_eof",
        lambda c: "import sys\nprint(repr(sys.stdin.read()), repr(sys.stdin.buffer.read(10)))\n",
        lambda b, c: _expect(
            b["stdout"] == "'' b''\n" and not b["timed_out"], f"stdin not at EOF: {_flags(b)}"
        ),
        {"timeout": 5},
    ),
    Case(
        "fill_the_disk",
        lambda c: (
            """
import os
written = 0
try:
    for i in range(10000):
        with open(f'/work/fill-{i}', 'wb') as handle:
            handle.write(b'x' * (1 << 20))
        written += 1
except OSError as exc:
    print('stopped', type(exc).__name__, written)
"""
        ),
        lambda b, c: _expect(
            b["stdout"].startswith("stopped") and int(b["stdout"].split()[-1]) <= 8,
            f"disk not bounded: {b['stdout']!r} {_flags(b)}",
        ),
        {"timeout": 20, "file_mb": 8},
    ),
    Case(
        "huge_single_file",
        lambda c: "with open('/tmp/big', 'wb') as f:\n    f.write(b'x' * (6 << 20))\n",
        lambda b, c: _expect(
            b["exit_code"] != 0 and (b["signal"] == "SIGXFSZ" or "File too large" in b["stderr"]),
            f"file limit not applied: {_flags(b)} {b['stderr'][-200:]!r}",
        ),
        {"file_mb": 4},
    ),
]


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest, server: Server, client: httpx.Client) -> Iterator[str]:
    name: str = request.param
    health = client.get("/health").json()
    entry = next((b for b in health["backends"] if b["name"] == name), None)
    if entry is None:
        pytest.skip(f"backend {name} is not part of this build (absent from /health backends)")
    if not entry["usable"]:
        pytest.skip(f"backend {name} cannot run on this host: {'; '.join(entry['missing']) or 'not usable'}")
    require_images("python")
    ADVERSARIAL.setdefault(name, {})
    yield name


@pytest.fixture(scope="module")
def baseline(backend: str, server: Server, client: httpx.Client) -> Footprint:
    # One ordinary execution first, so lazily made shared parts (image mounts, the user
    # namespace) are in the baseline rather than counted as leaks.
    client.post("/api/v1/execute", json={"language": "python", "code": "pass", "backend": backend})
    return Footprint.of(server.process.pid)


@pytest.fixture(scope="module")
def secret_file() -> Iterator[tuple[Path, str]]:
    secret = secrets.token_hex(16)
    path = Path("/var/tmp") / f"infra-operator-secret-{secrets.token_hex(6)}"
    path.write_text(secret)
    path.chmod(0o644)  # readable by anyone on the host: only the sandbox may stop the read
    try:
        yield path, secret
    finally:
        path.unlink()


@pytest.fixture(scope="module")
def unix_socket() -> Iterator[str]:
    name = f"infra-operator-test-{secrets.token_hex(6)}"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(f"\0{name}")
        listener.listen(1)
        yield name


def _host_address() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing address
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_case_is_contained(
    case: Case,
    backend: str,
    baseline: Footprint,
    server: Server,
    client: httpx.Client,
    secret_file: tuple[Path, str],
    unix_socket: str,
) -> None:
    ctx = Context(
        client=client,
        backend=backend,
        port=urlparse(server.url).port or 80,
        host_address=_host_address(),
        unix_socket=unix_socket,
        token=secrets.token_hex(8),
        secret_file=secret_file[0],
        secret=secret_file[1],
    )
    code = case.code(ctx)
    problems = []
    response = client.post(
        "/api/v1/execute", json={"language": "python", "code": code, "backend": backend, **case.extra}
    )
    if response.status_code != 200:
        problems.append(f"answered {response.status_code}: {response.text[:300]}")
    else:
        body = response.json()  # non-UTF-8 output must still make valid JSON
        problems.append(case.check(body, ctx))
    after = ctx.run("print(2 ** 10)")
    if (after["stdout"], after["exit_code"]) != ("1024\n", 0):
        problems.append(f"the next ordinary request failed: {after}")
    problems += settled_leaks(server.process.pid, baseline)
    outcome = "; ".join(problem for problem in problems if problem)
    ADVERSARIAL[backend][case.name] = outcome
    assert not outcome


def test_nothing_remains_after_the_suite(backend: str, baseline: Footprint, server: Server) -> None:
    leaks = settled_leaks(server.process.pid, baseline)
    ADVERSARIAL[backend]["nothing_remains_after_the_suite"] = "; ".join(leaks)
    assert not leaks
    assert not list((Path("/var/tmp")).glob("marker-*")), "a marker reached the host's /var/tmp"


def test_host_sees_sandboxed_code_as_uid_65534(backend: str, client: httpx.Client) -> None:
    """The uid check is made from the host: a namespaced 65534 that is really host root is not contained."""
    if backend != "jail":
        pytest.skip(f"backend {backend}: sandboxed processes run inside a VM, not visible on the host")
    digits = str(secrets.randbelow(10**9))
    code = f"import subprocess\nsubprocess.run(['sleep', '3.{digits}'])\n"
    with httpx.Client(base_url=str(client.base_url), timeout=60) as other:
        answer: list[httpx.Response] = []
        worker = threading.Thread(
            target=lambda: answer.append(
                other.post("/api/v1/execute", json={"language": "python", "code": code, "backend": backend})
            )
        )
        worker.start()
        deadline = time.monotonic() + 20
        pids: list[int] = []
        while not pids and time.monotonic() < deadline:
            pids = processes_with(f"sleep 3.{digits}")
            time.sleep(0.02)
        uids = {pid: host_uid(pid) for pid in pids}
        worker.join()
    assert pids, "never saw the sandboxed process"
    assert set(uids.values()) == {65534}, f"host uids of the sandboxed process: {uids}"
    assert answer[0].status_code == 200
    assert os.getuid() == 0  # the check above only means something when the tests run as root


def test_concurrent_executions_cannot_see_each_other(backend: str, server: Server, client: httpx.Client) -> None:
    digits = str(secrets.randbelow(10**9))
    first = (
        f"import subprocess, time\nopen('/tmp/peer-{digits}', 'w').write('x')\nprint(time.time(), flush=True)\n"
        f"subprocess.run(['sleep', '4.{digits}'])\n"
    )
    # It looks for three seconds, so its looking overlaps the first one's sleep even when the
    # two sandboxes took a different time to start; it says when it looked (guest clocks are
    # set from the host's for each execution), so the overlap is checked, not assumed.
    looker = f"""
import os, time
seen = set()
start = now = time.time()
while now - start < 3:
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            if '{digits}' in open(f'/proc/{{pid}}/cmdline').read():
                seen.add('process ' + pid)
        except OSError:
            pass
    for d in ('/tmp', '/work', '/dev/shm'):
        seen.update(d + '/' + name for name in os.listdir(d) if '{digits}' in name)
    time.sleep(0.05)
    now = time.time()
print(sorted(seen))
print(start, now)
"""

    def first_under_way() -> bool:
        """In a jail its sleep shows on the host; a VM shows only itself, the program inside it not."""
        if backend == "jail":
            return bool(processes_with(f"sleep 4.{digits}"))
        return any(name in cmdline(pid) for pid in descendants(server.process.pid) for name in ("qemu-system", "firecracker"))

    with httpx.Client(base_url=str(client.base_url), timeout=60) as other:
        answer: list[httpx.Response] = []
        request = {"language": "python", "code": first, "backend": backend}
        worker = threading.Thread(target=lambda: answer.append(other.post("/api/v1/execute", json=request)))
        worker.start()
        try:
            wait_for(first_under_way, "the first execution")
            body = client.post(
                "/api/v1/execute", json={"language": "python", "code": looker, "backend": backend}
            ).json()
        finally:
            worker.join()
    assert answer[0].status_code == 200, answer[0].text
    slept_from = float(answer[0].json()["stdout"])
    seen, window = body["stdout"].splitlines()
    looked_from, looked_until = map(float, window.split())
    overlapped = looked_from < slept_from + 4 and slept_from < looked_until
    outcome = "" if seen == "[]" else f"saw another execution: {seen!r}"
    ADVERSARIAL[backend]["concurrent_executions_cannot_see_each_other"] = outcome
    assert overlapped, f"looked {looked_from}-{looked_until}, the other slept from {slept_from}: no overlap, no proof"
    assert not outcome
