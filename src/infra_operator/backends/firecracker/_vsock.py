"""The host's end of Firecracker's vsock: a unix socket on which the host writes
``CONNECT <port>\\n`` and Firecracker answers ``OK <host port>\\n`` once a guest
process listens on that port, or closes the connection when none does yet."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

RETRY_SECONDS = 0.005
"""How long to wait between attempts while the guest boots: short, since every
attempt is a local connect and the agent is usually up within milliseconds of it."""


class NotListening(Exception):
    """The guest is not (yet) listening on the port: try again."""


def _read_line(sock: socket.socket, limit: int = 64) -> bytes:
    # One byte at a time: whatever follows the line belongs to the agent protocol.
    line = bytearray()
    while not line.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            raise NotListening("connection closed before the handshake answer")
        line += chunk
        if len(line) > limit:
            raise NotListening(f"handshake answer too long: {bytes(line)!r}")
    return bytes(line)


def connect_once(uds_path: Path, port: int, timeout: float) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(max(timeout, 0.001))
        try:
            sock.connect(str(uds_path))
            sock.sendall(f"CONNECT {port}\n".encode())
            answer = _read_line(sock)
        except OSError as exc:  # socket.timeout is an OSError too
            raise NotListening(f"{type(exc).__name__}: {exc}") from exc
        if not answer.startswith(b"OK "):
            raise NotListening(f"unexpected handshake answer {answer!r}")
        sock.settimeout(None)  # the agent protocol waits with select() and a deadline
        return sock
    except BaseException:
        sock.close()
        raise


def connect(uds_path: Path, port: int, deadline: float, alive: Callable[[], str | None]) -> socket.socket:
    """Connect until ``deadline`` (monotonic); ``alive`` returns why the VM is gone, or None.

    Raises ``TimeoutError`` with the last reason when the deadline passes, and
    ``ProcessLookupError`` with ``alive``'s reason when the VM dies meanwhile.
    """
    reason = "never tried"
    while True:
        gone = alive()
        if gone is not None:
            raise ProcessLookupError(gone)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(reason)
        try:
            return connect_once(uds_path, port, min(remaining, 1.0))
        except NotListening as exc:
            reason = str(exc)
        time.sleep(min(RETRY_SECONDS, max(0.0, deadline - time.monotonic())))
