"""``infra.operator benchmark``, run as a user runs it: a real server, real sandboxes, a
real bare baseline; small numbers of requests, and no assertion on any timing."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATA_DIR, require_images

from infra_operator.benchmark import BenchmarkConfig, InProcess, Sample, _bare_helper, _bench, run_benchmark
from infra_operator.config import Settings
from infra_operator.errors import InvalidRequest
from infra_operator.services import Services


def benchmark(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INFRA_OPERATOR_DATA_DIR": str(DATA_DIR), "COLUMNS": "200", **(env or {})}
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
    # The bare runs use the host's interpreter only when it is the image's own version (Debian
    # 12's python on the host; the default release is Debian 13's): else the image's, chrooted.
    host = subprocess.run(["/usr/bin/python3", "--version"], capture_output=True, text=True).stdout.strip()
    assert result["language"] == "python" and result["version"].startswith("Python 3.")
    assert result["baseline"] == ("host" if result["version"] == host else "chroot")
    assert len(result["end_to_end"]["samples"]) == 4 and len(result["bare"]["samples"]) == 4
    assert result["latency_ratio"] > 0 and result["throughput_ratio"] > 0
    assert output.with_suffix(".png").read_bytes().startswith(b"\x89PNG")


def test_without_matplotlib_it_measures_and_says_how_to_get_the_chart(tmp_path: Path) -> None:
    """As on a host with the service's install alone, which leaves the benchmark's chart out."""
    require_images("python")
    hidden = tmp_path / "hide"
    hidden.mkdir()
    (hidden / "matplotlib.py").write_text("raise ImportError('hidden by the test')\n")
    output = tmp_path / "bench.json"
    done = benchmark("--langs", "python", "--in-process", "--requests", "4", "--throughput-requests", "2",
                     "--output", str(output), env={"PYTHONPATH": os.pathsep.join([str(hidden), *sys.path])})
    assert done.returncode == 0, done.stderr
    assert [result["language"] for result in json.loads(output.read_text())["results"]] == ["python"]
    assert not output.with_suffix(".png").exists()
    assert (f"no chart: matplotlib is not installed; from the infra.operator checkout, "
            f"`{sys.executable} -m pip install -c requirements.lock -e '.[bench]'` adds it") in " ".join(done.stderr.split())
    assert done.stderr.splitlines()[-1] == f"results: {output}"


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


class BreaksOneLanguage:
    """A test double around the real in-process target: every execution is real, except that
    the chosen language's come back as a failed program."""

    def __init__(self, real: InProcess, broken: str) -> None:
        self.real, self.broken = real, broken
        self.server_pid = real.server_pid

    def execute(self, language: str, code: str) -> Sample:
        sample = self.real.execute(language, code)
        return dataclasses.replace(sample, exit_code=1) if language == self.broken else sample

    def wait_warm(self, languages: list[str]) -> None:
        self.real.wait_warm(languages)

    def close(self) -> None:
        self.real.close()


def test_a_language_that_cannot_be_measured_does_not_stop_the_others() -> None:
    require_images("python", "bash")
    services = Services(Settings())
    languages = [(services.catalog.get(name), services.rootfs.get(name)) for name in ("bash", "python")]
    target = BreaksOneLanguage(InProcess(services, "jail"), broken="bash")
    config = BenchmarkConfig(languages=["bash", "python"], requests=4, throughput_requests=2, concurrency=2)
    try:
        results, failures = run_benchmark(target, languages, config)
    finally:
        target.close()
    assert [result.language for result in results] == ["python"]
    assert failures == {"bash": "bash: the program failed in the sandbox (exit 1)"}


def test_a_host_toolchain_that_prints_otherwise_gives_way_to_the_images() -> None:
    require_images("python")
    services = Services(Settings())
    python = services.catalog.get("python")
    # The host's python is the image's version, so the host is tried first, then the image's.
    with pytest.raises(InvalidRequest) as caught:
        _bench._bare_runner(python, services.rootfs.get("python"), "print(1)", expected="2\n", warmup=1)
    assert caught.value.message == "python: the bare run printed host: '1\\n', chroot: '1\\n'; the sandbox '2\\n'"


