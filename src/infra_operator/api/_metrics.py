"""``GET /metrics``: the service in Prometheus's text format, from prometheus-client.

Each app has its own ``CollectorRegistry``, so two apps in one process (tests, the
OpenAPI script) never share or collide on a series. What is counted as it happens:

- ``infra_operator_executions_total{language, backend, outcome}``; the outcome is the
  first that holds of: ``error`` (our failure: the sandbox did not start or its agent
  broke; a 5xx), ``rejected`` (refused for load: a full queue or shutting down; a 503),
  ``timed_out``, ``oom_killed``, ``output_limit`` (the program wrote past its output
  limit), ``compile_error``, ``signal`` (killed by any other signal), ``nonzero_exit``,
  ``ok``. A request refused before it could run (400, 404: an unknown language, an image
  not built) is no execution and is not counted; its status is in the request log.
- ``infra_operator_execution_load_seconds``, ``..._exec_seconds`` (the answer's
  ``load_time`` and ``exec_time``) and ``..._end_to_end_seconds`` (from the request's
  arrival to the answer's last byte, measured by the request log) by language and
  backend, for executions that ran (not ``error`` or ``rejected``).
- A session's cell counts as an execution too, once it ran (``Metrics.ran``); one that failed
  before it ran (the session gone, a 5xx) is in the request log only. A submission's runs
  happen off any request and are not counted here; they show in the queue's gauges while they run.

What is read at scrape time from the parts that keep it, by a collector, so nothing
runs between scrapes: ready sandboxes per pool key, the admission's running and
waiting executions (the queue), and background jobs (image builds, snapshots,
transfers) by kind and state, and the open sessions.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, choose_encoder, generate_latest
from prometheus_client.registry import Collector

from ..errors import OperatorError, Overloaded
from ._deps import require_api_key
from ._models import ErrorResponse

if TYPE_CHECKING:
    from ..executor import ExecutionResult
    from ..services import Services

# From a pooled jail's millisecond to the longest time limit.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
EXECUTION_SCOPE_KEY = "infra_operator.execution"
"""Where the execute route leaves its execution's labels in the ASGI scope, for the request log."""


def outcome(result: ExecutionResult) -> str:
    """What became of a program that ran; see the module's docstring for the order."""
    if result.timed_out:
        return "timed_out"
    if result.oom_killed:
        return "oom_killed"
    if result.output_limit_exceeded:
        return "output_limit"
    if result.compile_exit_code not in (None, 0):
        return "compile_error"
    if result.signal is not None:
        return "signal"
    return "nonzero_exit" if result.exit_code != 0 else "ok"


class _StateCollector(Collector):
    """Reads the pool, the admission, the sessions and the job board when scraped."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterable[Metric]:
        ready = GaugeMetricFamily("infra_operator_pool_ready_sandboxes",
                                  "Sandboxes started and waiting to be taken, per pool key",
                                  labels=["backend", "key"])
        # Keys with other limits share a label (the language), so they are summed, not repeated.
        by_key: Tally[tuple[str, str]] = Tally()
        for entry in self.services.pool.stats():
            by_key[(entry["backend"], entry["key"])] += entry["ready"]
        for labels, count in sorted(by_key.items()):
            ready.add_metric(list(labels), count)
        yield ready
        load = self.services.executor.admission.stats()
        yield GaugeMetricFamily("infra_operator_executions_running", "Executions holding a slot",
                                value=load["running"])
        yield GaugeMetricFamily("infra_operator_queue_waiting", "Executions waiting for a slot (the queue depth)",
                                value=load["waiting"])
        yield GaugeMetricFamily("infra_operator_sessions_open", "Sessions this server holds (each keeps a sandbox)",
                                value=self.services.open_sessions())
        jobs = GaugeMetricFamily("infra_operator_jobs", "Background jobs (image builds, snapshots, transfers) "
                                 "on the job board, by kind and state", labels=["kind", "state"])
        for (kind, state), count in sorted(Tally((job.kind, job.state) for job in self.services.jobs.list()).items()):
            jobs.add_metric([kind, state], count)
        yield jobs


class Metrics:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.registry = CollectorRegistry()
        self.executions = Counter("infra_operator_executions", "Executions by language, backend and outcome",
                                  ["language", "backend", "outcome"], registry=self.registry)
        by = ["language", "backend"]
        self.load_seconds = Histogram("infra_operator_execution_load_seconds", "Getting a sandbox ready (load_time)",
                                      by, buckets=LATENCY_BUCKETS, registry=self.registry)
        self.exec_seconds = Histogram("infra_operator_execution_exec_seconds", "Running the code (exec_time)",
                                      by, buckets=LATENCY_BUCKETS, registry=self.registry)
        self.end_to_end_seconds = Histogram(
            "infra_operator_execution_end_to_end_seconds", "From the request's arrival to the answer's last byte",
            by, buckets=LATENCY_BUCKETS, registry=self.registry)
        self.registry.register(_StateCollector(services))

    def _labels_of_failure(self, language: str, backend: str | None) -> tuple[str, str] | None:
        """The labels of an execution that raised; None when the language is unknown, which
        would let any string a client sends become a series."""
        try:
            name = self.services.catalog.get(language).name
        except OperatorError:
            return None
        try:
            return name, self.services.backends.choose(backend).name
        except OperatorError:
            return name, backend or "auto"

    @contextmanager
    def counting(self, request: Request, language: str, backend: str | None) -> Iterator[
            Callable[[ExecutionResult], None]]:
        """Around one execution: yields the function to hand its result to; counts a failure
        by what it raised, and leaves the labels in the request's scope for the request log."""
        try:
            yield lambda result: self.ran(request, result)
        except Exception as exc:
            status = getattr(exc, "status", 500)
            labels = self._labels_of_failure(language, backend) if status >= 500 else None
            if labels is not None:
                failure = "rejected" if isinstance(exc, Overloaded) else "error"
                request.scope[EXECUTION_SCOPE_KEY] = (*labels, failure)
                self.executions.labels(*labels, failure).inc()
            raise

    def ran(self, request: Request, result: ExecutionResult) -> None:
        """Count an execution that ran (a one-shot execute's, or a session's cell)."""
        became = outcome(result)
        request.scope[EXECUTION_SCOPE_KEY] = (result.language, result.backend, became)
        self.executions.labels(result.language, result.backend, became).inc()
        self.load_seconds.labels(result.language, result.backend).observe(result.load_ms / 1000)
        self.exec_seconds.labels(result.language, result.backend).observe(result.exec_ms / 1000)

    def ended(self, execution: tuple[str, str, str], seconds: float) -> None:
        """The request of an execution has been answered, ``seconds`` after it arrived."""
        language, backend, result = execution
        if result not in ("error", "rejected"):
            self.end_to_end_seconds.labels(language, backend).observe(seconds)

    def render(self, accept: str) -> Response:
        try:
            encode, content_type = choose_encoder(accept)
        except TypeError:  # prometheus-client compares a version that is not a number ("version=x") with ints
            encode, content_type = generate_latest, CONTENT_TYPE_PLAIN_0_0_4
        return Response(encode(self.registry), media_type=content_type)


def metrics_of(request: Request) -> Metrics:
    found: Metrics = request.app.state.metrics
    return found


router = APIRouter(dependencies=[Depends(require_api_key)])


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}}, 401: {"model": ErrorResponse}})
def metrics(request: Request) -> Response:
    """The service in Prometheus's text format (OpenMetrics when the scraper asks for it). Needs an
    API key when keys are configured, like /api/v1: the numbers show who uses the service how much."""
    return metrics_of(request).render(request.headers.get("accept", ""))
