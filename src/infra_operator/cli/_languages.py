"""``infra.operator languages``: the catalog and what is built of it."""

from __future__ import annotations

from rich.table import Table

from ._common import DataDir, make_services, out


def languages(data_dir: DataDir = None) -> None:
    """List the languages, their aliases and whether each image is built."""
    services = make_services(data_dir)
    table = Table("language", "aliases", "extension", "version", "image")
    for language in services.catalog:
        rootfs = services.rootfs.find(language.name)
        table.add_row(language.name, ", ".join(language.aliases), language.extension,
                      rootfs.version if rootfs else "", f"{rootfs.size >> 20} MiB" if rootfs else "not built")
    out.print(table)
    out.print(f"{len(services.catalog)} languages")
