"""The infra.operator command, run as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATA_DIR, free_port, require_images, write_fake_rootfs

from infra_operator.config import Settings
from infra_operator.languages import Catalog
from infra_operator.services import Services


def cli(*args: str, stdin: str | None = None, data_dir: Path = DATA_DIR,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # A terminal wide enough that no table cell is cut short.
    environment = {**os.environ, "INFRA_OPERATOR_DATA_DIR": str(data_dir), "COLUMNS": "400", **(env or {})}
    return subprocess.run([sys.executable, "-m", "infra_operator", *args], capture_output=True, text=True,
                          env=environment, input=stdin, timeout=300)


def table_rows(output: str) -> list[list[str]]:
    """The rows of the table a command printed, as cells; a row's continuation lines (those
    with an empty first cell) are joined to it."""
    rows: list[list[str]] = []
    for line in output.splitlines():
        if line.startswith("│"):
            cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
            if cells[0]:
                rows.append(cells)
            else:
                rows[-1] = [f"{above} {more}".strip() for above, more in zip(rows[-1], cells, strict=True)]
    return rows


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


def test_languages_lists_every_language_once_with_what_is_built(tmp_path: Path) -> None:
    write_fake_rootfs(tmp_path, "python", 3 << 20)
    result = cli("languages", data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    catalog = Catalog.load()
    rows = {row[0]: row[1:] for row in table_rows(result.stdout)}
    assert list(rows) == catalog.names()
    python = catalog.get("python")
    # Debian 12's image at its old path: the default while Debian 13's is not built, its one release.
    assert rows.pop("python") == [", ".join(python.aliases), python.family, "python 0.test", "0 (bookworm)", "3 MiB"]
    assert {row[4] for row in rows.values()} == {
        f"not built ({catalog.releases(catalog.get(name))[0].suite.name})" for name in rows}
    assert {row[3] for row in rows.values()} == {""}
    assert {row[0] for row in rows.values()} == {", ".join(catalog.get(name).aliases) for name in rows}
    assert result.stdout.splitlines()[-1] == f"{len(catalog)} languages"


def test_setup_gives_each_backend_the_verdict_of_its_own_probe(tmp_path: Path) -> None:
    result = cli("setup", data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    shown = {row[0]: row for row in table_rows(result.stdout)}
    services = Services(Settings(data_dir=tmp_path))
    probed = services.backends.capabilities()
    services.close()
    assert list(shown) == [capabilities.name for capabilities in probed]
    for capabilities in probed:
        _, works, isolation, accelerator, snapshots, _, missing = shown[capabilities.name]
        assert (works, isolation, accelerator, snapshots) == (
            "yes" if capabilities.usable else "no", capabilities.isolation, capabilities.accelerator or "",
            "yes" if capabilities.snapshots else "no"), capabilities.name
        assert missing == " ".join(" ".join(capabilities.missing).split()), capabilities.name


A_FILE = Path(__file__)
UNREACHABLE_STORE = {"INFRA_OPERATOR_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
                     "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@pytest.mark.parametrize(("args", "env", "code", "message"), [
    (["run", "-l", "python", "--file", "/nonexistent.py"], {}, 2, "--file /nonexistent.py: No such file or directory"),
    (["run", "-l", "python", "--file", "/"], {}, 2, "--file /: Is a directory"),
    (["run", "-l", "python", "--file", sys.executable], {}, 2, f"--file {sys.executable}: not UTF-8 text"),
    (["run", "-l", "python", "--code", "pass", "--stdin", "/nonexistent"], {}, 2, "--stdin /nonexistent: No such file"),
    (["languages"], {"INFRA_OPERATOR_MAX_CONCURRENCY": "abc"}, 2,
     "invalid setting INFRA_OPERATOR_MAX_CONCURRENCY='abc': Input should be a valid integer"),
    (["languages"], {"INFRA_OPERATOR_API_KEYS": "key1"}, 2, 'error parsing value for field "api_keys"'),
    (["api", "--port", "0"], {"INFRA_OPERATOR_POOL__SIZE": "-1"}, 2, "invalid setting INFRA_OPERATOR_POOL__SIZE='-1'"),
    (["rootfs", "create", "-l", "python", "--data-dir", str(A_FILE / "data")], {}, 1,
     f"Not a directory: {A_FILE}/data/images"),
    (["benchmark", "--langs", "python", "--in-process", "--requests", "4", "--output", "/nonexistent/b.json"], {}, 2,
     "--output /nonexistent/b.json: no folder /nonexistent"),
    (["snapshot", "create"], {}, 2, "give exactly one of --lang and --all"),
    (["snapshot", "create", "--all", "-l", "python"], {}, 2, "give exactly one of --lang and --all"),
    (["rootfs", "list", "--remote"], UNREACHABLE_STORE, 1,
     f"object store unreachable at {UNREACHABLE_STORE['INFRA_OPERATOR_S3_ENDPOINT_URL']}"),
])
def test_a_failure_is_one_line_and_an_exit_code(args: list[str], env: dict[str, str], code: int, message: str) -> None:
    """Bad paths, unreadable files, bad settings, a store not running: one line on stderr, however
    long, never a traceback or a validation dump."""
    result = cli(*args, env=env)
    assert result.returncode == code, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ") and message in line, line
