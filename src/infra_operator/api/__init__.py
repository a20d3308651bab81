"""The HTTP API of api-contract.md."""

from __future__ import annotations

from ._app import create_app
from ._mcp import IN_PROCESS, serve_stdio

__all__ = ["IN_PROCESS", "create_app", "serve_stdio"]
