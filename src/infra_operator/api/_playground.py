"""``GET /``: the playground page, and its script (CodeMirror and the page's code, bundled by
esbuild from ``playground/`` at the repository's top by ``scripts/build_playground.sh``).

The page and its files are public like ``/health``: they hold no data, and a browser
cannot send a key when it opens a page. The page then calls the API as any client does,
with the key its user gives it. Files are read once and kept, gzip-compressed for clients
that accept it; a chunk's name carries a hash of its content, so it may be cached for good.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from ..errors import NotFound

HERE = Path(__file__).resolve().parent / "playground"
BUNDLE = HERE / "bundle"
HASHED = re.compile(r"-[A-Z0-9]{8}\.js$")

CSP = ("default-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; "
       "style-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'none'; form-action 'none'; "
       "frame-ancestors 'none'")
"""The browser itself holds the page to this server: scripts, calls and images from nowhere else (figures
come as data: URLs); inline styles only (the page's own, and CodeMirror's), which cannot run code."""

playground = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class _Asset:
    plain: bytes
    compressed: bytes


@cache
def _asset(name: str) -> _Asset:
    found = {path.name: path for path in BUNDLE.glob("*.js")}
    if name not in found:
        raise NotFound(f"path not found: /playground/{name}")
    plain = found[name].read_bytes()
    return _Asset(plain, gzip.compress(plain, compresslevel=9, mtime=0))


@playground.get("/", response_class=HTMLResponse)
def page() -> HTMLResponse:
    return HTMLResponse((HERE / "index.html").read_bytes(), headers={
        "Cache-Control": "no-cache", "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"})


@playground.get("/playground/{name}")
def script(name: str, request: Request) -> Response:
    asset = _asset(name)
    headers = {"Cache-Control": "public, max-age=31536000, immutable" if HASHED.search(name) else "no-cache",
               "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(asset.compressed, media_type="text/javascript", headers={**headers, "Content-Encoding": "gzip"})
    return Response(asset.plain, media_type="text/javascript", headers=headers)
