"""The seccomp filter sandboxed code runs under, as a classic BPF program: a packed array
of ``struct sock_filter``, the form bwrap's ``--seccomp FD`` and ``prctl(PR_SET_SECCOMP)``
take. A jail's template loads it into every sandbox (the host hands it the same bytes);
inside a microVM the agent loads it into every program it starts.

An allow list, modelled on Docker's default profile (moby's profiles/seccomp/default.json)
for a process without capabilities: what ordinary programs need is allowed, a few calls
are allowed for some arguments only, the calls that only serve an attack or reach
shared kernel state fail with EPERM, and every other number, including any syscall a
newer kernel adds, fails with ENOSYS, which libc and language runtimes read as "older
kernel" and fall back from (glibc's clone3, fchmodat2, ...).

Written by hand rather than through libseccomp so neither the host nor the guest needs
more than its Python; ``tests/backends/test_jail_seccomp.py`` checks every name against
libseccomp's own table. The allow list holds only calls that table knows (libseccomp
2.5.4, Debian 12): a newer call answers ENOSYS until the table, and this list, learn it.

x86_64 only: any other architecture (the i386 ``int 0x80`` entry) and the x32 ABI are
refused outright, since syscall numbers differ there.
"""

from __future__ import annotations

import errno
import functools
import struct

# From linux/audit.h, linux/seccomp.h and linux/filter.h.
AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
_BPF_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_BPF_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_BPF_JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_BPF_JSET_K = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_BPF_RET_K = 0x06  # BPF_RET | BPF_K
_SOCK_FILTER = struct.Struct("=HBBI")

# Offsets into struct seccomp_data: nr, arch, then u64 args (low half first on x86_64).
_NR, _ARCH = 0, 4

CLONE_NEWUSER = 0x10000000
TIOCSTI = 0x5412
# personality(2) values programs legitimately pass: PER_LINUX, PER_LINUX32, UNAME26
# variants, and 0xffffffff to query. Anything else (ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC) is refused.
ALLOWED_PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)
# socket(2) and socketpair(2) families: local sockets, and IP inside the sandbox's empty
# network namespace. vsock ignores network namespaces (a jail's port would be the host's),
# and the rest (packet, crypto, bluetooth, ...) is kernel surface no program here needs.
AF_UNIX, AF_INET, AF_INET6, AF_NETLINK = 1, 2, 10, 16
NETLINK_ROUTE = 0
"""The one netlink protocol allowed: glibc's getifaddrs and language runtimes list
interfaces through it; the namespace has only its own loopback to show."""
# fcntl(2) commands, from linux/fcntl.h and asm-generic/fcntl.h.
F_SETLK, F_SETLKW, F_OFD_SETLK, F_OFD_SETLKW = 6, 7, 37, 38
F_NOTIFY = 1026
"""dnotify: like inotify, it reports reads (DN_ACCESS) in a directory to whoever watches it."""

