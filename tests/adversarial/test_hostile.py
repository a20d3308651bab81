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
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from conftest import ADVERSARIAL, Server, require_images, wait_for
from hostcheck import Footprint, cmdline, descendants, host_uid, processes_with, settled_leaks
from sessionkit import cell, raw_request, session

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
        {"timeout": 5},  # time for python to start in a TCG VM on a busy host and print first
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


# What a security review found (issue 17), one case each where one execution shows it.

SOCKET_FAMILIES = """
import errno, socket
for name, family, kind, protocol in (
        ("vsock", 40, socket.SOCK_STREAM, 0), ("packet", 17, socket.SOCK_RAW, 0),
        ("alg", 38, socket.SOCK_SEQPACKET, 0), ("netlink_uevent", 16, socket.SOCK_DGRAM, 15),
        ("unix", 1, socket.SOCK_STREAM, 0), ("inet", 2, socket.SOCK_STREAM, 0),
        ("inet6", 10, socket.SOCK_STREAM, 0), ("netlink_route", 16, socket.SOCK_DGRAM, 0)):
    try:
        socket.socket(family, kind, protocol).close()
        print(name, "created")
    except OSError as exc:
        print(name, errno.errorcode.get(exc.errno, exc.errno))
"""
SOCKETS_EXPECTED = ("vsock EAFNOSUPPORT\npacket EAFNOSUPPORT\nalg EAFNOSUPPORT\nnetlink_uevent EAFNOSUPPORT\n"
                    "unix created\ninet created\ninet6 created\nnetlink_route created\n")

# As many POSIX message queues and queued real-time signals as the kernel gives one program.
HOARD = """
import ctypes, errno, os, signal
libc = ctypes.CDLL(None, use_errno=True)
queues = 0
while queues < 64 and libc.mq_open(f"/hoard-{queues}".encode(), os.O_CREAT | os.O_RDWR, 0o600, None) >= 0:
    queues += 1
queue_error = errno.errorcode.get(ctypes.get_errno(), "?")
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGRTMIN})
signals = 0
while signals < 200000 and libc.sigqueue(os.getpid(), signal.SIGRTMIN, ctypes.c_void_p(0)) == 0:
    signals += 1
print("queues", queues, queue_error, "signals", signals, errno.errorcode.get(ctypes.get_errno(), "?"), flush=True)
"""


def _hoard_bounded(body: Body, ctx: Context) -> str:
    words = body["stdout"].split()
    held = words[:1] == ["queues"] and int(words[1]) <= 1 and int(words[4]) <= 256
    return _expect(held, f"a program held more than its share of kernel objects: {body['stdout']!r} {body['stderr'][-300:]!r}")


WATCH_AND_LOCK = """
import ctypes, errno, fcntl, os, struct
libc = ctypes.CDLL(None, use_errno=True)
def outcome(result):
    return errno.errorcode.get(ctypes.get_errno(), "?") if result == -1 else "allowed"
print("inotify", outcome(libc.inotify_init1(0)))
print("fanotify", outcome(libc.fanotify_init(0x200, 0)))  # FAN_REPORT_FID: unprivileged since Linux 5.13
try:
    fcntl.fcntl(os.open("/etc", os.O_RDONLY), 1026, 0x1)  # F_NOTIFY, DN_ACCESS
    print("dnotify allowed")
except OSError as exc:
    print("dnotify", errno.errorcode[exc.errno])
# A lock on a file every sandbox of the image shares, held while a second process looks.
mine = os.open("/etc/hostname", os.O_RDONLY)
fcntl.flock(mine, fcntl.LOCK_SH)
fcntl.fcntl(mine, fcntl.F_SETLK, struct.pack("hhqqi", fcntl.F_RDLCK, 0, 0, 0, 0))
if os.fork() == 0:
    theirs = os.open("/etc/hostname", os.O_RDONLY)
    try:
        fcntl.flock(theirs, fcntl.LOCK_EX | fcntl.LOCK_NB)
        print("flock not seen", flush=True)
    except BlockingIOError:
        print("flock seen", flush=True)
    asked = fcntl.fcntl(theirs, fcntl.F_GETLK, struct.pack("hhqqi", fcntl.F_WRLCK, 0, 0, 0, 0))
    print("posix lock", "not seen" if struct.unpack("hhqqi", asked)[0] == fcntl.F_UNLCK else "seen", flush=True)
    os._exit(0)
os.wait()
"""
WATCH_AND_LOCK_EXPECTED = "inotify EPERM\nfanotify EPERM\ndnotify EPERM\nflock not seen\nposix lock not seen\n"

