"""Per-request limits: the request's values (or the defaults), checked against the
server's allowed ranges, and turned into what the agent and the sandbox apply."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import LimitRange, Limits
from ..errors import InvalidRequest

if TYPE_CHECKING:
    from ..guest.messages import StepLimits


@dataclass(frozen=True)
class ResolvedLimits:
    timeout_seconds: int
    cpu_seconds: int
    memory_mb: int
    processes: int
    output_kb: int
    file_mb: int

    def for_agent(self) -> StepLimits:
        return {
            "wall_seconds": self.timeout_seconds,
            "cpu_seconds": self.cpu_seconds,
            "memory_bytes": self.memory_mb * 1024 * 1024,
            "processes": self.processes,
            "output_bytes": self.output_kb * 1024,
            "file_bytes": self.file_mb * 1024 * 1024,
        }


def pick(name: str, value: int | None, allowed: LimitRange) -> int:
    if value is None:
        return allowed.default
    if not allowed.minimum <= value <= allowed.maximum:
        raise InvalidRequest(f"{name} must be between {allowed.minimum} and {allowed.maximum}, got {value}")
    return value


def _cpu_default(wall: int, allowed: LimitRange) -> int:
    """A second over the wall-clock budget. One thread cannot use more CPU than wall time,
    but an rlimit counts whole seconds and a spinning program reaches both at the same
    instant: without the margin, ``while True: pass`` with ``timeout: 1`` raced SIGXCPU
    against the wall timer and sometimes answered ``timed_out: false``."""
    return min(wall + 1, allowed.maximum)


def resolve(
    limits: Limits,
    timeout: int | None = None,
    cpu_seconds: int | None = None,
    memory_mb: int | None = None,
    processes: int | None = None,
    output_kb: int | None = None,
    file_mb: int | None = None,
) -> ResolvedLimits:
    wall = pick("timeout", timeout, limits.timeout_seconds)
    cpu_allowed = limits.cpu_seconds.model_copy(update={"default": _cpu_default(wall, limits.cpu_seconds)})
    return ResolvedLimits(
        timeout_seconds=wall,
        cpu_seconds=pick("cpu_seconds", cpu_seconds, cpu_allowed),
        memory_mb=pick("memory_mb", memory_mb, limits.memory_mb),
        processes=pick("processes", processes, limits.processes),
        output_kb=pick("output_kb", output_kb, limits.output_kb),
        file_mb=pick("file_mb", file_mb, limits.file_mb),
    )
