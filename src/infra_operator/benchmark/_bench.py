"""The benchmark: each language's program through the path users take, side by side with
the same program run bare, in one run on one machine so the ratios mean something.

Baseline, decided per language: the host's own toolchain when it is the image's
version (Debian's /usr/bin/python3 is the image's Python 3.11.2), else the image's
toolchain run in the image's tree through a plain chroot. Either way the same binary
runs the same commands, with no namespaces, cgroup, limits, agent or HTTP: exactly
what the sandbox and the service add is what the ratio shows. Each bare run starts
from an empty work and tmp folder, as cold as a fresh sandbox (no compiler cache), and
in a session of its own as each sandbox is: with the kernel's autogroup scheduling the
CPU is shared out between sessions, so a baseline kept in one session would get a
smaller share than the sandboxes whenever the machine is busy.

Latency samples are taken one request at a time, in rounds that alternate between
the sandbox and the bare runs, so load from the rest of the machine falls on both.
Throughput is then measured at the given concurrency, again for both.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequest, OperatorError
from ..executor import BASE_ENV

if TYPE_CHECKING:
    from ..images import RootfsInfo
    from ..languages import Language
    from ._targets import Target

HOST_PATH = "/usr/bin:/bin"
"""Where the host's toolchains are looked for: never a version manager's shim."""
HELPER = Path(__file__).with_name("_bare_helper.py")
HELPER_PYTHON = "/usr/bin/python3"
GOAL_LATENCY_RATIO = 1.5
GOAL_THROUGHPUT_RATIO = 0.7

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BenchmarkConfig:
    languages: list[str]
    requests: int = 40
    concurrency: int = 4
    throughput_requests: int = 40
    warmup: int = 3
    rounds: int = 4
    code: str | None = None
    """Run this instead of each language's sample (for one language)."""
    paced: bool = False
    """Each latency sample waits for the pool to be full again: every one is served ready from
    it, as requests are that come no faster than the pool refills. Without it the samples
    come back to back, and where a refill is slower than a request (a VM under TCG) later
    ones wait for it: the latency of a burst."""


@dataclass
class Stats:
    p50: float
    p95: float
    mean: float
    samples: list[float] = field(repr=False)

    @classmethod
    def of(cls, samples: list[float]) -> Stats:
        ordered = sorted(samples)
        return cls(
            p50=statistics.median(ordered),
            p95=_percentile(ordered, 0.95),
            mean=statistics.fmean(ordered),
            samples=[round(value, 3) for value in samples],
        )


def _percentile(ordered: list[float], fraction: float) -> float:
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class LanguageResult:
    language: str
    version: str
    program: str
    baseline: str
    """``host`` or ``chroot``: where the bare runs ran (see the module's docstring)."""
    load: Stats
    exec: Stats
    end_to_end: Stats
    from_pool: int
    """How many of the latency samples a sandbox the pool held ready served."""
    throughput: float
    bare: Stats
    bare_throughput: float

    @property
    def latency_ratio(self) -> float:
        return self.end_to_end.p50 / self.bare.p50

    @property
    def throughput_ratio(self) -> float:
        return self.throughput / self.bare_throughput

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["latency_ratio"] = round(self.latency_ratio, 3)
        data["throughput_ratio"] = round(self.throughput_ratio, 3)
        data["meets_latency_goal"] = self.latency_ratio <= GOAL_LATENCY_RATIO
        data["meets_throughput_goal"] = self.throughput_ratio >= GOAL_THROUGHPUT_RATIO
        return data


