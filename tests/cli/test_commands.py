"""The infra.operator command, run as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import DATA_DIR, require_images


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INFRA_OPERATOR_DATA_DIR": str(DATA_DIR)}
    return subprocess.run([sys.executable, "-m", "infra_operator", *args], capture_output=True, text=True,
                          env=env, input=stdin, timeout=300)


def test_run_prints_output_and_passes_the_exit_code() -> None:
    require_images("python")
    result = cli("run", "--lang", "python", "--code", "import sys\nprint('hello')\nsys.exit(4)")
    assert result.stdout == "hello\n"
    assert result.returncode == 4
    assert "on jail] exit 4" in result.stderr


def test_run_from_a_file(tmp_path: object) -> None:
    require_images("nodejs")
    from pathlib import Path

    source = Path(str(tmp_path)) / "main.js"
    source.write_text("console.log([1,2,3].map(x => x * 2).join(','))")
    result = cli("run", "--lang", "js", "--file", str(source))
    assert (result.stdout, result.returncode) == ("2,4,6\n", 0)


def test_errors_become_messages_and_exit_codes() -> None:
    unknown = cli("run", "--lang", "ruby2", "--code", "x")
    assert unknown.returncode == 3
    assert "language not found: ruby2" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    both = cli("run", "--lang", "python")
    assert both.returncode == 2
    assert "exactly one of --code and --file" in both.stderr


def test_languages_lists_the_catalog() -> None:
    result = cli("languages")
    assert result.returncode == 0
    assert "python" in result.stdout and "golang" in result.stdout


def test_setup_reports_each_backend() -> None:
    result = cli("setup")
    assert result.returncode == 0
    assert "jail" in result.stdout