def test_a_bare_program_that_makes_its_stdin_non_blocking_leaves_the_baseline_working() -> None:
    require_images("python")
    services = Services(Settings())
    code = "import os\nos.set_blocking(0, False)\nprint('still here')\n"  # as Gambit's gsi does
    bare = _bench.BareRunner(services.catalog.get("python"), services.rootfs.get("python"), code, on_host=True)
    try:
        outputs = [bare.run(1, 1)[2] for _ in range(3)]
    finally:
        bare.close()
    assert outputs == ["still here\n"] * 3


def test_each_bare_worker_keeps_its_caches_in_its_own_tmp_folder() -> None:
    # A cache under /tmp, in the environment or on the command line, would otherwise outlive
    # the run and make every bare run after the first a warm one.
    config = {
        "env": {"GOCACHE": "/tmp/go-cache", "LANG": "C.UTF-8"},
        "steps": [["nim", "c", "--nimcache:/tmp/nimcache", "main.nim"], ["/var/tmp/keep", "/tmpfoo"]],
        "files": {},
    }
    worker = _bare_helper.Worker(config, "/work", "/tmp", 3)
    assert worker.env["GOCACHE"] == "/tmp/t3/go-cache" and worker.env["LANG"] == "C.UTF-8"
    assert worker.steps == [["nim", "c", "--nimcache:/tmp/t3/nimcache", "main.nim"], ["/var/tmp/keep", "/tmpfoo"]]


def test_sessions_measures_each_figure_side_by_side(tmp_path: Path) -> None:
    require_images("python")
    output = tmp_path / "sessions.json"
    done = benchmark("--sessions", "--backend", "jail", "--requests", "4", "--session-count", "3",
                     "--output", str(output))
    assert done.returncode == 0, done.stderr
    report = json.loads(output.read_text())
    assert report["backend"] == "jail" and report["opened"] == 3
    for figure in ("create_ms", "cell_ms", "bare_ms", "sse_delay_ms"):
        assert len(report[figure]["samples"]) >= 4 and report[figure]["p50"] > 0
    assert report["idle_pss_mib"] > 0 and report["per_session_mib"] > 0 and report["capacity"] > 0
    assert len(report["goals"]) == 5
    assert "session create p50/p95" in done.stdout and "write to SSE event" in done.stdout
    # The jail cannot pause: said so, with no figures.
    assert report["pause_ms"] is None and report["resume_ms"] is None and "not on this backend" in done.stdout


def test_the_bare_baseline_names_the_program_as_the_sandbox_does() -> None:
    require_images("nodejs")
    services = Services(Settings())
    code = 'import { platform } from "os";\nconsole.log(typeof platform);\n'  # an ES module: main.mjs
    bare = _bench.BareRunner(services.catalog.get("nodejs"), services.rootfs.get("nodejs"), code, on_host=False)
    try:
        output = bare.run(1, 1)[2]
    finally:
        bare.close()
    assert output == "function\n"


class RecordsWaits(BreaksOneLanguage):
    """The real in-process target, recording when the benchmark waits for a full pool."""

    def __init__(self, real: InProcess) -> None:
        super().__init__(real, broken="")
        self.events: list[str] = []

    def execute(self, language: str, code: str) -> Sample:
        self.events.append("execute")
        return super().execute(language, code)

    def wait_warm(self, languages: list[str]) -> None:
        self.events.append("wait")
        super().wait_warm(languages)


@pytest.mark.parametrize("paced", [False, True])
def test_a_paced_run_takes_each_latency_sample_from_a_full_pool(paced: bool) -> None:
    require_images("python")
    services = Services(Settings())
    python = services.catalog.get("python")
    target = RecordsWaits(InProcess(services, "jail"))
    config = BenchmarkConfig(languages=["python"], requests=4, rounds=1, warmup=1, throughput_requests=1,
                             concurrency=1, paced=paced)
    try:
        (result,), _ = run_benchmark(target, [(python, services.release("python").require())], config)
    finally:
        target.close()
    # A wait, the warm-up's execution, a wait, then the latency samples: each after a wait when paced.
    latency = "".join("w" if event == "wait" else "e" for event in target.events)
    assert latency.startswith("wew" + ("we" * 4 if paced else "e" * 4)), latency
    if paced:
        assert result.from_pool == 4, "a sample waited for a full pool and was not served from it"
