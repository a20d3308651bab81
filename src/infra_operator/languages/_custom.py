"""Custom languages: a new name built on a catalog language, with more packages in it.

A custom language runs exactly like its base (same source file, compile and run
commands, sample); only its image differs. Its definition is a small JSON file in a
folder of its own (``<data_dir>/languages/<name>.json``), written once its image is
built, so it survives a restart and every process on the host (API, CLI) sees it.

Package names end up on the command lines of apt, pip and npm, so each is checked
against its registry's name grammar here, strictly: nothing that could read as an
option (a leading ``-``), a path, a URL or a second argument gets through.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import InvalidRequest, LanguageNotFound
from ._catalog import Catalog, Language

Origin = Literal["packages", "docker"]

_NAME = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")
_NAME_MAX = 40
# Debian policy 5.6.1: lowercase letters, digits, + - . , two characters at least, starting
# alphanumeric; optionally pinned as apt accepts it, `name=version` (policy 5.6.12).
_DEBIAN = re.compile(r"[a-z0-9][a-z0-9+.-]+(?:=[0-9][A-Za-z0-9.+~:-]*)?")
# PEP 508 names (PEP 503 letters), optional extras, optional version specifiers such as
# `==1.2.3` or `>=1,<2`; no URLs, no markers, no spaces.
_PIP_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_PIP_SPEC = r"(?:===|~=|==|!=|<=|>=|<|>)[A-Za-z0-9.*+!_-]+"
_PIP = re.compile(rf"{_PIP_NAME}(?:\[{_PIP_NAME}(?:,{_PIP_NAME})*\])?(?:{_PIP_SPEC}(?:,{_PIP_SPEC})*)?")
# npm's validate-npm-package-name for new packages (lowercase, URL-safe, not starting with
# . or _), optionally scoped, optionally `@version` or a range or a tag without spaces,
# slashes or colons (so no git, file or URL specifiers).
_NPM_PART = r"[a-z0-9][a-z0-9._~-]*"
_NPM = re.compile(rf"(?:@{_NPM_PART}/)?{_NPM_PART}(?:@[A-Za-z0-9.^~<>=*+][A-Za-z0-9.^~<>=*+-]*)?")
_PACKAGE_MAX = 214  # npm's limit, and longer than any name in Debian or on PyPI
_GRAMMARS = {"debian": _DEBIAN, "pip": _PIP, "npm": _NPM}
PIP_DEBIAN_PACKAGES = ("python3-pip",)
"""What an image needs for its own pip to install from PyPI (which it reaches with the host's CAs)."""


def check_name(name: str, catalog: Catalog) -> str:
    """A new language's name: lowercase, safe in file names, and no catalog language's name or alias."""
    if len(name) > _NAME_MAX or not _NAME.fullmatch(name):
        raise InvalidRequest(f"bad language name {name!r}: lowercase letters and digits, words joined by - or _, "
                             f"at most {_NAME_MAX} characters")
    try:
        taken = catalog.get(name)
    except LanguageNotFound:
        return name
    raise InvalidRequest(f"language name {name!r} is taken by the catalog's {taken.name}: choose another name")


def check_packages(kind: Literal["debian", "pip", "npm"], names: list[str]) -> tuple[str, ...]:
    grammar = _GRAMMARS[kind]
    bad = [name for name in names if len(name) > _PACKAGE_MAX or not grammar.fullmatch(name)]
    if bad:
        raise InvalidRequest(f"bad {kind} package name{'s' if len(bad) > 1 else ''}: "
                             f"{', '.join(repr(name) for name in bad)}")
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class Packages:
    """What a custom image adds to its base: Debian packages, and installs from PyPI and npm."""

    debian: tuple[str, ...] = ()
    pip: tuple[str, ...] = ()
    npm: tuple[str, ...] = ()

    @classmethod
    def checked(cls, debian: list[str], pip: list[str], npm: list[str]) -> Packages:
        return cls(debian=check_packages("debian", debian), pip=check_packages("pip", pip),
                   npm=check_packages("npm", npm))

    def to_json(self) -> dict[str, list[str]]:
        return {"debian": list(self.debian), "pip": list(self.pip), "npm": list(self.npm)}


@dataclass(frozen=True)
class CustomLanguage:
    name: str
    base: str
    packages: Packages = field(default_factory=Packages)
    origin: Origin = "packages"
    created_at: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "base": self.base, "packages": self.packages.to_json(), "origin": self.origin,
                "created_at": self.created_at}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CustomLanguage:
        packages = data.get("packages", {})
        return cls(name=data["name"], base=data["base"],
                   packages=Packages(debian=tuple(packages.get("debian", ())), pip=tuple(packages.get("pip", ())),
                                     npm=tuple(packages.get("npm", ()))),
                   origin=data.get("origin", "packages"), created_at=data.get("created_at", 0.0))

    def derive(self, base: Language) -> Language:
        """The language this one is: its base's commands and sample under this name, with the
        Debian packages its image is built from (none for an imported archive)."""
        packages: tuple[str, ...] = ()
        if self.origin == "packages":
            # Its own pip installs from PyPI at build time.
            for_pip = PIP_DEBIAN_PACKAGES if self.packages.pip else ()
            packages = tuple(dict.fromkeys((*base.packages, *self.packages.debian, *for_pip)))
        return dataclasses.replace(base, name=self.name, aliases=(), base=base.name, ci=False, packages=packages)


