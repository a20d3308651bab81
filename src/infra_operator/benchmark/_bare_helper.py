"""Runs a program bare, for the benchmark's baseline: no namespaces, no cgroup, no limits,
no agent; as the sandbox's uid. Standard library only: it runs on Debian's
/usr/bin/python3, not the venv.

Started once per language (under ``unshare --mount`` when it chroots, so its mounts
are private and vanish with it), it reads one JSON request per line on stdin:
``{"requests": N, "concurrency": C}``, runs the steps N times across C workers and
answers one JSON line: each run's milliseconds, the wall time, the first run's output.

Its configuration is argv[1], JSON: ``image`` (a rootfs image, ext4 or squashfs, to chroot into, or null
for the host), ``steps`` (argvs run in order in a fresh work folder), ``files``, ``env``.
Each worker gets its own work and tmp folder, emptied after each run (untimed), so each
run starts as cold as a fresh sandbox: no compiler cache survives from the last one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

SANDBOX_UID = 65534  # guest.SANDBOX_UID: this file runs without the package
_TMP_PATH = re.compile(r"(?<![\w/.])/tmp(?=/|$)")


def _mount(image: str, root: str) -> None:
    with open(image, "rb") as handle:
        squashfs = handle.read(4) == b"hsqs"  # backends.base.rootfs_format: this file runs without the package
    options = ["-t", "squashfs", "-o", "loop,ro"] if squashfs else ["-t", "ext4", "-o", "loop,ro,noload"]
    subprocess.run(["mount", *options, image, root], check=True)
    for place, how in (
        ("tmp", ["-t", "tmpfs", "-o", "mode=1777", "tmpfs"]),
        ("work", ["-t", "tmpfs", "-o", "mode=1777", "tmpfs"]),
        ("proc", ["-t", "proc", "proc"]),
        ("dev", ["--rbind", "/dev"]),
    ):
        subprocess.run(["mount", *how, os.path.join(root, place)], check=True)


class Worker:
    """One client's runs, in folders of its own under ``work_root`` and ``tmp_root``."""

    def __init__(self, config: dict[str, Any], work_root: str, tmp_root: str, index: int) -> None:
        self.work = os.path.join(work_root, f"w{index}")
        self.tmp = os.path.join(tmp_root, f"t{index}")
        # Wherever the language puts a cache under /tmp (GOCACHE, nim's --nimcache:/tmp/...),
        # this worker's own tmp folder instead, emptied after each run as a sandbox's /tmp is.
        self.env = {key: self._own_tmp(value) for key, value in config["env"].items()}
        self.env.update({"HOME": self.tmp, "TMPDIR": self.tmp})
        self.steps: list[list[str]] = [[self._own_tmp(arg) for arg in argv] for argv in config["steps"]]
        self.files: dict[str, str] = config["files"]

    def _own_tmp(self, text: str) -> str:
        return _TMP_PATH.sub(self.tmp, text)

    def once(self) -> tuple[float, str]:
        for folder in (self.work, self.tmp):
            os.makedirs(folder, exist_ok=True)
        for name, content in self.files.items():
            with open(os.path.join(self.work, name), "w") as handle:
                handle.write(content)
        output = ""
        started = time.perf_counter()
        for argv in self.steps:
            # A session of its own, as each sandbox has: with the kernel's autogroup scheduling
            # the CPU is shared between sessions, and a shared one would starve the baseline.
            # Empty stdin, as in a sandbox; never ours, which carries the requests (Gambit's gsi
            # sets its stdin non-blocking, and the next read of a shared one would fail).
            done = subprocess.run(argv, cwd=self.work, env=self.env, stdin=subprocess.DEVNULL,
                                  capture_output=True, start_new_session=True)
            output = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
            if done.returncode != 0:
                break
        elapsed = (time.perf_counter() - started) * 1000
        for folder in (self.work, self.tmp):
            shutil.rmtree(folder, ignore_errors=True)
        return elapsed, output


def serve(config: dict[str, Any], scratch: str) -> None:
    """Answer as the sandbox's uid, and in the image's tree when there is one, from a child
    that entered both once: each run is then a plain spawn (no per-run chroot or setuid,
    which would cost the baseline a full fork instead of a vfork). Programs may behave
    otherwise as root, too: Regina REXX will not look for a script in the current folder."""
    root = None
    if config.get("image"):
        root = os.path.join(scratch, "root")
        os.mkdir(root)
        _mount(config["image"], root)
    os.chmod(scratch, 0o1777)
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            if root is not None:
                os.chroot(root)
            os.setgroups([])
            os.setgid(SANDBOX_UID)
            os.setuid(SANDBOX_UID)
            _answer(config, *(("/work", "/tmp") if root is not None else (scratch, scratch)))
        except BaseException as exc:
            print(f"bare helper: {exc}", file=sys.stderr)
            code = 1
        finally:
            sys.stdout.flush()
            os._exit(code)
    os.waitpid(pid, 0)
    if root is not None:
        subprocess.run(["umount", "-R", "-l", root], check=False)


def _answer(config: dict[str, Any], work_root: str, tmp_root: str) -> None:
    for line in sys.stdin:
        request = json.loads(line)
        workers = [Worker(config, work_root, tmp_root, index) for index in range(request["concurrency"])]
        started = time.perf_counter()
        times, outputs = _round(workers, request["requests"])
        wall = time.perf_counter() - started
        answer = {"ms": times, "wall_seconds": wall, "output": outputs[0] if outputs else ""}
        print(json.dumps(answer), flush=True)


def _round(workers: list[Worker], requests: int) -> tuple[list[float], list[str]]:
    """``requests`` runs shared out among the workers, each in its own thread."""
    times: list[float] = []
    outputs: list[str] = []
    remaining = [requests]
    lock = threading.Lock()

    def loop(worker: Worker) -> None:
        while True:
            with lock:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            elapsed, output = worker.once()
            with lock:
                times.append(elapsed)
                outputs.append(output)

    threads = [threading.Thread(target=loop, args=(worker,)) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return times, outputs


if __name__ == "__main__":
    # In chroot mode the mounts live in this process's private namespace and go with it.
    with tempfile.TemporaryDirectory(prefix="infra-operator-bare-") as scratch:
        serve(json.loads(sys.argv[1]), scratch)