PROC_VIEW = """
import json
info = open("/proc/self/mountinfo").read().splitlines()
points = [line.split()[4] for line in info]
print(json.dumps({
    "host paths": [line for line in info if any(word in line for word in ("/run/", "/var/lib/", "agent-"))],
    "mounted over": sorted({point for point in points if points.count(point) > 1}),
    "devices and counters": {name: open(name).read()[:200] for name in ("/proc/partitions", "/proc/diskstats",
                                                                         "/proc/cmdline", "/proc/swaps", "/proc/vmstat")},
}))
"""


def _proc_hides_the_host(body: Body, ctx: Context) -> str:
    try:
        seen = json.loads(body["stdout"])
    except ValueError:
        return f"no answer: {body['stdout'][-300:]!r} {body['stderr'][-300:]!r}"
    shown = {what: found for what, found in seen.items() if (any(found.values()) if isinstance(found, dict) else found)}
    return _expect(not shown, f"/proc shows the host: {shown}")


UNKNOWN_SYSCALLS = """
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
# open_tree_attr(AT_FDCWD, "/", 0, NULL, 0) would return an O_PATH fd: harmless, but allowed only because
# it is newer than a deny list; listmount and statmount would list every mount.
for name, args in (("open_tree_attr", (467, -100, b"/", 0, 0, 0)), ("listmount", (458, 0, 0, 0, 0)),
                   ("statmount", (457, 0, 0, 0, 0)), ("lsm_list_modules", (461, 0, 0, 0)), ("nr_1000", (1000,))):
    result = libc.syscall(*[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    print(name, errno.errorcode.get(ctypes.get_errno(), "?") if result == -1 else "allowed")
"""
UNKNOWN_EXPECTED = "open_tree_attr ENOSYS\nlistmount ENOSYS\nstatmount ENOSYS\nlsm_list_modules ENOSYS\nnr_1000 ENOSYS\n"