class CustomStore:
    """The definitions of custom languages, one JSON file each, written whole or not at all."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, name: str) -> Path | None:
        return self.folder / f"{name}.json" if _NAME.fullmatch(name) and len(name) <= _NAME_MAX else None

    def find(self, name: str) -> CustomLanguage | None:
        path = self._path(name)
        if path is None:
            return None
        try:
            return CustomLanguage.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError):
            return None

    def save(self, custom: CustomLanguage) -> None:
        path = self._path(custom.name)
        assert path is not None, custom.name  # names are checked before anything is built
        self.folder.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        temporary.write_text(json.dumps(custom.to_json(), indent=2) + "\n")
        os.replace(temporary, path)

    def remove(self, name: str) -> bool:
        path = self._path(name)
        if path is None or not path.exists():
            return False
        path.unlink()
        return True

    def list(self) -> list[CustomLanguage]:
        found = (self.find(path.stem) for path in sorted(self.folder.glob("*.json")))
        return [custom for custom in found if custom is not None]


class WithCustom(Catalog):
    """The catalog and the custom languages of a store, seen as one catalog.

    The store is read at each look-up, not cached: a custom language built by another
    process (the CLI while the API serves) is usable at once, and one deleted is gone.
    A definition whose base has left the catalog is ignored.
    """

    def __init__(self, catalog: Catalog, store: CustomStore) -> None:
        super().__init__(list(catalog), catalog.plan)
        self.catalog = catalog
        self.store = store

    def custom(self, name: str) -> tuple[CustomLanguage, Language] | None:
        found = self.store.find(name.strip().lower())
        if found is None:
            return None
        try:
            return found, found.derive(self.catalog.get(found.base))
        except LanguageNotFound:
            return None

    def customs(self) -> Iterator[tuple[CustomLanguage, Language]]:
        for custom in self.store.list():
            try:
                self.catalog.get(custom.name)
                continue  # a catalog language (or alias) came to have this name: the catalog's wins
            except LanguageNotFound:
                pass
            found = self.custom(custom.name)
            if found is not None:
                yield found

    def get(self, name: str) -> Language:
        try:
            return self.catalog.get(name)
        except LanguageNotFound:
            found = self.custom(name)
            if found is None:
                raise
            return found[1]

    def __iter__(self) -> Iterator[Language]:
        yield from self.catalog
        yield from (language for _, language in self.customs())

    def __len__(self) -> int:
        return len(self.catalog) + sum(1 for _ in self.customs())

    def names(self) -> list[str]:
        return [language.name for language in self]


__all__ = ["PIP_DEBIAN_PACKAGES", "CustomLanguage", "CustomStore", "Origin", "Packages", "WithCustom", "check_name",
           "check_packages"]
