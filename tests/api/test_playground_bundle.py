"""The committed bundle (src/infra_operator/api/playground/bundle/) is exactly what
scripts/build_playground.sh builds from playground/src with the pinned packages: rebuilt in a
temporary copy and compared file by file, so a change to the page's code or its packages
without a rebuild, or a hand-edited bundle, fails here."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ROOT / "playground"
SDK = ROOT / "clients" / "js" / "index.js"
BUNDLE = ROOT / "src" / "infra_operator" / "api" / "playground" / "bundle"
GZIP_GOAL = 300 * 1024


def _files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_the_committed_bundle_is_what_its_sources_build(tmp_path: Path) -> None:
    if not shutil.which("npm"):
        pytest.skip("npm is not installed (apt-get install nodejs npm): cannot rebuild the bundle to compare")
    copy = tmp_path / "playground"
    copy.mkdir()
    for name in ("package.json", "package-lock.json"):
        shutil.copy(SOURCES / name, copy / name)
    shutil.copytree(SOURCES / "src", copy / "src")
    # The SDK the page is built on, where its import finds it beside the copy.
    (tmp_path / "clients" / "js").mkdir(parents=True)
    shutil.copy(SDK, tmp_path / "clients" / "js" / SDK.name)
    if (SOURCES / "node_modules").is_dir():
        shutil.copytree(SOURCES / "node_modules", copy / "node_modules", symlinks=True)  # a link would show in paths
    else:
        installed = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=copy, capture_output=True, text=True)
        if installed.returncode != 0:
            pytest.skip(f"npm ci failed, so the bundle cannot be rebuilt here: {installed.stderr.strip()[-300:]}")
    built = subprocess.run(["npm", "run", "build"], cwd=copy, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    rebuilt = _files(tmp_path / "src" / "infra_operator" / "api" / "playground" / "bundle")
    committed = _files(BUNDLE)
    assert sorted(rebuilt) == sorted(committed), "run scripts/build_playground.sh and commit the bundle"
    changed = [name for name in rebuilt if rebuilt[name] != committed[name]]
    assert changed == [], "run scripts/build_playground.sh and commit the bundle"


@pytest.mark.unit
def test_the_page_a_browser_loads_is_within_its_size_goal() -> None:
    page = [BUNDLE.parent / "index.html", *sorted(BUNDLE.iterdir())]
    gzipped = sum(len(gzip.compress(path.read_bytes(), compresslevel=9)) for path in page)
    print(f"playground: {len(page)} files, {gzipped / 1024:.1f} KiB gzipped (goal {GZIP_GOAL // 1024} KiB)")
    assert gzipped <= GZIP_GOAL
