"""Custom languages as data: the name grammars that keep package names from reading as
options, and the catalog that sees the store's definitions beside its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra_operator.errors import InvalidRequest, LanguageNotFound
from infra_operator.languages import Catalog, CustomLanguage, CustomStore, Packages, WithCustom, check_name, check_packages

pytestmark = pytest.mark.unit

GOOD = {
    "debian": ["curl", "python3-numpy", "libc6-dev", "g++", "gcc=4:12.2.0-3"],
    "pip": ["six", "six==1.16.0", "Django>=4,<5", "pandas[excel,html]~=2.1", "zope.interface", "a_b-c.d"],
    "npm": ["left-pad", "left-pad@1.3.0", "@types/node", "@scope/pkg@^2.0.0", "lodash@latest", "x@>=1"],
}
BAD = {
    "debian": ["-oDebug=1", "Curl", "a", "curl wget", "curl,wget", "../x", "curl=", "curl=-1", ""],
    "pip": ["-e", "--index-url=http://x", "six; os_name=='nt'", "six @ https://x/y.whl", "git+https://x/y",
            "./local", "six==1.0 --pre", "six==", ".six", ""],
    "npm": ["-g", "--registry=http://x", "Left-Pad", ".hidden", "_private", "x@file:../y", "x@git+ssh://h/r",
            "x@https://h/t.tgz", "@scope", "a b", "x@ 1", "x@-1", ""],
}


@pytest.mark.parametrize("kind", GOOD)
def test_registry_names_are_accepted(kind: str) -> None:
    assert check_packages(kind, GOOD[kind]) == tuple(GOOD[kind])  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", BAD)
def test_anything_else_is_refused_and_named(kind: str) -> None:
    for name in BAD[kind]:
        with pytest.raises(InvalidRequest, match=f"bad {kind} package name"):
            check_packages(kind, [name])  # type: ignore[arg-type]


def test_names_must_be_new_and_plain() -> None:
    catalog = Catalog.load()
    assert check_name("py-data2", catalog) == "py-data2"
    for taken in ("python", "py", "JS"):
        with pytest.raises(InvalidRequest):
            check_name(taken, catalog)
    for bad in ("Py", "a b", "../x", "x" * 41, "-x", "x-", "1x"):
        with pytest.raises(InvalidRequest, match="bad language name"):
            check_name(bad, catalog)


def test_the_catalog_sees_saved_definitions_and_forgets_removed_ones(tmp_path: Path) -> None:
    store = CustomStore(tmp_path / "languages")
    languages = WithCustom(Catalog.load(), store)
    before = len(languages)
    with pytest.raises(LanguageNotFound):
        languages.get("py-six")
    store.save(CustomLanguage(name="py-six", base="python", packages=Packages(pip=("six",))))
    custom = languages.get("PY-SIX")
    python = languages.get("python")
    assert (custom.name, custom.base, custom.run, custom.source) == ("py-six", "python", python.run, python.source)
    assert custom.packages == ("python3-pip",), "its pip needs Debian's"
    assert len(languages) == before + 1 and languages.names()[-1] == "py-six"
    # A definition whose base has left the catalog, or a damaged one, is not offered.
    (tmp_path / "languages" / "gone.json").write_text(json.dumps({"name": "gone", "base": "cobol-2000"}))
    (tmp_path / "languages" / "broken.json").write_text("{")
    assert "gone" not in languages.names() and "broken" not in languages.names()
    assert store.remove("py-six") and not store.remove("py-six")
    with pytest.raises(LanguageNotFound):
        languages.get("py-six")


def test_an_imported_image_lists_no_debian_packages() -> None:
    python = Catalog.load().get("python")
    imported = CustomLanguage(name="mine", base="python", origin="docker").derive(python)
    assert imported.packages == () and imported.run == python.run


def test_a_catalog_name_or_alias_always_wins_over_a_definition(tmp_path: Path) -> None:
    store = CustomStore(tmp_path / "languages")
    languages = WithCustom(Catalog.load(), store)
    # As if written before the catalog came to have these names.
    store.save(CustomLanguage(name="py", base="nodejs"))
    store.save(CustomLanguage(name="python-data", base="nodejs"))
    assert languages.get("py").name == "python" and languages.get("python-data").base == "python"
    assert languages.names().count("python-data") == 1 and "py" not in languages.names()
