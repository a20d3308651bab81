"""The guest kernel and initramfs every microVM boots.

The kernel is Debian's cloud kernel, fetched as a ``.deb`` with ``apt-get download``
(cached, so a rebuild does not fetch it again) and unpacked with ``dpkg-deb -x``. QEMU
boots its bzImage; Firecracker needs the ELF ``vmlinux`` inside it. The initramfs
(see ``_initramfs``) carries busybox, the modules the guest needs and the guest agent.

Layout under ``settings.kernels_dir``: one folder per build, named by version and
checksum, written under a temporary name and renamed when whole, and ``kernel.json``
(replaced atomically) naming the current one. A running VM or a snapshot may still
use an older folder, so builds are never rewritten in place.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .. import guest
from ..backends.base import KernelFiles
from ..errors import BackendUnavailable, BuildFailed
from . import _initramfs
from ._files import read_json, sha256_of, sweep_partials, write_json_atomically
from ._vmlinux import extract_vmlinux

if TYPE_CHECKING:
    from ..config import Settings

Progress = Callable[[str], None]

RECORD_NAME = "kernel.json"
BZIMAGE_NAME = "vmlinuz"
VMLINUX_NAME = "vmlinux"
INITRAMFS_NAME = "initramfs.cpio.gz"
BUSYBOX = Path("/bin/busybox")

# linux-image-6.12.117+deb12-cloud-amd64 or linux-image-6.1.0-57-cloud-amd64; the
# meta packages (linux-image-cloud-amd64, linux-image-6.12-cloud-amd64) have no
# patch level, and -dbg / -unsigned are other names.
_PACKAGE = re.compile(r"^linux-image-(\d+\.\d+\.\d+[^ ]*)-cloud-amd64$")


def _run(argv: list[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise BuildFailed(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise BuildFailed(f"{' '.join(argv)} failed ({done.returncode}): {' / '.join(tail)}")
    return done.stdout


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


def newest_cloud_kernel_package() -> str:
    """The newest ``linux-image-<ver>-cloud-amd64`` the local apt lists know of."""
    names = _run(["apt-cache", "pkgnames", "linux-image-"]).split()
    versions = [match.group(1) for name in names if (match := _PACKAGE.match(name))]
    if not versions:
        raise BuildFailed("apt knows no linux-image-*-cloud-amd64 package (run apt-get update)")
    return f"linux-image-{max(versions, key=_version_key)}-cloud-amd64"


def _fetch(package: str, cache: Path, progress: Progress) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    cached = sorted(cache.glob(f"{package}_*.deb"))
    if cached:
        progress(f"using cached {cached[-1].name}")
        return cached[-1]
    progress(f"downloading {package}")
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as scratch:
        _run(["apt-get", "download", "-q", package], cwd=Path(scratch))
        debs = list(Path(scratch).glob("*.deb"))
        if len(debs) != 1:
            raise BuildFailed(f"apt-get download {package} left {len(debs)} files")
        target = cache / debs[0].name
        debs[0].replace(target)
    return target


def _files(directory: Path, sha256: str) -> KernelFiles:
    return KernelFiles(
        bzimage=directory / BZIMAGE_NAME,
        vmlinux=directory / VMLINUX_NAME,
        initramfs=directory / INITRAMFS_NAME,
        sha256=sha256,
    )


def build_kernel(settings: Settings, progress: Progress, *, package: str | None = None) -> KernelFiles:
    """Fetch the cloud kernel, extract vmlinux, build the initramfs, store them as current."""
    package = package or newest_cloud_kernel_package()
    deb = _fetch(package, settings.cache_dir / "debs", progress)
    kernels = settings.kernels_dir
    kernels.mkdir(parents=True, exist_ok=True)
    for line in sweep_partials(kernels, ".build-*"):
        progress(line)
    # The writer's pid in the name lets a later build tell a crash's leftovers from a live build.
    with tempfile.TemporaryDirectory(dir=kernels, prefix=f".build-{os.getpid()}-") as scratch_name:
        scratch = Path(scratch_name)
        progress(f"unpacking {deb.name}")
        unpacked = scratch / "deb"
        _run(["dpkg-deb", "-x", str(deb), str(unpacked)])
        bzimages = sorted((unpacked / "boot").glob("vmlinuz-*"))
        module_dirs = sorted((unpacked / "lib" / "modules").glob("*"))
        if len(bzimages) != 1 or len(module_dirs) != 1:
            raise BuildFailed(f"{deb.name}: expected one kernel and one modules folder")
        version = module_dirs[0].name
        out = scratch / "out"
        out.mkdir()
        shutil.copyfile(bzimages[0], out / BZIMAGE_NAME)
        progress("extracting vmlinux from the bzImage")
        try:
            vmlinux, compression = extract_vmlinux(bzimages[0])
        except (OSError, ValueError) as exc:
            raise BuildFailed(f"cannot extract vmlinux: {exc}") from exc
        (out / VMLINUX_NAME).write_bytes(vmlinux)
        progress(f"building the initramfs (busybox, modules, agent); kernel payload was {compression}")
        if not BUSYBOX.is_file():
            raise BuildFailed(f"{BUSYBOX} is missing (apt-get install busybox-static)")
        try:
            initramfs = _initramfs.build(BUSYBOX, module_dirs[0], Path(guest.__file__).parent)
        except (OSError, ValueError) as exc:
            raise BuildFailed(f"cannot build the initramfs: {exc}") from exc
        (out / INITRAMFS_NAME).write_bytes(initramfs)
        sha256 = sha256_of(out / BZIMAGE_NAME, out / INITRAMFS_NAME)
        directory = kernels / f"{version}-{sha256[:12]}"
        if directory.exists():
            progress(f"{directory.name} is already built")
        else:
            out.rename(directory)
    record = {
        "agent_sha256": agent_fingerprint(),
        "package": package,
        "deb": deb.name,
        "version": version,
        "directory": directory.name,
        "sha256": sha256,
        "files": {
            name: {"sha256": sha256_of(directory / name), "size": (directory / name).stat().st_size}
            for name in (BZIMAGE_NAME, VMLINUX_NAME, INITRAMFS_NAME)
        },
        "built_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    write_json_atomically(kernels / RECORD_NAME, record)
    progress(f"kernel {version} ready in {directory} (sha256 {sha256[:12]})")
    return _files(directory, sha256)


def require_kernel(settings: Settings) -> KernelFiles:
    """The current kernel build, or the error that says how to make one."""
    kernel = load_kernel(settings)
    if kernel is None:
        raise BackendUnavailable("the guest kernel is not built: run `infra.operator kernel build`")
    return kernel


def agent_fingerprint() -> str:
    """A checksum of what the initramfs takes from this checkout: the agent, the init script
    and the modules it loads."""
    # The module list counts too: an initramfs without squashfs cannot boot a squashfs image.
    modules = ",".join(_initramfs.WANTED_MODULES).encode()
    return hashlib.sha256(_initramfs.INIT_SCRIPT.encode() + modules + guest.fingerprint().encode()).hexdigest()


def kernel_is_stale(settings: Settings) -> bool:
    """Missing, or its initramfs carries another agent than this checkout's."""
    record = read_json(settings.kernels_dir / RECORD_NAME)
    return load_kernel(settings) is None or record is None or record.get("agent_sha256") != agent_fingerprint()


def load_kernel(settings: Settings) -> KernelFiles | None:
    """The current kernel build, or None when there is none or its files are not whole."""
    record = read_json(settings.kernels_dir / RECORD_NAME)
    if record is None:
        return None
    try:
        directory = settings.kernels_dir / str(record["directory"])
        files = _files(directory, str(record["sha256"]))
        for name, facts in dict(record["files"]).items():
            if (directory / name).stat().st_size != int(facts["size"]):
                return None
    except (KeyError, TypeError, ValueError, OSError):
        return None
    return files
