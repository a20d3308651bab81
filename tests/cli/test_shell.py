"""``infra.operator shell``: each input a cell of one session, its output as it streams."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pytest
from conftest import DATA_DIR, require_images, wait_for


def shell(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INFRA_OPERATOR_DATA_DIR": str(DATA_DIR)}
    return subprocess.run([sys.executable, "-m", "infra_operator", "shell", *args], capture_output=True, text=True,
                          env=env, input=stdin, timeout=300)


@pytest.mark.parametrize("backend", ["jail", "qemu"])
def test_a_python_shell_keeps_names_between_inputs_and_shows_values(backend: str) -> None:
    require_images("python")
    if backend == "qemu" and not (shutil.which("qemu-system-x86_64") and (DATA_DIR / "kernels" / "kernel.json").exists()):
        print("skipping qemu: no qemu-system-x86_64 or no guest kernel")
        pytest.skip("qemu-system-x86_64 or the guest kernel (`infra.operator kernel build`) is missing")
    result = shell("--lang", "python", "--backend", backend,
                   stdin="x = 41\n:pause\nprint(x + 1)\nfor i in range(2):\n    print(i)\n\nx\n1/0\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "42\n0\n1\n41\n"
    assert "ZeroDivisionError" in result.stderr and "[exit 1]" in result.stderr and f"on {backend}" in result.stderr
    # :pause pauses a VM's session (the next cell resumes it); the jail says it cannot.
    paused = "[paused to disk; the next cell resumes it]" if backend == "qemu" else "error: the jail backend cannot pause"
    assert paused in result.stderr


def test_a_bash_shell_over_a_named_backend() -> None:
    require_images("bash")
    result = shell("--lang", "bash", "--backend", "jail", stdin="n=6\necho $((n * 7))\n")
    assert (result.returncode, result.stdout) == (0, "42\n"), result.stderr


def test_ctrl_c_interrupts_the_cell_and_the_shell_goes_on() -> None:
    require_images("python")
    env = {**os.environ, "INFRA_OPERATOR_DATA_DIR": str(DATA_DIR)}
    process = subprocess.Popen([sys.executable, "-m", "infra_operator", "shell", "--lang", "python"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env)
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write("kept = 'yes'\nimport time\nprint('sleeping', flush=True); time.sleep(120)\n")
    process.stdin.flush()
    assert process.stdout.readline() == "sleeping\n"
    process.send_signal(signal.SIGINT)
    process.stdin.write("print(kept)\n")
    process.stdin.close()
    wait_for(lambda: process.poll() is not None, "the shell to end")
    assert process.stdout.read() == "yes\n"
    assert process.returncode == 0
