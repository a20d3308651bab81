"""``infra.operator setup``: what this host can run, and what to install for the rest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from ..backends.firecracker import firecracker_release_url, install_firecracker
from ..errors import InvalidRequest
from ._common import DataDir, console, make_services, out


def _install_firecracker(url: str, sha256: str | None, dest_dir: Path) -> None:
    if not sha256:
        # The release host is not reachable from where this was written, so no checksum is
        # pinned here: take it from the release's .sha256.txt, checked by a person.
        raise InvalidRequest("--firecracker-sha256 is required: the SHA-256 of the release archive")
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=console) as progress:
        task = progress.add_task("downloading Firecracker", total=None)
        installed = install_firecracker(url, sha256, dest_dir,
                                        lambda done, total: progress.update(task, completed=done, total=total))
    out.print(f"installed {installed} and {installed.with_name('jailer')}")


def setup(
    install_firecracker_release: Annotated[bool, typer.Option(
        "--install-firecracker", help="download, verify and install the pinned Firecracker release")] = False,
    firecracker_url: Annotated[str, typer.Option(help="where to download the release archive from")]
        = firecracker_release_url(),
    firecracker_sha256: Annotated[str | None, typer.Option(help="the archive's SHA-256 (required to install)")] = None,
    install_dir: Annotated[Path, typer.Option(help="where the binaries go")] = Path("/usr/local/bin"),
    data_dir: DataDir = None,
) -> None:
    """Check the host and say, per backend, whether it works here and why."""
    if install_firecracker_release:
        _install_firecracker(firecracker_url, firecracker_sha256, install_dir)
    services = make_services(data_dir)
    table = Table("backend", "works", "isolation", "accelerator", "snapshots", "evidence", "to make it work")
    for capabilities in services.backends.capabilities():
        table.add_row(
            capabilities.name,
            "[green]yes[/]" if capabilities.usable else "[red]no[/]",
            capabilities.isolation,
            capabilities.accelerator or "",
            "yes" if capabilities.snapshots else "no",
            "\n".join(capabilities.evidence),
            "\n".join(capabilities.missing),
        )
    out.print(table)
