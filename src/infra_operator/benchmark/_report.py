"""The benchmark's outputs besides the table: a JSON file and a chart of the latencies."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from ._bench import GOAL_LATENCY_RATIO, GOAL_THROUGHPUT_RATIO, BenchmarkConfig, LanguageResult


def write_json(
    path: Path, results: list[LanguageResult], config: BenchmarkConfig, meta: dict[str, Any]
) -> None:
    document = {
        "created_at": time.time(),
        "host": {"machine": platform.machine(), "kernel": platform.release(), "cpus": os.cpu_count()},
        "config": dataclasses.asdict(config),
        "goals": {
            "latency_ratio_at_most": GOAL_LATENCY_RATIO,
            "throughput_ratio_at_least": GOAL_THROUGHPUT_RATIO,
        },
        **meta,
        "results": [result.to_json() for result in results],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


def chart_unavailable() -> str | None:
    """Why no chart can be drawn here, with how to fix it; None when it can."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return (f"matplotlib is not installed; from the infra.operator checkout, "
                f"`{sys.executable} -m pip install -c requirements.lock -e '.[bench]'` adds it")
    return None


def draw_chart(path: Path, results: list[LanguageResult], title: str) -> None:
    """One panel per language: the distributions of bare, exec_time and end-to-end latency."""
    import matplotlib

    matplotlib.use("Agg")  # no display here, and none needed
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(results), 1, figsize=(9, 1.9 * len(results) + 0.9), squeeze=False)
    for axis, result in zip(axes[:, 0], results, strict=True):
        series = [
            ("bare", result.bare.samples),
            ("exec_time", result.exec.samples),
            ("end to end", result.end_to_end.samples),
        ]
        axis.boxplot(
            [values for _, values in series],
            vert=False,
            widths=0.6,
            showfliers=True,
            flierprops={"markersize": 3},
        )
        axis.set_yticks(range(1, len(series) + 1), [name for name, _ in series])
        axis.set_title(
            f"{result.language} ({result.version}): p50 {result.end_to_end.p50:.1f} ms vs bare "
            f"{result.bare.p50:.1f} ms ({result.baseline}) = {result.latency_ratio:.2f}x",
            fontsize=9,
        )
        axis.set_xlabel("milliseconds", fontsize=8)
        axis.grid(axis="x", alpha=0.3)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
