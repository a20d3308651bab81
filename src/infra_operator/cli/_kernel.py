"""``infra.operator kernel``: the guest kernel and initramfs every microVM boots."""

from __future__ import annotations

from typing import Annotated

import typer

from ..images import kernel_is_stale, load_kernel
from ._common import DataDir, make_services, out, progress_display

app = typer.Typer(help="Build and show the microVM guest kernel and initramfs.", no_args_is_help=True)


@app.command("build")
def build(
    if_stale: Annotated[bool, typer.Option("--if-stale", help="only when missing or built with another agent")] = False,
    data_dir: DataDir = None,
) -> None:
    """Fetch Debian's cloud kernel, extract vmlinux, and build the initramfs with the agent."""
    services = make_services(data_dir)
    if if_stale and not kernel_is_stale(services.settings):
        out.print("the guest kernel is up to date")
        return
    with progress_display("building the guest kernel") as progress:
        kernel = services.build_kernel(progress)
    out.print(f"guest kernel ready: {kernel.bzimage.parent} (sha256 {kernel.sha256[:12]})")


@app.command("show")
def show(data_dir: DataDir = None) -> None:
    """Where the current kernel is, and whether it matches this checkout's agent."""
    services = make_services(data_dir)
    kernel = load_kernel(services.settings)
    if kernel is None:
        out.print("no guest kernel built: run `infra.operator kernel build`")
        raise typer.Exit(1)
    state = "stale: rebuild it" if kernel_is_stale(services.settings) else "current"
    out.print(f"{kernel.bzimage}\n{kernel.vmlinux}\n{kernel.initramfs}\nsha256 {kernel.sha256} ({state})")
