from __future__ import annotations

from .agent import main

main()
