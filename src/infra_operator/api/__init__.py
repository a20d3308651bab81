"""The HTTP API of api-contract.md."""

from __future__ import annotations

from ._app import create_app

__all__ = ["create_app"]
