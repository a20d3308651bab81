"""The initramfs every microVM boots: busybox, the kernel modules the guest needs to
reach its disk and its host, the guest agent, and an ``/init`` that mounts the rootfs
(squashfs or ext4) read-only and hands PID 1 to the agent.

The archive is written here (cpio "newc", gzip) rather than with ``cpio`` so that it
is the same bytes for the same inputs: its checksum names the kernel a snapshot needs.
"""

from __future__ import annotations

import gzip
import lzma
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# What the guest needs as modules when the kernel does not build them in: the
# virtio-mmio transport (found through ACPI), the disk and its file systems (squashfs
# for new images, ext4 for those built before; Debian's cloud kernel builds the zstd
# decompressor in), vsock for Firecracker, and the virtio RNG so the guest's random
# pool is seeded early.
WANTED_MODULES = (
    "virtio_mmio",
    "virtio_blk",
    "squashfs",
    "ext4",
    "vsock",
    "vmw_vsock_virtio_transport",
    "virtio_rng",
)

AGENT_MOUNT = "/opt/infra-operator"
"""Where the agent package appears in the guest; PYTHONPATH points here."""

INIT_SCRIPT = """#!/bin/busybox sh
# PID 1 of the initramfs: mount the rootfs read-only, give it fresh writable
# folders, put the agent in place, then let the agent become PID 1 of the rootfs.
export PATH=/bin
busybox mount -t proc proc /proc
busybox mount -t sysfs sysfs /sys
busybox mount -t devtmpfs devtmpfs /dev
warn() {
    echo "infra-operator init: $*" > /dev/console
}
fail() {
    warn "$*"
    busybox poweroff -f
}
for module in $(busybox cat /modules/order); do
    busybox insmod "/modules/$module" || warn "insmod $module failed"
done
channel=virtio:agent
for arg in $(busybox cat /proc/cmdline); do
    case "$arg" in
        infra.channel=*) channel="${arg#infra.channel=}" ;;
    esac
done
# The disk appears once virtio-mmio has probed it; do not race it.
tries=0
while [ ! -b /dev/vda ]; do
    tries=$((tries + 1))
    [ "$tries" -gt 500 ] && fail "no /dev/vda"
    busybox usleep 10000
done
# The image's first bytes say its file system ("hsqs": squashfs), so a failed guess
# never fills the console with another file system's complaints.
if [ "$(busybox dd if=/dev/vda bs=4 count=1 2>/dev/null)" = hsqs ]; then
    busybox mount -t squashfs -o ro /dev/vda /newroot || fail "cannot mount /dev/vda (squashfs)"
else
    busybox mount -t ext4 -o ro /dev/vda /newroot || busybox mount -t ext4 -o ro,noload /dev/vda /newroot \\
        || fail "cannot mount /dev/vda"
fi
busybox mount -t tmpfs -o mode=0777,nosuid,nodev work /newroot/work || fail "cannot mount /work"
busybox mount -t tmpfs -o mode=1777,nosuid,nodev tmp /newroot/tmp || fail "cannot mount /tmp"
busybox mount -t tmpfs -o mode=0755,nosuid,nodev agent /newroot{agent} || fail "cannot mount {agent}"
busybox cp -a /guest /newroot{agent}/guest || fail "cannot copy the agent"
busybox mount --move /dev /newroot/dev || fail "cannot move /dev"
busybox mkdir -p /newroot/dev/shm /newroot/dev/pts
busybox mount -t tmpfs -o mode=1777,nosuid,nodev shm /newroot/dev/shm
busybox mount -t devpts -o newinstance,ptmxmode=0666 devpts /newroot/dev/pts
busybox mount --move /sys /newroot/sys || fail "cannot move /sys"
busybox mount -t cgroup2 cgroup2 /newroot/sys/fs/cgroup || warn "no cgroup v2"
busybox mount --move /proc /newroot/proc || fail "cannot move /proc"
busybox ip link set lo up
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PYTHONPATH={agent} LANG=C.UTF-8 HOME=/root
exec busybox switch_root /newroot /usr/bin/python3 -B -m guest --channel "$channel"
""".replace("{agent}", AGENT_MOUNT)


@dataclass(frozen=True)
class Entry:
    name: str
    mode: int
    data: bytes = b""


def _module_index(modules_dir: Path) -> dict[str, Path]:
    """Module name (dashes as underscores, as the kernel spells them) to its file."""
    index: dict[str, Path] = {}
    for path in sorted((modules_dir / "kernel").rglob("*.ko*")):
        name = path.name.split(".ko")[0].replace("-", "_")
        index[name] = path
    return index


