"""Building a language's rootfs image from Debian packages: one release, one suite.

mmdebstrap makes a minimal Debian tree of the release's suite with python3 (the agent's
interpreter) and the release's packages, downloads going through a shared package cache so the
next build does not fetch again; a toolchain the catalog takes from PyPI or npm is
installed on top (``_registry``); the toolchain's version is read inside the tree,
optional warm-up fills compiler caches, and ``mksquashfs`` turns the tree into a
compressed read-only image (``mkfs.ext4 -d`` an ext4 one when a size is asked for).
The image is written under a temporary name and renamed when whole.

Why squashfs: every backend mounts the image read-only anyway, and zstd-compressed
squashfs is a fifth to a quarter of the ext4 image (measured: go 829 MB -> 176 MB),
which keeps all languages and releases within the disk today's ext4 images alone
fill. Debian 12's erofs-utils (1.5) compresses with lz4 only: 266 MB for go.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from ..backends import RootfsFormat
from ..errors import BuildFailed, InvalidRequest
from ..languages import REGISTRY_ROOT, Command, Language, Release
from . import _registry
from ._files import exclusive, remove_tree, sha256_of, temporary_name, write_json_atomically
from ._rootfs_store import RootfsInfo, RootfsStore

Progress = Callable[[str], None]

AGENT_PACKAGES = ("python3",)
SANDBOX_DIRS = ("work", "tmp", "opt/infra-operator/guest", "proc", "sys", "dev")
_EXCLUDED_PATHS = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*")
_TOOL_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# zstd level 3: go's image is 176 MB in 5 to 12 s on two cores (mkfs.ext4: 10 s); level 15 saves
# another 15% for seven times the build time, level 9 8% for twice.
_SQUASHFS_OPTIONS = ("-comp", "zstd", "-Xcompression-level", "3")


def _stream(argv: list[str], progress: Progress, what: str) -> list[str]:
    """Run a build tool, passing each line it prints to ``progress``; keep the tail for errors."""
    tail: list[str] = []
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    assert process.stdout is not None
    for line in process.stdout:
        line = line.rstrip()
        if line:
            progress(line)
            tail = [*tail[-19:], line]
    if process.wait() != 0:
        raise BuildFailed(f"{what} failed (exit {process.returncode}): " + " | ".join(tail[-5:]))
    return tail


def _link_debs(source: Path, target: Path) -> None:
    """Hard-link every package of ``source`` into ``target`` that is not there yet.

    A name appears in the target whole or not at all (linked under a temporary name,
    then renamed), and packages are never changed in place once there, so builds
    running at the same time may share the cache without locking it.
    """
    for deb in source.glob("*.deb"):
        if (target / deb.name).exists():
            continue
        temporary = target / f".{deb.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            os.link(deb, temporary)
        except OSError:
            shutil.copyfile(deb, temporary)
        os.replace(temporary, target / deb.name)


def _bootstrap(sources: list[str], suite: str, packages: list[str], tree: Path, cache: Path, progress: Progress) -> None:
    # mmdebstrap's sync hooks copy through tar, which failed when another build linked
    # or wrote the same packages meanwhile. Packages are hard links instead: into the
    # tree from a private set of links to the cache, out of it into an empty folder
    # of this build's own, and what is new into the cache, each under its final name
    # only when whole.
    cache.mkdir(parents=True, exist_ok=True)
    debs_in, debs_out = tree.with_name(f"{tree.name}.debs-in"), tree.with_name(f"{tree.name}.debs-out")
    try:
        debs_in.mkdir()
        debs_out.mkdir()
        _link_debs(cache, debs_in)
        _mmdebstrap(sources, suite, packages, tree, (debs_in, debs_out), progress)
        _link_debs(debs_out, cache)
    finally:
        shutil.rmtree(debs_in, ignore_errors=True)
        shutil.rmtree(debs_out, ignore_errors=True)


def _mmdebstrap(sources: list[str], suite: str, packages: list[str], tree: Path, debs: tuple[Path, Path],
                progress: Progress) -> None:
    debs_in, debs_out = (shlex.quote(str(path)) for path in debs)
    link = "-maxdepth 1 -name '*.deb' -exec cp -l -t"
    dirs = " ".join(f'"$1"/{directory}' for directory in SANDBOX_DIRS)
    argv = [
        "mmdebstrap",
        "--variant=essential",
        "--mode=root",
        "--format=directory",
        f"--include={','.join(packages)}",
        "--skip=essential/unlink",
        # Unstable's Release file is valid for a week only and a mirror may lag behind (or the
        # host's clock run ahead): the signature still proves the index, expiry is not checked.
        "--aptopt=Acquire::Check-Valid-Until \"false\"",
        # The tree is thrown away if the build fails, so dpkg need not fsync every file.
        "--dpkgopt=force-unsafe-io",
        *(f"--dpkgopt=path-exclude={path}" for path in _EXCLUDED_PATHS),
        # Man pages are left out, but update-alternatives links some (java's, ksh's) and
        # fails when their folders are missing.
        "--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives/ " + " ".join(
            f'"$1"/usr/share/man/man{section}' for section in range(1, 9)),
        f"--setup-hook=find {debs_in} {link} \"$1\"/var/cache/apt/archives/ {{}} +",
        f"--customize-hook=find \"$1\"/var/cache/apt/archives {link} {debs_out} {{}} +",
        f"--customize-hook=mkdir -p {dirs} && chmod 1777 \"$1\"/tmp",
        suite,
        str(tree),
        *sources,
    ]
    _stream(argv, progress, "mmdebstrap")


def _in_tree(tree: Path, command: Command, env: dict[str, str], writable: bool) -> subprocess.CompletedProcess[str]:
    """Run a command inside the unfinished tree, sandboxed like an execution but as root."""
    bind = "--bind" if writable else "--ro-bind"
    environment = [arg for key, value in {"PATH": _TOOL_PATH, "HOME": "/tmp", **env}.items()
                   for arg in ("--setenv", key, value)]
    argv = ["bwrap", "--unshare-all", "--die-with-parent", bind, str(tree), "/", "--proc", "/proc",
            "--dev", "/dev", "--tmpfs", "/tmp", "--clearenv", *environment, "--chdir", "/tmp", *command]
    return subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=600)


def _read_version(language: Language, tree: Path) -> str:
    result = _in_tree(tree, language.version_command, language.env, writable=False)
    lines = [line.strip() for line in (result.stdout + "\n" + result.stderr).splitlines() if line.strip()]
    if result.returncode != 0 or not lines:
        raise BuildFailed(f"{language.name}: the version command failed: {' | '.join(lines[-3:]) or 'no output'}")
    return lines[0]


def _tree_bytes(tree: Path) -> int:
    output = subprocess.run(["du", "-sb", "--one-file-system", str(tree)], capture_output=True, text=True, check=True)
    return int(output.stdout.split()[0])


def _make_ext4(tree: Path, image: Path, size_mb: int | None, language: str, progress: Progress) -> None:
    needed_mb = _tree_bytes(tree) * 5 // 4 // (1 << 20) + 64
    size = size_mb if size_mb is not None else needed_mb
    if size < needed_mb:
        raise InvalidRequest(f"rootfs of {size} MiB is too small for {language}: it needs about {needed_mb} MiB")
    progress(f"making a {size} MiB ext4 image")
    image.unlink(missing_ok=True)
    _stream(["mkfs.ext4", "-q", "-F", "-L", f"rootfs-{language}"[:16], "-O", "^has_journal",
             "-E", "root_owner=0:0", "-d", str(tree), str(image), f"{size}M"], progress, "mkfs.ext4")


def _make_squashfs(tree: Path, image: Path, progress: Progress) -> None:
    if shutil.which("mksquashfs") is None:
        raise BuildFailed("mksquashfs is missing: apt-get install squashfs-tools")
    progress("making a compressed squashfs image")
    image.unlink(missing_ok=True)
    # -no-exports: no NFS export table, nothing here serves NFS. Owners, modes and
    # extended attributes (file capabilities) are kept as in the tree, except the root's:
    # the build folder is mkdtemp's 0700, which would shut the sandbox user out of /
    # (mkfs.ext4 makes its root 0755, and root_owner=0:0 is asked for above).
    _stream(["mksquashfs", str(tree), str(image), "-noappend", "-no-exports", "-quiet", "-no-progress",
             "-root-mode", "0755", "-root-uid", "0", "-root-gid", "0", *_SQUASHFS_OPTIONS], progress, "mksquashfs")


def _make_image(tree: Path, image: Path, kind: RootfsFormat, size_mb: int | None, language: str,
                progress: Progress) -> None:
    if kind == "squashfs":
        _make_squashfs(tree, image, progress)
    else:
        _make_ext4(tree, image, size_mb, language, progress)


def format_for(size_mb: int | None) -> RootfsFormat:
    """Squashfs, unless the caller asked for a size: only an ext4 image has one to choose."""
    return "squashfs" if size_mb is None else "ext4"


def registry_pins(language: Language) -> list[str]:
    return list(language.registry.pins) if language.registry else []


def _install_registry(language: Language, tree: Path, cache: Path, progress: Progress) -> list[str]:
    """Install the language's PyPI and npm packages and link its commands; what was installed."""
    if language.registry is None:
        return []
    registry = language.registry
    progress(f"installing from registries: {', '.join(registry.pins)}")
    installed = [f"pypi:{pin}" for pin in _registry.pip_install(registry.pypi, tree, cache, progress)]
    installed += [f"npm:{pin}" for pin in _registry.npm_install(registry.npm, tree, cache, progress)]
    _registry.link_commands(tree, registry.links, REGISTRY_ROOT)
    return installed


