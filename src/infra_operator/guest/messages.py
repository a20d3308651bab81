"""The typed shape of every frame between the host and the guest agent.

One definition for both sides. The frames themselves are plain JSON objects (see
``protocol``); these ``TypedDict`` classes say which keys each one carries, so a
key misspelt on either side of the host/guest line is a type error, not a silent
``None`` found by a slow integration test.

The agent imports this module only for type checking (``typing`` costs its start-up
milliseconds); the host imports it as any other module. Every reply names the ``op``
it answers, so the host can check it got the reply it asked for.

Requests (host to guest) and their replies:
    ping      -> PingReply
    execute   -> ExecuteReply: the compile step (if the language compiles) and the run step;
                 with ``collect``, the compile step and the files it left (compile once, run many)
A request the agent cannot carry out answers ``ErrorReply``.
"""

from __future__ import annotations

from typing import Literal, TypedDict


class StepLimits(TypedDict):
    """What one step may use; the agent enforces each (rlimits, its cgroup, its own clock)."""

    wall_seconds: float
    cpu_seconds: int
    memory_bytes: int
    processes: int
    output_bytes: int
    file_bytes: int


class Artifact(TypedDict):
    """A file of the working folder with its permission bits (a compiled program is executable)."""

    name: str
    content: str
    """Base64."""
    mode: int


class PingRequest(TypedDict):
    op: Literal["ping"]


class _CompileOnce(TypedDict, total=False):
    # A base with total=False, not NotRequired: under postponed annotations Python 3.11
    # counts NotRequired keys among a TypedDict's required ones.
    collect: bool
    """Compile only: run nothing and answer the working folder's files as ``artifacts``, so a
    judge compiles once and hands them to fresh sandboxes that run only the run step."""
    artifacts: list[Artifact]
    """Files to write with their permission bits before the steps (what ``collect`` answered)."""


class ExecuteRequest(_CompileOnce):
    op: Literal["execute"]
    files: dict[str, str]
    """File name in the working folder to its content, base64."""
    compile: list[str] | None
    run: list[str]
    env: dict[str, str]
    stdin: str
    """Base64."""
    limits: StepLimits
    entropy: str
    """Base64 bytes the agent mixes into the guest's entropy pool: clones of one snapshot
    must not share random state."""
    clock: float
    """The host's wall clock (seconds since the epoch): a restored clone's clock is stale."""


Request = PingRequest | ExecuteRequest


class StepResult(TypedDict):
    """What one program (a compile or a run) did."""

    exit_code: int
    """The exit status, or 128 + the signal number when a signal ended it."""
    signal: str | None
    timed_out: bool
    oom_killed: bool
    stdout: str
    """Base64 of what was kept (up to ``StepLimits.output_bytes``)."""
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool
    output_limit_exceeded: bool
    """The program printed so far past its cap that it was killed for it."""
    wall_ms: float
    cpu_ms: float
    """User and system CPU time of the program and every process it left that was reaped."""
    memory_kb: int
    """The peak resident memory of the program's largest process (its own or a waited-for
    child's), as the kernel counted it at its exit."""


class PingReply(TypedDict):
    ok: Literal[True]
    op: Literal["ping"]
    pid: int
    uid: int


class _Collected(TypedDict, total=False):
    artifacts: list[Artifact]
    """With ``collect``, after a compile that succeeded: the working folder's regular files."""


class ExecuteReply(_Collected):
    ok: Literal[True]
    op: Literal["execute"]
    compile: StepResult | None
    run: StepResult | None
    """None when the compile step failed, so nothing ran, and when the request asked to ``collect``."""


class ErrorReply(TypedDict):
    ok: Literal[False]
    error: str


Reply = PingReply | ExecuteReply
"""What a successful call answers; the host turns an ``ErrorReply`` into an error."""
