"""``infra.operator setup``: what this host can run, and what to install for the rest."""

from __future__ import annotations

from rich.table import Table

from ._common import DataDir, make_services, out


def setup(data_dir: DataDir = None) -> None:
    """Check the host and say, per backend, whether it works here and why."""
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