class BareRunner:
    """The helper process that runs one language's program bare (see ``_bare_helper``)."""

    def __init__(self, language: Language, rootfs: RootfsInfo, code: str, on_host: bool) -> None:
        self.baseline = "host" if on_host else "chroot"
        program = language.program(code)  # named as the executor names it
        steps = [list(program.compile)] if program.compile else []
        config = {
            "image": None if self.baseline == "host" else str(rootfs.path),
            "steps": [*steps, list(program.run)],
            "files": {program.source: code},
            "env": {**BASE_ENV, **language.env},
        }
        prefix = [] if self.baseline == "host" else ["unshare", "--mount", "--propagation", "private"]
        self.process = subprocess.Popen(
            [*prefix, HELPER_PYTHON, str(HELPER), json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, requests: int, concurrency: int) -> tuple[list[float], float, str]:
        """Each run's milliseconds, the wall seconds of all, and one run's output."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"requests": requests, "concurrency": concurrency}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise OperatorError(
                "the bare baseline's helper exited (is `unshare` installed, and are we root?)"
            )
        answer = json.loads(line)
        return answer["ms"], answer["wall_seconds"], answer["output"]

    def close(self) -> None:
        if self.process.stdin is not None:
            try:
                self.process.stdin.close()
            except BrokenPipeError:
                pass  # the helper is gone already, and ``run`` said so
        self.process.wait(timeout=30)


def _bare_runner(language: Language, rootfs: RootfsInfo, code: str, expected: str, warmup: int) -> BareRunner:
    """The host's toolchain when it is the image's version and prints what the sandbox
    printed (a host gcc without the Objective-C compiler says it is the image's gcc too),
    else the image's in a chroot; warmed up, as the sandbox was."""
    outputs = []
    for on_host in (True, False) if _host_has(language, rootfs.version) else (False,):
        bare = BareRunner(language, rootfs, code, on_host)
        _, _, output = bare.run(warmup, 1)
        if output.strip() == expected.strip():
            return bare
        bare.close()
        outputs.append(f"{bare.baseline}: {output!r}")
    raise InvalidRequest(f"{language.name}: the bare run printed {', '.join(outputs)}; the sandbox {expected!r}")


def _host_has(language: Language, version: str) -> bool:
    try:
        done = subprocess.run(
            list(language.version_command),
            capture_output=True,
            text=True,
            timeout=30,
            env={**BASE_ENV, "PATH": HOST_PATH},
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    lines = [line.strip() for line in (done.stdout + "\n" + done.stderr).splitlines() if line.strip()]
    return done.returncode == 0 and bool(lines) and lines[0] == version


def _concurrently(total: int, concurrency: int, one: Callable[[], None]) -> float:
    """Run ``one`` ``total`` times across ``concurrency`` threads; the wall seconds it took."""
    remaining = [total]
    lock = threading.Lock()
    failures: list[BaseException] = []

    def loop() -> None:
        while True:
            with lock:
                if remaining[0] <= 0 or failures:
                    return
                remaining[0] -= 1
            try:
                one()
            except BaseException as exc:  # surfaced below, in the caller's thread
                failures.append(exc)
                return

    started = time.perf_counter()
    threads = [threading.Thread(target=loop) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return time.perf_counter() - started


def bench_language(
    target: Target, language: Language, rootfs: RootfsInfo, config: BenchmarkConfig, progress: Progress
) -> LanguageResult:
    code = config.code if config.code is not None else language.sample
    progress(f"{language.name}: warming up")
    for _ in range(config.warmup):
        first = target.execute(language.name, code)
    if first.exit_code != 0:
        raise InvalidRequest(f"{language.name}: the program failed in the sandbox (exit {first.exit_code})")
    if config.code is None and first.stdout != language.expected:
        raise InvalidRequest(f"{language.name}: the sample printed {first.stdout!r}, not {language.expected!r}")
    bare = _bare_runner(language, rootfs, code, first.stdout, config.warmup)
    try:
        target.wait_warm([language.name])
        samples: list[Any] = []
        bare_ms: list[float] = []
        per_round = max(1, config.requests // config.rounds)
        for round_number in range(config.rounds):
            progress(f"{language.name}: latency, round {round_number + 1} of {config.rounds}")
            for _ in range(per_round):
                if config.paced:
                    target.wait_warm([language.name])
                samples.append(target.execute(language.name, code))
            bare_ms += bare.run(per_round, 1)[0]

        progress(f"{language.name}: throughput at concurrency {config.concurrency}")
        target.wait_warm([language.name])
        wall = _concurrently(
            config.throughput_requests,
            config.concurrency,
            lambda: _checked(target.execute(language.name, code)),
        )
        _, bare_wall, _ = bare.run(config.throughput_requests, config.concurrency)
        target.wait_warm([language.name])  # the next language starts from a full pool too
    finally:
        bare.close()
    return LanguageResult(
        language=language.name,
        version=rootfs.version,
        program=code,
        baseline=bare.baseline,
        load=Stats.of([s.load_ms for s in samples]),
        exec=Stats.of([s.exec_ms for s in samples]),
        end_to_end=Stats.of([s.end_to_end_ms for s in samples]),
        from_pool=sum(s.from_pool for s in samples),
        throughput=config.throughput_requests / wall,
        bare=Stats.of(bare_ms),
        bare_throughput=config.throughput_requests / bare_wall,
    )


def _checked(sample: Any) -> None:
    if sample.exit_code != 0:
        raise InvalidRequest(f"a benchmark execution failed with exit code {sample.exit_code}")


def run_benchmark(
    target: Target,
    languages: list[tuple[Language, RootfsInfo]],
    config: BenchmarkConfig,
    progress: Progress = lambda line: None,
) -> tuple[list[LanguageResult], dict[str, str]]:
    """Each language's result, and why a language that could not be measured was not: one
    language's failure (its program, its baseline) does not stop the others."""
    progress("waiting for the pool to fill")
    # All of it before the first measurement: filling the others' pools meanwhile would load the machine.
    target.wait_warm([language.name for language, _ in languages])
    results: list[LanguageResult] = []
    failures: dict[str, str] = {}
    for language, rootfs in languages:
        try:
            results.append(bench_language(target, language, rootfs, config, progress))
        except OperatorError as exc:
            prefix = f"{language.name}: "
            failures[language.name] = exc.message if exc.message.startswith(prefix) else prefix + exc.message
            progress(f"not measured: {failures[language.name]}")
    return results, failures
