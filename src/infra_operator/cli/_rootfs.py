"""``infra.operator rootfs``: build, list, upload and download language images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..errors import InvalidRequest
from ..images import RootfsInfo, is_stale
from ..languages import Packages
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


Size = Annotated[int | None, typer.Option(help="an ext4 image of this many MiB; default: compressed squashfs")]
Base = Annotated[str | None, typer.Option(
    "--base", help="make --lang a custom image: a new language that runs like this catalog language",
    show_default=False)]


def _built(info: RootfsInfo) -> None:
    out.print(f"built {info.path} ({info.size >> 20} MiB, {info.version}, sha256 {info.sha256[:12]})")


@app.command("create")
def create(
    lang: Annotated[str, typer.Option("--lang", "-l", help="language name or alias; with --base, the new name")],
    size: Size = None,
    if_stale: Annotated[bool, typer.Option("--if-stale", help="only when missing or built from other packages")] = False,
    base: Base = None,
    debian: Annotated[list[str] | None, typer.Option(
        "--debian", help="with --base: a Debian package to add (name or name=version); repeat for more",
        show_default=False)] = None,
    pip: Annotated[list[str] | None, typer.Option(
        "--pip", help="with --base: a PyPI requirement to install at build time (six, six==1.16.0); repeat for more",
        show_default=False)] = None,
    npm: Annotated[list[str] | None, typer.Option(
        "--npm", help="with --base: an npm package to install at build time (left-pad, left-pad@1.3.0); repeat for more",
        show_default=False)] = None,
    version: Version = None,
    data_dir: DataDir = None,
) -> None:
    """Build the rootfs of a language's release from Debian packages (default: Debian 13's); with --base,
    a custom image."""
    services = make_services(data_dir)
    if base is not None:
        custom = services.new_custom(lang, base, Packages.checked(debian or [], pip or [], npm or []))
        with progress_display(f"building custom image {custom.name} on {custom.base}") as progress:
            _built(services.build_custom(custom, size, progress))
        return
    if debian or pip or npm:
        raise InvalidRequest("--debian, --pip and --npm need --base: a custom image is a new language built on "
                             "a catalog one")
    language = services.catalog.get(lang)
    release = services.catalog.releases(language)[0] if version in (None, "*") else \
        services.release(language.name, version).release
    name = release.image
    if if_stale and not is_stale(language, release, services.rootfs):
        out.print(f"rootfs-{name} is up to date")
        return
    with progress_display(f"building rootfs-{name}") as progress:
        _built(services.build_rootfs(language.name, size, progress, release.suite.name))


@app.command("from-docker")
def from_docker(
    lang: Annotated[str, typer.Option("--lang", "-l", help="the new language's name")],
    base: Annotated[str, typer.Option("--base", help="the catalog language it runs like (its commands and sample)")],
    image: Annotated[Path, typer.Option(
        "--image", help="a `docker save` archive or an OCI image layout as a tar (plain or compressed)")],
    size: Size = None,
    data_dir: DataDir = None,
) -> None:
    """Make a custom image from a docker or OCI image archive: its layers, then the agent."""
    services = make_services(data_dir)
    custom = services.new_custom(lang, base, origin="docker")
    with progress_display(f"importing {image.name} as {custom.name}") as progress:
        _built(services.import_docker(custom, image, size, progress))


@app.command("delete")
def delete(lang: Annotated[str, typer.Option("--lang", "-l", help="a custom image's language")],
           data_dir: DataDir = None) -> None:
    """Delete a custom image: its language, image and snapshots (catalog languages cannot be deleted)."""
    services = make_services(data_dir)
    language = services.delete_custom(lang)
    out.print(f"deleted {language.name} (based on {language.base})")


@app.command("list")
def list_images(
    remote: Annotated[bool, typer.Option(help="list the object store instead of the local disk")] = False,
    bucket: Bucket = None,
    data_dir: DataDir = None,
) -> None:
    """List built images."""
    services = make_services(data_dir)
    table = Table("language", "release", "size", "format", "version", "path")
    if remote:
        for entry in services.remote(bucket).list_rootfs():
            size, version = f"{entry['size'] >> 20} MiB", entry["version"] or ""
            table.add_row(entry["language"], entry.get("suite") or "", size, entry["format"], version, entry["path"])
    else:
        for info in services.rootfs.list():
            table.add_row(info.language, info.suite, f"{info.size >> 20} MiB", info.format, info.version,
                          str(info.path))
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
