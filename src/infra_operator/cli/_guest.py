"""``infra.operator guest``: the agent, as it runs inside a sandbox."""

from __future__ import annotations

import typer


def guest(context: typer.Context) -> None:
    """Run the guest agent (inside a sandbox); options as in `python -m guest --help`."""
    from ..guest.agent import main

    main(list(context.args))
