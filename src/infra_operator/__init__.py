"""infra.operator: run untrusted code in fresh sandboxes behind an HTTP API and a command line."""

from __future__ import annotations

__version__ = "1.0.0"
__all__ = ["__version__"]
