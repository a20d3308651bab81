"""``infra.operator rootfs``: build, list, upload and download language images."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ..images import is_stale
from ._common import (
    Bucket,
    DataDir,
    Lang,
    Version,
    make_services,
    out,
    progress_display,
    run_transfer,
)

app = typer.Typer(help="Build, list, upload and download rootfs images.", no_args_is_help=True)


@app.command("create")
def create(
    lang: Annotated[str, typer.Option("--lang", "-l", help="language name or alias")],
    size: Annotated[int | None, typer.Option(help="image size in MiB; default: what it needs")] = None,
    if_stale: Annotated[bool, typer.Option("--if-stale", help="only when missing or built from other packages")] = False,
    version: Version = None,
    data_dir: DataDir = None,
) -> None:
    """Build the rootfs of a language's release from Debian packages (the default release: Debian 13's)."""
    services = make_services(data_dir)
    language = services.catalog.get(lang)
    release = services.catalog.releases(language)[0] if version in (None, "*") else \
        services.release(language.name, version).release
    name = release.image
    if if_stale and not is_stale(release, services.rootfs):
        out.print(f"rootfs-{name} is up to date")
        return
    with progress_display(f"building rootfs-{name}") as progress:
        info = services.build_rootfs(language.name, size, progress, release.suite.name)
    out.print(f"built {info.path} ({info.size >> 20} MiB, {info.version}, sha256 {info.sha256[:12]})")


@app.command("list")
def list_images(
    remote: Annotated[bool, typer.Option(help="list the object store instead of the local disk")] = False,
    bucket: Bucket = None,
    data_dir: DataDir = None,
) -> None:
    """List built images."""
    services = make_services(data_dir)
    table = Table("language", "release", "size", "version", "path")
    if remote:
        for entry in services.remote(bucket).list_rootfs():
            size, version = f"{entry['size'] >> 20} MiB", entry["version"] or ""
            table.add_row(entry["language"], entry.get("suite") or "", size, version, entry["path"])
    else:
        for info in services.rootfs.list():
            table.add_row(info.language, info.suite, f"{info.size >> 20} MiB", info.version, str(info.path))
    out.print(table)


@app.command("upload")
def upload(lang: Lang, bucket: Bucket = None, version: Version = None, data_dir: DataDir = None) -> None:
    """Upload a release's built image and its record to the object store."""
    services = make_services(data_dir)
    run_transfer(services.remote(bucket).upload_rootfs(services.release(lang, version).image))


@app.command("download")
def download(lang: Lang, bucket: Bucket = None, version: Version = None, data_dir: DataDir = None) -> None:
    """Download a release's image from the object store into the local store, checking its sha256."""
    services = make_services(data_dir)
    remote = services.remote(bucket)
    image = services.transfer_image(lang, version, lambda: (entry["image"] for entry in remote.list_rootfs()))
    run_transfer(remote.download_rootfs(image))
