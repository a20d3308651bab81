"""Runs a program bare, for the benchmark's baseline: no namespaces, no cgroup, no limits,
no agent. Standard library only: it runs on Debian's /usr/bin/python3, not the venv.

Started once per language (under ``unshare --mount`` when it chroots, so its mounts
are private and vanish with it), it reads one JSON request per line on stdin:
``{"requests": N, "concurrency": C}``, runs the steps N times across C workers and
answers one JSON line: each run's milliseconds, the wall time, the first run's output.

Its configuration is argv[1], JSON: ``image`` (an ext4 rootfs to chroot into, or null
for the host), ``steps`` (argvs run in order in a fresh work folder), ``files``, ``env``.
Each worker gets its own work and tmp folder, emptied after each run (untimed), so each
run starts as cold as a fresh sandbox: no compiler cache survives from the last one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any


def _mount(image: str, root: str) -> None:
    subprocess.run(["mount", "-o", "loop,ro,noload", image, root], check=True)
    for place, how in (
        ("tmp", ["-t", "tmpfs", "tmpfs"]),
        ("work", ["-t", "tmpfs", "tmpfs"]),
        ("proc", ["-t", "proc", "proc"]),
        ("dev", ["--rbind", "/dev"]),
    ):
        subprocess.run(["mount", *how, os.path.join(root, place)], check=True)


class Worker:
    def __init__(self, config: dict[str, Any], root: str, scratch: str, index: int) -> None:
        self.root = root
        # Paths as the program sees them (inside the chroot, or on the host).
        self.work = os.path.join(scratch if root == "/" else "/work", f"w{index}")
        self.tmp = os.path.join(scratch if root == "/" else "/tmp", f"t{index}")
        self.env = {
            key: value.replace("/tmp", self.tmp, 1) if value.startswith("/tmp") else value
            for key, value in config["env"].items()
        }
        self.env.update({"HOME": self.tmp, "TMPDIR": self.tmp})
        self.steps: list[list[str]] = config["steps"]
        self.files: dict[str, str] = config["files"]

    def _host(self, path: str) -> str:
        return path if self.root == "/" else os.path.join(self.root, path.lstrip("/"))

    def _preexec(self) -> None:
        os.chroot(self.root)
        os.chdir(self.work)

    def once(self) -> tuple[float, str]:
        for folder in (self.work, self.tmp):
            os.makedirs(self._host(folder), exist_ok=True)
        for name, content in self.files.items():
            with open(os.path.join(self._host(self.work), name), "w") as handle:
                handle.write(content)
        output = ""
        started = time.perf_counter()
        for argv in self.steps:
            # A session of its own, as each sandbox has: with the kernel's autogroup scheduling
            # the CPU is shared between sessions, and a shared one would starve the baseline.
            if self.root == "/":
                done = subprocess.run(argv, cwd=self.work, env=self.env, capture_output=True,
                                      start_new_session=True)
            else:
                done = subprocess.run(argv, env=self.env, capture_output=True, preexec_fn=self._preexec,
                                      start_new_session=True)
            output = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
            if done.returncode != 0:
                break
        elapsed = (time.perf_counter() - started) * 1000
        for folder in (self.work, self.tmp):
            shutil.rmtree(self._host(folder), ignore_errors=True)
        return elapsed, output


def serve(config: dict[str, Any], scratch: str) -> None:
    root = "/"
    if config.get("image"):
        root = os.path.join(scratch, "root")
        os.mkdir(root)
        _mount(config["image"], root)
    try:
        _answer(config, root, scratch)
    finally:
        if root != "/":
            subprocess.run(["umount", "-R", "-l", root], check=False)


def _answer(config: dict[str, Any], root: str, scratch: str) -> None:
    for line in sys.stdin:
        request = json.loads(line)
        workers = [Worker(config, root, scratch, index) for index in range(request["concurrency"])]
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
