"""What every command shares: settings from options, the services, the console,
and the one place where our errors become messages and exit codes."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import SettingsError
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from ..config import Settings
from ..errors import InvalidRequest, NotFound, OperatorError, Unauthorized
from ..images import ByteProgress, progress_lines
from ..services import Services

if TYPE_CHECKING:
    from ..images import Transfer

console = Console(stderr=True)
out = Console()

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="where images, kernels and snapshots live",
                                               envvar="INFRA_OPERATOR_DATA_DIR", show_default=False)]
RedisUrl = Annotated[str | None, typer.Option(
    "--redis", help="the cluster's Redis (redis://HOST:PORT/DB or unix:///PATH); without it, one process does all",
    envvar="INFRA_OPERATOR_REDIS_URL", show_default=False)]
Lang = Annotated[str, typer.Option("--lang", "-l", help="language name or alias")]
Version = Annotated[str | None, typer.Option(
    "--version", help="a release: its number or a prefix of one (3.13, 3), or its suite (trixie, bookworm, sid); "
                      "default: the language's default release")]
Bucket = Annotated[str | None, typer.Option(help="object store bucket; default: INFRA_OPERATOR_S3_BUCKET",
                                            show_default=False)]

# Exit codes by error class; the most specific class wins.
EXIT_CODES: list[tuple[type[OperatorError], int]] = [
    (Unauthorized, 4), (NotFound, 3), (InvalidRequest, 2), (OperatorError, 1),
]


def _system_error(error: OSError) -> OperatorError:
    """A file, folder or socket that failed us (a data directory not writable, a disk full)."""
    names = " -> ".join(str(name) for name in (error.filename, error.filename2) if name is not None)
    return OperatorError(f"{error.strerror or error}{f': {names}' if names else ''}")


@contextmanager
def reporting_errors() -> Iterator[None]:
    """The one place where a failure of any command becomes one line on stderr and an exit code:
    our errors by class (``EXIT_CODES``), and the system's as what failed, on what. Anything else
    is a bug and keeps its traceback."""
    try:
        yield
    except (OperatorError, OSError) as caught:
        error = _system_error(caught) if isinstance(caught, OSError) else caught
        console.print(f"[bold red]error:[/] {escape(error.message)}", highlight=False, soft_wrap=True)
        raise SystemExit(next(code for cls, code in EXIT_CODES if isinstance(error, cls))) from None


def _setting_problem(error: ErrorDetails) -> str:
    names = list(itertools.takewhile(lambda part: isinstance(part, str), error["loc"]))
    variable = "INFRA_OPERATOR_" + "__".join(str(name) for name in names).upper()
    return f"{variable}={error['input']!r}: {error['msg']}"


def make_services(data_dir: Path | None = None, **overrides: object) -> Services:
    values = {key: value for key, value in overrides.items() if value is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    try:
        settings = Settings(**values)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise InvalidRequest("invalid setting " + "; ".join(map(_setting_problem, exc.errors()))) from exc
    except SettingsError as exc:
        raise InvalidRequest(f"invalid setting: {exc}; lists and tables are written as JSON, "
                             """e.g. INFRA_OPERATOR_API_KEYS='["key1"]'""") from exc
    return Services(settings)


@contextmanager
def progress_display(title: str) -> Iterator[Callable[[str], None]]:
    """A spinner with the latest line of a long operation; every line also goes to the log."""
    if not sys.stderr.isatty():
        yield lambda line: console.print(f"  {line}", highlight=False, markup=False)
        return
    with console.status(title) as status:
        def show(line: str) -> None:
            console.print(f"  [dim]{line}[/]", highlight=False)
            status.update(f"{title}: {line[:80]}")
        yield show


@contextmanager
def _transfer_display(title: str) -> Iterator[ByteProgress]:
    if not sys.stderr.isatty():
        yield progress_lines(lambda line: console.print(f"  {line}", highlight=False, markup=False), title)
        return
    columns = (TextColumn(title), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(title, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def run_transfer(transfer: Transfer) -> None:
    """Run an upload or download under a progress bar (bytes, speed, time left), or a line per 10%
    without a terminal, then say what was done."""
    with _transfer_display(transfer.description) as progress:
        summary = transfer.run(progress)
    out.print(summary, highlight=False, markup=False)