def packages_for(release: Release) -> list[str]:
    return sorted({*AGENT_PACKAGES, *release.packages})


def is_stale(language: Language, release: Release, store: RootfsStore) -> bool:
    """Missing, or built for another package list than the catalog's."""
    info = store.find(release.image)
    return (info is None or list(info.packages) != packages_for(release)
            or list(info.registry) != registry_pins(language))


def build_rootfs(
    language: Language,
    release: Release,
    store: RootfsStore,
    cache_dir: Path,
    size_mb: int | None = None,
    progress: Progress = lambda line: None,
    populate: Callable[[Path, Progress], None] | None = None,
    customize: Callable[[Path, Progress], None] | None = None,
    mirror: str | None = None,
) -> RootfsInfo:
    """Build the image of ``language``'s ``release``, from Debian packages of its suite (from
    ``mirror`` instead of deb.debian.org, when given);
    ``populate`` fills the tree instead (an imported archive), and ``customize`` changes it
    before the image is made (pip and npm installs of a custom image)."""
    kind = format_for(size_mb)
    image = store.image_path(release.image, kind)
    suite = release.suite.name
    # Locked by the record, which every format of the release shares.
    with exclusive(store.record_path(release.image)):
        started = time.monotonic()
        build_root = cache_dir / "build"
        build_root.mkdir(parents=True, exist_ok=True)
        tree = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}_rootfs-{release.image}-", dir=build_root))
        temporary = temporary_name(image)
        try:
            packages = packages_for(release)
            if populate is None:
                progress(f"bootstrapping Debian {suite} with {', '.join(packages)}")
                _bootstrap(release.suite.sources_from(mirror), suite, packages, tree, cache_dir / "apt-archives", progress)
            else:
                populate(tree, progress)
            installed = _install_registry(language, tree, cache_dir / "registry", progress)
            if customize is not None:
                customize(tree, progress)
            version = _read_version(language, tree)
            progress(f"toolchain: {version}")
            if language.warm is not None:
                progress("warming caches")
                warmed = _in_tree(tree, language.warm, language.env, writable=True)
                if warmed.returncode != 0:
                    raise BuildFailed(f"{language.name}: warm-up failed: {warmed.stderr.strip()[-300:]}")
            tree_bytes = _tree_bytes(tree)
            _make_image(tree, temporary, kind, size_mb, language.name, progress)
            progress(f"image: {temporary.stat().st_size / 2**20:.0f} MiB ({kind}) "
                     f"from a {tree_bytes / 2**20:.0f} MiB tree")
            progress("computing checksum")
            checksum = sha256_of(temporary)
            os.replace(temporary, image)
            write_json_atomically(store.record_path(release.image), {
                "language": language.name,
                "format": kind,
                "sha256": checksum,
                "version": version,
                "packages": packages,
                "suite": suite,
                # The catalog's pins, compared by is_stale; and all that pip and npm put in.
                "registry": registry_pins(language),
                "registry_installed": installed,
                "tree_bytes": tree_bytes,
                "built_at": time.time(),
                "build_seconds": round(time.monotonic() - started, 1),
            })
            store.remove_other_formats(release.image, kind)
        finally:
            temporary.unlink(missing_ok=True)
            remove_tree(tree)
    progress(f"built {image}")
    return store.get(release.image)
