"""The seccomp filter every jail runs under, as a classic BPF program: a packed array of
``struct sock_filter``, the form bwrap's ``--seccomp FD`` takes and the jail template loads.

Written by hand rather than through libseccomp so the backend needs nothing the
host's Python lacks. x86_64 only: any other architecture (the i386 ``int 0x80``
entry) and the x32 ABI are refused outright, since syscall numbers differ there
and a deny list for one ABI is an allow list for another.

Denied calls fail with EPERM; ``clone3`` fails with ENOSYS, because its flags sit
in memory a filter cannot read, and glibc then falls back to ``clone``, whose flags
we can check.
"""

from __future__ import annotations

import errno
import os
import struct
from dataclasses import dataclass
from functools import cache

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


def _arg_low(index: int) -> int:
    return 16 + 8 * index


CLONE_NEWUSER = 0x10000000
TIOCSTI = 0x5412
# personality(2) values programs legitimately pass: PER_LINUX, PER_LINUX32, UNAME26
# variants, and 0xffffffff to query. Anything else (ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC) is refused.
ALLOWED_PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

# x86_64 numbers, from arch/x86/entry/syscalls/syscall_64.tbl.
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
    "unshare": 272,
    "move_pages": 279,
    "perf_event_open": 298,
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
NR_IOCTL = 16
NR_CLONE = 56
NR_PERSONALITY = 135
NR_CLONE3 = 435


@dataclass(frozen=True)
class _Op:
    code: int
    k: int
    true: str | None = None
    false: str | None = None
    label: str | None = None


def _load(offset: int, label: str | None = None) -> _Op:
    return _Op(_BPF_LD_W_ABS, offset, label=label)


def _ret(value: int, label: str | None = None) -> _Op:
    return _Op(_BPF_RET_K, value, label=label)


def _errno(number: int) -> int:
    return SECCOMP_RET_ERRNO | number


def _assemble(ops: list[_Op]) -> bytes:
    """Pack ``ops``, turning jump labels into the relative offsets BPF wants (forward only)."""
    where = {op.label: index for index, op in enumerate(ops) if op.label}
    out = bytearray()
    for index, op in enumerate(ops):
        jumps = []
        for target in (op.true, op.false):
            offset = 0 if target is None else where[target] - index - 1
            if not 0 <= offset <= 255:
                raise ValueError(f"seccomp jump from {index} to {target} out of range")
            jumps.append(offset)
        out += _SOCK_FILTER.pack(op.code, jumps[0], jumps[1], op.k)
    return bytes(out)


@cache
def program() -> bytes:
    """The filter as bytes, ready to be written to the fd a jail template (or the capability
    probe's bwrap) reads it from; the same for every jail, so assembled once."""
    ops = [
        _load(_ARCH),
        _Op(_BPF_JEQ_K, AUDIT_ARCH_X86_64, false="deny"),
        _load(_NR),
        _Op(_BPF_JGE_K, X32_SYSCALL_BIT, true="deny"),
        *(_Op(_BPF_JEQ_K, number, true="deny") for number in DENIED_SYSCALLS.values()),
        _Op(_BPF_JEQ_K, NR_CLONE3, true="enosys"),
        _Op(_BPF_JEQ_K, NR_CLONE, true="clone"),
        _Op(_BPF_JEQ_K, NR_IOCTL, true="ioctl"),
        _Op(_BPF_JEQ_K, NR_PERSONALITY, true="personality"),
        _ret(SECCOMP_RET_ALLOW),
        _load(_arg_low(0), label="clone"),
        _Op(_BPF_JSET_K, CLONE_NEWUSER, true="deny", false="allow"),
        # The kernel reads an ioctl's request as 32 bits, so the low half is what counts.
        _load(_arg_low(1), label="ioctl"),
        _Op(_BPF_JEQ_K, TIOCSTI, true="deny", false="allow"),
        _load(_arg_low(0), label="personality"),
        *(_Op(_BPF_JEQ_K, value, true="allow") for value in ALLOWED_PERSONALITIES),
        _ret(_errno(errno.EPERM), label="deny"),
        _ret(_errno(errno.ENOSYS), label="enosys"),
        _ret(SECCOMP_RET_ALLOW, label="allow"),
    ]
    return _assemble(ops)


def program_fd() -> int:
    """An in-memory file holding the filter, positioned at its start, for ``pass_fds``."""
    fd = os.memfd_create("infra-operator-seccomp", os.MFD_CLOEXEC)
    try:
        os.write(fd, program())
        os.lseek(fd, 0, os.SEEK_SET)
    except OSError:
        os.close(fd)
        raise
    return fd
