"""Releases as data: which Debian suites a language's images come from (``releases.toml``).

Before its image is built a release is known by its suite only; its version is read from
the image (see ``images.RootfsStore``), so nothing here names one. Pure data: no disk
but the TOML file, no sandbox.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RELEASES_FILE = Path(__file__).with_name("releases.toml")
LEGACY_SUITE = "bookworm"
"""The suite every image came from before releases: its images keep their old path."""
IMAGE_SEPARATOR = "@"
DEBIAN_ARCHIVE = "http://deb.debian.org"
"""Where ``releases.toml``'s sources point; ``Settings.debian_mirror`` stands in for it."""
_SUITE_NAME = re.compile(r"^[a-z][a-z0-9-]*$")


@dataclass(frozen=True)
class Suite:
    name: str
    debian: str
    """The number users know it by (``12``, ``13``), or ``unstable``."""
    sources: tuple[str, ...]
    newer_only: bool = False
    """Offered only where its version is newer than the default release's (unstable)."""

    @property
    def label(self) -> str:
        return f"Debian {self.debian}"

    def sources_from(self, mirror: str | None) -> list[str]:
        """The apt sources, fetched from ``mirror`` (``http://host[/prefix]``, standing for
        ``http://deb.debian.org``: its ``/debian`` and ``/debian-security``) when one is given."""
        if mirror is None:
            return list(self.sources)
        return [line.replace(DEBIAN_ARCHIVE, mirror.rstrip("/")) for line in self.sources]


@dataclass(frozen=True)
class Release:
    """One language built from one suite."""

    language: str
    suite: Suite
    packages: tuple[str, ...]
    plain: bool = False
    """Stored under the language's own name whatever its suite: a language with one release
    only (a catalog language pinned to a suite, a custom image)."""

    @property
    def image(self) -> str:
        """The name its image is stored under: the language's own for bookworm (where every
        image was before releases) or a ``plain`` release, ``language@suite`` otherwise."""
        if self.plain or self.suite.name == LEGACY_SUITE:
            return self.language
        return f"{self.language}{IMAGE_SEPARATOR}{self.suite.name}"


def split_image(image: str) -> tuple[str, str]:
    """``python@trixie`` -> (``python``, ``trixie``); a plain name is bookworm's."""
    language, _, suite = image.partition(IMAGE_SEPARATOR)
    return language, suite or LEGACY_SUITE


class ReleasePlan:
    """The suites of every language, default first."""

    def __init__(self, default: str, suites: Mapping[str, Suite], order: tuple[str, ...],
                 overrides: Mapping[str, Mapping[str, Any]]) -> None:
        unknown = {default, *order} - set(suites)
        if unknown:
            raise ValueError(f"releases: unknown suites {sorted(unknown)}")
        if order[0] != default:
            raise ValueError("releases: the default suite must come first in `order`")
        self.default = default
        self.suites = dict(suites)
        self.order = order
        self._overrides = {name: dict(table) for name, table in overrides.items()}
        for name, table in self._overrides.items():
            named = set(table.get("suites", ())) | set(table.get("packages", {}))
            if named - set(suites):
                raise ValueError(f"releases: {name} names unknown suites {sorted(named - set(suites))}")

    @classmethod
    def load(cls, path: Path = RELEASES_FILE) -> ReleasePlan:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
        suites = {}
        for name, table in data["suites"].items():
            if not _SUITE_NAME.match(name):
                raise ValueError(f"releases: bad suite name {name!r}")
            suites[name] = Suite(name=name, debian=str(table["debian"]), sources=tuple(table["sources"]),
                                 newer_only=bool(table.get("newer_only", False)))
        return cls(str(data["default"]), suites, tuple(data["order"]), data.get("languages", {}))

    def overridden(self) -> list[str]:
        return list(self._overrides)

    def releases(self, language: str, packages: tuple[str, ...]) -> list[Release]:
        """The language's releases, default first; ``packages`` are the catalog's, which a
        suite's own list replaces."""
        table = self._overrides.get(language, {})
        names = tuple(table.get("suites", self.order))
        ordered = sorted(names, key=lambda name: self.order.index(name) if name in self.order else len(self.order))
        by_suite: Mapping[str, list[str]] = table.get("packages", {})
        return [Release(language=language, suite=self.suites[name], packages=tuple(by_suite.get(name, packages)))
                for name in ordered]


__all__ = ["IMAGE_SEPARATOR", "LEGACY_SUITE", "RELEASES_FILE", "Release", "ReleasePlan", "Suite", "split_image"]