# x86_64 numbers, from arch/x86/entry/syscalls/syscall_64.tbl.
ALLOWED_SYSCALLS: dict[str, int] = {
    "read": 0, "write": 1, "open": 2, "close": 3, "stat": 4, "fstat": 5, "lstat": 6, "poll": 7, "lseek": 8,
    "mmap": 9, "mprotect": 10, "munmap": 11, "brk": 12, "rt_sigaction": 13, "rt_sigprocmask": 14,
    "rt_sigreturn": 15, "pread64": 17, "pwrite64": 18, "readv": 19, "writev": 20, "access": 21, "pipe": 22,
    "select": 23, "sched_yield": 24, "mremap": 25, "msync": 26, "mincore": 27, "madvise": 28, "shmget": 29,
    "shmat": 30, "shmctl": 31, "dup": 32, "dup2": 33, "pause": 34, "nanosleep": 35, "getitimer": 36,
    "alarm": 37, "setitimer": 38, "getpid": 39, "sendfile": 40, "connect": 42, "accept": 43, "sendto": 44,
    "recvfrom": 45, "sendmsg": 46, "recvmsg": 47, "shutdown": 48, "bind": 49, "listen": 50,
    "getsockname": 51, "getpeername": 52, "setsockopt": 54, "getsockopt": 55, "fork": 57, "vfork": 58,
    "execve": 59, "exit": 60, "wait4": 61, "kill": 62, "uname": 63, "semget": 64, "semop": 65,
    "semctl": 66, "shmdt": 67, "msgget": 68, "msgsnd": 69, "msgrcv": 70, "msgctl": 71, "fsync": 74,
    "fdatasync": 75, "truncate": 76, "ftruncate": 77, "getdents": 78, "getcwd": 79, "chdir": 80,
    "fchdir": 81, "rename": 82, "mkdir": 83, "rmdir": 84, "creat": 85, "link": 86, "unlink": 87,
    "symlink": 88, "readlink": 89, "chmod": 90, "fchmod": 91, "chown": 92, "fchown": 93, "lchown": 94,
    "umask": 95, "gettimeofday": 96, "getrlimit": 97, "getrusage": 98, "sysinfo": 99, "times": 100,
    "getuid": 102, "getgid": 104, "setuid": 105, "setgid": 106, "geteuid": 107, "getegid": 108,
    "setpgid": 109, "getppid": 110, "getpgrp": 111, "setsid": 112, "setreuid": 113, "setregid": 114,
    "getgroups": 115, "setgroups": 116, "setresuid": 117, "getresuid": 118, "setresgid": 119,
    "getresgid": 120, "getpgid": 121, "setfsuid": 122, "setfsgid": 123, "getsid": 124, "capget": 125,
    "capset": 126, "rt_sigpending": 127, "rt_sigtimedwait": 128, "rt_sigqueueinfo": 129,
    "rt_sigsuspend": 130, "sigaltstack": 131, "utime": 132, "mknod": 133, "statfs": 137, "fstatfs": 138,
    "getpriority": 140, "setpriority": 141, "sched_setparam": 142, "sched_getparam": 143,
    "sched_setscheduler": 144, "sched_getscheduler": 145, "sched_get_priority_max": 146,
    "sched_get_priority_min": 147, "sched_rr_get_interval": 148, "mlock": 149, "munlock": 150,
    "mlockall": 151, "munlockall": 152, "prctl": 157, "arch_prctl": 158, "setrlimit": 160, "sync": 162,
    "gettid": 186, "readahead": 187, "setxattr": 188, "lsetxattr": 189, "fsetxattr": 190, "getxattr": 191,
    "lgetxattr": 192, "fgetxattr": 193, "listxattr": 194, "llistxattr": 195, "flistxattr": 196,
    "removexattr": 197, "lremovexattr": 198, "fremovexattr": 199, "tkill": 200, "time": 201, "futex": 202,
    "sched_setaffinity": 203, "sched_getaffinity": 204, "set_thread_area": 205, "get_thread_area": 211,
    "epoll_create": 213, "epoll_ctl_old": 214, "epoll_wait_old": 215, "remap_file_pages": 216,
    "getdents64": 217, "set_tid_address": 218, "restart_syscall": 219, "semtimedop": 220, "fadvise64": 221,
    "timer_create": 222, "timer_settime": 223, "timer_gettime": 224, "timer_getoverrun": 225,
    "timer_delete": 226, "clock_gettime": 228, "clock_getres": 229, "clock_nanosleep": 230,
    "exit_group": 231, "epoll_wait": 232, "epoll_ctl": 233, "tgkill": 234, "utimes": 235, "mq_open": 240,
    "mq_unlink": 241, "mq_timedsend": 242, "mq_timedreceive": 243, "mq_notify": 244, "mq_getsetattr": 245,
    "waitid": 247, "ioprio_set": 251, "ioprio_get": 252, "openat": 257, "mkdirat": 258, "mknodat": 259,
    "fchownat": 260, "futimesat": 261, "newfstatat": 262, "unlinkat": 263, "renameat": 264, "linkat": 265,
    "symlinkat": 266, "readlinkat": 267, "fchmodat": 268, "faccessat": 269, "pselect6": 270, "ppoll": 271,
    "set_robust_list": 273, "get_robust_list": 274, "splice": 275, "tee": 276, "sync_file_range": 277,
    "vmsplice": 278, "utimensat": 280, "epoll_pwait": 281, "signalfd": 282, "timerfd_create": 283,
    "eventfd": 284, "fallocate": 285, "timerfd_settime": 286, "timerfd_gettime": 287, "accept4": 288,
    "signalfd4": 289, "eventfd2": 290, "epoll_create1": 291, "dup3": 292, "pipe2": 293, "preadv": 295,
    "pwritev": 296, "rt_tgsigqueueinfo": 297, "recvmmsg": 299, "prlimit64": 302, "syncfs": 306,
    "sendmmsg": 307, "getcpu": 309, "sched_setattr": 314, "sched_getattr": 315, "renameat2": 316,
    "seccomp": 317, "getrandom": 318, "memfd_create": 319, "execveat": 322, "membarrier": 324,
    "mlock2": 325, "copy_file_range": 326, "preadv2": 327, "pwritev2": 328, "pkey_mprotect": 329,
    "pkey_alloc": 330, "pkey_free": 331, "statx": 332, "rseq": 334, "pidfd_send_signal": 424,
    "pidfd_open": 434, "close_range": 436, "openat2": 437, "faccessat2": 439, "epoll_pwait2": 441,
    "landlock_create_ruleset": 444, "landlock_add_rule": 445, "landlock_restrict_self": 446,
    "memfd_secret": 447, "process_mrelease": 448, "futex_waitv": 449, "fchmodat2": 452,
}
"""Docker's unconditional allow list for x86_64, less what is denied below and Linux AIO
(io_setup and friends: their contexts count against one host-wide limit, aio-max-nr)."""

