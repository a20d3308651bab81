"""``infra.operator languages``: the catalog and what is built of it; with
``--verify``, proof that each language really runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from .. import verify as verifying
from ..images import release_states
from ._common import DataDir, console, make_services, out, progress_display

if TYPE_CHECKING:
    from ..services import Services


def _listing(services: Services) -> None:
    table = Table("language", "aliases", "family", "version", "releases", "image")
    for language in services.catalog:
        states = release_states(services.catalog, language, services.rootfs)
        rootfs = states[0].rootfs
        releases = ", ".join(f"{state.number} ({state.suite})" for state in states if state.offered)
        table.add_row(language.name, ", ".join(language.aliases), language.family,
                      rootfs.version if rootfs else "", releases,
                      f"{rootfs.size >> 20} MiB" if rootfs else f"not built ({states[0].suite})")
    out.print(table)
    out.print(f"{len(services.catalog)} languages")


def _release(verdict: verifying.Verdict) -> str:
    mark = " (default)" if verdict.default else "" if verdict.offered or not verdict.release else " (not offered)"
    return f"{verdict.release or '-'}{mark}"


def _suite(services: Services, name: str) -> str:
    suite = services.catalog.plan.suites.get(name)
    return f"{name} ({suite.label})" if suite is not None else name


def _verdict_table(services: Services, verdicts: list[verifying.Verdict]) -> Table:
    table = Table("language", "release", "suite", "version", "image", "build", "exec", "forms", "result",
                  title="sample programs and forms")
    for verdict in verdicts:
        table.add_row(
            verdict.language,
            _release(verdict),
            _suite(services, verdict.suite),
            verdict.version,
            f"{verdict.image_bytes >> 20} MiB" if verdict.image_bytes is not None else "",
            f"{verdict.build_seconds:.0f}s{' (now)' if verdict.built_now else ''}"
            if verdict.build_seconds is not None else "",
            f"{verdict.exec_ms:.0f}ms" if verdict.exec_ms is not None else "",
            str(len(verdict.forms)),
            "[green]pass[/]" if verdict.passed else f"[red]FAIL[/] {verdict.problem}",
        )
    return table


def languages(
    verify: Annotated[bool, typer.Option(
        "--verify", help="build what is missing and run every sample program and form")] = False,
    lang: Annotated[list[str] | None, typer.Option(
        "--lang", "-l", help="only these languages (repeatable)")] = None,
    ci: Annotated[bool, typer.Option("--ci", help="only the languages the catalog marks for CI")] = False,
    all_releases: Annotated[bool, typer.Option(
        "--all-releases", help="with --verify: every release the catalog plans, built when missing; without it, "
                               "the default release and the others already built")] = False,
    backend: Annotated[str | None, typer.Option(help="auto, jail, qemu or firecracker")] = None,
    build: Annotated[bool, typer.Option("--build/--no-build", help="build missing images")] = True,
    timeout: Annotated[int, typer.Option(help="seconds per sample or form")] = verifying.DEFAULT_TIMEOUT_SECONDS,
    json_path: Annotated[Path | None, typer.Option(
        "--json", help="also write the results to this file")] = None,
    data_dir: DataDir = None,
) -> None:
    """List the languages, their aliases and whether each image is built; --verify proves them."""
    services = make_services(data_dir)
    if not verify:
        _listing(services)
        return
    chosen = [services.catalog.get(name) for name in lang] if lang else list(services.catalog)
    if ci:
        chosen = [language for language in chosen if language.ci]
    with progress_display(f"verifying {len(chosen)} languages") as progress:
        verdicts = verifying.verify(services, chosen, build=build, backend=backend, timeout=timeout,
                                    all_releases=all_releases, progress=progress)
    out.print(_verdict_table(services, verdicts))
    failed = [f"{verdict.language} ({verdict.suite})" for verdict in verdicts if not verdict.passed]
    out.print(f"{len(verdicts) - len(failed)} of {len(verdicts)} releases passed"
              + (f"; failed: {', '.join(failed)}" if failed else ""))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps({"results": [verdict.to_json() for verdict in verdicts],
                                         "passed": len(verdicts) - len(failed), "failed": failed}, indent=2))
        console.print(f"results written to {json_path}")
    if failed:
        raise typer.Exit(1)
