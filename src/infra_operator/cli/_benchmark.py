"""``infra.operator benchmark``: the languages' programs through the service, beside bare runs."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..benchmark import (
    GOAL_LATENCY_RATIO,
    GOAL_THROUGHPUT_RATIO,
    BenchmarkConfig,
    InProcess,
    LanguageResult,
    OverHttp,
    ReadyMemory,
    SessionReport,
    Target,
    chart_unavailable,
    draw_chart,
    measure_ready,
    run_benchmark,
    run_session_benchmark,
    write_json,
)
from ..errors import InvalidRequest
from ._common import DataDir, console, make_services, out, progress_display


def benchmark(
    langs: Annotated[
        str | None, typer.Option(help="comma-separated languages, e.g. python,nodejs,go,rust")
    ] = None,
    all_languages: Annotated[bool, typer.Option("--all", help="every language whose image is built")] = False,
    backend: Annotated[str | None, typer.Option(help="auto, jail, qemu or firecracker")] = None,
    requests: Annotated[int, typer.Option(min=4, help="latency samples per language, one at a time")] = 40,
    concurrency: Annotated[int, typer.Option(min=1, help="parallel clients for the throughput run")] = 4,
    throughput_requests: Annotated[
        int | None, typer.Option(min=1, help="executions in the throughput run (default: same as --requests)")
    ] = None,
    code: Annotated[
        str | None, typer.Option(help="run this instead of the sample (one language only)")
    ] = None,
    paced: Annotated[
        bool, typer.Option("--paced", help="each latency sample waits for a full pool, so each is served "
                                           "from it (default: back to back, as a burst)")
    ] = False,
    http: Annotated[
        bool,
        typer.Option(
            "--http/--in-process",
            help="through a real server over HTTP (default), or the executor in this process",
        ),
    ] = True,
    output: Annotated[
        Path, typer.Option(help="where to write the JSON results and, beside it, the PNG chart")
    ] = Path("benchmark.json"),
    sessions: Annotated[
        bool, typer.Option("--sessions", help="measure sessions instead: create, a cell against a bare "
                                              "python3 -c, idle memory and how many fit, SSE delay")
    ] = False,
    session_count: Annotated[int, typer.Option(min=1, help="with --sessions: idle sessions opened at once")] = 500,
    data_dir: DataDir = None,
) -> None:
    """Measure load, exec and end-to-end latency and throughput against the bare program."""
    if not output.parent.is_dir():  # said now, not after minutes of measuring
        raise InvalidRequest(f"--output {output}: no folder {output.parent}")
    services = make_services(data_dir)
    if sessions:
        _sessions(services.backends.choose(backend).name, services.settings.data_dir, requests, session_count, output)
        return
    if all_languages == (langs is not None):
        raise InvalidRequest("give exactly one of --langs and --all")
    if all_languages:
        names = [language.name for language in services.catalog if services.release(language.name).rootfs]
    else:
        names = [services.catalog.get(name).name for name in (langs or "").split(",") if name.strip()]
    if not names:
        raise InvalidRequest(
            "no language to benchmark: build an image first (`infra.operator rootfs create`)"
        )
    if code is not None and len(names) != 1:
        raise InvalidRequest("--code needs exactly one language")
    # Each language's default release: what a request without a version runs.
    languages = [(services.catalog.get(name), services.release(name).require()) for name in names]
    config = BenchmarkConfig(
        languages=names,
        requests=requests,
        concurrency=concurrency,
        throughput_requests=throughput_requests or requests,
        code=code,
        paced=paced,
    )
    chosen = services.backends.choose(backend).name
    with progress_display("benchmark") as show:
        show(f"starting {'a server' if http else 'the executor'} on backend {chosen}")
        # Keep ready exactly the languages measured, as a server that serves them would, when
        # the pool's budget holds them all; else each is made ready by its own warm-up's demand.
        pool = services.settings.pool
        runs_on = services.backends.get(chosen)
        specs = [services.executor.default_spec(runs_on, name) for name in names]
        needed_mb = sum(pool.size * runs_on.ready_memory_mb(spec) for spec in specs)
        prewarm = names if needed_mb <= pool.memory_budget_mb else []
        if not prewarm:
            show(f"{len(names)} languages do not fit the pool's budget at once "
                 f"({pool.memory_budget_mb} MiB): each gets ready sandboxes from its warm-up's demand")
        pool.prewarm = prewarm
        # Stopped with SIGTERM (kill, a CI timeout), still stop the server it started.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
        target: Target = (
            OverHttp(chosen, env={"INFRA_OPERATOR_DATA_DIR": str(services.settings.data_dir),
                                  "INFRA_OPERATOR_POOL__PREWARM": json.dumps(prewarm)})
            if http
            else InProcess(services, chosen)
        )
        ready_memory: ReadyMemory | None = None
        try:
            results, failures = run_benchmark(target, languages, config, show)
            # What the pool holds ready once the runs are over: what a ready VM costs.
            target.wait_warm(names)
            show("measuring the memory of the pool's ready sandboxes")
            ready_memory = measure_ready(target.server_pid, services.settings.run_dir, show)
        finally:
            target.close()
    mode = "HTTP" if http else "in-process"
    # Every column whole when the output is a file or a pipe, which rich takes as 80 wide.
    (out if out.is_terminal else Console(width=170)).print(
        _table(results, f"{chosen} backend, {mode}, concurrency {concurrency}"
                        f"{', each latency sample from a full pool' if paced else ''}")
    )
    chart = output.with_suffix(".png")
    if ready_memory is not None:
        console.print(ready_memory.line(), highlight=False, markup=False)
    write_json(output, results, config, {"backend": chosen, "mode": mode, "not_measured": failures,
                                         "ready_memory": ready_memory.to_json() if ready_memory else None})
    drawn = False
    if results:
        missing = chart_unavailable()
        if missing is None:
            draw_chart(chart, results, f"infra.operator on {chosen} ({mode}) vs the bare program")
            drawn = True
        else:
            console.print(f"no chart: {missing}", highlight=False, markup=False)
    console.print(f"results: {output}" + (f"  chart: {chart}" if drawn else ""), highlight=False)
    for why in failures.values():
        console.print(f"[red]not measured[/]: {why}", highlight=False)
    if failures:
        raise typer.Exit(1)


def _sessions(backend: str, data_dir: Path, samples: int, count: int, output: Path) -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    with progress_display("benchmark --sessions") as show:
        report = run_session_benchmark(backend, {"INFRA_OPERATOR_DATA_DIR": str(data_dir)}, samples, count, show)
    (out if out.is_terminal else Console(width=170)).print(_session_table(report))
    output.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    console.print(f"results: {output}", highlight=False)


def _session_table(report: SessionReport) -> Table:
    table = Table(title=f"sessions on {report.backend}, over HTTP", title_justify="left")
    for column in ("measure", "value", "goal", "met"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    goals = list(report.goals().items())
    rows = [
        ("session create p50/p95 (ms, from the pool)", f"{_ms(report.create_ms.p50)}/{_ms(report.create_ms.p95)}"),
        ("cell print(x + 1) p50 (ms) / bare python3 -c p50 (ms)",
         f"{_ms(report.cell_ms.p50)} / {_ms(report.bare_ms.p50)} = {report.cell_ratio:.2f}x"),
        ("PSS of one idle python session (MiB)", f"{report.idle_pss_mib:.1f}"),
        (f"idle sessions held at once (each {report.per_session_mib:.1f} MiB); this host would hold",
         f"{report.opened}; {report.capacity}"),
        ("write to SSE event p50/p95 (ms)", f"{_ms(report.sse_delay_ms.p50)}/{_ms(report.sse_delay_ms.p95)}"),
    ]
    for (measure, value), (goal, met) in zip(rows, goals, strict=True):
        table.add_row(measure, value, goal, "[green]yes[/]" if met else "[red]no[/]")
    if report.pause_ms is not None and report.resume_ms is not None:
        table.add_row("pause a session p50/p95 (ms, VM saved to disk)",
                      f"{_ms(report.pause_ms.p50)}/{_ms(report.pause_ms.p95)}", "-", "-")
        table.add_row("resume it p50/p95 (ms, to its next call's answer)",
                      f"{_ms(report.resume_ms.p50)}/{_ms(report.resume_ms.p95)}", "-", "-")
    else:
        table.add_row("pause / resume a session", "not on this backend", "-", "-")
    return table


def _ms(value: float) -> str:
    return f"{value:.1f}"


def _ratio(value: float, good: bool) -> str:
    return f"[{'green' if good else 'red'}]{value:.2f}x[/]"


def _table(results: list[LanguageResult], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in (
        "language",
        "load p50/p95",
        "exec p50/p95",
        "e2e p50/p95",
        "from pool",
        "req/s",
        "bare",
        "bare p50/p95",
        "bare req/s",
        f"p50 ratio (≤{GOAL_LATENCY_RATIO})",
        f"req/s ratio (≥{GOAL_THROUGHPUT_RATIO})",
    ):
        table.add_column(column, justify="left" if column in ("language", "bare") else "right")
    for r in results:
        table.add_row(
            r.language,
            f"{_ms(r.load.p50)}/{_ms(r.load.p95)}",
            f"{_ms(r.exec.p50)}/{_ms(r.exec.p95)}",
            f"{_ms(r.end_to_end.p50)}/{_ms(r.end_to_end.p95)}",
            f"{r.from_pool}/{len(r.end_to_end.samples)}",
            f"{r.throughput:.1f}",
            r.baseline,
            f"{_ms(r.bare.p50)}/{_ms(r.bare.p95)}",
            f"{r.bare_throughput:.1f}",
            _ratio(r.latency_ratio, r.latency_ratio <= GOAL_LATENCY_RATIO),
            _ratio(r.throughput_ratio, r.throughput_ratio >= GOAL_THROUGHPUT_RATIO),
        )
    table.caption = "milliseconds; bare = the same program, same toolchain, no sandbox (host or chroot)"
    return table


def benchmark_cluster(
    backend: Annotated[str | None, typer.Option(help="auto, jail, qemu or firecracker")] = None,
    requests: Annotated[int, typer.Option(min=10, help="executes measured on each side")] = 200,
    submissions: Annotated[int, typer.Option(min=1, help="submissions queued through the cluster")] = 1000,
    output: Annotated[Path, typer.Option(help="where to write the JSON results")] = Path("cluster-benchmark.json"),
) -> None:
    """The cluster beside a single process, judge mode beside separate executes, and a queue of
    submissions completed with none lost; all on this host, over loopback."""
    from ..benchmark import run_cluster_benchmark, write_cluster_json

    with progress_display("cluster benchmark") as progress:
        result = run_cluster_benchmark(backend, requests, submissions, progress)
    write_cluster_json(result, output)
    for line in result.lines():
        out.print(line, highlight=False, markup=False)
    out.print(f"wrote {output}", highlight=False, markup=False)