DENIED_SYSCALLS: dict[str, int] = {
    "ptrace": 101,
    "syslog": 103,
    "uselib": 134,
    "vhangup": 153,
    "pivot_root": 155,
    "_sysctl": 156,
    "adjtimex": 159,
    "acct": 163,
    "settimeofday": 164,
    "mount": 165,
    "umount2": 166,
    "swapon": 167,
    "swapoff": 168,
    "reboot": 169,
    "iopl": 172,
    "ioperm": 173,
    "create_module": 174,
    "init_module": 175,
    "delete_module": 176,
    "get_kernel_syms": 177,
    "query_module": 178,
    "quotactl": 179,
    "nfsservctl": 180,
    "lookup_dcookie": 212,
    "clock_settime": 227,
    "kexec_load": 246,
    "add_key": 248,
    "request_key": 249,
    "keyctl": 250,
    # The rootfs is one read-only mount shared by every sandbox of an image, so a watch on
    # /etc or /usr/lib sees what a neighbour opens and reads (dnotify is refused in fcntl).
    "inotify_init": 253,
    "inotify_add_watch": 254,
    "unshare": 272,
    "move_pages": 279,
    "inotify_init1": 294,
    "perf_event_open": 298,
    "fanotify_init": 300,
    "fanotify_mark": 301,
    "name_to_handle_at": 303,
    "open_by_handle_at": 304,
    "clock_adjtime": 305,
    "setns": 308,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "kcmp": 312,
    "finit_module": 313,
    "kexec_file_load": 320,
    "bpf": 321,
    "userfaultfd": 323,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "pidfd_getfd": 438,
    "mount_setattr": 442,
    "quotactl_fd": 443,
}
"""Calls that fail with EPERM, as they would for a program without privilege: each serves
only an attack, or reaches state shared with the host or other sandboxes."""

NR_IOCTL = 16
NR_SOCKET = 41
NR_SOCKETPAIR = 53
NR_CLONE = 56
NR_FCNTL = 72
NR_FLOCK = 73
NR_PERSONALITY = 135


def _arg_low(index: int) -> int:
    return 16 + 8 * index


class _Op:
    """One instruction; a jump names the ``label`` of the instruction it lands on, or how
    many to skip, or none for the next one. A plain class: ``dataclasses`` costs the
    agent's start-up."""

    __slots__ = ("code", "k", "true", "false", "label")

    def __init__(self, code: int, k: int, true: str | int | None = None, false: str | int | None = None,
                 label: str | None = None) -> None:
        self.code, self.k, self.true, self.false, self.label = code, k, true, false, label


def _load(offset: int, label: str | None = None) -> _Op:
    return _Op(_BPF_LD_W_ABS, offset, label=label)


def _ret(value: int, label: str | None = None) -> _Op:
    return _Op(_BPF_RET_K, value, label=label)


def _errno(number: int) -> int:
    return SECCOMP_RET_ERRNO | number


def _when(number: int, block: list[_Op], name: str) -> list[_Op]:
    """``block`` for syscall ``number``, else on to what follows, where the number is
    loaded again (labelled ``name``), since the block loads an argument. The block ends
    in returns on every path, so nothing falls out of it."""
    return [_Op(_BPF_JEQ_K, number, false=name), *block, _load(_NR, label=name)]


def _answer(number: int, action: int) -> list[_Op]:
    return [_Op(_BPF_JEQ_K, number, false=1), _ret(action)]


