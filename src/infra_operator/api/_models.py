"""Request and response bodies of the HTTP API (see shared/docs/api-contract.md).

Contract fields first, in the contract's shapes; the extra fields users asked for
follow. Types are strict: a string where a number belongs is a 400, not a guess.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ..backends.base import Accelerator, Isolation
from ..config import BackendName
from ..errors import InvalidRequest
from ..executor import SandboxStart, check_path
from ..jobs import JobState
from ..submissions import Verdict


class _Request(BaseModel):
    """Every request body: a field this server does not know is a 400 naming it, never dropped in
    silence (a client asking for something the server does not do must hear so)."""

    model_config = ConfigDict(strict=True, extra="forbid")


def _utf8(text: str) -> str:
    # JSON can carry lone surrogates ("\ud800"), which no file, pipe or argv can hold.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"not valid Unicode text: {exc.reason} at position {exc.start}") from exc
    return text


def _argument(text: str) -> str:
    if "\0" in text:
        raise ValueError("a command-line argument cannot contain a NUL character")
    return text


Text = Annotated[str, AfterValidator(_utf8)]
Argument = Annotated[str, AfterValidator(_utf8), AfterValidator(_argument)]


def _checked_path(path: str) -> str:
    try:
        return check_path(path)
    except InvalidRequest as exc:  # as pydantic's own error, so it reads as any other field's
        raise ValueError(exc.message) from exc


RelativePath = Annotated[str, AfterValidator(_utf8), AfterValidator(_checked_path)]


class FileIn(_Request):
    """A file for the working folder, written before the program runs."""

    path: RelativePath = Field(max_length=4096, description="relative to the working folder; no '..', not absolute")
    content: Text = Field(description="the file's content, as text or base64 (see encoding)")
    encoding: Literal["utf8", "base64"] = "utf8"


class ExecuteRequest(_Request):
    language: str = Field(min_length=1, max_length=64, description="a name or alias from /api/v1/languages")
    code: Text | None = Field(default=None, description="the source to run; without it, the first of files")
    files: list[FileIn] = Field(default_factory=list, max_length=1024,
                                description="written into the working folder before the run")
    version: str | None = Field(default=None, max_length=32, description="a release or a prefix of one; default the language's")
    timeout: int | None = Field(default=None, description="wall-clock seconds; default 30")
    stdin: Text = Field(default="", description="given to the program on standard input")
    args: list[Argument] = Field(
        default_factory=list, max_length=64, description="extra command-line arguments")
    backend: BackendName | None = Field(default=None, description="which isolation backend; default the server's")
    memory_mb: int | None = None
    cpu_seconds: int | None = None
    processes: int | None = None
    output_kb: int | None = Field(default=None, description="kept per stream; more is counted and dropped")
    file_mb: int | None = Field(default=None, description="largest file the program may write")


class TestCaseRequest(_Request):
    stdin: Text = Field(default="", description="given to the program on standard input")
    expected_output: Text = Field(description="compared ignoring trailing whitespace of lines and of the output")


class SubmissionRequest(ExecuteRequest):
    tests: list[TestCaseRequest] | None = Field(
        default=None, min_length=1, description="judge mode: compiled once, each test run fresh, each with a verdict")
    callback_url: str | None = Field(
        default=None, max_length=2048, description="POSTed the finished submission, signed (HMAC-SHA256)")


class BatchRequest(_Request):
    submissions: list[SubmissionRequest] = Field(min_length=1)


class SubmissionCreated(BaseModel):
    id: str
    status: Literal["queued"]


class BatchCreated(BaseModel):
    ids: list[str] = Field(description="in the order of the request's submissions")


class TestVerdict(BaseModel):
    """One test of a judged submission, run fresh from what the compile made."""

    verdict: Verdict
    stdout: str
    stderr: str
    exit_code: int | None = Field(description="null when the test could not run (internal_error, compile_error)")
    time_ms: float | None
    memory_kb: int | None
    cpu_time_ms: float | None
    error: str | None = Field(default=None, description="with internal_error: what failed")


class JudgedResult(BaseModel):
    verdict: Verdict = Field(description="the first test's verdict that is not accepted, or accepted")
    tests: list[TestVerdict]
    compile_output: str | None = Field(default=None, description="with compile_error: the compiler's output")
    compile_exit_code: int | None = None
    error: str | None = Field(default=None, description="with internal_error: what failed")


class SubmissionView(BaseModel):
    id: str
    status: Literal["queued", "running", "done", "failed"]
    result: ExecuteResponse | JudgedResult | None = Field(
        default=None, description="when done: the execute answer, or in judge mode verdict and tests")
    error: str | None = Field(default=None, description="when failed: why")
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = Field(description="how many times a runner started it")
    worker: str | None = Field(default=None, description="in a cluster: the worker that last started it")


class ExecuteResponse(BaseModel):
    stdout: str
    stderr: str
    exit_code: int
    load_time: str = Field(description="whole milliseconds to get a sandbox ready, e.g. '125ms'")
    exec_time: str = Field(description="whole milliseconds the code took inside it, e.g. '45ms'")
    language: str
    version: str
    backend: str
    signal: str | None = None
    timed_out: bool = False
    oom_killed: bool = False
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    output_limit_exceeded: bool = False
    compile_output: str | None = None
    compile_exit_code: int | None = None
    sandbox_start: SandboxStart = Field(
        description="how the sandbox was had: taken ready from the pool, restored from a snapshot, or booted cold")
    load_time_ms: float
    exec_time_ms: float
    cpu_time_ms: float | None = Field(
        description="CPU time of the program, user and system (of the compiler when compiling failed); "
                    "null when the sandbox died with the program and nothing could be measured")
    memory_kb: int | None = Field(description="the program's peak resident memory; null as for cpu_time_ms")
    worker: str | None = Field(default=None, description="in a cluster: the worker that ran it")


class ErrorResponse(BaseModel):
    error: str


class SessionCreateRequest(_Request):
    language: str = Field(min_length=1, max_length=64, description="a name or alias from /api/v1/languages")
    version: str | None = Field(default=None, max_length=32, description="a release or a prefix of one")
    idle_timeout: int | None = Field(default=None, description="seconds without a call before it is destroyed; default 300")
    backend: BackendName | None = Field(default=None, description="which isolation backend; default the server's")
    memory_mb: int | None = None
    cpu_seconds: int | None = Field(default=None, description="CPU time of the session's kernel over its life")
    processes: int | None = None
    output_kb: int | None = Field(default=None, description="kept per stream and cell; more is counted and dropped")
    file_mb: int | None = Field(default=None, description="the largest file, and all files together")


class SessionResponse(BaseModel):
    id: str
    language: str
    version: str
    backend: str
    created_at: str = Field(description="ISO 8601, UTC")
    expires_at: str = Field(description="when it is destroyed unless called before: ISO 8601, UTC")
    idle_timeout: int
    file_mb: int
    state: Literal["idle", "busy", "paused"] = Field(
        description="busy while a call holds it (a cell runs, a file moves): another call meanwhile is a 409; "
                    "paused: saved to disk with no VM running (POST .../pause), resumed by its next call")


class SessionListResponse(BaseModel):
    sessions: list[SessionResponse]


class SessionExecuteRequest(_Request):
    code: Text = Field(description="the cell")
    stdin: Text = Field(default="", description="given to the cell on standard input")
    timeout: int | None = Field(default=None, description="wall-clock seconds for this cell; default 30")


class RichResult(BaseModel):
    """What a notebook shows of a cell: a final expression's value, or a figure."""

    type: Literal["text", "image/png"]
    text: str | None = Field(default=None, description="for text: the value as the language prints it")
    data: str | None = Field(default=None, description="for image/png: the PNG, base64")


