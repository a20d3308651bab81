"""``infra.operator benchmark --backend qemu`` reports what each ready VM in the pool costs
the host: the median PSS and RSS of the pool's ready clones, and how many a 24 GiB host
holds. Run as a user runs it, over a data dir of its own with a python snapshot."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATA_DIR, require_images

pytestmark = pytest.mark.slow

READY = 3


def operator(data: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "INFRA_OPERATOR_DATA_DIR": str(data), "COLUMNS": "200",
                   "INFRA_OPERATOR_PACKAGE_CACHE_DIR": str(DATA_DIR / "cache"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "infra_operator", *args], capture_output=True, text=True,
                          env=environment, timeout=900)


def test_the_benchmark_reports_pss_per_ready_vm(tmp_path: Path) -> None:
    require_images("python")
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
    if not (DATA_DIR / "kernels" / "kernel.json").exists():
        pytest.skip(f"no guest kernel in {DATA_DIR}: run `infra.operator kernel build`")
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    for path in (DATA_DIR / "images").glob("rootfs-python.*"):  # the record and its image, either format
        os.link(path, data / "images" / path.name)
    subprocess.run(["cp", "-al", str(DATA_DIR / "kernels"), str(data / "kernels")], check=True)
    made = operator(data, "snapshot", "create", "--lang", "python", "--backend", "qemu")
    assert made.returncode == 0, made.stderr

    output = tmp_path / "bench.json"
    done = operator(data, "benchmark", "--backend", "qemu", "--langs", "python", "--requests", "4",
                    "--throughput-requests", "4", "--concurrency", "2", "--output", str(output),
                    # Unwarmed: what clones of one snapshot share, without the translated code and
                    # the pages a warm-up adds to each (pool.warm trades those for latency).
                    env={"INFRA_OPERATOR_POOL__SIZE": str(READY), "INFRA_OPERATOR_POOL__WARM": "false"})
    assert done.returncode == 0, done.stderr
    assert "PSS per ready sandbox" in done.stdout + done.stderr
    memory = json.loads(output.read_text())["ready_memory"]
    print(f"benchmark: {memory}")
    assert memory["count"] >= READY
    # Clones of one snapshot share its pages: each one's PSS is well under its RSS.
    assert memory["pss_mib"] < 0.6 * memory["rss_mib"]
    assert memory["per_host"] == math.floor(24 * 1024 / memory["pss_mib"])
