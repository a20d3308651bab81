"""Releases without sandboxes: the plan in releases.toml, where each release's image is
stored, and which release a ``version`` selects, from records written as builds write them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra_operator.errors import NotFound, RootfsNotFound
from infra_operator.images import RootfsStore, release_states, resolve, version_number
from infra_operator.images.snapshots import describe, find_snapshot
from infra_operator.languages import LEGACY_SUITE, Catalog, ReleasePlan, split_image

pytestmark = pytest.mark.unit

CATALOG = Catalog.load()


def _record(images: Path, image: str, version: str) -> None:
    """An image and its record as ``build_rootfs`` leaves them (the bytes are never read here)."""
    images.mkdir(parents=True, exist_ok=True)
    (images / f"rootfs-{image}.ext4").write_bytes(b"\0" * 4096)
    language, suite = split_image(image)
    (images / f"rootfs-{image}.json").write_text(json.dumps(
        {"language": language, "suite": suite, "sha256": "0" * 64, "version": version, "packages": ["python3"],
         "built_at": 1.0, "build_seconds": 30.0}))


@pytest.fixture
def store(tmp_path: Path) -> RootfsStore:
    return RootfsStore(tmp_path / "images")


def test_debian_13_is_every_language_s_default_where_it_has_the_packages() -> None:
    python = CATALOG.releases(CATALOG.get("python"))
    assert [(r.suite.name, r.suite.debian) for r in python] == [("trixie", "13"), ("bookworm", "12"), ("sid", "unstable")]
    assert [r.suite.newer_only for r in python] == [False, False, True]
    assert CATALOG.releases(CATALOG.get("forth"))[0].suite.name == "bookworm"  # gforth is not in Debian 13
    missing_13 = {"sml", "forth", "nim"}
    for language in CATALOG:
        assert (CATALOG.releases(language)[0].suite.name == "trixie") == (language.name not in missing_13), language.name


def test_at_least_20_languages_plan_two_releases_or_more() -> None:
    several = [language.name for language in CATALOG if len(CATALOG.releases(language)) >= 2]
    assert len(several) >= 20, several


def test_package_names_that_differ_by_suite_come_from_the_plan() -> None:
    java = {r.suite.name: r.packages for r in CATALOG.releases(CATALOG.get("java"))}
    assert java == {"trixie": ("openjdk-21-jdk-headless",), "bookworm": ("openjdk-17-jdk-headless",),
                    "sid": ("openjdk-25-jdk-headless",)}
    ocaml = {r.suite.name: r.packages for r in CATALOG.releases(CATALOG.get("ocaml"))}
    assert ocaml["sid"][0] == "ocaml" and ocaml["trixie"] == CATALOG.get("ocaml").packages


def test_bookworm_images_keep_the_path_they_had_before_releases(store: RootfsStore) -> None:
    images = {r.suite.name: r.image for r in CATALOG.releases(CATALOG.get("python"))}
    assert images == {"trixie": "python@trixie", "bookworm": "python", "sid": "python@sid"}
    assert store.image_path("python").name == "rootfs-python.ext4"
    assert split_image("python") == ("python", LEGACY_SUITE) and split_image("go@sid") == ("go", "sid")


def test_a_plan_naming_an_unknown_suite_or_language_is_refused(tmp_path: Path) -> None:
    plan = tmp_path / "releases.toml"
    plan.write_text('default = "trixie"\norder = ["trixie"]\n[suites.trixie]\ndebian = "13"\nsources = []\n'
                    '[languages.python]\nsuites = ["jessie"]\n')
    with pytest.raises(ValueError, match="unknown suites"):
        ReleasePlan.load(plan)
    plan.write_text('default = "trixie"\norder = ["trixie"]\n[suites.trixie]\ndebian = "13"\nsources = []\n'
                    '[languages.cobra]\nsuites = ["trixie"]\n')
    with pytest.raises(ValueError, match="cobra"):
        Catalog(list(CATALOG), ReleasePlan.load(plan))


@pytest.mark.parametrize(("printed", "number"), [
    ("Python 3.13.5", "3.13.5"), ("go version go1.24.4 linux/amd64", "1.24.4"), ("v20.19.2", "20.19.2"),
    ("rustc 1.85.1 (4eb161250 2025-03-15) (built from a source tarball)", "1.85.1"),
    ("gcc (Debian 14.2.0-19) 14.2.0", "14.2.0"), ("Erlang/OTP 27", "27"), ("no digits", "no digits"),
])
def test_the_release_number_is_read_from_what_the_version_command_printed(printed: str, number: str) -> None:
    assert version_number(printed) == number


def _python(store: RootfsStore, version: str | None) -> str:
    state = resolve(CATALOG, CATALOG.get("python"), store, version)
    return state.suite


def test_a_version_selects_by_whole_parts_and_the_default_wins_a_tie(store: RootfsStore) -> None:
    _record(store.images_dir, "python@trixie", "Python 3.13.5")
    _record(store.images_dir, "python", "Python 3.11.2")
    _record(store.images_dir, "python@sid", "Python 3.14.8")
    assert [_python(store, v) for v in (None, "", "*", "3", "3.13", "3.13.5")] == ["trixie"] * 6
    assert [_python(store, v) for v in ("3.11", "3.11.2", "bookworm")] == ["bookworm"] * 3
    assert [_python(store, v) for v in ("3.14", "sid", "v3.14.8")] == ["sid"] * 3
    for wanted in ("3.1", "2", "3.13.50", "jessie"):
        with pytest.raises(NotFound, match=rf"^version not found: python {wanted} \(available: 3.13.5, 3.11.2, 3.14.8\)"):
            _python(store, wanted)
    states = release_states(CATALOG, CATALOG.get("python"), store)
    assert [(s.suite, s.number, s.default, s.offered) for s in states] == [
        ("trixie", "3.13.5", True, True), ("bookworm", "3.11.2", False, True), ("sid", "3.14.8", False, True)]


def test_without_the_default_among_the_matches_a_prefix_picks_the_newest(store: RootfsStore) -> None:
    _record(store.images_dir, "python@trixie", "Python 2.7.18")  # made up: a default that "3" does not match
    _record(store.images_dir, "python", "Python 3.11.2")
    _record(store.images_dir, "python@sid", "Python 3.14.8")
    assert _python(store, "3") == "sid"
    assert _python(store, "2") == "trixie"
    java = CATALOG.get("java")
    _record(store.images_dir, "java@trixie", 'openjdk version "21.0.9" 2025-10-21')
    _record(store.images_dir, "java", 'openjdk version "17.0.19" 2026-04-21')
    assert resolve(CATALOG, java, store, "17").suite == "bookworm"
    with pytest.raises(NotFound, match=r"java 2 \(available: 21.0.9, 17.0.19, sid \(not built\)\)"):
        resolve(CATALOG, java, store, "2")  # whole parts: "2" is not a prefix of 21


def test_releases_that_add_nothing_are_not_offered_but_stay_selectable(store: RootfsStore) -> None:
    _record(store.images_dir, "bc@trixie", "bc 1.07.1")
    _record(store.images_dir, "bc", "bc 1.07.1")
    _record(store.images_dir, "perl@trixie", "perl v5.40.1")
    _record(store.images_dir, "perl@sid", "perl v5.40.1")  # unstable, but no newer
    bc = release_states(CATALOG, CATALOG.get("bc"), store)
    assert [(s.suite, s.offered) for s in bc] == [("trixie", True), ("bookworm", False)]
    perl = release_states(CATALOG, CATALOG.get("perl"), store)
    assert [(s.suite, s.offered) for s in perl if s.rootfs] == [("trixie", True), ("sid", False)]
    assert resolve(CATALOG, CATALOG.get("perl"), store, "sid").image == "perl@sid"
    assert resolve(CATALOG, CATALOG.get("bc"), store, "1.07").suite == "trixie"


def test_an_install_from_before_releases_keeps_running_its_images(store: RootfsStore) -> None:
    _record(store.images_dir, "go", "go version go1.19.8 linux/amd64")  # bookworm's only, at its old path
    go = CATALOG.get("go")
    default = resolve(CATALOG, go, store, None)
    assert (default.suite, default.default, default.require().path.name) == ("bookworm", True, "rootfs-go.ext4")
    assert resolve(CATALOG, go, store, "1.19").suite == "bookworm"
    unbuilt = resolve(CATALOG, go, store, "trixie")
    with pytest.raises(RootfsNotFound, match=r"rootfs not built for language go \(trixie\).*--version trixie"):
        unbuilt.require()
    with pytest.raises(NotFound, match=r"available: 1.19.8, trixie \(not built\), sid \(not built\)"):
        resolve(CATALOG, go, store, "1.24")


def test_a_language_with_nothing_built_defaults_to_its_first_suite(store: RootfsStore) -> None:
    state = resolve(CATALOG, CATALOG.get("rust"), store, None)
    assert (state.suite, state.rootfs, state.offered) == ("trixie", None, False)


def test_snapshots_are_kept_and_found_per_release(tmp_path: Path) -> None:
    from conftest import write_fake_snapshot

    from infra_operator.config import Settings

    settings = Settings(data_dir=tmp_path)
    old = write_fake_snapshot(tmp_path, "qemu", "python", {"vmstate": b"v"})  # made before releases
    new = write_fake_snapshot(tmp_path, "qemu", "python@trixie", {"vmstate": b"w"})
    metadata = json.loads((new / "metadata.json").read_text())
    (new / "metadata.json").write_text(json.dumps({**metadata, "language": "python", "image": "python@trixie"}))
    vmm = metadata.get("vmm_version")
    found = find_snapshot(settings, "qemu", "python@trixie", "1" * 64, "0" * 64, vmm)
    assert found is not None and found.directory == new
    legacy = find_snapshot(settings, "qemu", "python", "1" * 64, "0" * 64, vmm)
    assert legacy is not None and legacy.directory == old
    assert describe({**metadata, "language": "python", "image": "python@trixie"})["release"] == "trixie"
    assert describe(json.loads((old / "metadata.json").read_text()))["release"] == LEGACY_SUITE
