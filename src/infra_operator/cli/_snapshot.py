"""``infra.operator snapshot``: list snapshots, and move them to and from the object store."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer
from rich.table import Table

from ..images import describe
from ._common import Bucket, DataDir, Lang, Version, make_services, out, progress_display, run_transfer

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
    table = Table("language", "backend", "vmstate", "memory", "on disk")
    found = (services.remote(bucket).list_snapshots() if remote
             else [dataclasses.asdict(s) for s in services.list_snapshots()])
    for entry in map(describe, found):
        table.add_row(entry["language"], entry["backend"], f"{entry['vmstate_size'] >> 10} KiB",
                      f"{entry['mem_size'] >> 20} MiB", f"{entry['disk_size'] >> 20} MiB")
    out.print(table)


@app.command("create")
def create(
    lang: Lang,
    mem: Annotated[int, typer.Option(help="guest memory in MiB", min=64, max=8192)] = 256,
    vcpus: Annotated[int, typer.Option(help="virtual CPUs", min=1, max=8)] = 1,
    backend: Backend = None,
    if_stale: Annotated[bool, typer.Option("--if-stale", help="only when missing or made from another rootfs or kernel")]
        = False,
    version: Version = None,
    data_dir: DataDir = None,
) -> None:
    """Boot a microVM for a release of a language to a ready agent and save it as that release's snapshot."""
    services = make_services(data_dir)
    language = services.catalog.get(lang).name
    chosen = services.backends.for_snapshots(backend)
    name = services.release(language, version).image
    if if_stale and services.executor.default_spec(chosen, language, version).snapshot is not None:
        out.print(f"the {chosen.name} snapshot of {name} is up to date")
        return
    with progress_display(f"snapshot of {name} on {chosen.name}") as progress:
        info = services.create_snapshot(chosen, language, mem, vcpus, progress, version)
    entry = describe(dataclasses.asdict(info))
    out.print(f"snapshot of {name} for {chosen.name}: vmstate {entry['vmstate_size'] >> 20} MiB, "
              f"memory {entry['mem_size'] >> 20} MiB, in {info.path}")


@app.command("upload")
def upload(lang: Lang, bucket: Bucket = None, backend: Backend = None, version: Version = None,
           data_dir: DataDir = None) -> None:
    """Upload the snapshot folder of a language's release to the object store."""
    services = make_services(data_dir)
    image = services.transfer_image(lang, version, lambda: (info.image for info in services.list_snapshots()))
    run_transfer(services.remote(bucket).upload_snapshot(image, backend))


@app.command("download")
def download(lang: Lang, bucket: Bucket = None, backend: Backend = None, version: Version = None,
             data_dir: DataDir = None) -> None:
    """Download the snapshot of a language's release from the object store, checking every file's sha256."""
    services = make_services(data_dir)
    remote = services.remote(bucket)
    image = services.transfer_image(lang, version, lambda: (entry["image"] for entry in remote.list_snapshots()))
    run_transfer(remote.download_snapshot(image, backend))
