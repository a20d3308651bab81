"""How the agent reaches the host: the file descriptor it reads requests from and
writes replies to, by the kind of sandbox it runs in."""

from __future__ import annotations

import os
import time

from .protocol import AGENT_VSOCK_PORT, VIRTIO_PORT_NAME

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs the agent's start-up milliseconds at run time
    from collections.abc import Iterator

_PORTS = "/sys/class/virtio-ports"


def stdio() -> Iterator[tuple[int, int]]:
    """The jail: the host holds our stdin and stdout. Move them out of reach of the
    programs we start, which get /dev/null in their place."""
    read_fd, write_fd = os.dup(0), os.dup(1)  # os.dup makes non-inheritable copies
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    yield read_fd, write_fd


def _virtio_port(name: str) -> str:
    for entry in sorted(os.listdir(_PORTS)) if os.path.isdir(_PORTS) else []:
        with open(os.path.join(_PORTS, entry, "name")) as handle:
            if handle.read().strip() == name:
                return os.path.join("/dev", entry)
    raise FileNotFoundError(f"no virtio-serial port named {name!r}")


def virtio_serial(name: str = VIRTIO_PORT_NAME) -> Iterator[tuple[int, int]]:
    """QEMU: a virtio-serial port; the host's side is a unix socket of QEMU's."""
    fd = os.open(_virtio_port(name), os.O_RDWR)
    yield fd, fd


def vsock(port: int = AGENT_VSOCK_PORT) -> Iterator[tuple[int, int]]:
    """Firecracker: the host connects through its vsock unix socket; one connection at a time."""
    import socket  # only here: the jail and QEMU never need it

    listener = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    listener.bind((socket.VMADDR_CID_ANY, port))
    listener.listen(1)
    while True:
        connection, _ = listener.accept()
        yield connection.fileno(), connection.fileno()
        connection.close()


def by_name(spec: str) -> Iterator[tuple[int, int]]:
    """``stdio``, ``virtio:NAME`` or ``vsock:PORT``; waits for a virtio port to appear."""
    kind, _, argument = spec.partition(":")
    if kind == "stdio":
        return stdio()
    if kind == "virtio":
        for _ in range(500):
            try:
                _virtio_port(argument or VIRTIO_PORT_NAME)
                break
            except FileNotFoundError:
                time.sleep(0.01)
        return virtio_serial(argument or VIRTIO_PORT_NAME)
    if kind == "vsock":
        return vsock(int(argument or AGENT_VSOCK_PORT))
    raise ValueError(f"unknown channel {spec!r}: use stdio, virtio:NAME or vsock:PORT")
