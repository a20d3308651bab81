"""Toolchains from PyPI and npm as the catalog writes them: exact pins only, links that stay
inside what was installed, and the catalog's registry languages complete."""

from __future__ import annotations

import pytest

from infra_operator.languages import Catalog, Registry

pytestmark = pytest.mark.unit

REGISTRY_LANGUAGES = {"zig", "deno", "deno-typescript", "bun", "bun-typescript"}


def test_exact_pins_are_accepted_and_recorded_with_their_registry() -> None:
    registry = Registry.from_table({"pypi": ["ziglang==0.17.1"], "npm": ["@oven/bun-linux-x64@1.4.5", "left-pad@1.3.0"],
                                    "links": {"zig": "pypi/ziglang/zig"}})
    assert registry.pins == ("pypi:ziglang==0.17.1", "npm:@oven/bun-linux-x64@1.4.5", "npm:left-pad@1.3.0")
    assert registry.links == {"zig": "pypi/ziglang/zig"}


@pytest.mark.parametrize("table", [
    {"pypi": ["ziglang"]},
    {"pypi": ["ziglang>=0.17"]},
    {"pypi": ["ziglang==0.17.*"]},
    {"pypi": ["ziglang[extra]==0.17.1"]},
    {"pypi": ["ziglang @ https://example.org/z.whl"]},
    {"npm": ["bun"]},
    {"npm": ["bun@^1.4.5"]},
    {"npm": ["bun@1.4.x"]},
    {"npm": ["bun@latest"]},
    {"npm": ["bun@github:oven-sh/bun"]},
], ids=str)
def test_anything_but_an_exact_pin_is_refused(table: dict[str, list[str]]) -> None:
    with pytest.raises(ValueError, match="not pinned exactly"):
        Registry.from_table(table)


@pytest.mark.parametrize(("links", "problem"), [
    ({"zig": "/usr/bin/zig"}, "under pypi/ or npm/"),
    ({"zig": "pypi/../../etc/passwd"}, "under pypi/ or npm/"),
    ({"zig": "other/zig"}, "under pypi/ or npm/"),
    ({"../zig": "pypi/ziglang/zig"}, "not a command name"),
])
def test_a_link_must_be_a_command_to_an_installed_file(links: dict[str, str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Registry.from_table({"pypi": ["ziglang==0.17.1"], "links": links})


def test_an_empty_or_misspelt_table_is_refused() -> None:
    with pytest.raises(ValueError, match="names no package"):
        Registry.from_table({"links": {}})
    with pytest.raises(ValueError, match="unknown registry fields: pip"):
        Registry.from_table({"pip": ["ziglang==0.17.1"]})


def test_the_catalog_languages_from_registries_pin_and_link_their_toolchain() -> None:
    catalog = Catalog.load()
    from_registries = {language.name for language in catalog if language.registry is not None}
    assert from_registries >= REGISTRY_LANGUAGES
    for name in from_registries:
        language = catalog.get(name)
        assert language.registry is not None and language.registry.links, name
        # The version command runs a linked command: the image's version is the installed one.
        assert any(command in " ".join(language.version_command) for command in language.registry.links), name


def test_swift_is_built_from_trixie_and_names_stay_unique() -> None:
    catalog = Catalog.load()
    assert catalog.get("swift").suite == "trixie"
    assert len(catalog) >= 75
    for alias, name in {"ts": "typescript", "deno-ts": "deno-typescript", "bun-ts": "bun-typescript",
                        "ziglang": "zig", "js": "nodejs"}.items():
        assert catalog.get(alias).name == name
