"""Installing from PyPI and npm into an image's tree with the host's pip and npm, for real
(small packages, from the registries this machine is configured for), and linking
commands; and the apt sources of a language built from another Debian suite."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from infra_operator.errors import BuildFailed
from infra_operator.images import RootfsStore, _registry, is_stale
from infra_operator.images._rootfs_builder import packages_for, registry_pins
from infra_operator.languages import REGISTRY_ROOT, Catalog


@pytest.mark.unit
def test_a_language_the_catalog_pins_to_a_suite_has_that_one_release() -> None:
    catalog = Catalog.load()
    [swift] = catalog.releases(catalog.get("swift"))
    # Its suite's own sources (releases.toml), and the path it had when it came from main alone.
    assert (swift.suite.name, swift.image) == ("trixie", "swift")
    assert swift.suite.sources[0] == "deb http://deb.debian.org/debian trixie main"
    assert registry_pins(catalog.get("zig")) == ["pypi:ziglang==0.17.1"]
    assert registry_pins(catalog.get("python")) == []


def test_pip_installs_a_pinned_wheel_into_the_tree(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    installed = _registry.pip_install(["six==1.16.0"], tree, tmp_path / "cache", print)
    assert installed == ["six==1.16.0"]
    assert (tree / _registry.PYPI_DIR / "six.py").is_file()
    _registry.link_commands(tree, {"six-module": "pypi/six.py"}, REGISTRY_ROOT)
    link = tree / "usr/local/bin/six-module"
    # Absolute inside the image: the tree is mounted at / in the sandbox.
    assert link.readlink() == Path(f"{REGISTRY_ROOT}/pypi/six.py")


def test_pip_installs_dependencies_only_when_asked(tmp_path: Path) -> None:
    """The catalog pins every package it needs, so pip adds nothing it did not name; a user's
    list (custom images) may ask for the rest to be resolved."""
    named = _registry.pip_install(["python-dateutil==2.9.0.post0"], tmp_path / "named", tmp_path / "cache", print)
    assert named == ["python-dateutil==2.9.0.post0"]
    resolved = _registry.pip_install(["python-dateutil==2.9.0.post0"], tmp_path / "resolved", tmp_path / "cache", print,
                                     dependencies=True)
    assert resolved[0] == "python-dateutil==2.9.0.post0" and resolved[1].startswith("six=="), resolved


def test_pip_refuses_what_it_cannot_find_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(BuildFailed, match="pip failed"):
        _registry.pip_install(["six==0.0.999"], tmp_path / "tree", tmp_path / "cache", print)


def test_npm_installs_a_pinned_package_and_records_it(tmp_path: Path) -> None:
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed on this host")
    tree = tmp_path / "tree"
    installed = _registry.npm_install(["is-number@7.0.0"], tree, tmp_path / "cache", print)
    assert installed == ["is-number@7.0.0"]
    assert (tree / _registry.NPM_DIR / "node_modules/is-number/index.js").is_file()


def test_a_link_to_a_file_that_was_not_installed_fails_the_build(tmp_path: Path) -> None:
    with pytest.raises(BuildFailed, match="link zig: /opt/registry/pypi/ziglang/zig was not installed"):
        _registry.link_commands(tmp_path, {"zig": "pypi/ziglang/zig"}, REGISTRY_ROOT)


@pytest.mark.unit
def test_an_image_built_with_other_pins_is_stale(tmp_path: Path) -> None:
    catalog = Catalog.load()
    zig = catalog.get("zig")
    release = next(r for r in catalog.releases(zig) if r.image == "zig")  # Debian 12's, at the plain path
    store = RootfsStore(tmp_path)
    store.image_path("zig").write_bytes(b"image")

    def record(pins: list[str]) -> None:
        store.record_path("zig").write_text(json.dumps(
            {"sha256": "0" * 64, "version": "0.17.1", "packages": packages_for(release), "registry": pins}))

    record(["pypi:ziglang==0.17.1"])
    assert not is_stale(zig, release, store)
    assert store.get("zig").registry == ("pypi:ziglang==0.17.1",)
    record(["pypi:ziglang==0.16.0"])
    assert is_stale(zig, release, store)
    record([])  # built before the catalog took zig from PyPI
    assert is_stale(zig, release, store)
