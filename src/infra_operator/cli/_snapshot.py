"""``infra.operator snapshot``: list snapshots, and move them to and from the object store."""

from __future__ import annotations

import dataclasses
import time
from typing import Annotated

import typer
from rich.table import Table

from ..errors import BuildFailed, InvalidRequest, OperatorError
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
    lang: Annotated[str | None, typer.Option("--lang", "-l", help="language name or alias", show_default=False)]
        = None,
    all_images: Annotated[bool, typer.Option("--all", help="every language whose image is built, one after another")]
        = False,
    mem: Annotated[int, typer.Option(help="guest memory in MiB", min=64, max=8192)] = 256,
    vcpus: Annotated[int, typer.Option(help="virtual CPUs", min=1, max=8)] = 1,
    backend: Backend = None,
    if_stale: Annotated[bool, typer.Option("--if-stale", help="only when missing, or made from another rootfs, kernel "
                                                              "(and so agent) or QEMU version")] = False,
    version: Version = None,
    data_dir: DataDir = None,
) -> None:
    """Boot a microVM for a release of a language (with --all, for each built image: every release) to a ready
    agent and save it as that release's snapshot."""
    if all_images == (lang is not None):
        raise InvalidRequest("give exactly one of --lang and --all")
    services = make_services(data_dir)
    # (language, the release's suite, its image name): snapshots are per release.
    targets: list[tuple[str, str | None, str]] = []
    if all_images:
        known = {language.name for language in services.catalog}
        for built in services.rootfs.list():
            if built.language not in known:
                continue
            releases = services.catalog.releases(services.catalog.get(built.language))
            suite = next((r.suite.name for r in releases if r.image == built.image), None)
            if suite is not None:  # an image of a release the catalog no longer plans is left alone
                targets.append((built.language, suite, built.image))
        if not targets:
            raise InvalidRequest("no image is built: `infra.operator rootfs create --lang ...` first")
    else:
        language = services.catalog.get(lang or "").name
        targets = [(language, version, services.release(language, version).image)]
    chosen = services.backends.for_snapshots(backend)
    failed: list[str] = []
    for number, (language, suite, name) in enumerate(targets, start=1):
        # With --all, each line says how far along the run is; one language's failure does not stop the others.
        step = f"[{number}/{len(targets)}] " if all_images else ""
        if if_stale and services.executor.default_spec(chosen, language, suite).snapshot is not None:
            out.print(f"{step}the {chosen.name} snapshot of {name} is up to date")
            continue
        started = time.monotonic()
        try:
            with progress_display(f"{step}snapshot of {name} on {chosen.name}") as progress:
                info = services.create_snapshot(chosen, language, mem, vcpus, progress, suite)
        except OperatorError as exc:
            if not all_images:
                raise
            failed.append(name)
            out.print(f"{step}no snapshot of {name}: {exc.message}")
            continue
        entry = describe(dataclasses.asdict(info))
        out.print(f"{step}snapshot of {name} for {chosen.name}: vmstate {entry['vmstate_size'] >> 20} MiB, "
                  f"memory {entry['mem_size'] >> 20} MiB, in {info.path} ({time.monotonic() - started:.1f} s)")
    if failed:
        raise BuildFailed(f"no snapshot of {', '.join(failed)}: see above")


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
