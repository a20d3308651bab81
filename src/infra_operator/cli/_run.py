"""``infra.operator run``: one execution, through the same path the API uses."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import InvalidRequest
from ..executor import ExecutionRequest
from ._common import DataDir, Version, console, make_services


def _read(path: Path, option: str) -> str:
    """A file the user named: one that cannot be read as text is a bad option, not a crash."""
    try:
        return path.read_text()
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"{option} {path}: not UTF-8 text") from exc
    except OSError as exc:
        raise InvalidRequest(f"{option} {path}: {exc.strerror or exc}") from exc


def run(
    lang: Annotated[str, typer.Option("--lang", "-l", help="language name or alias")],
    code: Annotated[str | None, typer.Option(help="the source to run")] = None,
    file: Annotated[Path | None, typer.Option(help="read the source from this file")] = None,
    timeout: Annotated[int | None, typer.Option(help="seconds")] = None,
    stdin: Annotated[Path | None, typer.Option(help="a file to give the program on stdin")] = None,
    backend: Annotated[str | None, typer.Option(help="auto, jail, qemu or firecracker")] = None,
    version: Version = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the whole result as JSON")] = False,
    data_dir: DataDir = None,
) -> None:
    """Run code and print its output; exits with the program's exit code."""
    if (code is None) == (file is None):
        raise InvalidRequest("give exactly one of --code and --file")
    source = _read(file, "--file") if file is not None else code or ""
    given = _read(stdin, "--stdin") if stdin else ""
    services = make_services(data_dir)
    try:
        result = services.executor.execute(ExecutionRequest(
            language=lang, code=source, timeout=timeout, backend=backend, stdin=given, version=version))
    finally:
        services.close()
    if as_json:
        print(json.dumps(dataclasses.asdict(result), indent=2))
    else:
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        flags = [name for name in ("timed_out", "oom_killed", "stdout_truncated", "stderr_truncated")
                 if getattr(result, name)]
        summary = (f"[{result.language} {result.version} on {result.backend}] exit {result.exit_code}"
                   f"{' ' + ','.join(flags) if flags else ''}, load {result.load_ms:.0f}ms, exec {result.exec_ms:.0f}ms")
        console.print(summary, style="dim", highlight=False, markup=False)
    raise typer.Exit(result.exit_code)
