"""The user namespace jails run in, where sandbox uid 65534 is host uid 65534.

bwrap run by root with ``--unshare-user --uid 65534`` maps the sandbox's 65534 to
the caller's uid, 0: sandboxed code would be host root without capabilities, and
that still passes every check made by uid alone (host sysctls under /proc/sys are
writable by uid 0, for one). So we make the namespace ourselves, mapping only
65534 to 65534, and hand it to bwrap with ``--userns FD``; no id inside maps to a
host id that owns anything.

The namespace is owned by uid 65534 too, not by root who makes it. The kernel counts
per-user objects (queued signals, POSIX message queues, inotify instances, ...) at
each level up the chain of namespace owners, against each level's limit: in a
namespace root owned, a sandbox's message queues were root's, and a sandbox holding
some made root's own ``mq_open`` fail. Each sandbox then nests a namespace of its
own in this one (``guest/_template.py``), so its count is its own, bounded by the
limits its programs get (``guest/_confine.limit_kernel_objects``). The levels above
count what all sandboxes hold together, against the server's own limits (a namespace
takes its ceiling from its maker's): the programs' limits are small enough for every
execution the server runs at once to hold its share.

One namespace serves every jail of the server: it is only an id mapping, and
each jail still gets its own mount, PID, network, IPC and UTS namespaces.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time

from ...errors import SandboxError

_lock = threading.Lock()
_made: dict[tuple[int, int], int] = {}


def _make(uid: int, gid: int) -> int:
    # A throwaway process of ``uid`` enters a new user namespace, which ``uid`` then owns;
    # we map its ids from outside (as root we may map any), keep a handle on the namespace
    # and let it go.
    holder = subprocess.Popen(["unshare", "--user", "cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              user=uid, group=gid, extra_groups=[])
    try:
        ours = os.readlink("/proc/self/ns/user")
        deadline = time.monotonic() + 5
        while os.readlink(f"/proc/{holder.pid}/ns/user") == ours:
            if holder.poll() is not None or time.monotonic() > deadline:
                raise SandboxError("cannot make a user namespace: `unshare --user` did not start")
            time.sleep(0.001)
        with open(f"/proc/{holder.pid}/uid_map", "w") as uid_map:
            uid_map.write(f"{uid} {uid} 1")
        with open(f"/proc/{holder.pid}/gid_map", "w") as gid_map:
            gid_map.write(f"{gid} {gid} 1")
        return os.open(f"/proc/{holder.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise SandboxError(f"cannot make a user namespace: {exc.strerror or exc}") from exc
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.kill()
        holder.wait()


def namespace_fd(uid: int, gid: int) -> int:
    """An fd of the shared namespace mapping ``uid``/``gid`` to themselves; made on first use."""
    with _lock:
        if (uid, gid) not in _made:
            _made[uid, gid] = _make(uid, gid)
        return _made[uid, gid]
