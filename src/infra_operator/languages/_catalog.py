"""The catalog: languages as data (``catalog.toml``), loaded into typed records."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LanguageNotFound
from ._entry import PLACEHOLDER, Entry
from ._registry import Registry
from ._releases import RELEASES_FILE, Release, ReleasePlan

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
class Program:
    """Where one program's code is written and how it compiles and runs."""

    source: str
    compile: Command | None
    run: Command

    def named(self, name: str) -> Program:
        """This program with ``{entry}`` in its file name and commands replaced by ``name``."""
        def fill(command: Command) -> Command:
            return tuple(part.replace(PLACEHOLDER, name) for part in command)
        return Program(source=self.source.replace(PLACEHOLDER, name),
                       compile=fill(self.compile) if self.compile else None, run=fill(self.run))


@dataclass(frozen=True)
class Form:
    """A way users write programs in a language, beyond the sample: the verification runs
    each, and expects ``expected`` on stdout."""

    name: str
    code: str
    expected: str


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
    forms: tuple[Form, ...] = ()
    entry: Entry | None = None
    """How a program names itself, when its file or commands must carry that name."""
    template: Program | None = field(default=None, repr=False)
    """With ``entry``: the source and commands as the catalog writes them, ``{entry}`` in them;
    ``source``, ``compile`` and ``run`` above are these for a program that names nothing."""
    base: str | None = None
    """The language this one extends (a custom image, python-data): it runs like it, and its
    sessions use the base's kernel."""
    registry: Registry | None = None
    """Toolchain packages from PyPI or npm, pinned, installed into the image at build time."""
    suite: str | None = None
    """The Debian suite its image is built from, when not the configured one (swift is in
    trixie only)."""

    @classmethod
    def from_table(cls, name: str, table: dict[str, Any]) -> Language:
        run = _command(table["run"])
        version = _command(table["version"])
        assert run is not None and version is not None
        written = Program(source=table["source"], compile=_command(table.get("compile")), run=run)
        entry = Entry.from_table(table["entry"]) if "entry" in table else None
        program = written.named(entry.default) if entry else written
        return cls(
            name=name,
            extension=table["extension"],
            source=program.source,
            run=program.run,
            version_command=version,
            sample=table["sample"].lstrip("\n"),
            expected=table["expected"],
            family=table.get("family", "other"),
            aliases=tuple(table.get("aliases", ())),
            packages=tuple(table.get("packages", ())),
            compile=program.compile,
            env=dict(table.get("env", {})),
            warm=_command(table.get("warm")),
            ci=bool(table.get("ci", False)),
            forms=tuple(Form(name=form["name"], code=form["code"].lstrip("\n"), expected=form["expected"])
                        for form in table.get("forms", ())),
            entry=entry,
            template=written if entry else None,
            base=table.get("base"),
            registry=Registry.from_table(table["registry"]) if "registry" in table else None,
            suite=table.get("suite"),
        )

    def program(self, code: str) -> Program:
        """Where ``code`` is written and how it compiles and runs: named after what it
        declares when the language has an ``entry``."""
        if self.entry is None or self.template is None:
            return Program(source=self.source, compile=self.compile, run=self.run)
        return self.template.named(self.entry.name(code))

    @property
    def compiled(self) -> bool:
        return self.compile is not None


class Catalog:
    def __init__(self, languages: list[Language], plan: ReleasePlan | None = None) -> None:
        self._languages = {language.name: language for language in languages}
        self.plan = plan or ReleasePlan.load()
        unknown = set(self.plan.overridden()) - set(self._languages)
        if unknown:
            raise ValueError(f"releases.toml names languages the catalog has not: {sorted(unknown)}")
        self._names: dict[str, str] = {}
        for language in languages:
            for name in (language.name, *language.aliases):
                if self._names.setdefault(name.lower(), language.name) != language.name:
                    raise ValueError(f"name {name!r} is claimed by two languages")

    @classmethod
    def load(cls, path: Path = CATALOG_FILE, releases: Path = RELEASES_FILE) -> Catalog:
        with path.open("rb") as handle:
            tables = tomllib.load(handle)
        return cls([Language.from_table(name, table) for name, table in tables.items()], ReleasePlan.load(releases))

    def releases(self, language: Language) -> list[Release]:
        """The language's releases as the catalog plans them, default first (built or not). A
        language the catalog pins to a suite (swift) and a custom image have one release, stored
        under the language's own name."""
        if language.suite is not None or language.base is not None:
            suite = self.plan.suites[language.suite or self.plan.default]
            return [Release(language=language.name, suite=suite, packages=language.packages, plain=True)]
        return self.plan.releases(language.name, language.packages)

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
