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
    session   -> SessionReply: the sandbox becomes a session (a REPL kernel started, if its
                 language has one); later calls to it are cells and file operations
    cell      -> CellReply: one notebook cell (or, without a kernel, the program compiled
                 and run afresh over the session's files)
    file_put, file_get, file_list, file_delete -> File*Reply: the working folder's files,
                 every path resolved by the agent beneath it (see ``guest/_paths.py``)
    warm      -> WarmReply: a throwaway execute, then the sandbox put back as it was before it
                 (scratch folders emptied, every process but the agent killed, the pid counter
                 rewound): a VM under TCG so translates the interpreter before its real use
    interrupt -> no reply: stop the execute or cell in progress (the host's client went away);
                 one that arrives after the reply is ignored
While an ``execute`` or ``cell`` with ``stream`` runs, the agent sends ``Chunk`` frames
(output as the program writes it) before the reply.
A request the agent cannot carry out answers ``ErrorReply``.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict


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


class _PingClock(TypedDict, total=False):
    clock: float
    """The host's time: a paused VM resumed sets its clock by it (it stood still while saved)."""


class PingRequest(_PingClock):
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
    stream: NotRequired[bool]
    """Send the program's output as ``Chunk`` frames while it runs."""


Kernel = Literal["python", "node", "bash"]
"""The REPLs the agent keeps for a session's cells."""


class SessionRequest(TypedDict):
    op: Literal["session"]
    kernel: Kernel | None
    """None: each cell is written to ``source`` and compiled and run afresh."""
    source: str
    compile: list[str] | None
    run: list[str]
    env: dict[str, str]
    limits: StepLimits
    """Every cell's, but ``wall_seconds``, which each cell gives."""
    entropy: str
    clock: float


class CellRequest(TypedDict):
    op: Literal["cell"]
    code: str
    stdin: str
    """Base64."""
    wall_seconds: float
    stream: bool
    program: NotRequired[Program]
    """Without a kernel: where this cell's code goes and how it compiles and runs, when that
    follows what the code declares (a Java class's name); else the session's own."""


class Program(TypedDict):
    source: str
    compile: list[str] | None
    run: list[str]


class FilePutRequest(TypedDict):
    op: Literal["file_put"]
    path: str
    data: str
    """Base64; one piece of the file (the host sends a big file in pieces)."""
    offset: int
    """0 makes the file afresh (its folders too); else where this piece goes."""


class FileGetRequest(TypedDict):
    op: Literal["file_get"]
    path: str
    offset: int
    length: int


class FileListRequest(TypedDict):
    op: Literal["file_list"]


class FileDeleteRequest(TypedDict):
    op: Literal["file_delete"]
    path: str


class InterruptRequest(TypedDict):
    op: Literal["interrupt"]


class WarmRequest(TypedDict):
    op: Literal["warm"]
    execute: ExecuteRequest
    """The throwaway execution; its output is dropped, only its outcome answered."""
    prestart: NotRequired[str]
    """The program's file name: after the clean-up, start the run step again on it, to wait for
    the next execution's program (a run step that has no compile step; see ``guest/_prestart``)."""


Request = (PingRequest | ExecuteRequest | SessionRequest | CellRequest | FilePutRequest | FileGetRequest
           | FileListRequest | FileDeleteRequest | InterruptRequest | WarmRequest)


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


class RichResult(TypedDict):
    """What a notebook shows of a cell besides its output: ``text`` (a final expression's
    value) or ``image/png`` (a figure, base64 in ``data``)."""

    type: Literal["text", "image/png"]
    text: NotRequired[str]
    data: NotRequired[str]


class SessionReply(TypedDict):
    ok: Literal[True]
    op: Literal["session"]


class CellReply(TypedDict):
    ok: Literal[True]
    op: Literal["cell"]
    compile: StepResult | None
    run: StepResult | None
    results: list[RichResult]
    reset: bool
    """The kernel could not survive the cell (it crashed, or ignored the interrupt at its
    time-out) and was started afresh: the names earlier cells defined are gone."""


class FilePutReply(TypedDict):
    ok: Literal[True]
    op: Literal["file_put"]
    path: str
    size: int


class FileGetReply(TypedDict):
    ok: Literal[True]
    op: Literal["file_get"]
    data: str
    size: int
    """The whole file's size; ``data`` is the piece asked for."""


class FileEntry(TypedDict):
    path: str
    size: int
    type: Literal["file", "dir"]


class FileListReply(TypedDict):
    ok: Literal[True]
    op: Literal["file_list"]
    files: list[FileEntry]


class FileDeleteReply(TypedDict):
    ok: Literal[True]
    op: Literal["file_delete"]


class WarmReply(TypedDict):
    ok: Literal[True]
    op: Literal["warm"]
    exit_code: int | None
    """The warm-up's last step's exit code; None when it could not run at all (``error`` says why)."""
    error: str | None
    prestarted: bool
    """Whether the next execution's interpreter was started and waits for its program."""
    wall_ms: float
    """The warm-up and the clean-up after it, together."""


class Chunk(TypedDict):
    """Output of a streaming call, sent before its reply."""

    ok: Literal[True]
    op: Literal["chunk"]
    stream: Literal["stdout", "stderr"]
    data: str


Refusal = Literal["path", "missing", "too_large", "state"]
"""Why the agent refused a file or session request: a path that leaves the working folder,
a file that is not there, a file over the limit, a request the sandbox is not in a state for."""


class ErrorReply(TypedDict):
    ok: Literal[False]
    error: str
    refused: NotRequired[Refusal]


Reply = (PingReply | ExecuteReply | SessionReply | CellReply | FilePutReply | FileGetReply | FileListReply
         | FileDeleteReply | WarmReply)
"""What a successful call answers; the host turns an ``ErrorReply`` into an error."""