CASES += [
    Case(
        "socket_families_beyond_ip_and_unix",
        lambda c: SOCKET_FAMILIES,
        lambda b, c: _expect(b["stdout"] == SOCKETS_EXPECTED, f"socket families: {b['stdout']!r} {b['stderr'][-300:]!r}"),
    ),
    Case("kernel_objects_beyond_a_programs_share", lambda c: HOARD, _hoard_bounded, {"timeout": 30}),
    Case(
        "watch_or_lock_shared_files",
        lambda c: WATCH_AND_LOCK,
        lambda b, c: _expect(
            b["stdout"] == WATCH_AND_LOCK_EXPECTED, f"watched or locked: {b['stdout']!r} {b['stderr'][-300:]!r}"),
    ),
    Case("proc_shows_host_paths_devices_and_counters", lambda c: PROC_VIEW, _proc_hides_the_host),
    Case(
        "syscalls_the_filter_does_not_know",
        lambda c: UNKNOWN_SYSCALLS,
        lambda b, c: _expect(b["stdout"] == UNKNOWN_EXPECTED, f"unknown calls: {b['stdout']!r} {b['stderr'][-300:]!r}"),
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


@contextmanager
def in_background(client: httpx.Client, request: Body) -> Iterator[list[httpx.Response]]:
    """``request`` posted to /api/v1/execute by another client, in a thread, while the block
    runs; the list holds its answer once the block is over."""
    with httpx.Client(base_url=str(client.base_url), timeout=60) as other:
        answer: list[httpx.Response] = []
        worker = threading.Thread(target=lambda: answer.append(other.post("/api/v1/execute", json=request)))
        worker.start()
        try:
            yield answer
        finally:
            worker.join()


def test_host_sees_sandboxed_code_as_uid_65534(backend: str, client: httpx.Client) -> None:
    """The uid check is made from the host: a namespaced 65534 that is really host root is not contained."""
    if backend != "jail":
        pytest.skip(f"backend {backend}: sandboxed processes run inside a VM, not visible on the host")
    digits = str(secrets.randbelow(10**9))
    code = f"import subprocess\nsubprocess.run(['sleep', '3.{digits}'])\n"
    with in_background(client, {"language": "python", "code": code, "backend": backend}) as answer:
        deadline = time.monotonic() + 20
        pids: list[int] = []
        while not pids and time.monotonic() < deadline:
            pids = processes_with(f"sleep 3.{digits}")
            time.sleep(0.02)
        uids = {pid: host_uid(pid) for pid in pids}
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

    with in_background(client, {"language": "python", "code": first, "backend": backend}) as answer:
        wait_for(first_under_way, "the first execution")
        body = client.post(
            "/api/v1/execute", json={"language": "python", "code": looker, "backend": backend}
        ).json()
    assert answer[0].status_code == 200, answer[0].text
    slept_from = float(answer[0].json()["stdout"])
    seen, window = body["stdout"].splitlines()
    looked_from, looked_until = map(float, window.split())
    overlapped = looked_from < slept_from + 4 and slept_from < looked_until
    outcome = "" if seen == "[]" else f"saw another execution: {seen!r}"
    ADVERSARIAL[backend]["concurrent_executions_cannot_see_each_other"] = outcome
    assert overlapped, f"looked {looked_from}-{looked_until}, the other slept from {slept_from}: no overlap, no proof"
    assert not outcome


HOST_ROOT_PROBE = """
import ctypes, errno, os, signal
libc = ctypes.CDLL(None, use_errno=True)
name = f"/infra-operator-test-{os.getpid()}".encode()
queue = libc.mq_open(name, os.O_CREAT | os.O_RDWR, 0o600, None)
print("mq_open", "ok" if queue >= 0 else errno.errorcode.get(ctypes.get_errno(), "?"))
if queue >= 0:
    libc.mq_unlink(name)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGRTMIN})
queued = libc.sigqueue(os.getpid(), signal.SIGRTMIN, ctypes.c_void_p(0))
print("sigqueue", "ok" if queued == 0 else errno.errorcode.get(ctypes.get_errno(), "?"))
"""


def test_what_a_sandbox_holds_is_not_host_roots_nor_its_neighbours(backend: str, client: httpx.Client) -> None:
    """A sandbox holding all the message queues and queued signals it can get: host root
    (here, this test's own process tree) and a second sandbox still get theirs."""
    if backend != "jail":
        pytest.skip(f"backend {backend}: each sandbox is a VM with a kernel of its own, nothing to share")
    digits = str(secrets.randbelow(10**9))
    # The hoard outlives the program as a sleep: queues stay until unlinked, pending signals survive exec.
    hold = f"{HOARD}\nos.execvp('sleep', ['sleep', '30.{digits}'])\n"
    with in_background(client, {"language": "python", "code": hold, "backend": backend, "timeout": 40}) as answer:
        try:
            wait_for(lambda: processes_with(f"sleep 30.{digits}"), "the hoarding program to hold")
            host = subprocess.run([sys.executable, "-c", HOST_ROOT_PROBE], capture_output=True, text=True, timeout=30)
            neighbour = stdout_of(client, backend, HOARD)
        finally:
            for pid in processes_with(f"sleep 30.{digits}"):
                os.kill(pid, signal.SIGKILL)
    first = answer[0].json()["stdout"]
    outcome = "" if (host.stdout, neighbour) == ("mq_open ok\nsigqueue ok\n", first) else (
        f"while a sandbox held {first!r}: host root got {host.stdout!r} {host.stderr[-200:]!r}, "
        f"a second sandbox {neighbour!r}")
    ADVERSARIAL[backend]["kernel_objects_counted_for_root_or_a_neighbour"] = outcome
    assert first.startswith("queues"), answer[0].text
    assert not outcome


def stdout_of(client: httpx.Client, backend: str, code: str) -> str:
    body = client.post("/api/v1/execute", json={"language": "python", "code": code, "backend": backend}).json()
    return str(body["stdout"])


START_UP_SECRETS = """
import ctypes
libc = ctypes.CDLL(None)
libc.getauxval.restype = ctypes.c_ulong
thread_pointer = ctypes.c_ulong()
libc.syscall(158, 0x1003, ctypes.byref(thread_pointer))  # arch_prctl(ARCH_GET_FS)
print(hash("infra-operator"), ctypes.string_at(libc.getauxval(25), 16).hex(),  # AT_RANDOM
      ctypes.string_at(thread_pointer.value + 0x28, 8).hex(),  # glibc's stack canary
      ctypes.string_at(thread_pointer.value + 0x30, 8).hex(),  # and pointer guard
      hex(ctypes.cast(libc.printf, ctypes.c_void_p).value or 0))  # where libc was mapped
"""


def shared_secrets(seen: list[list[str]]) -> list[str]:
    """Which of ``START_UP_SECRETS``' values two or more of the programs that printed ``seen`` share."""
    assert all(len(values) == 5 for values in seen), seen
    names = ("hash secret", "AT_RANDOM", "stack canary", "pointer guard", "libc address")
    return [name for index, name in enumerate(names) if len({values[index] for values in seen}) < len(seen)]


def test_each_execution_gets_fresh_start_up_secrets(backend: str, client: httpx.Client) -> None:
    """Three Python executions (each in a fork of its sandbox's agent) see three different
    hash secrets, AT_RANDOM bytes, canaries, pointer guards and layouts."""
    seen = [stdout_of(client, backend, START_UP_SECRETS).split() for _ in range(3)]
    shared = shared_secrets(seen)
    outcome = f"shared across executions: {shared}" if shared else ""
    ADVERSARIAL[backend]["fresh_start_up_secrets"] = outcome
    assert not outcome


def test_each_session_gets_fresh_start_up_secrets(backend: str, client: httpx.Client) -> None:
    """Three python sessions' kernels see three different hash secrets, AT_RANDOM bytes, canaries,
    pointer guards and layouts: in a microVM too, whose agent every clone restores from one snapshot."""
    seen = []
    for _ in range(3):
        with session(client, backend=backend) as sid:
            seen.append(cell(client, sid, START_UP_SECRETS, timeout=60)["stdout"].split())
    shared = shared_secrets(seen)
    outcome = f"shared across sessions: {shared}" if shared else ""
    ADVERSARIAL[backend]["fresh_session_start_up_secrets"] = outcome
    assert not outcome


# Sessions: a sandbox kept across calls is a bigger target. Each case leaves its session
# (and the next one) working, and nothing of it on the host once deleted.
PASSWD_LINE = "root:x:0:0"


def _session_contained(client: httpx.Client, backend: str, sid: str, problems: list[str],
                       reset: bool = False) -> None:
    # A session whose interpreter could not be stopped by an interrupt is started afresh, and its
    # answer says so (the contract): then only the names go; otherwise they must be there.
    after = cell(client, sid, "print(globals().get('kept', 'reset'))", timeout=30)
    if after["stdout"] != ("reset\n" if reset else "ok\n"):
        problems.append(f"the session's next cell failed (reset said: {reset}): {after['stdout']!r} "
                        f"{after['stderr'][-300:]!r}")
    with session(client, backend=backend) as fresh:
        clean = cell(client, fresh, "import os\nprint(sorted(os.listdir('.')), sorted(os.listdir('/tmp')))")
        if clean["stdout"] != "[] []\n":
            problems.append(f"the next session was not clean: {clean['stdout']!r}")


def _session_case(backend: str, name: str, problems: list[str]) -> None:
    outcome = "; ".join(problem for problem in problems if problem)
    ADVERSARIAL[backend][f"session_{name}"] = outcome
    assert not outcome


FORK_BOMB = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
FILL = "block = b'x' * (1 << 20)\nwith open('{path}', 'wb') as f:\n    while True:\n        f.write(block)"
SESSION_CELLS: dict[str, tuple[str, dict[str, object], Callable[[Body], bool]]] = {
    "fork_bomb": (FORK_BOMB, {"timeout": 3}, lambda body: body["timed_out"] is True),
    "fill_the_disk": (FILL.format(path="fill"), {}, lambda body: "No space left" in body["stderr"]
                      or "File too large" in body["stderr"]),
    "fill_tmp": (FILL.format(path="/tmp/fill"), {}, lambda body: body["exit_code"] == 1),
}


@pytest.mark.parametrize("name", sorted(SESSION_CELLS))
def test_session_survives_a_hostile_cell(name: str, backend: str, baseline: Footprint, server: Server,
                                         client: httpx.Client) -> None:
    code, extra, stopped = SESSION_CELLS[name]
    problems: list[str] = []
    with session(client, backend=backend, processes=32, file_mb=8) as sid:
        cell(client, sid, "kept = 'ok'")
        answer = client.post(f"/api/v1/sessions/{sid}/execute", json={"code": code, **extra})
        if answer.status_code != 200:
            problems.append(f"answered {answer.status_code}: {answer.text[:300]}")
        elif not stopped(answer.json()):
            problems.append(f"the cell was not stopped as expected: {_flags(answer.json())} {answer.text[-300:]}")
        _session_contained(client, backend, sid, problems, answer.status_code == 200 and answer.json()["reset"])
    problems += settled_leaks(server.process.pid, baseline)
    _session_case(backend, name, problems)


def test_session_background_process_does_not_outlive_its_cell(backend: str, baseline: Footprint, server: Server,
                                                              client: httpx.Client) -> None:
    token = str(secrets.randbelow(10**8))
    problems: list[str] = []
    with session(client, backend=backend) as sid:
        cell(client, sid, "kept = 'ok'")
        started = cell(client, sid, f"import subprocess\nsubprocess.Popen(['sleep', '300.{token}'])\n"
                                    f"subprocess.Popen(['setsid', 'sleep', '301.{token}'])")
        problems.append(_expect(started["exit_code"] == 0, f"the cell failed: {started['stderr'][-300:]}"))
        seen = cell(client, sid, f"import os\nfound = []\nfor pid in filter(str.isdigit, os.listdir('/proc')):\n"
                                 f"    try:\n        if '{token}' in open(f'/proc/{{pid}}/cmdline').read():\n"
                                 f"            found.append(pid)\n    except OSError:\n        pass\nprint(found)")
        problems.append(_expect(seen["stdout"] == "[]\n", f"a background process outlived its cell: {seen['stdout']}"))
        problems.append(_expect(not processes_with(token), f"seen on the host: {processes_with(token)}"))
        _session_contained(client, backend, sid, problems)
    problems += settled_leaks(server.process.pid, baseline)
    _session_case(backend, "background_process", problems)


def test_session_cannot_read_another_sessions_files(backend: str, client: httpx.Client) -> None:
    token = secrets.token_hex(8)
    problems: list[str] = []
    with session(client, backend=backend) as owner, session(client, backend=backend) as other:
        client.put(f"/api/v1/sessions/{owner}/files/secret-{token}", content=token.encode())
        cell(client, owner, f"open('/tmp/secret-{token}', 'w').write('{token}')\nkept = 'ok'")
        problems.append(_expect(client.get(f"/api/v1/sessions/{other}/files/secret-{token}").status_code == 404,
                                "another session's file was served"))
        hunt = cell(client, other, f"""
import os
found = []
for top in ('/', '/proc'):
    for root, dirs, files in os.walk(top):
        if root.startswith(('/proc/sys', '/sys')) or root.count('/') > 6:
            dirs[:] = []
        for name in files + dirs:
            if '{token}' in name:
                found.append(os.path.join(root, name))
print(found)
""", timeout=60)
        problems.append(_expect(hunt["stdout"] == "[]\n", f"another session's files were found: {hunt['stdout'][:300]}"))
        _session_contained(client, backend, owner, problems)
    _session_case(backend, "another_sessions_files", problems)


def test_session_planted_links_are_refused_by_the_api(backend: str, client: httpx.Client,
                                                      secret_file: tuple[Path, str]) -> None:
    problems: list[str] = []
    with session(client, backend=backend) as sid:
        planted = cell(client, sid, f"""
import os, errno
open('/tmp/target', 'w').write('outside the working folder')
os.symlink('/etc/passwd', 'passwd')
os.symlink('{secret_file[0]}', 'secret')
os.symlink('/tmp/target', 'target')
os.symlink('/tmp', 'tmpdir')
os.symlink('..', 'up')
os.mkdir('inside'); open('inside/real', 'w').write('real')
os.link('inside/real', 'hard-inside')
for source in ('/etc/passwd', '/tmp/target'):
    try:
        os.link(source, 'hard-' + os.path.basename(source))
        print('linked', source)
    except OSError as exc:
        print('refused', source, errno.errorcode[exc.errno])
kept = 'ok'
""")
        problems.append(_expect("linked" not in planted["stdout"], f"a hard link out was made: {planted['stdout']}"))
        for path in ("passwd", "secret", "target", "tmpdir/target", "up/etc/passwd", "tmpdir"):
            got = client.get(f"/api/v1/sessions/{sid}/files/{path}")
            problems.append(_expect(got.status_code == 400 and PASSWD_LINE not in got.text
                                    and secret_file[1] not in got.text,
                                    f"GET {path}: {got.status_code} {got.text[:200]}"))
        for path in ("target", "tmpdir/written", "up/written"):
            put = client.put(f"/api/v1/sessions/{sid}/files/{path}", content=b"through the link")
            problems.append(_expect(put.status_code == 400, f"PUT {path}: {put.status_code} {put.text[:200]}"))
        for path in ("hard-passwd", "hard-target"):
            problems.append(_expect(client.get(f"/api/v1/sessions/{sid}/files/{path}").status_code == 404,
                                    f"GET {path} served a hard link out"))
        problems.append(_expect(client.get(f"/api/v1/sessions/{sid}/files/hard-inside").content == b"real",
                                "a hard link inside the working folder is an ordinary file"))
        listed = {entry["path"] for entry in client.get(f"/api/v1/sessions/{sid}/files").json()["files"]}
        problems.append(_expect(not listed & {"passwd", "secret", "target", "tmpdir", "up"},
                                f"links were listed: {sorted(listed)}"))
        problems.append(_expect(client.delete(f"/api/v1/sessions/{sid}/files/target").status_code == 204,
                                "a link could not be deleted"))
        outside = cell(client, sid, "print(open('/tmp/target').read(), os.path.exists('target'))")
        problems.append(_expect(outside["stdout"] == "outside the working folder False\n",
                                f"the link's target changed: {outside['stdout']!r}"))
        problems.append(_expect(secret_file[0].read_text() == secret_file[1], "the host's file changed"))
        _session_contained(client, backend, sid, problems)
    _session_case(backend, "planted_links", problems)


TRAVERSALS = [
    ("../../../../etc/passwd", 400), ("..%2f..%2f..%2fetc%2fpasswd", 400), ("%2e%2e/%2e%2e/etc/passwd", 400),
    ("%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", 400), (".%2e/.%2e/etc/passwd", 400), ("..%5c..%5cetc%5cpasswd", 400),
    ("%2fetc%2fpasswd", 400), ("/etc/passwd", 400), ("a/./../../etc/passwd", 400), ("..", 400),
    ("%252e%252e%252fetc%252fpasswd", 404), ("%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd", 404),
    ("..%00/etc/passwd", 400), ("%2e%2e%2f%2e%2e%2f", 400),
]


def test_session_traversal_in_every_encoding_is_refused(backend: str, server: Server, client: httpx.Client) -> None:
    problems: list[str] = []
    with session(client, backend=backend) as sid:
        cell(client, sid, "kept = 'ok'")
        for path, expected in TRAVERSALS:
            for method, body in (("GET", None), ("PUT", b"x"), ("DELETE", None)):
                status, answer = raw_request(server.url, method, f"/api/v1/sessions/{sid}/files/{path}", body)
                # Where the decoded name is an odd but harmless one inside the folder, it is an ordinary file.
                wanted = expected if expected == 400 else {"GET": 404, "PUT": 201, "DELETE": 204}[method]
                if status != wanted or PASSWD_LINE.encode() in answer or b"Traceback" in answer:
                    problems.append(f"{method} {path}: {status} {answer[:120]!r}")
        for path in ("../escape.py", "/etc/passwd", "a/../../b"):
            executed = client.post("/api/v1/execute", json={"language": "python", "code": "1", "backend": backend,
                                                            "files": [{"path": path, "content": "x"}]})
            problems.append(_expect(executed.status_code == 400, f"execute files {path}: {executed.status_code}"))
        _session_contained(client, backend, sid, problems)
    _session_case(backend, "traversal", problems)


def test_session_uploads_past_file_mb_are_refused(backend: str, server: Server, client: httpx.Client) -> None:
    problems: list[str] = []
    with session(client, backend=backend, file_mb=1) as sid:
        cell(client, sid, "kept = 'ok'")
        status, _ = raw_request(server.url, "PUT", f"/api/v1/sessions/{sid}/files/huge", b"x",
                                {"Content-Length": str(10 << 30)})
        problems.append(_expect(status == 413, f"a declared 10 GiB upload answered {status}"))

        def endless() -> Iterator[bytes]:
            for _ in range(64):
                yield b"y" * (64 * 1024)

        chunked = client.put(f"/api/v1/sessions/{sid}/files/big", content=endless())
        problems.append(_expect(chunked.status_code == 413, f"a chunked 4 MiB upload answered {chunked.status_code}"))
        problems.append(_expect(client.get(f"/api/v1/sessions/{sid}/files").json()["files"] == [],
                                "part of a refused upload was kept"))
        _session_contained(client, backend, sid, problems)
    _session_case(backend, "uploads_past_file_mb", problems)


def test_fifty_sessions_at_concurrency_eight_leave_nothing(backend: str, baseline: Footprint, server: Server,
                                                           client: httpx.Client) -> None:
    problems: list[str] = []
    lock = threading.Lock()

    def one(index: int) -> None:
        try:
            with session(client, backend=backend) as sid:
                answer = cell(client, sid, f"print({index} * 2)", timeout=60)
                if answer["stdout"] != f"{index * 2}\n":
                    raise AssertionError(answer)
        except Exception as exc:  # recorded, so one failure names itself among fifty
            with lock:
                problems.append(f"session {index}: {exc!r}"[:300])

    pending = list(range(50))

    def drain() -> None:
        while True:
            with lock:
                if not pending:
                    return
                index = pending.pop()
            one(index)

    workers = [threading.Thread(target=drain) for _ in range(8)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    problems.append(_expect(client.get("/api/v1/sessions").json()["sessions"] == [], "sessions left open"))
    problems += settled_leaks(server.process.pid, baseline)
    _session_case(backend, "fifty_sessions", problems)
