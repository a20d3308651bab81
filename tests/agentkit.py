"""What the agent-facing tests share (MCP and the playground): a python cell that leaves one
"matplotlib figure" open, so a session answers an ``image/png`` result.

The python image here has no matplotlib, so the cell puts a minimal ``matplotlib.pyplot``
in ``sys.modules``: the kernel (``guest/_pykernel.py``) finds figures only through that
module's ``get_fignums``/``figure(n).savefig``/``close``, and the PNG it returns is real.
"""

from __future__ import annotations

import base64
import struct
import zlib


def _png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\0" + bytes(rgb) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


PNG = _png(120, 80, (30, 120, 200))
FIGURE_CELL = f"""\
import base64, sys, types
_png = base64.b64decode({base64.b64encode(PNG).decode()!r})
class _Figure:
    def savefig(self, out, format):
        out.write(_png)
_open = [1]
pyplot = types.ModuleType("matplotlib.pyplot")
pyplot.get_fignums = lambda: list(_open)
pyplot.figure = lambda number: _Figure()
pyplot.close = lambda which: _open.clear()
sys.modules["matplotlib.pyplot"] = pyplot
print("drew a figure")
"""
