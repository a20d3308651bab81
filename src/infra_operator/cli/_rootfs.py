"""``infra.operator rootfs``: build and list language images."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ..images import is_stale
from ._common import DataDir, make_services, out, progress_display, reporting_errors

app = typer.Typer(help="Build and list rootfs images.", no_args_is_help=True)


@app.command("create")
def create(
    lang: Annotated[str, typer.Option("--lang", "-l", help="language name or alias")],
    size: Annotated[int | None, typer.Option(help="image size in MiB; default: what it needs")] = None,
    if_stale: Annotated[bool, typer.Option("--if-stale", help="only when missing or built from other packages")] = False,
    data_dir: DataDir = None,
) -> None:
    """Build a language's rootfs from Debian packages."""
    services = make_services(data_dir)
    with reporting_errors():
        language = services.catalog.get(lang)
        name = language.name
        if if_stale and not is_stale(language, services.rootfs):
            out.print(f"rootfs-{name} is up to date")
            return
        with progress_display(f"building rootfs-{name}") as progress:
            info = services.build_rootfs(name, size, progress)
    out.print(f"built {info.path} ({info.size >> 20} MiB, {info.version}, sha256 {info.sha256[:12]})")


@app.command("list")
def list_images(
    remote: Annotated[bool, typer.Option(help="list the object store instead of the local disk")] = False,
    data_dir: DataDir = None,
) -> None:
    """List built images."""
    services = make_services(data_dir)
    table = Table("language", "size", "version", "path")
    with reporting_errors():
        if remote:
            for entry in services.remote().list_rootfs():
                table.add_row(entry["language"], f"{entry['size'] >> 20} MiB", "", entry["path"])
        else:
            for info in services.rootfs.list():
                table.add_row(info.language, f"{info.size >> 20} MiB", info.version, str(info.path))
    out.print(table)
