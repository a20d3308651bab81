"""The ``infra.operator`` command."""

from __future__ import annotations

import typer

from ._benchmark import benchmark, benchmark_cluster
from ._common import reporting_errors
from ._guest import guest
from ._kernel import app as kernel_app
from ._languages import languages
from ._rootfs import app as rootfs_app
from ._run import run
from ._serve import api
from ._setup import setup
from ._snapshot import app as snapshot_app
from ._worker import worker

app = typer.Typer(name="infra.operator", help="Run untrusted code in fresh sandboxes.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
app.command()(api)
app.command()(run)
app.command()(languages)
app.command()(setup)
app.command()(benchmark)
app.command(name="benchmark-cluster")(benchmark_cluster)
app.command()(worker)
app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(guest)
app.add_typer(rootfs_app, name="rootfs")
app.add_typer(snapshot_app, name="snapshot")
app.add_typer(kernel_app, name="kernel")


def main() -> None:
    with reporting_errors():
        app()


__all__ = ["app", "main"]