class SessionExecuteResponse(ExecuteResponse):
    results: list[RichResult]
    reset: bool = Field(description="the cell ended the session's interpreter (a crash, or an interrupt it "
                                    "ignored): it was started afresh, without the names defined before")


class FilePutResponse(BaseModel):
    path: str
    size: int


class FileEntryView(BaseModel):
    path: str
    size: int
    type: Literal["file", "dir"]


class FileListResponse(BaseModel):
    files: list[FileEntryView]


class LanguageSummary(BaseModel):
    name: str
    extension: str
    aliases: list[str] = []
    family: str | None = None
    version: str | None = Field(default=None, description="the default release's toolchain, as its version command "
                                                          "prints it; null until its image is built")
    versions: list[str] = Field(default_factory=list, description="the release numbers a request may ask for, "
                                                                  "the default first; built releases only")
    rootfs_built: bool = False
    base: str | None = Field(default=None, description="the language a custom image (or python-data) runs like")


class LanguagesResponse(BaseModel):
    languages: list[LanguageSummary]
    count: int


class JobView(BaseModel):
    """A background job (an image build, a snapshot, a transfer) and how far it got."""

    id: str
    kind: str
    subject: str = Field(description="the language it works on")
    state: JobState
    started_at: float
    finished_at: float | None
    error: str | None
    progress: str = Field(description="its last progress line")
    log: list[str]


