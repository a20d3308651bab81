"""The ``infra.operator`` command."""

from __future__ import annotations

import typer

from ._benchmark import benchmark
from ._guest import guest
from ._languages import languages
from ._rootfs import app as rootfs_app
from ._run import run
from ._serve import api
from ._setup import setup

app = typer.Typer(name="infra.operator", help="Run untrusted code in fresh sandboxes.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
app.command()(api)
app.command()(run)
app.command()(languages)
app.command()(setup)
app.command()(benchmark)
app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(guest)
app.add_typer(rootfs_app, name="rootfs")


def main() -> None:
    app()


__all__ = ["app", "main"]
