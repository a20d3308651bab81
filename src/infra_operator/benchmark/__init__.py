"""``infra.operator benchmark``: each language's program through the service, beside the
same program run bare, with the ratios the speed goals are stated in."""

from __future__ import annotations

from ._bench import (
    GOAL_LATENCY_RATIO,
    GOAL_THROUGHPUT_RATIO,
    BenchmarkConfig,
    LanguageResult,
    Stats,
    run_benchmark,
)
from ._report import draw_chart, write_json
from ._sessions import SessionReport, run_session_benchmark
from ._targets import InProcess, OverHttp, Sample, Target

__all__ = [
    "GOAL_LATENCY_RATIO",
    "GOAL_THROUGHPUT_RATIO",
    "BenchmarkConfig",
    "InProcess",
    "LanguageResult",
    "OverHttp",
    "Sample",
    "SessionReport",
    "Stats",
    "Target",
    "draw_chart",
    "run_benchmark",
    "run_session_benchmark",
    "write_json",
]
