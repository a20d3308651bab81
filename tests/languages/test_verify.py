"""``infra.operator languages --verify``: every sample of the CI subset really runs in
a jail, through the executor the API uses; a wrong output or a missing image fails."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATA_DIR, require_images

from infra_operator.config import Settings
from infra_operator.languages import Catalog, Form
from infra_operator.services import Services
from infra_operator.verify import verify, verify_language

CI_LANGUAGES = [language.name for language in Catalog.load() if language.ci]


def _cli(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "infra_operator", "languages", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "COLUMNS": "200"})


@pytest.fixture(scope="module")
def services() -> Services:
    return Services(Settings(data_dir=DATA_DIR, backend="jail"))


@pytest.mark.slow
def test_the_ci_subset_passes_on_the_jail(tmp_path: Path) -> None:
    require_images(*CI_LANGUAGES)
    results = tmp_path / "verify.json"
    done = _cli("--verify", "--ci", "--no-build", "--backend", "jail", "--json", str(results))
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(results.read_text())
    # The default release of each (what CI builds); other releases built on the host are proved too.
    by_name = {entry["language"]: entry for entry in report["results"] if entry["default"]}
    assert sorted(by_name) == sorted(CI_LANGUAGES)
    for name, entry in by_name.items():
        assert entry["passed"], f"{name}: {entry['problem']}"
        assert entry["version"] and entry["image_bytes"] > 0 and entry["backend"] == "jail", entry
    assert report["failed"] == []
    total = len(report["results"])
    assert f"{total} of {total} releases passed" in done.stdout


def test_all_releases_are_proved_each_on_its_own_row(tmp_path: Path) -> None:
    require_images("python@trixie", "python", "python@sid")
    results = tmp_path / "verify.json"
    done = _cli("--verify", "--all-releases", "--lang", "python", "--no-build", "--backend", "jail",
                "--json", str(results), timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [(e["suite"], e["release"].rsplit(".", 1)[0], e["default"], e["passed"])
            for e in json.loads(results.read_text())["results"]]
    assert rows == [("trixie", "3.13", True, True), ("bookworm", "3.11", False, True), ("sid", "3.14", False, True)]
    for header in ("language", "release", "suite", "version", "image", "build", "result"):
        assert header in done.stdout
    assert "3.13.5 (default)" in done.stdout and "sid (Debian unstable)" in done.stdout
    assert "3 of 3 releases passed" in done.stdout


def test_a_wrong_output_fails_with_the_mismatch(services: Services) -> None:
    require_images("python")
    python = services.catalog.get("python")
    wrong = dataclasses.replace(python, expected="Goodbye, World!\n")
    verdict = verify_language(services, wrong, backend="jail")
    assert not verdict.passed
    assert verdict.problem is not None
    assert "'Hello, World!\\n'" in verdict.problem and "'Goodbye, World!\\n'" in verdict.problem
    assert verdict.version.startswith("Python 3")


def test_every_form_runs_and_a_failing_one_is_named(services: Services) -> None:
    require_images("python")
    python = services.catalog.get("python")
    good = Form(name="a main function", code="def main():\n    print(6 * 7)\n\nmain()\n", expected="42\n")
    bad = Form(name="a wrong expectation", code="print(1)", expected="2\n")
    assert verify_language(services, dataclasses.replace(python, forms=(good,)), backend="jail").forms == (good.name,)
    verdict = verify_language(services, dataclasses.replace(python, forms=(good, bad)), backend="jail")
    assert not verdict.passed and verdict.forms == (good.name,)
    assert verdict.problem is not None and verdict.problem.startswith("form 'a wrong expectation': exit 0; stdout '1\\n'")


def test_a_compile_error_fails_with_the_compiler_output(services: Services) -> None:
    require_images("go")
    go = services.catalog.get("go")
    broken = dataclasses.replace(go, sample="package main\n\nfunc main() {\n")
    verdicts = verify(services, [broken], backend="jail")  # each release built here: 1.24, and 1.19 where kept
    assert verdicts and verdicts[0].default
    for verdict in verdicts:
        assert not verdict.passed
        assert verdict.problem is not None and verdict.problem.startswith("compile failed (exit "), verdict
        assert "main.go" in verdict.problem


def test_a_missing_image_fails_and_the_command_exits_non_zero(tmp_path: Path) -> None:
    done = _cli("--verify", "--lang", "py", "--no-build", "--data-dir", str(tmp_path), "--json",
                str(tmp_path / "out.json"), timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL" in done.stdout and "image not built" in done.stdout
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["failed"] == ["python (trixie)"] and report["passed"] == 0
