"""Which release of a language a request means, from the catalog's plan and the images built.

A release is known by its suite until its image is built, and by the version read from
that image after. Rules (docs/api.md, "Releases"):

- default: the first suite of the language's plan (Debian 13's) when its image is built;
  otherwise the first release that is built, so an install whose images predate releases
  keeps running them; otherwise the first suite's (which a build without a version makes).
- offered (listed in ``versions``): built releases, except one whose version is the
  default's (Debian 12's where it did not change) and, for a ``newer_only`` suite
  (unstable), one that is not newer than the default.
- ``version`` selects: absent, empty or ``*`` the default; a suite name (``trixie``,
  ``sid``) that suite's release, built or not; else a release number or a prefix of one
  by whole parts (``3`` and ``3.13`` match ``3.13.5``, ``3.1`` does not). When several
  match, the default wins if it is one of them, else the newest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import NotFound
from ._rootfs_store import not_built

if TYPE_CHECKING:
    from ..languages import Catalog, Language, Release
    from ._rootfs_store import RootfsInfo, RootfsStore

ANY_VERSION = ("", "*")


@dataclass(frozen=True)
class ReleaseState:
    """A planned release and what the disk says about it."""

    release: Release
    rootfs: RootfsInfo | None
    default: bool = False
    offered: bool = False

    @property
    def image(self) -> str:
        return self.release.image

    @property
    def suite(self) -> str:
        return self.release.suite.name

    @property
    def number(self) -> str | None:
        """The version number read from its image; None until it is built."""
        return self.rootfs.number if self.rootfs is not None else None

    def require(self) -> RootfsInfo:
        """Its image, or ``RootfsNotFound`` naming how to build it."""
        if self.rootfs is None:
            raise not_built(self.image)
        return self.rootfs


def _key(number: str) -> tuple[int, ...]:
    return tuple(int(part) for part in number.split(".") if part.isdigit())


def matches(number: str, wanted: str) -> bool:
    """``wanted`` is ``number`` or a prefix of it by whole dot-separated parts."""
    wanted = wanted.removeprefix("v")
    return number == wanted or number.startswith(wanted + ".")


def release_states(catalog: Catalog, language: Language, store: RootfsStore) -> list[ReleaseState]:
    """Every planned release of ``language`` with its image if built: the default first,
    the rest in the plan's order."""
    planned = [(release, store.find(release.image)) for release in catalog.releases(language)]
    default_index = next((index for index, (_, info) in enumerate(planned) if info is not None), 0)
    if planned[0][1] is not None:
        default_index = 0
    default_info = planned[default_index][1]
    states = []
    for index, (release, info) in enumerate(planned):
        offered = info is not None
        if offered and index != default_index and default_info is not None and info is not None:
            if info.number == default_info.number:
                offered = False  # the same version as the default: nothing to choose
            elif release.suite.newer_only and _key(info.number) <= _key(default_info.number):
                offered = False
        states.append(ReleaseState(release=release, rootfs=info, default=index == default_index, offered=offered))
    return sorted(states, key=lambda state: not state.default)


def resolve(catalog: Catalog, language: Language, store: RootfsStore, version: str | None) -> ReleaseState:
    """The release ``version`` names (see the module's rules); ``NotFound`` when none has it."""
    states = release_states(catalog, language, store)
    wanted = (version or "").strip()
    if wanted in ANY_VERSION:
        return states[0]
    for state in states:
        if wanted.lower() == state.suite:
            return state
    found = [state for state in states if state.number is not None and matches(state.number, wanted)]
    if not found:
        available = [state.number for state in states if state.offered and state.number]
        unbuilt = [f"{state.suite} (not built)" for state in states if state.rootfs is None]
        raise NotFound(f"version not found: {language.name} {wanted} (available: "
                       f"{', '.join([*available, *unbuilt]) or 'none'})")
    for state in found:
        if state.default:
            return state
    return max(found, key=lambda state: (state.offered, _key(state.number or "")))


__all__ = ["ReleaseState", "matches", "release_states", "resolve"]
