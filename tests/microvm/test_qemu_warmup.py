"""A clone the pool starts ahead is warmed (a throwaway run, so TCG has translated the
interpreter), and then cannot be told from a clone nothing ran in: same files, no process
but the agent, the same next pid and cgroup name, its own random state, a current clock.

The warm-up here is deliberately messy (files in every scratch folder, a folder, a link,
a process left running), so each guarantee is shown to be kept, not just not needed."""

from __future__ import annotations

import base64
import dataclasses
import json
import time

import pytest
from conftest import Sandboxes

from infra_operator.backends.base import SandboxSpec, Warmup
from infra_operator.backends.qemu import QemuSandbox

from .conftest import run_python

pytestmark = pytest.mark.slow

MESSY_WARMUP = """
import os, subprocess
for folder in ('/work', '/tmp', '/dev/shm'):
    os.makedirs(f'{folder}/left/deeper', exist_ok=True)
    open(f'{folder}/left/deeper/secret', 'w').write('warm-up')
    open(f'{folder}/.hidden', 'w').write('warm-up')
os.symlink('/etc/passwd', '/tmp/link')
os.chmod('/work/left', 0)
subprocess.Popen(['sleep', '300'], start_new_session=True)
print('warmed')
"""

PROBE = """
import json, os, time
def user_processes():
    found = {}
    for name in os.listdir('/proc'):
        if name.isdigit():
            try:
                command = open(f'/proc/{name}/cmdline', 'rb').read().split(b'\\0')[0].decode()
            except OSError:
                continue
            if command:  # kernel threads have none
                found[name] = command
    return found
print(json.dumps({
    'work': sorted(os.listdir('/work')), 'tmp': sorted(os.listdir('/tmp')), 'shm': sorted(os.listdir('/dev/shm')),
    'tmp_mtime': os.stat('/tmp').st_mtime_ns, 'shm_mtime': os.stat('/dev/shm').st_mtime_ns,
    'processes': user_processes(), 'pid': os.getpid(), 'cgroup': open('/proc/self/cgroup').read(),
    'random': os.urandom(16).hex(), 'clock': time.time(),
}))
"""


def messy(spec: SandboxSpec) -> SandboxSpec:
    return dataclasses.replace(spec, warmup=Warmup(
        files=(("main.py", base64.b64encode(MESSY_WARMUP.encode()).decode()),),
        compile=None,
        run=("/usr/bin/python3", "-u", "main.py"),
        env=(("PATH", "/usr/bin:/bin"),),
    ))


def probe(sandbox: QemuSandbox) -> dict[str, object]:
    before = time.time()
    result = run_python(sandbox, PROBE)
    after = time.time()
    assert result["exit_code"] == 0, result
    seen: dict[str, object] = json.loads(result["stdout_text"])
    clock = seen["clock"]
    # Read during the call: between the host's clock before it and after it (a second of slack).
    assert isinstance(clock, float)
    assert before - 1 <= clock <= after + 1, f"the clock is not current: {clock - before:.1f} s off"
    return seen


def test_a_warmed_clone_cannot_be_told_from_a_fresh_one(
    sandboxes: Sandboxes[QemuSandbox], restore_spec: SandboxSpec
) -> None:
    spec = messy(restore_spec)
    fresh = sandboxes.start(spec)  # not ahead: a request's own start is never warmed
    assert fresh.warmup_ms is None
    warmed = [sandboxes.start(spec, ahead=True) for _ in range(2)]
    for sandbox in warmed:
        assert sandbox.warmup_ms is not None and sandbox.warmup_ms > 0, "the pool's clone was not warmed"
        print(f"warm-up took {sandbox.warmup_ms:.0f} ms")
    time.sleep(2)  # a clock set only at restore or warm-up would now lag
    baseline, *others = [probe(sandbox) for sandbox in (fresh, *warmed)]
    assert baseline["processes"] == {"1": "/usr/bin/python3", str(baseline["pid"]): "/usr/bin/python3"}, baseline
    for seen in others:
        assert (seen["work"], seen["tmp"], seen["shm"]) == (["main.py"], [], []), seen
        # The sleep the warm-up left is gone: only the agent and the probe itself.
        assert seen["processes"] == {"1": "/usr/bin/python3", str(seen["pid"]): "/usr/bin/python3"}, seen
        for same in ("pid", "cgroup", "tmp_mtime", "shm_mtime"):
            assert seen[same] == baseline[same], f"{same} tells a warmed clone from a fresh one"
    randoms = [seen["random"] for seen in (baseline, *others)]
    assert len(set(randoms)) == 3, "clones share random state"


def test_without_a_warmup_or_ahead_nothing_is_run(
    sandboxes: Sandboxes[QemuSandbox], restore_spec: SandboxSpec
) -> None:
    assert restore_spec.warmup is None
    assert sandboxes.start(restore_spec, ahead=True).warmup_ms is None
