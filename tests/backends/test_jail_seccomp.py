"""The jail's seccomp filter: each denied call fails inside a real jail (through the
API), ordinary programs still run, and the program every jail loads is well formed, its
numbers those of libseccomp's own table. Calls it does not know (ENOSYS) and the socket
families it refuses are adversarial cases, on every backend: tests/adversarial."""

from __future__ import annotations

import errno
import shutil
import struct
import subprocess

import httpx
import pytest
from conftest import require_images

from infra_operator.guest import _seccomp

# name: (syscall number, arguments). Arguments are harmless even if a call got through;
# several of these calls succeed for any unprivileged user without the filter
# (ptrace TRACEME, unshare and clone of a user namespace, personality, keyctl, add_key,
# process_vm_readv of itself, name_to_handle_at, io_uring_setup), so an EPERM proves the filter.
CALLS: dict[str, tuple[int, ...]] = {
    "ptrace": (101, 0, 0, 0, 0),
    "process_vm_readv": (310, -2, 0, 0, 0, 0, 0),
    "process_vm_writev": (311, -2, 0, 0, 0, 0, 0),
    "mount": (165, 0, 0, 0, 0, 0),
    "umount2": (166, 0, 0),
    "pivot_root": (155, 0, 0),
    "unshare": (272, 0x10000000),
    "setns": (308, -1, 0),
    "keyctl": (250, 1, 0),
    "add_key": (248, 0, 0, 0, 0, 0),
    "request_key": (249, 0, 0, 0, 0),
    "bpf": (321, 0, 0, 0),
    "perf_event_open": (298, 0, 0, -1, -1, 0),
    "userfaultfd": (323, 0),
    "kexec_load": (246, 0, 0, 0, 0),
    "init_module": (175, 0, 0, 0),
    "finit_module": (313, -1, 0, 0),
    "delete_module": (176, 0, 0),
    "open_by_handle_at": (304, -1, 0, 0),
    "name_to_handle_at": (303, -100, 0, 0, 0, 0),
    "swapon": (167, 0, 0),
    "swapoff": (168, 0),
    "reboot": (169, 0, 0, 0, 0),
    "acct": (163, 0),
    "quotactl": (179, 0, 0, 0, 0),
    "iopl": (172, 0),
    "ioperm": (173, 0, 0, 0),
    "io_uring_setup": (425, 1, 0),
    "clone_newuser": (56, 0x10000000 | 17, 0, 0, 0, 0),
    "ioctl_tiocsti": (16, 0, 0x5412, 0),
    "personality_no_aslr": (135, 0x0040000),
    "x32_abi_getpid": (0x40000000 | 39,),
}

PROBE = """
import ctypes, errno, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
for name, args in CALLS.items():
    result = libc.syscall(*[ctypes.c_long(a) for a in args])
    if result == 0 and name == "clone_newuser":
        os._exit(0)  # the child of a clone that got through: stop here
    print(name, errno.errorcode.get(ctypes.get_errno(), "?") if result == -1 else f"returned {result}")
query = libc.syscall(ctypes.c_long(135), ctypes.c_long(0xffffffff))
print("personality_query", "ok" if query >= 0 else "refused")
print("getpid", "ok" if os.getpid() > 0 else "refused")
"""


@pytest.fixture(autouse=True)
def _images() -> None:
    require_images("python")


def test_each_denied_call_fails_with_eperm_inside_the_jail(client: httpx.Client) -> None:
    code = f"CALLS = {CALLS!r}\n{PROBE}"
    response = client.post("/api/v1/execute", json={"language": "python", "code": code, "backend": "jail"})
    assert response.status_code == 200, response.text
    body = response.json()
    seen = dict(line.split(" ", 1) for line in body["stdout"].splitlines())
    assert {name: seen.get(name) for name in CALLS} == {name: "EPERM" for name in CALLS}, body["stderr"]
    # What ordinary programs need still works.
    assert (seen["personality_query"], seen["getpid"]) == ("ok", "ok")


def test_clone3_is_enosys_so_libc_falls_back_to_clone(client: httpx.Client) -> None:
    code = (
        "import ctypes, os, subprocess, threading\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "print(libc.syscall(435, 0, 0), ctypes.get_errno())\n"
        "t = threading.Thread(target=print, args=('thread',)); t.start(); t.join()\n"
        "print(subprocess.run(['echo', 'child'], capture_output=True, text=True).stdout.strip())\n"
    )
    body = client.post("/api/v1/execute", json={"language": "python", "code": code, "backend": "jail"}).json()
    assert body["stdout"] == f"-1 {errno.ENOSYS}\nthread\nchild\n", body["stderr"]


def test_the_agent_and_programs_run_under_the_filter(client: httpx.Client) -> None:
    body = client.post(
        "/api/v1/execute",
        json={
            "language": "python",
            "backend": "jail",
            "code": "print([s for s in open('/proc/self/status') if s[:7] in ('Seccomp', 'NoNewPr')])",
        },
    ).json()
    assert body["stdout"] == "['NoNewPrivs:\\t1\\n', 'Seccomp:\\t2\\n', 'Seccomp_filters:\\t1\\n']\n"


def test_every_capability_is_dropped(client: httpx.Client) -> None:
    code = "print(sorted(s.split()[1] for s in open('/proc/self/status') if s.startswith('Cap')))"
    body = client.post("/api/v1/execute", json={"language": "python", "backend": "jail", "code": code}).json()
    assert body["stdout"] == f"{['0000000000000000'] * 5}\n"


def test_program_is_packed_sock_filters_ending_in_returns() -> None:
    program = _seccomp.program()
    assert len(program) % 8 == 0 and len(program) // 8 < 4096  # BPF_MAXINSNS
    instructions = [struct.unpack("=HBBI", program[i : i + 8]) for i in range(0, len(program), 8)]
    assert instructions[0] == (0x20, 0, 0, 4)  # first it loads the architecture
    # Whatever no rule answered: ENOSYS, as for a call the kernel does not have.
    assert instructions[-1] == (0x06, 0, 0, _seccomp.SECCOMP_RET_ERRNO | errno.ENOSYS)
    for index, (code, true, false, _) in enumerate(instructions):
        if code & 0x07 == 0x05:  # a jump lands inside the program
            assert index + 1 + max(true, false) < len(instructions)


def test_each_syscall_number_is_the_one_libseccomp_knows() -> None:
    """The numbers were copied by hand from the kernel's table: check each against
    libseccomp's resolver (Debian's ``seccomp`` package, which scripts/install.sh installs)."""
    resolver = shutil.which("scmp_sys_resolver")
    if resolver is None:
        pytest.skip("scmp_sys_resolver is not installed (apt-get install seccomp)")
    named = {**_seccomp.ALLOWED_SYSCALLS, **_seccomp.DENIED_SYSCALLS}
    named.update({name.lower(): number for name, number in vars(_seccomp).items()
                  if name.startswith("NR_") and isinstance(number, int)})
    assert not set(_seccomp.ALLOWED_SYSCALLS) & set(_seccomp.DENIED_SYSCALLS)
    resolved = {name: subprocess.run([resolver, "-a", "x86_64", name.removeprefix("nr_")], capture_output=True,
                                     text=True, check=True).stdout.strip() for name in named}
    assert resolved == {name: str(number) for name, number in named.items()}