def _builtin(modules_dir: Path) -> set[str]:
    names: set[str] = set()
    for line in (modules_dir / "modules.builtin").read_text().splitlines():
        names.add(Path(line.strip()).name.split(".ko")[0].replace("-", "_"))
    return names


def read_module(path: Path) -> bytes:
    """The module's ELF bytes: busybox ``insmod`` takes no compressed modules."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        raise ValueError(f"{path}: zstd-compressed modules are not supported")
    return data


def _depends(module: bytes) -> list[str]:
    # modinfo's "depends=a,b" string in the .modinfo section; modules.dep is made by
    # depmod at install time, which a .deb we only unpack never ran.
    marker = module.find(b"\x00depends=")
    if marker == -1:
        return []
    end = module.index(b"\x00", marker + 1)
    value = module[marker + len(b"\x00depends=") : end].decode()
    return [name.replace("-", "_") for name in value.split(",") if name]


def resolve_modules(modules_dir: Path, wanted: Iterable[str] = WANTED_MODULES) -> list[tuple[str, bytes]]:
    """The modules to load, dependencies first, as (file name, ELF bytes); built-ins are skipped."""
    index = _module_index(modules_dir)
    builtin = _builtin(modules_dir)
    ordered: list[tuple[str, bytes]] = []
    seen: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in seen or name in builtin:
            return
        if name in chain:
            raise ValueError(f"module dependency cycle: {' -> '.join(chain + (name,))}")
        if name not in index:
            raise ValueError(f"module {name} is neither built in nor shipped in {modules_dir}")
        data = read_module(index[name])
        for dependency in _depends(data):
            visit(dependency, chain + (name,))
        seen.add(name)
        ordered.append((f"{name}.ko", data))

    for name in wanted:
        visit(name, ())
    return ordered


def agent_tree(source: Path, target: str) -> list[Entry]:
    """The agent package's sources (no caches) under ``target``."""
    entries = [Entry(target, stat.S_IFDIR | 0o755)]
    for path in sorted(source.rglob("*")):
        if "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo"):
            continue
        name = f"{target}/{path.relative_to(source).as_posix()}"
        if path.is_dir():
            entries.append(Entry(name, stat.S_IFDIR | 0o755))
        elif path.is_file():
            entries.append(Entry(name, stat.S_IFREG | 0o644, path.read_bytes()))
    return entries


def entries(busybox: Path, modules: list[tuple[str, bytes]], agent_source: Path) -> list[Entry]:
    directory = stat.S_IFDIR | 0o755
    result = [Entry(name, directory) for name in ("bin", "dev", "proc", "sys", "newroot", "modules")]
    result.append(Entry("bin/busybox", stat.S_IFREG | 0o755, busybox.read_bytes()))
    result.append(Entry("bin/sh", stat.S_IFLNK | 0o777, b"busybox"))
    result.append(Entry("init", stat.S_IFREG | 0o755, INIT_SCRIPT.encode()))
    for name, data in modules:
        result.append(Entry(f"modules/{name}", stat.S_IFREG | 0o644, data))
    order = "".join(f"{name}\n" for name, _ in modules).encode()
    result.append(Entry("modules/order", stat.S_IFREG | 0o644, order))
    result.extend(agent_tree(agent_source, "guest"))
    return result


def _pad(length: int) -> bytes:
    return b"\x00" * (-length % 4)


def cpio_newc(items: list[Entry]) -> bytes:
    """A cpio "newc" archive with fixed owners and times, so equal inputs give equal bytes."""
    out = bytearray()
    for number, item in enumerate([*items, Entry("TRAILER!!!", 0)], start=1):
        name = item.name.encode() + b"\x00"
        nlink = 2 if stat.S_ISDIR(item.mode) else 1
        fields = (number, item.mode, 0, 0, nlink, 0, len(item.data), 0, 0, 0, 0, len(name), 0)
        header = b"070701" + b"".join(b"%08X" % value for value in fields)
        out += header + name
        out += _pad(len(header) + len(name))
        out += item.data + _pad(len(item.data))
    return bytes(out)


def build(busybox: Path, modules_dir: Path, agent_source: Path) -> bytes:
    """The gzip-compressed initramfs, the same bytes for the same inputs."""
    archive = cpio_newc(entries(busybox, resolve_modules(modules_dir), agent_source))
    return gzip.compress(archive, compresslevel=6, mtime=0)
