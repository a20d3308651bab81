"""``signal``'s functions and numbers without the ``signal`` module, which builds enums at
import time (a good part of the agent's start-up); the C module under it has all the
agent needs."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
else:
    import _signal as signal

__all__ = ["name", "signal"]


def name(number: int) -> str:
    """As ``signal.Signals(number).name`` gives it (the alphabetically first of its aliases),
    and ``SIG<number>`` for a signal without a name, such as a real-time one."""
    names = [key for key, value in vars(signal).items()
             if key.startswith("SIG") and not key.startswith("SIG_") and value == number]
    return min(names) if names else f"SIG{number}"
