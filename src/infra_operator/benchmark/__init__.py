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
from ._cluster import ClusterBenchmark, run_cluster_benchmark, write_cluster_json
from ._ready_memory import GOAL_PSS_MIB, ReadyMemory, measure_ready
from ._report import chart_unavailable, draw_chart, write_json
from ._sessions import SessionReport, run_session_benchmark
from ._targets import InProcess, OverHttp, Sample, Target

__all__ = [
    "GOAL_LATENCY_RATIO",
    "GOAL_PSS_MIB",
    "GOAL_THROUGHPUT_RATIO",
    "BenchmarkConfig",
    "ClusterBenchmark",
    "InProcess",
    "LanguageResult",
    "OverHttp",
    "ReadyMemory",
    "Sample",
    "SessionReport",
    "Stats",
    "Target",
    "chart_unavailable",
    "draw_chart",
    "measure_ready",
    "run_benchmark",
    "run_cluster_benchmark",
    "run_session_benchmark",
    "write_cluster_json",
    "write_json",
]
