"""The catalog as data: enough languages, every one complete, names that cannot clash."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from conftest import SEED_LANGUAGES

from infra_operator.errors import LanguageNotFound
from infra_operator.languages import CATALOG_FILE, Catalog

pytestmark = pytest.mark.unit

FAMILIES = {"c", "jvm", "dotnet", "scripting", "functional", "systems", "data", "other"}
NAME = re.compile(r"^[a-z0-9][a-z0-9+#.\-]*$")


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load()


def test_sixty_languages(catalog: Catalog) -> None:
    assert len(catalog) >= 60
    assert set(SEED_LANGUAGES) <= set(catalog.names())


def test_every_family_is_known_and_covered(catalog: Catalog) -> None:
    assert {language.family for language in catalog} == FAMILIES


def test_names_and_aliases_are_lowercase_and_unique(catalog: Catalog) -> None:
    seen: dict[str, str] = {}
    for language in catalog:
        for name in (language.name, *language.aliases):
            assert NAME.match(name), f"{language.name}: {name!r} is not a lowercase name"
            assert name not in seen, f"{name!r} is claimed by {seen.get(name)} and {language.name}"
            seen[name] = language.name


def test_aliases_resolve(catalog: Catalog) -> None:
    for alias, name in {"js": "nodejs", "golang": "go", "c++": "cpp", "c#": "csharp", "cs": "csharp",
                        "py": "python", "PY": "python", "objc": "objective-c", "ts": "typescript"}.items():
        assert catalog.get(alias).name == name
    with pytest.raises(LanguageNotFound):
        catalog.get("cobol2")


def test_every_entry_is_complete(catalog: Catalog) -> None:
    for language in catalog:
        assert language.sample.strip(), language.name
        assert language.expected.endswith("\n"), language.name
        assert language.version_command, language.name
        assert language.run, language.name
        assert language.extension.startswith("."), language.name
        assert "/" not in language.source and language.source, language.name
        assert all(NAME.match(package) for package in language.packages), language.name
        # Writable caches must point into the sandbox's tmpfs: the image is read-only at run time.
        for key, value in language.env.items():
            if key.endswith(("CACHE", "CACHE_DIR", "PATH")) and value.startswith("/"):
                assert value.startswith(("/tmp", "/work")), f"{language.name}: {key}={value}"


def test_ci_subset_has_the_seeds_and_one_language_per_family(catalog: Catalog) -> None:
    subset = [language for language in catalog if language.ci]
    assert set(SEED_LANGUAGES) <= {language.name for language in subset}
    assert {language.family for language in subset} == FAMILIES


def test_a_duplicate_name_is_refused(tmp_path: Path) -> None:
    tables = tomllib.loads(CATALOG_FILE.read_text())
    tables["python"]["aliases"] = [*tables["python"]["aliases"], "js"]
    clashing = tmp_path / "catalog.toml"
    lines = []
    for name, table in tables.items():
        lines.append(f'["{name}"]')
        lines.extend(f"{key} = {_toml(value)}" for key, value in table.items())
    clashing.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="'js' is claimed by two languages"):
        Catalog.load(clashing)


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f'"{key}" = {_toml(item)}' for key, item in value.items()) + "}"
    raise TypeError(value)
