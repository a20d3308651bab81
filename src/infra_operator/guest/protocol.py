"""The wire protocol between the host and the guest agent.

One message is one frame: a 4-byte big-endian length, then that many bytes of
UTF-8 JSON holding an object. Bytes that may not be text (program output, files,
stdin, entropy) travel base64-encoded. The same functions serve a pipe (the jail),
a virtio-serial port (QEMU) and a vsock stream (Firecracker): all are file
descriptors.

Requests (host to guest):
    {"op": "ping"}
    {"op": "execute", "files": {name: b64}, "compile": argv | null, "run": argv,
     "env": {name: value}, "stdin": b64, "limits": {...}, "entropy": b64, "clock": float}
Replies (guest to host):
    {"ok": true, ...}  or  {"ok": false, "error": "..."}
"""

from __future__ import annotations

import _json
import binascii
import math
import os
import select
import struct
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing (and base64, which pulls in re) cost the agent's start-up at run time
    from collections.abc import Mapping
    from typing import Any

AGENT_VSOCK_PORT = 1024
"""The vsock port the agent listens on inside a Firecracker guest."""

VIRTIO_PORT_NAME = "agent"
"""The name of the virtio-serial port the agent opens inside a QEMU guest."""

SANDBOX_UID = 65534
"""The uid and gid sandboxed programs run as: a jail maps it (``nobody`` on the host), the
agent switches to it inside a microVM."""

MAX_FRAME_BYTES = 256 * 1024 * 1024
_HEADER = struct.Struct(">I")


class ProtocolError(Exception):
    """The other side sent something that is not a frame of this protocol."""


class ChannelClosed(ProtocolError):
    """The other side went away before a whole frame arrived."""


class ChannelTimeout(ProtocolError):
    """No whole frame arrived before the deadline."""


# JSON through the C codec behind the ``json`` module, used directly: importing ``json``
# compiles regular expressions (and so imports ``re`` and ``enum``) that the C codec never
# uses, a quarter of the agent's start-up. Same text as ``json.dumps(message,
# separators=(",", ":"))`` writes and ``json.loads`` reads.
class _Decoding:
    """The options the C scanner reads: those of ``json.loads``."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float  # NaN, Infinity, -Infinity


def _unencodable(value: object) -> None:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_scan = _json.make_scanner(_Decoding())  # type: ignore[arg-type]  # any object with these attributes will do
_encode = _json.make_encoder(
    None, _unencodable, _json.encode_basestring_ascii, None, ":", ",", False, False, True)


def encode_json(message: Mapping[str, object]) -> bytes:
    return "".join(_encode(message, 0)).encode("utf-8")


def decode_json(payload: bytes) -> object:
    """The one JSON value ``payload`` holds; ``ProtocolError`` for anything else."""
    try:
        text = payload.decode("utf-8").strip(" \t\n\r")  # JSON's whitespace, as json.loads allows
        value, end = _scan(text, 0)
    except StopIteration as exc:  # the scanner's word for "no value starts here"
        raise ProtocolError(f"frame is not JSON: no value at character {exc.value}") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"frame is not JSON: {exc}") from exc
    if end != len(text):
        raise ProtocolError(f"frame is not JSON: extra data at {end}")
    return value


def b64encode(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def b64decode(text: str) -> bytes:
    return binascii.a2b_base64(text.encode("ascii"), strict_mode=True)


def _wait(fd: int, for_write: bool, deadline: float | None) -> None:
    if deadline is None:
        return
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise ChannelTimeout("deadline passed")
    # poll, not select: select cannot watch a descriptor numbered 1024 or above, and a
    # host holding many sandboxes' channels has those.
    poller = select.poll()
    poller.register(fd, select.POLLOUT if for_write else select.POLLIN)
    if not poller.poll(max(1, math.ceil(remaining * 1000))):
        raise ChannelTimeout("deadline passed")


def send(fd: int, message: Mapping[str, object], deadline: float | None = None) -> None:
    payload = encode_json(message)
    if len(payload) > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {len(payload)} bytes exceeds {MAX_FRAME_BYTES}")
    view = memoryview(_HEADER.pack(len(payload)) + payload)
    while view:
        _wait(fd, True, deadline)
        try:
            written = os.write(fd, view)
        except BrokenPipeError as exc:
            raise ChannelClosed("peer closed the channel") from exc
        view = view[written:]


def _read_exactly(fd: int, size: int, deadline: float | None) -> bytes:
    chunks: list[bytes] = []
    while size:
        _wait(fd, False, deadline)
        try:
            chunk = os.read(fd, min(size, 1 << 20))
        except ConnectionResetError as exc:
            raise ChannelClosed("peer reset the channel") from exc
        if not chunk:
            raise ChannelClosed("peer closed the channel")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def receive(fd: int, deadline: float | None = None) -> dict[str, Any]:
    """Read one frame; ``deadline`` is a ``time.monotonic()`` value, or None to wait forever."""
    (length,) = _HEADER.unpack(_read_exactly(fd, _HEADER.size, deadline))
    if length > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {length} bytes exceeds {MAX_FRAME_BYTES}")
    message = decode_json(_read_exactly(fd, length, deadline))
    if not isinstance(message, dict):
        raise ProtocolError("frame is not a JSON object")
    return message
