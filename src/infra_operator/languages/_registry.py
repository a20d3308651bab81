"""Toolchains that come from PyPI or npm instead of Debian, as the catalog writes them.

Some official toolchains are shipped only as prebuilt binaries on a package registry:
zig in PyPI's ``ziglang``, Deno in PyPI's ``deno``, Bun in npm's ``@oven/bun-linux-x64``.
A language's ``[NAME.registry]`` table names them, each pinned to one exact version so
that an image built today and one built next month hold the same toolchain, and says
which of the installed files become commands in ``/usr/local/bin``. Pure data: the
install itself is ``images/_registry.py``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

ROOT = "/opt/registry"
"""Where the installs go in the image: ``pypi/`` (``pip install --target``) and ``npm/``
(``npm install --prefix``); a link's target is relative to it."""

# Exact pins only: a name and one release, no ranges, wildcards, extras or URLs.
_PYPI_PIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?==[0-9][0-9A-Za-z.+!-]*")
_NPM_PIN = re.compile(r"(?:@[a-z0-9][a-z0-9._-]*/)?[a-z0-9][a-z0-9._-]*@[0-9]+\.[0-9]+\.[0-9]+(?:[-+][0-9A-Za-z.-]+)?")
_COMMAND = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


@dataclass(frozen=True)
class Registry:
    """What a language installs from registries at build time, and the commands it links."""

    pypi: tuple[str, ...] = ()
    npm: tuple[str, ...] = ()
    links: Mapping[str, str] = field(default_factory=dict)
    """Command name in ``/usr/local/bin`` -> the file it runs, relative to ``ROOT``."""

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> Registry:
        unknown = set(table) - {"pypi", "npm", "links"}
        if unknown:
            raise ValueError(f"unknown registry fields: {', '.join(sorted(unknown))}")
        pypi, npm = tuple(table.get("pypi", ())), tuple(table.get("npm", ()))
        for pin in pypi:
            if not _PYPI_PIN.fullmatch(pin):
                raise ValueError(f"PyPI package {pin!r} is not pinned exactly (NAME==VERSION)")
        for pin in npm:
            if not _NPM_PIN.fullmatch(pin):
                raise ValueError(f"npm package {pin!r} is not pinned exactly (NAME@X.Y.Z)")
        if not pypi and not npm:
            raise ValueError("a registry table names no package")
        links = dict(table.get("links", {}))
        for command, target in links.items():
            path = PurePosixPath(target)
            if not _COMMAND.fullmatch(command):
                raise ValueError(f"link name {command!r} is not a command name")
            # A link must stay inside what the registries installed.
            if path.is_absolute() or ".." in path.parts or path.parts[:1] not in (("pypi",), ("npm",)):
                raise ValueError(f"link {command!r} -> {target!r} must be a path under pypi/ or npm/")
        return cls(pypi=pypi, npm=npm, links=links)

    @property
    def pins(self) -> tuple[str, ...]:
        """The packages as recorded with an image: ``pypi:NAME==V``, ``npm:NAME@V``."""
        return (*(f"pypi:{pin}" for pin in self.pypi), *(f"npm:{pin}" for pin in self.npm))


__all__ = ["ROOT", "Registry"]