def _assemble(ops: list[_Op]) -> bytes:
    """Pack ``ops``, turning jump labels into the relative offsets BPF wants (forward only)."""
    where = {op.label: index for index, op in enumerate(ops) if op.label}
    out = bytearray()
    for index, op in enumerate(ops):
        jumps = []
        for target in (op.true, op.false):
            offset = target if isinstance(target, int) else 0 if target is None else where[target] - index - 1
            if not 0 <= offset <= 255:
                raise ValueError(f"seccomp jump from {index} to {target} out of range")
            jumps.append(offset)
        out += _SOCK_FILTER.pack(op.code, jumps[0], jumps[1], op.k)
    return bytes(out)


def _families(name: str) -> list[_Op]:
    allow, refuse = f"{name}-allow", f"{name}-refuse"
    return [
        _load(_arg_low(0)),
        *(_Op(_BPF_JEQ_K, family, true=allow) for family in (AF_UNIX, AF_INET, AF_INET6)),
        _Op(_BPF_JEQ_K, AF_NETLINK, false=refuse),
        _load(_arg_low(2)),
        _Op(_BPF_JEQ_K, NETLINK_ROUTE, true=allow),
        _ret(_errno(errno.EAFNOSUPPORT), label=refuse),
        _ret(SECCOMP_RET_ALLOW, label=allow),
    ]


@functools.cache
def program() -> bytes:
    """The filter as bytes; the same for every sandbox, so assembled once per process."""
    # Calls with argument checks come first: they are the ones the kernel cannot answer
    # from its per-syscall cache, so they are reached in a few instructions. Every
    # comparison jumps at most a few instructions ahead, whatever the lists hold.
    ops = [
        _load(_ARCH),
        _Op(_BPF_JEQ_K, AUDIT_ARCH_X86_64, true="x86_64"),
        _ret(_errno(errno.EPERM)),
        _load(_NR, label="x86_64"),
        _Op(_BPF_JGE_K, X32_SYSCALL_BIT, false="x86_64-abi"),
        _ret(_errno(errno.EPERM)),
        _load(_NR, label="x86_64-abi"),
        *_when(NR_IOCTL, [
            # The kernel reads an ioctl's request as 32 bits, so the low half is what counts.
            _load(_arg_low(1)),
            _Op(_BPF_JEQ_K, TIOCSTI, false="ioctl-allow"),
            _ret(_errno(errno.EPERM)),
            _ret(SECCOMP_RET_ALLOW, label="ioctl-allow"),
        ], "after-ioctl"),
        *_when(NR_FCNTL, [
            # Record locks succeed without locking: a lock on a file of the shared rootfs
            # would be seen by every other sandbox (a covert channel), and the only files a
            # sandbox can change are its own, used by one program. F_GETLK then finds none.
            _load(_arg_low(1)),
            *(_Op(_BPF_JEQ_K, command, true="fcntl-no-op") for command in (F_SETLK, F_SETLKW, F_OFD_SETLK, F_OFD_SETLKW)),
            _Op(_BPF_JEQ_K, F_NOTIFY, false="fcntl-allow"),
            _ret(_errno(errno.EPERM)),
            _ret(_errno(0), label="fcntl-no-op"),
            _ret(SECCOMP_RET_ALLOW, label="fcntl-allow"),
        ], "after-fcntl"),
        # flock likewise: it answers 0 and locks nothing (SECCOMP_RET_ERRNO with errno 0).
        *_answer(NR_FLOCK, _errno(0)),
        *_when(NR_SOCKET, _families("socket"), "after-socket"),
        *_when(NR_SOCKETPAIR, _families("socketpair"), "after-socketpair"),
        *_when(NR_CLONE, [
            _load(_arg_low(0)),
            _Op(_BPF_JSET_K, CLONE_NEWUSER, false="clone-allow"),
            _ret(_errno(errno.EPERM)),
            _ret(SECCOMP_RET_ALLOW, label="clone-allow"),
        ], "after-clone"),
        *_when(NR_PERSONALITY, [
            _load(_arg_low(0)),
            *(_Op(_BPF_JEQ_K, value, true="personality-allow") for value in ALLOWED_PERSONALITIES),
            _ret(_errno(errno.EPERM)),
            _ret(SECCOMP_RET_ALLOW, label="personality-allow"),
        ], "after-personality"),
    ]
    for number in DENIED_SYSCALLS.values():
        ops += _answer(number, _errno(errno.EPERM))
    for number in ALLOWED_SYSCALLS.values():
        ops += _answer(number, SECCOMP_RET_ALLOW)
    # clone3's flags sit in memory a filter cannot read: ENOSYS, like any call not listed,
    # and glibc falls back to clone, whose flags are checked above.
    ops.append(_ret(_errno(errno.ENOSYS)))
    return _assemble(ops)
