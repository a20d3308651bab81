"""``infra.operator worker --redis URL``: run the cluster's work on this host."""

from __future__ import annotations

import logging
import signal
from typing import Annotated

import typer

from ._common import DataDir, reporting_errors
from ._serve import services_from


def worker(
    redis: Annotated[str, typer.Option("--redis", help="the cluster's Redis (redis://HOST:PORT/DB)",
                                       envvar="INFRA_OPERATOR_REDIS_URL")],
    worker_id: Annotated[str | None, typer.Option("--id", help="this worker's name; default HOSTNAME-PID")] = None,
    backend: Annotated[str | None, typer.Option(help="auto, jail, qemu or firecracker",
                                                envvar="INFRA_OPERATOR_BACKEND")] = None,
    claim_idle: Annotated[float, typer.Option(
        help="seconds a taken entry may go without its worker's heartbeat before another worker runs it")] = 10.0,
    data_dir: DataDir = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error")] = "info",
) -> None:
    """Run executions and submissions from the cluster on this host, until SIGTERM or SIGINT
    (which drain: what runs finishes, nothing new is taken)."""
    from ..cluster import default_worker_id

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with reporting_errors():
        services = services_from(data_dir, backend, redis)
        services.sweep()
        running = services.worker(worker_id or default_worker_id(), claim_idle)
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: running.stop())
    logging.getLogger(__name__).info("worker %s serving %s on %s (%d at once)", running.advert.id,
                                     ", ".join(running.advert.languages), ", ".join(running.advert.backends),
                                     running.advert.capacity)
    try:
        running.run()
    finally:
        services.close()
