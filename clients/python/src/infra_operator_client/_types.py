"""What the server answers, as TypedDicts: each answer is the very dict the server's JSON
decodes to, so ``result["stdout"]`` works as it did with a hand-written client, ``json.dumps``
takes it, fields a newer server adds are there too, and a type checker knows every field the
contract names. Fields the contract guarantees are required; the rest are ``NotRequired``."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import IO, Any, Literal, NotRequired, Required, TypedDict


class ExecuteResult(TypedDict):
    """The answer of an execute: the program ran, whatever its own exit status."""

    stdout: str
    stderr: str
    exit_code: int
    load_time: str
    """Time to get a sandbox ready, as ``"125ms"``."""
    exec_time: str
    load_time_ms: NotRequired[float]
    exec_time_ms: NotRequired[float]
    cpu_time_ms: NotRequired[float | None]
    memory_kb: NotRequired[int | None]
    language: NotRequired[str]
    version: NotRequired[str]
    backend: NotRequired[str]
    sandbox_start: NotRequired[str]
    signal: NotRequired[str | None]
    timed_out: NotRequired[bool]
    oom_killed: NotRequired[bool]
    stdout_truncated: NotRequired[bool]
    stderr_truncated: NotRequired[bool]
    output_limit_exceeded: NotRequired[bool]
    compile_output: NotRequired[str | None]
    compile_exit_code: NotRequired[int | None]


class RichResult(TypedDict):
    """What a notebook shows of a cell: a final expression's value (``text``) or a figure (``image/png``)."""

    type: str
    text: NotRequired[str | None]
    data: NotRequired[str | None]
    """For ``image/png``: the PNG, base64."""


class CellResult(ExecuteResult):
    """The answer of a session's execute: an execute's, plus what a notebook would show."""

    results: list[RichResult]
    reset: NotRequired[bool]


class SessionInfo(TypedDict):
    id: str
    language: str
    version: str
    backend: str
    created_at: str
    expires_at: str
    idle_timeout: NotRequired[int]
    file_mb: NotRequired[int]
    state: NotRequired[str]


class WrittenFile(TypedDict):
    path: str
    size: int


class FileEntry(TypedDict):
    path: str
    size: int
    type: Literal["file", "dir"]


class TestCase(TypedDict):
    expected_output: str
    stdin: NotRequired[str]


class TestResult(TypedDict):
    verdict: str
    stdout: str
    exit_code: int | None
    time_ms: float | None
    memory_kb: int | None


class SubmissionResult(TypedDict, total=False):
    """A finished submission's result: without tests, an execute's answer; with tests, the
    whole submission's ``verdict`` and one entry per test."""

    verdict: str
    tests: list[TestResult]
    error: str
    compile_output: str | None
    stdout: str
    stderr: str
    exit_code: int
    load_time: str
    exec_time: str
    cpu_time_ms: float | None
    memory_kb: int | None
    version: str


SubmissionStatus = Literal["queued", "running", "done", "failed"]


class Submission(TypedDict):
    id: str
    status: SubmissionStatus
    result: NotRequired[SubmissionResult]
    error: NotRequired[str]
    """When failed: why."""
    created_at: NotRequired[float]
    started_at: NotRequired[float]
    finished_at: NotRequired[float]
    attempts: NotRequired[int]
    worker: NotRequired[str]


class Health(TypedDict):
    status: str
    version: str
    backend: NotRequired[str | None]
    backends: NotRequired[list[dict[str, Any]]]
    load: NotRequired[dict[str, Any]]
    pool: NotRequired[list[dict[str, Any]]]


class LanguageSummary(TypedDict):
    name: str
    extension: str
    aliases: NotRequired[list[str]]
    family: NotRequired[str]
    version: NotRequired[str | None]
    versions: NotRequired[list[str]]
    rootfs_built: NotRequired[bool]


class Languages(TypedDict):
    languages: list[LanguageSummary]
    count: int


FileSource = str | bytes | os.PathLike[str] | IO[bytes]
"""A file's content: ``str`` is its text (UTF-8), ``bytes`` its bytes, a path (``pathlib.Path``)
names a local file to send, a binary file object is read."""

Files = Mapping[str, FileSource]
"""Files for the working folder, by relative path, in order: without ``code``, the first is the program."""


class Limits(TypedDict, total=False):
    """The sandbox's backend and limits; left out, the server's defaults."""

    backend: str
    memory_mb: int
    cpu_seconds: int
    processes: int
    output_kb: int
    file_mb: int


class RunOptions(Limits, total=False):
    """What every execute (and submission) takes besides ``language``, ``code`` and ``timeout``."""

    stdin: str
    args: Sequence[str]
    version: str
    files: Files


class SessionOptions(Limits, total=False):
    version: str
    idle_timeout: int


class SubmissionSpec(RunOptions, total=False):
    """One submission of a batch: an execute's fields plus ``tests`` and ``callback_url``."""

    language: Required[str]
    code: str
    timeout: int
    tests: Sequence[TestCase]
    callback_url: str