class RootfsState(BaseModel):
    exists: bool
    path: str | None = None
    size: int | None = None
    sha256: str | None = None
    built_at: float | None = None
    build_seconds: float | None = None
    registry: list[str] | None = Field(default=None, description="the PyPI and npm pins the built image holds")
    build: JobView | None = Field(description="the latest build job, if one ran since the server started")


class SnapshotState(BaseModel):
    exists: bool
    backends: list[str] = Field(description="the backends this language has a snapshot for")
    build: JobView | None = Field(description="the latest snapshot job, if one ran since the server started")


class ReleaseView(BaseModel):
    """One release of a language: one image, built from one Debian suite."""

    version: str | None = Field(description="its number, read from the built image (3.13.5); null until built")
    version_text: str | None = Field(description="what the toolchain's version command printed")
    suite: str = Field(description="the Debian suite it is built from: trixie, bookworm or sid")
    debian: str = Field(description="that suite's number (12, 13), or 'unstable'")
    label: str = Field(description="how it is shown: 'Debian 13', 'Debian unstable'")
    unstable: bool = Field(description="from Debian unstable: newer, and less tested")
    default: bool = Field(description="what a request without a version runs")
    offered: bool = Field(description="listed in `versions`: built, and not the default's version again")
    packages: list[str]
    rootfs: RootfsState
    snapshot: SnapshotState
class CustomView(BaseModel):
    origin: Literal["packages", "docker"] = Field(description="built from packages, or imported from an archive")
    packages: dict[str, list[str]] = Field(description="`debian`, `pip` and `npm`: what it adds to its base")
    created_at: float


class LanguageDetails(BaseModel):
    name: str
    extension: str
    aliases: list[str]
    family: str
    version: str | None
    versions: list[str] = Field(description="the release numbers a request may ask for, the default first")
    releases: list[ReleaseView] = Field(description="every release the catalog plans, built or not, default first")
    compiled: bool
    compile_command: list[str] | None
    run_command: list[str]
    source_file: str
    packages: list[str]
    registry: list[str] = Field(description="toolchain packages from PyPI or npm, pinned: pypi:NAME==VERSION, npm:NAME@VERSION")
    rootfs: RootfsState
    snapshot: SnapshotState
    sample: str
    expected_output: str
    base: str | None = Field(default=None, description="the language a custom image (or python-data) runs like")
    custom: CustomView | None = Field(default=None, description="for a custom image: what it was built from")


class RootfsEntry(BaseModel):
    language: str
    size: int
    path: str
    format: Literal["squashfs", "ext4"] = Field(
        default="ext4", description="the image's file system: squashfs (compressed, what builds make) or ext4 "
        "(images built by earlier releases)")
    sha256: str | None = None
    version: str | None = None
    built_at: float | None = None
    suite: str | None = Field(default=None, description="the Debian suite of the release it holds")
    image: str | None = Field(default=None, description="the name it is stored under: python@trixie, "
                                                        "or the language's own for Debian 12's")


