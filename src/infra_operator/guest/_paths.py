"""A session's files, reached only beneath its working folder.

The host never opens a path inside a sandbox: it sends the path here, and the agent
resolves it one component at a time from a descriptor of the working folder, each
with ``O_NOFOLLOW``. A component that is ``..``, ``.`` or empty, an absolute path, or
a symlink anywhere on the way (a program may plant one) is refused; there is no
window between checking a path and opening it, since no name is ever resolved twice.
A file must also live on the working folder's own filesystem (a tmpfs of its own),
which a hard link to a file elsewhere cannot: links do not cross filesystems, and
this check says so rather than trusting it. (Judge0's CVE-2024-28185 was a host
writing through a planted symlink; here nothing of the host writes at all.)
"""

from __future__ import annotations

import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs the agent's start-up milliseconds at run time
    from .messages import FileEntry, Refusal

SANDBOX_UID = 65534
PIECE_BYTES = 1 << 20
"""The most one ``file_get`` answers: the host asks piece by piece."""
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Refused(ValueError):
    """A request about a file the agent will not carry out, and why (see ``messages.Refusal``)."""

    def __init__(self, reason: Refusal, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _parts(path: str) -> list[str]:
    parts = path.split("/")
    if not path or "\0" in path or any(part in ("", ".", "..") for part in parts):
        raise Refused("path", f"path {path!r} leaves the working folder: give a relative path without '.' or '..'")
    return parts


def _own(fd: int) -> None:
    if os.getuid() == 0:  # inside a VM the agent is root; the program must own what the API wrote
        os.fchown(fd, SANDBOX_UID, SANDBOX_UID)


def _open_dir(name: str, parent: int, path: str, create: bool) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except FileNotFoundError:
        if not create:
            raise Refused("missing", f"no such file: {path}") from None
    except OSError as exc:  # ELOOP, ENOTDIR: a symlink or a file where a folder should be
        raise Refused("path", f"path {path!r} crosses a symlink or a file: {exc.strerror}") from None
    os.mkdir(name, 0o755, dir_fd=parent)
    fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
    _own(fd)
    return fd


def _parent(work_fd: int, path: str, create: bool = False) -> tuple[int, str]:
    """A descriptor of the folder that holds ``path``'s last component, and that component."""
    parts = _parts(path)
    fd = os.open(".", _DIR_FLAGS, dir_fd=work_fd)
    try:
        for name in parts[:-1]:
            inner = _open_dir(name, fd, path, create)
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd, parts[-1]


def _open_file(work_fd: int, path: str, flags: int, create: bool = False) -> int:
    parent, name = _parent(work_fd, path, create)
    try:
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644, dir_fd=parent)
    except FileNotFoundError:
        raise Refused("missing", f"no such file: {path}") from None
    except OSError as exc:
        raise Refused("path", f"path {path!r} is not a regular file of the working folder: {exc.strerror}") from None
    finally:
        os.close(parent)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_dev != os.fstat(work_fd).st_dev:
        os.close(fd)
        raise Refused("path", f"path {path!r} is not a regular file of the working folder")
    return fd


def put(work_fd: int, path: str, data: bytes, offset: int, limit: int) -> int:
    """Write one piece of a file; the file's size after it."""
    if offset < 0 or offset + len(data) > limit:
        raise Refused("too_large", f"file {path} would pass the session's file limit of {limit} bytes")
    flags = os.O_WRONLY | (os.O_CREAT | os.O_TRUNC if offset == 0 else 0)
    fd = _open_file(work_fd, path, flags, create=offset == 0)
    try:
        if offset == 0:
            _own(fd)
        os.pwrite(fd, data, offset)
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def get(work_fd: int, path: str, offset: int, length: int) -> tuple[bytes, int]:
    """A piece of a file (at most ``PIECE_BYTES``) and the file's whole size."""
    fd = _open_file(work_fd, path, os.O_RDONLY)
    try:
        return os.pread(fd, max(0, min(length, PIECE_BYTES)), max(0, offset)), os.fstat(fd).st_size
    finally:
        os.close(fd)


def delete(work_fd: int, path: str) -> None:
    """Remove a file, a symlink (never what it points to) or a folder with all it holds."""
    parent, name = _parent(work_fd, path)
    try:
        try:
            info = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            raise Refused("missing", f"no such file: {path}") from None
        if stat.S_ISDIR(info.st_mode):
            import shutil  # only here: the agent's start-up does without it

            shutil.rmtree(name, dir_fd=parent)  # descriptor-based: it follows no symlink
        else:
            os.unlink(name, dir_fd=parent)
    finally:
        os.close(parent)


def listing(work_fd: int) -> list[FileEntry]:
    """Every folder and regular file beneath the working folder; symlinks and the like are left out."""
    found: list[FileEntry] = []
    for folder, dirs, files, fd in os.fwalk(".", dir_fd=work_fd):
        prefix = "" if folder == "." else folder[2:] + "/"
        for name in [*dirs, *files]:
            try:
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)  # a symlink to a folder is in dirs
            except FileNotFoundError:
                continue  # removed while we looked
            if stat.S_ISDIR(info.st_mode):
                found.append({"path": prefix + name, "size": 0, "type": "dir"})
            elif stat.S_ISREG(info.st_mode):
                found.append({"path": prefix + name, "size": info.st_size, "type": "file"})
    return sorted(found, key=lambda entry: entry["path"])
