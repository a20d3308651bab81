"""The Python SDK passes its own ruff and strict mypy configuration (clients/python/pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys

from .conftest import CLIENTS


def run(*command: str) -> None:
    done = subprocess.run([sys.executable, "-m", *command], cwd=CLIENTS / "python", capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff() -> None:
    run("ruff", "check", "--no-cache", ".")


def test_mypy_strict() -> None:
    run("mypy", "--no-incremental", "--cache-dir", "/dev/null", "src", "bench.py")
