"""The jail's seccomp program, run here through a reader of classic BPF: each call gets the
verdict the filter promises, with no jail and no root. (tests/backends/test_jail_seccomp.py
checks the same filter inside real jails.)"""

from __future__ import annotations

import errno
import struct

import pytest

from infra_operator.backends.jail import _seccomp

pytestmark = pytest.mark.unit

# From linux/seccomp.h and linux/audit.h, written out rather than taken from the module under test.
ALLOW = 0x7FFF0000
EPERM = 0x00050000 | errno.EPERM
ENOSYS = 0x00050000 | errno.ENOSYS
X86_64 = 0xC000003E
I386 = 0x40000003
X32_BIT = 0x40000000
CLONE_NEWUSER = 0x10000000
SIGCHLD = 17
TIOCSTI, TCGETS = 0x5412, 0x5401
ADDR_NO_RANDOMIZE = 0x0040000


def verdict(nr: int, *args: int, arch: int = X86_64) -> int:
    """What the kernel would do with this call: the value the program returns for its
    ``struct seccomp_data`` (nr, arch, instruction pointer, six 64-bit arguments)."""
    data = struct.pack("=iIQ6Q", nr, arch, 0, *args, *[0] * (6 - len(args)))
    program = [struct.unpack_from("=HBBI", _seccomp.program(), offset)
               for offset in range(0, len(_seccomp.program()), 8)]
    accumulator, pc = 0, 0
    for _ in program:  # jumps go forward only, so no run is longer than the program
        code, if_true, if_false, k = program[pc]
        if code == 0x20:  # BPF_LD | BPF_W | BPF_ABS
            accumulator = struct.unpack_from("=I", data, k)[0]
            pc += 1
        elif code in (0x15, 0x35, 0x45):  # BPF_JMP with JEQ, JGE, JSET against k
            taken = {0x15: accumulator == k, 0x35: accumulator >= k, 0x45: bool(accumulator & k)}[code]
            pc += 1 + (if_true if taken else if_false)
        elif code == 0x06:  # BPF_RET | BPF_K
            return int(k)
        else:
            raise AssertionError(f"instruction {pc}: opcode {code:#x} is not one this reader knows")
    raise AssertionError("the program ran off its end without returning")


def test_the_program_fits_the_kernel_limit() -> None:
    assert len(_seccomp.program()) % 8 == 0 and len(_seccomp.program()) // 8 <= 4096  # BPF_MAXINSNS


@pytest.mark.parametrize("name", sorted(_seccomp.DENIED_SYSCALLS))
def test_each_denied_call_is_eperm(name: str) -> None:
    assert verdict(_seccomp.DENIED_SYSCALLS[name]) == EPERM


@pytest.mark.parametrize(
    ("name", "nr", "args"),
    [
        ("read", 0, (0, 0, 0)),
        ("write", 1, (1, 0, 0)),
        ("mmap", 9, ()),
        ("getpid", 39, ()),
        ("clone of a thread", 56, (0x3D0F00,)),
        ("clone of a process", 56, (SIGCHLD,)),
        ("execve", 59, ()),
        ("wait4", 61, ()),
        ("ioctl TCGETS", 16, (0, TCGETS)),
        ("personality query", 135, (0xFFFFFFFF,)),
        ("personality PER_LINUX", 135, (0,)),
        ("exit_group", 231, (0,)),
        ("openat", 257, ()),
    ],
)
def test_ordinary_calls_are_allowed(name: str, nr: int, args: tuple[int, ...]) -> None:
    assert verdict(nr, *args) == ALLOW, name


def test_clone3_is_enosys_so_libc_falls_back_to_clone() -> None:
    assert verdict(435) == ENOSYS


def test_arguments_that_open_a_door_are_refused() -> None:
    assert verdict(56, CLONE_NEWUSER | SIGCHLD) == EPERM
    assert verdict(16, 0, TIOCSTI) == EPERM
    assert verdict(16, 0, (1 << 32) | TIOCSTI) == EPERM, "the kernel reads an ioctl request as 32 bits"
    assert verdict(135, ADDR_NO_RANDOMIZE) == EPERM


def test_other_abis_are_refused_outright() -> None:
    assert verdict(39, arch=I386) == EPERM
    assert verdict(X32_BIT | 39) == EPERM
    assert verdict(X32_BIT | 0) == EPERM
