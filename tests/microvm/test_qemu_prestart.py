"""A clone the pool starts ahead also starts its next program's interpreter, which waits
on a FIFO at the program's path (see ``guest/_prestart.py``). The program it is then
given cannot tell it from a fresh start: these tests run the same probe in a fresh clone
and in prestarted ones and compare everything a program can see of its own start, with
limits other than those it was started under. What does not match what was started (a
stdin, another argv) runs the usual way, in a VM put back as it was."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import time
from typing import Any

import pytest
from conftest import Sandboxes

from infra_operator.backends.base import SandboxSpec, Warmup
from infra_operator.backends.qemu import QemuSandbox
from infra_operator.guest.messages import StepLimits

from .conftest import execute_message, open_session, run_cell, run_decoded

pytestmark = pytest.mark.slow

# Not the warm-up's limits (the backend's) nor the defaults: the hand-over must apply them.
PROBE_LIMITS: StepLimits = {
    "wall_seconds": 30,
    "cpu_seconds": 7,
    "memory_bytes": 100 << 20,
    "processes": 50,
    "output_bytes": 1 << 16,
    "file_bytes": 3 << 20,
}

PROBE = """
import hashlib, json, os, resource, stat, sys
cgroup = open('/proc/self/cgroup').read().strip().split('::')[-1]
def cgroup_file(name):
    return open(f'/sys/fs/cgroup{cgroup}/{name}').read().strip()
