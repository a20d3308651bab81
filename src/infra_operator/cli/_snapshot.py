"""``infra.operator snapshot``: list snapshots, and move them to and from the object store."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ._common import Bucket, DataDir, Lang, make_services, out, reporting_errors, run_transfer

app = typer.Typer(help="List, upload and download microVM snapshots.", no_args_is_help=True)

Backend = Annotated[str | None, typer.Option(help="qemu or firecracker; default: the only one there is",
                                             show_default=False)]


@app.command("list")
def list_snapshots(
    remote: Annotated[bool, typer.Option(help="list the object store instead of the local disk")] = False,
    bucket: Bucket = None,
    data_dir: DataDir = None,
) -> None:
    """List snapshots."""
    services = make_services(data_dir)
    table = Table("language", "backend", "vmstate", "memory")
    with reporting_errors():
        if remote:
            rows = [(s["language"], s["backend"], s["vmstate_size"], s["mem_size"])
                    for s in services.remote(bucket).list_snapshots()]
        else:
            rows = [(s.language, s.backend, s.vmstate_size, s.mem_size) for s in services.list_snapshots()]
    for language, backend, vmstate_size, mem_size in rows:
        table.add_row(language, backend, f"{vmstate_size >> 10} KiB", f"{mem_size >> 20} MiB")
    out.print(table)


@app.command("upload")
def upload(lang: Lang, bucket: Bucket = None, backend: Backend = None, data_dir: DataDir = None) -> None:
    """Upload a language's snapshot folder to the object store."""
    services = make_services(data_dir)
    with reporting_errors():
        run_transfer(services.remote(bucket).upload_snapshot(services.catalog.get(lang).name, backend))


@app.command("download")
def download(lang: Lang, bucket: Bucket = None, backend: Backend = None, data_dir: DataDir = None) -> None:
    """Download a language's snapshot from the object store, checking every file's sha256."""
    services = make_services(data_dir)
    with reporting_errors():
        run_transfer(services.remote(bucket).download_snapshot(services.catalog.get(lang).name, backend))
