"""Putting a VM back as it was before a throwaway execution (the pool's warm-up, see
``agent.warm``), so that the program it is then handed to cannot tell it from a VM in
which nothing ran:

- files: the scratch folders (the working folder, /tmp, /dev/shm) are emptied, following
  no link, and get their access and modification times back (their change time cannot be);
- processes: as the VM's init the agent kills every other process (``kill(-1)``) and reaps it;
- process ids: the kernel's last-pid counter is rewound, so the program gets the pid it
  would have had, not one that counts the warm-up's processes;
- cgroup names: the step counter restarts, so the program's cgroup has the usual name.

Random state and the clock are not here: every ``execute`` and ``session`` request brings
fresh entropy and the host's clock, and the agent applies both (``_confine.reseed``).
Only inside a VM, as its init and root: in a jail, /tmp is not ours to empty.
"""

from __future__ import annotations

import os

from . import _confine

LAST_PID = "/proc/sys/kernel/ns_last_pid"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _last_pid() -> int | None:
    try:
        with open(LAST_PID) as handle:
            return int(handle.read())
    except (OSError, ValueError):
        return None  # a kernel without CONFIG_CHECKPOINT_RESTORE: pids just go on counting


def _empty(fd: int) -> None:
    """Remove everything beneath the folder open at ``fd``; by descriptor, so no link is followed."""
    with os.scandir(fd) as entries:
        names = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
    for name, is_dir in names:
        if is_dir:
            inner = os.open(name, _DIR_FLAGS, dir_fd=fd)
            try:
                _empty(inner)
            finally:
                os.close(inner)
            os.rmdir(name, dir_fd=fd)
        else:
            os.unlink(name, dir_fd=fd)


def wipe(path: str) -> None:
    """Empty the folder ``path`` (not the folder itself: it is a mount point); raise
    ``OSError`` when something is still there afterwards."""
    fd = os.open(path, _DIR_FLAGS)
    try:
        _empty(fd)
        left = os.listdir(fd)
    finally:
        os.close(fd)
    if left:
        raise OSError(f"{path} still holds {sorted(left)[:5]} after the warm-up")


class Mark:
    """What ``rewind`` puts back: taken before the warm-up runs."""

    __slots__ = ("folders", "times", "last_pid")

    def __init__(self, folders: tuple[str, ...]) -> None:
        self.folders = folders
        self.times = {path: (info.st_atime_ns, info.st_mtime_ns) for path in folders for info in [os.stat(path)]}
        self.last_pid = _last_pid()

    def rewind(self) -> None:
        """Raises ``OSError`` when the VM cannot be put back: the host must not hand it out then."""
        _confine.kill_leftovers(None)  # as PID 1: every process but this one
        for path in self.folders:
            wipe(path)
            atime, mtime = self.times[path]
            os.utime(path, ns=(atime, mtime))
        _confine.restart_step_names()
        if self.last_pid is not None:
            # The next fork gets last_pid + 1, as it would have; the warm-up's pids are all free again.
            with open(LAST_PID, "w") as handle:
                handle.write(str(self.last_pid))
