"""The seccomp filter every jail runs under, as the fd bwrap's ``--seccomp FD`` and the
jail template read it from. The filter itself is the guest's (``guest/_seccomp.py``),
since a microVM's agent loads the same one into the programs it starts."""

from __future__ import annotations

import os

from ...guest import seccomp_program


def program_fd() -> int:
    """An in-memory file holding the filter, positioned at its start, for ``pass_fds``."""
    fd = os.memfd_create("infra-operator-seccomp", os.MFD_CLOEXEC)
    try:
        os.write(fd, seccomp_program())
        os.lseek(fd, 0, os.SEEK_SET)
    except OSError:
        os.close(fd)
        raise
    return fd