source = os.stat(__file__)
uptime = float(open('/proc/uptime').read().split()[0])
started = int(open('/proc/self/stat').read().rsplit(')', 1)[1].split()[19]) / os.sysconf('SC_CLK_TCK')
seen = {
    'argv': sys.argv, 'orig_argv': sys.orig_argv, 'file': __file__,
    'cmdline': open('/proc/self/cmdline', 'rb').read().decode(),
    'work': sorted(os.listdir('/work')), 'source_is_file': stat.S_ISREG(source.st_mode),
    'source_mode': oct(source.st_mode), 'source_owner': [source.st_uid, source.st_gid],
    'source_sha256': hashlib.sha256(open(__file__, 'rb').read()).hexdigest(),
    'fds': sorted(os.listdir('/proc/self/fd')), 'stdin': oct(os.fstat(0).st_mode),
    'pid': os.getpid(), 'ppid': os.getppid(), 'ids': [os.getuid(), os.getgid(), os.getgroups()],
    'cgroup': cgroup, 'memory_max': cgroup_file('memory.max'), 'pids_max': cgroup_file('pids.max'),
    'rlimits': {name: resource.getrlimit(getattr(resource, name)) for name in (
        'RLIMIT_CPU', 'RLIMIT_FSIZE', 'RLIMIT_NPROC', 'RLIMIT_CORE', 'RLIMIT_NOFILE', 'RLIMIT_SIGPENDING',
        'RLIMIT_MSGQUEUE', 'RLIMIT_AS', 'RLIMIT_STACK')},
    'env': dict(os.environ), 'path': sys.path, 'flags': str(sys.flags),
    'modules': sorted(sys.modules), 'main': sorted(vars(sys.modules['__main__'])),
    'session': [os.getsid(0), os.getpgrp()], 'umask': os.umask(0o22),
    'seccomp': [line for line in open('/proc/self/status') if line.startswith(('Seccomp', 'NoNewPrivs', 'Cap'))],
    'age': uptime - started,
}
print(json.dumps(seen))
"""

FAILING = "def inner():\n    raise ValueError('from the program')\n\ninner()\n"
WAIT_SECONDS = 3
"""How long a clone waits before it is used: a program started ahead is older than this."""


def prestarting(spec: SandboxSpec) -> SandboxSpec:
    """The spec whose warm-up prestarts exactly what ``execute_message`` asks to run."""
    message = execute_message("")
    return dataclasses.replace(spec, warmup=Warmup(
        files=(("main.py", base64.b64encode(b"print('warm')").decode()),),
        compile=None,
        run=tuple(message["run"]),
        env=tuple(sorted(message["env"].items())),
        prestart="main.py",
    ))


def probe(sandbox: QemuSandbox, **fields: Any) -> dict[str, Any]:
    message = execute_message(PROBE)
    message.update({"limits": PROBE_LIMITS, **fields})  # type: ignore[typeddict-item]
    result = run_decoded(sandbox, message)
    assert result["exit_code"] == 0, result["stderr_text"]
    seen: dict[str, Any] = json.loads(result["stdout_text"])
    return seen


def without_age(seen: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in seen.items() if key != "age"}


def test_a_prestarted_program_cannot_tell_it_was_started_ahead(
    sandboxes: Sandboxes[QemuSandbox], restore_spec: SandboxSpec
) -> None:
    spec = prestarting(restore_spec)
    fresh = sandboxes.start(spec)  # a request's own start: neither warmed nor prestarted
    assert not fresh.prestarted
    ahead = [sandboxes.start(spec, ahead=True) for _ in range(2)]
    assert all(sandbox.prestarted for sandbox in ahead), "the pool's clones did not prestart their program"
    time.sleep(WAIT_SECONDS)
    baseline, *others = [probe(sandbox) for sandbox in (fresh, *ahead)]
    assert baseline["source_is_file"], baseline
    assert baseline["source_sha256"] == hashlib.sha256(PROBE.encode()).hexdigest(), baseline
    assert baseline["memory_max"] == str(100 << 20) and baseline["pids_max"] == "50", baseline
    for seen in others:
        assert without_age(seen) == without_age(baseline)
        # What does differ, and shows the interpreter was indeed started ahead: its start time.
        assert seen["age"] > WAIT_SECONDS, f"started {seen['age']:.2f} s before it looked: not ahead"


def test_a_prestarted_programs_failure_reads_as_a_fresh_ones(
    sandboxes: Sandboxes[QemuSandbox], restore_spec: SandboxSpec
) -> None:
    spec = prestarting(restore_spec)
    fresh, ahead = sandboxes.start(spec), sandboxes.start(spec, ahead=True)
    assert ahead.prestarted
    results = [run_decoded(sandbox, execute_message(FAILING)) for sandbox in (fresh, ahead)]
    assert [r["exit_code"] for r in results] == [1, 1]
    assert results[1]["stderr_text"] == results[0]["stderr_text"]
    assert 'File "/work/main.py", line 4, in <module>' in results[0]["stderr_text"], results[0]["stderr_text"]


def test_a_prestarted_program_keeps_the_requests_cpu_limit(
    sandboxes: Sandboxes[QemuSandbox], restore_spec: SandboxSpec
) -> None:
    ahead = sandboxes.start(prestarting(restore_spec), ahead=True)
    assert ahead.prestarted
    message = execute_message("while True:\n    pass\n")
    message["limits"] = {**PROBE_LIMITS, "cpu_seconds": 1}
    result = run_decoded(ahead, message)
    assert (result["signal"], result["timed_out"]) == ("SIGXCPU", False), result


def test_a_program_larger_than_a_pipe_holds_arrives_whole(
    sandboxes: Sandboxes[QemuSandbox], restore_spec: SandboxSpec
) -> None:
    ahead = sandboxes.start(prestarting(restore_spec), ahead=True)
    assert ahead.prestarted
    padding = "".join(f"# line {n} of padding, to pass the FIFO's 64 KiB\n" for n in range(6000))
    result = run_decoded(ahead, execute_message(padding + "print(len(open(__file__).read()))\n"))
    assert result["exit_code"] == 0, result["stderr_text"]
    assert int(result["stdout_text"]) == len(padding) + len("print(len(open(__file__).read()))\n")


@pytest.mark.parametrize("differs", ["stdin", "argv"])
def test_an_execution_that_asks_for_something_else_runs_in_a_vm_put_back(
    sandboxes: Sandboxes[QemuSandbox], restore_spec: SandboxSpec, differs: str
) -> None:
    spec = prestarting(restore_spec)
    fresh, ahead = sandboxes.start(spec), sandboxes.start(spec, ahead=True)
    assert ahead.prestarted
    fields: dict[str, Any] = ({"stdin": base64.b64encode(b"given").decode()} if differs == "stdin"
                              else {"run": ["/usr/bin/python3", "main.py", "an-argument"]})
    time.sleep(WAIT_SECONDS)
    baseline, seen = probe(fresh, **fields), probe(ahead, **fields)
    assert without_age(seen) == without_age(baseline)
    assert seen["age"] < WAIT_SECONDS, "the prestarted interpreter ran a program it was not started for"


def test_a_session_opened_in_a_prestarted_clone_starts_from_a_clean_vm(
    sandboxes: Sandboxes[QemuSandbox], restore_spec: SandboxSpec
) -> None:
    ahead = sandboxes.start(prestarting(restore_spec), ahead=True)
    assert ahead.prestarted
    open_session(ahead)
    # The waiting interpreter is gone, and the FIFO with it: only the session's kernel and the agent.
    seen = json.loads(run_cell(ahead, "import json, os\nprint(json.dumps({'work': sorted(os.listdir('/work')), "
                                      "'processes': sorted(p for p in os.listdir('/proc') if p.isdigit() "
                                      "and open(f'/proc/{p}/cmdline', 'rb').read())}))"))
    assert "main.py" not in seen["work"], seen
    assert len(seen["processes"]) == 2, seen
