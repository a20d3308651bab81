"""The language catalog: what each language needs and how it compiles and runs."""

from __future__ import annotations

from ._catalog import CATALOG_FILE, Catalog, Command, Form, Language, Program
from ._entry import Entry, Rule
from ._releases import LEGACY_SUITE, RELEASES_FILE, Release, ReleasePlan, Suite, split_image

__all__ = ["CATALOG_FILE", "LEGACY_SUITE", "RELEASES_FILE", "Catalog", "Command", "Entry", "Form", "Language",
           "Program", "Release", "ReleasePlan", "Rule", "Suite", "split_image"]
