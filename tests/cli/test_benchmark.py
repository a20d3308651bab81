"""``infra.operator benchmark``, run as a user runs it: a real server, real sandboxes, a
real bare baseline; small numbers of requests, and no assertion on any timing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATA_DIR, require_images


def benchmark(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INFRA_OPERATOR_DATA_DIR": str(DATA_DIR), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "infra_operator", "benchmark", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_python_over_http_writes_table_json_and_chart(tmp_path: Path) -> None:
    require_images("python")
    output = tmp_path / "bench.json"
    done = benchmark(
        "--langs",
        "python",
        "--requests",
        "4",
        "--throughput-requests",
        "4",
        "--concurrency",
        "2",
        "--output",
        str(output),
    )
    assert done.returncode == 0, done.stderr
    assert "python" in done.stdout and "p50 ratio" in done.stdout
    document = json.loads(output.read_text())
    assert document["backend"] == "jail" and document["mode"] == "HTTP"
    (result,) = document["results"]
    assert result["language"] == "python" and result["baseline"] == "host"
    assert len(result["end_to_end"]["samples"]) == 4 and len(result["bare"]["samples"]) == 4
    assert result["latency_ratio"] > 0 and result["throughput_ratio"] > 0
    assert output.with_suffix(".png").read_bytes().startswith(b"\x89PNG")


def test_a_compiled_language_in_process_uses_the_images_toolchain_as_baseline(tmp_path: Path) -> None:
    require_images("go")
    output = tmp_path / "go.json"
    done = benchmark(
        "--langs",
        "go",
        "--in-process",
        "--requests",
        "4",
        "--throughput-requests",
        "2",
        "--concurrency",
        "2",
        "--output",
        str(output),
    )
    assert done.returncode == 0, done.stderr
    (result,) = json.loads(output.read_text())["results"]
    assert result["baseline"] == "chroot"  # the host has no Go 1.19 of its own
    assert result["exec"]["p50"] > 0


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--langs", "cobol2"], 3, "language not found: cobol2"),
        (["--all", "--langs", "python"], 2, "exactly one of --langs and --all"),
        (["--langs", "python,go", "--code", "print(1)"], 2, "--code needs exactly one language"),
    ],
)
def test_bad_arguments_are_clear_errors(args: list[str], code: int, message: str) -> None:
    done = benchmark(*args)
    assert done.returncode == code
    assert message in done.stderr
    assert "Traceback" not in done.stderr
