"""pip and npm installs into a custom image's tree, at build time.

Sandboxes have no network, so what a custom image adds from PyPI or npm is installed
while it is built, the one moment the registries are reached. The installers run
under bubblewrap with the host's network but nothing else of the host writable:

- pip is the image's own (Debian's ``python3-pip``, added to the image when pip
  packages are asked for), so wheels match the image's Python; packages land in
  ``/usr/local/lib/python3.X/dist-packages``, already on its ``sys.path``.
- npm is the host's (Debian's ``npm`` would add some 450 packages to the image), run
  with ``--ignore-scripts`` so no package code runs at install time; packages land in
  ``/node_modules``, which Node's resolution (CommonJS and ES modules alike) reaches
  from any program under ``/work``.

Downloads trust what the host trusts: a host that reaches the registries through a
TLS-inspecting proxy has that proxy's CA in its own bundle, not in the image's.

Package names are checked before this (``languages.check_packages``) and follow a
``--``, so none can read as an option.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import BuildFailed
from ._rootfs_builder import _TOOL_PATH, Progress, _stream

_HOST_RESOLV = Path("/etc/resolv.conf")
_CA_INSIDE = "/tmp/host-ca.crt"
# What a host may set to reach the registries through a proxy or a mirror.
_PASSED_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
               "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "npm_config_registry")


def _environment(extra: dict[str, str]) -> list[str]:
    passed = {name: os.environ[name] for name in _PASSED_ENV if name in os.environ}
    values = {"PATH": _TOOL_PATH, "HOME": "/tmp", **passed, **extra}
    return [arg for key, value in values.items() for arg in ("--setenv", key, value)]


def _host_ca() -> Path | None:
    for candidate in (os.environ.get("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


@contextmanager
def _host_resolver(tree: Path) -> Iterator[None]:
    """The host's resolv.conf in the tree while pip runs there, and the tree's own back after."""
    target = tree / "etc" / "resolv.conf"
    saved = target.with_name(".resolv.conf.infra-operator")
    had = os.path.lexists(target)
    if had:
        os.replace(target, saved)
    try:
        shutil.copyfile(_HOST_RESOLV, target)
        yield
    finally:
        target.unlink(missing_ok=True)
        if had:
            os.replace(saved, target)


def pip_install(tree: Path, requirements: tuple[str, ...], progress: Progress) -> None:
    if not requirements:
        return
    progress(f"pip install {' '.join(requirements)}")
    ca = _host_ca()
    trust = ["--ro-bind", str(ca), _CA_INSIDE] if ca else []
    with _host_resolver(tree):
        _stream([
            "bwrap", "--unshare-all", "--share-net", "--die-with-parent", "--bind", str(tree), "/",
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", *trust, "--clearenv",
            *_environment({"PIP_CERT": _CA_INSIDE} if ca else {}), "--chdir", "/tmp",
            "python3", "-m", "pip", "install", "--no-input", "--no-cache-dir", "--disable-pip-version-check",
            "--progress-bar=off", "--break-system-packages", "--root-user-action=ignore", "--", *requirements,
        ], progress, "pip install")


def npm_install(tree: Path, packages: tuple[str, ...], progress: Progress) -> None:
    if not packages:
        return
    npm = shutil.which("npm")
    if npm is None:
        raise BuildFailed("npm packages are installed with the host's npm, and this host has none: "
                          "apt-get install npm")
    progress(f"npm install {' '.join(packages)}")
    ca = _host_ca()
    # The host read-only, the tree writable at /tmp/tree: npm writes nothing else.
    _stream([
        "bwrap", "--unshare-all", "--share-net", "--die-with-parent", "--ro-bind", "/", "/",
        "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--bind", str(tree), "/tmp/tree", "--clearenv",
        *_environment({"npm_config_cache": "/tmp/npm-cache", "npm_config_update_notifier": "false",
                       **({"NODE_EXTRA_CA_CERTS": str(ca)} if ca else {})}),
        "--chdir", "/tmp", npm, "install", "--prefix", "/tmp/tree", "--ignore-scripts", "--no-audit", "--no-fund",
        "--omit=dev", "--no-package-lock", "--", *packages,
    ], progress, "npm install")
    # Only node_modules is wanted: a /package.json would be the nearest package of every
    # program under /work and could decide how Node reads it.
    (tree / "package.json").unlink(missing_ok=True)
