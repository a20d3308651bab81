"""The language catalog: what each language needs and how it compiles and runs."""

from __future__ import annotations

from ._catalog import CATALOG_FILE, Catalog, Command, Form, Language, Program
from ._custom import (
    PIP_DEBIAN_PACKAGES,
    CustomLanguage,
    CustomStore,
    Origin,
    Packages,
    WithCustom,
    check_name,
    check_packages,
)
from ._entry import Entry, Rule
from ._registry import ROOT as REGISTRY_ROOT
from ._registry import Registry
from ._releases import LEGACY_SUITE, RELEASES_FILE, Release, ReleasePlan, Suite, split_image

__all__ = [
    "CATALOG_FILE",
    "LEGACY_SUITE",
    "PIP_DEBIAN_PACKAGES",
    "REGISTRY_ROOT",
    "RELEASES_FILE",
    "Catalog",
    "Command",
    "CustomLanguage",
    "CustomStore",
    "Entry",
    "Form",
    "Language",
    "Origin",
    "Packages",
    "Program",
    "Registry",
    "Release",
    "ReleasePlan",
    "Rule",
    "Suite",
    "WithCustom",
    "check_name",
    "check_packages",
    "split_image",
]