class RootfsListResponse(BaseModel):
    rootfs: list[RootfsEntry]
    builds: list[JobView] = []


class PackageLists(_Request):
    debian: list[Annotated[str, Field(max_length=214)]] = Field(
        default=[], max_length=200, description="Debian packages, `name` or `name=version`")
    pip: list[Annotated[str, Field(max_length=214)]] = Field(
        default=[], max_length=200, description="PyPI requirements, `name`, `name[extra]`, `name==1.2` or `name>=1,<2`; "
        "installed at build time with the image's pip")
    npm: list[Annotated[str, Field(max_length=214)]] = Field(
        default=[], max_length=200, description="npm packages, `name`, `@scope/name` or `name@1.2.3`; installed at "
        "build time into /node_modules")


class RootfsCreateRequest(_Request):
    language: str = Field(min_length=1, max_length=64)
    version: str | None = Field(default=None, max_length=32,
                                description="the release to build: a suite (trixie, bookworm, sid), or the number "
                                            "or prefix of a built one; default: the default suite's")
    size_mb: int | None = Field(default=None, ge=64, le=65536,
                                description="build an ext4 image of this size; default: a compressed squashfs "
                                "image of what the tree needs")
    base: str | None = Field(default=None, min_length=1, max_length=64, description=(
        "makes `language` a custom image: a new name that runs like this catalog language, with `packages` added"))
    packages: PackageLists | None = Field(default=None, description="with `base`: what the custom image adds")


class StartedResponse(BaseModel):
    message: str
    language: str
    suite: str | None = Field(default=None, description="the release's Debian suite, for rootfs and snapshots")
    job: JobView


class SnapshotEntry(BaseModel):
    language: str
    release: str | None = Field(default=None, description="the Debian suite of the release it was made from")
    vmstate_size: int = Field(description="bytes of the device-state file (for QEMU it carries the RAM pages too)")
    mem_size: int = Field(description="bytes of guest memory the snapshot holds")
    backend: str
    mem_mb: int | None = None
    vcpus: int | None = None
    disk_size: int | None = Field(default=None, description="bytes the snapshot's files take on disk")
    created_at: str | None = None


class SnapshotListResponse(BaseModel):
    snapshots: list[SnapshotEntry]
    jobs: list[JobView] = []


class SnapshotCreateRequest(_Request):
    language: str = Field(min_length=1, max_length=64)
    version: str | None = Field(default=None, max_length=32, description="a release or a prefix of one, or a suite")
    mem_mb: int = Field(default=256, ge=64, le=8192)
    vcpus: int = Field(default=1, ge=1, le=8)
    backend: BackendName | None = None


class TransferRequest(_Request):
    """Upload a local image to the object store, or download one into the local store."""

    language: str = Field(min_length=1, max_length=64)
    version: str | None = Field(default=None, max_length=32, description="a release or a prefix of one, or a suite")
    bucket: str | None = Field(default=None, description="default: the configured one")


class SnapshotTransferRequest(TransferRequest):
    backend: Literal["qemu", "firecracker"] | None = Field(
        default=None, description="whose snapshot; default: the only one there is")


class BackendView(BaseModel):
    """What a backend can do on this host, and the evidence for each answer."""

    name: str
    usable: bool
    isolation: Isolation
    accelerator: Accelerator | None
    snapshots: bool
    evidence: list[str]
    missing: list[str] = Field(description="what to install or change for it to work here")


class LoadView(BaseModel):
    running: int
    waiting: int
    max_running: int
    max_waiting: int


class PoolEntryView(BaseModel):
    """Ready sandboxes of one kind (backend, image, limits)."""

    backend: str
    key: str
    ready: int
    starting: int
    target: int
    base: int = Field(description="how many are kept ready without demand")
    takes: int
    misses: int
    memory_mb: int = Field(description="what the ready ones hold, by the backend's measure")


class HealthResponse(BaseModel):
    status: str
    version: str
    backend: str | None
    backends: list[BackendView]
    load: LoadView
    pool: list[PoolEntryView] = []
