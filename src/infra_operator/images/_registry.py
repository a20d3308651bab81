"""Installing packages from PyPI and npm into an image's tree, at build time.

The host's own pip and npm do the work (the host reaches the registries; a sandbox
never has a network), into ``<tree>/opt/registry/pypi`` and ``<tree>/opt/registry/npm``.
Nothing a package ships runs on the host: pip takes wheels only, so no ``setup.py``
runs, and npm is told to ignore install scripts, so no ``postinstall`` runs either (a
toolchain whose package needs one, like npm's ``bun``, is taken from its prebuilt
platform package instead). Downloads are cached under the build cache so the next
build does not fetch them again. Self-contained on purpose: the functions take plain
requirement strings, so custom images can install users' packages the same way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ..errors import BuildFailed

Progress = Callable[[str], None]

PYPI_DIR = "opt/registry/pypi"
NPM_DIR = "opt/registry/npm"
LINK_DIR = "usr/local/bin"
_TIMEOUT_SECONDS = 900


def _run(argv: list[str], progress: Progress, what: str, env: Mapping[str, str] | None = None) -> None:
    progress(f"{what}: {' '.join(argv[argv.index('install'):] if 'install' in argv else argv)}")
    try:
        result = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=_TIMEOUT_SECONDS,
                                env=None if env is None else {**os.environ, **env})
    except FileNotFoundError as error:
        raise BuildFailed(f"{what}: {argv[0]} is not installed on this host") from error
    except subprocess.TimeoutExpired as error:
        raise BuildFailed(f"{what} took longer than {_TIMEOUT_SECONDS} s") from error
    lines = [line.strip() for line in (result.stdout + "\n" + result.stderr).splitlines() if line.strip()]
    for line in lines[-10:]:
        progress(line)
    if result.returncode != 0:
        raise BuildFailed(f"{what} failed (exit {result.returncode}): " + " | ".join(lines[-5:]))


def pip_install(requirements: Sequence[str], tree: Path, cache: Path, progress: Progress, *,
                dependencies: bool = False) -> list[str]:
    """Install wheels into ``<tree>/opt/registry/pypi``; the ``NAME==VERSION`` of each installed.

    Without ``dependencies`` (the catalog's case: it pins every package it needs) pip installs
    exactly what is named; a user's package list may want pip to resolve the rest."""
    if not requirements:
        return []
    target = tree / PYPI_DIR
    target.mkdir(parents=True, exist_ok=True)
    # The service's own interpreter has pip (it is installed from PyPI); --only-binary so that
    # nothing is built, and no package's code runs, on the host.
    _run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
          *(() if dependencies else ("--no-deps",)), "--only-binary=:all:", "--no-compile", "--no-warn-script-location",
          "--cache-dir", str(cache / "pip"), "--upgrade", "--target", str(target), *requirements],
         progress, "pip")
    installed = []
    for metadata in sorted(target.glob("*.dist-info/METADATA")):
        fields = dict(line.split(": ", 1) for line in metadata.read_text(errors="replace").splitlines()[:10]
                      if ": " in line)
        installed.append(f"{fields.get('Name', metadata.parent.name)}=={fields.get('Version', '?')}")
    return installed


def npm_install(packages: Sequence[str], tree: Path, cache: Path, progress: Progress) -> list[str]:
    """Install into ``<tree>/opt/registry/npm/node_modules``; ``NAME@VERSION`` of every package
    npm put there, dependencies included (the catalog pins only what it names)."""
    if not packages:
        return []
    prefix = tree / NPM_DIR
    prefix.mkdir(parents=True, exist_ok=True)
    _run(["npm", "install", "--prefix", str(prefix), "--cache", str(cache / "npm"), "--ignore-scripts",
          "--no-save", "--no-audit", "--no-fund", "--no-update-notifier", "--omit=dev", *packages],
         progress, "npm", env={"NPM_CONFIG_LOGLEVEL": "warn"})
    lock = prefix / "node_modules" / ".package-lock.json"
    try:
        entries = json.loads(lock.read_text()).get("packages", {})
    except (OSError, ValueError):
        return list(packages)
    return sorted(f"{path.rsplit('node_modules/', 1)[-1]}@{entry.get('version', '?')}"
                  for path, entry in entries.items() if path.startswith("node_modules/"))


def link_commands(tree: Path, links: Mapping[str, str], root: str) -> None:
    """Make each command a symlink in ``/usr/local/bin`` to its file under ``root`` (absolute in
    the image, so it resolves the same wherever the tree is mounted)."""
    directory = tree / LINK_DIR
    directory.mkdir(parents=True, exist_ok=True)
    for command, target in links.items():
        in_tree = tree / root.lstrip("/") / target
        if not in_tree.is_file():
            raise BuildFailed(f"link {command}: {root}/{target} was not installed")
        in_tree.chmod(in_tree.stat().st_mode | 0o555)  # wheels do not always keep the executable bit
        link = directory / command
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(f"{root}/{target}")


__all__ = ["NPM_DIR", "PYPI_DIR", "link_commands", "npm_install", "pip_install"]
