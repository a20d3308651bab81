"""The catalog: languages as data (``catalog.toml``), loaded into typed records."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LanguageNotFound

CATALOG_FILE = Path(__file__).with_name("catalog.toml")

Command = tuple[str, ...]
"""An argv. Catalog strings become ``("/bin/sh", "-c", string)``."""


def _command(value: str | list[str] | None) -> Command | None:
    if value is None:
        return None
    if isinstance(value, str):
        return ("/bin/sh", "-c", value)
    return tuple(value)


@dataclass(frozen=True)
class Language:
    name: str
    extension: str
    source: str
    run: Command
    version_command: Command
    sample: str
    expected: str
    family: str = "other"
    aliases: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    compile: Command | None = None
    env: dict[str, str] = field(default_factory=dict)
    warm: Command | None = None
    ci: bool = False
    """In the subset CI builds and verifies: small images that build quickly."""

    @classmethod
    def from_table(cls, name: str, table: dict[str, Any]) -> Language:
        run = _command(table["run"])
        version = _command(table["version"])
        assert run is not None and version is not None
        return cls(
            name=name,
            extension=table["extension"],
            source=table["source"],
            run=run,
            version_command=version,
            sample=table["sample"].lstrip("\n"),
            expected=table["expected"],
            family=table.get("family", "other"),
            aliases=tuple(table.get("aliases", ())),
            packages=tuple(table.get("packages", ())),
            compile=_command(table.get("compile")),
            env=dict(table.get("env", {})),
            warm=_command(table.get("warm")),
            ci=bool(table.get("ci", False)),
        )

    @property
    def compiled(self) -> bool:
        return self.compile is not None


class Catalog:
    def __init__(self, languages: list[Language]) -> None:
        self._languages = {language.name: language for language in languages}
        self._names: dict[str, str] = {}
        for language in languages:
            for name in (language.name, *language.aliases):
                if self._names.setdefault(name.lower(), language.name) != language.name:
                    raise ValueError(f"name {name!r} is claimed by two languages")

    @classmethod
    def load(cls, path: Path = CATALOG_FILE) -> Catalog:
        with path.open("rb") as handle:
            tables = tomllib.load(handle)
        return cls([Language.from_table(name, table) for name, table in tables.items()])

    def __iter__(self) -> Iterator[Language]:
        return iter(self._languages.values())

    def __len__(self) -> int:
        return len(self._languages)

    def get(self, name: str) -> Language:
        """By name or alias, case-insensitive; ``LanguageNotFound`` otherwise."""
        canonical = self._names.get(name.strip().lower())
        if canonical is None:
            raise LanguageNotFound(name)
        return self._languages[canonical]

    def names(self) -> list[str]:
        return list(self._languages)
