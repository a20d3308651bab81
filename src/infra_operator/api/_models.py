"""Request and response bodies of the HTTP API (see shared/docs/api-contract.md).

Contract fields first, in the contract's shapes; the extra fields users asked for
follow. Types are strict: a string where a number belongs is a 400, not a guess.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

BackendChoice = Literal["auto", "jail", "qemu", "firecracker"]


class _Request(BaseModel):
    model_config = ConfigDict(strict=True)


class ExecuteRequest(_Request):
    language: str = Field(min_length=1, max_length=64, description="a name or alias from /api/v1/languages")
    code: str = Field(description="the source to run")
    timeout: int | None = Field(default=None, description="wall-clock seconds; default 30")
    stdin: str = Field(default="", description="given to the program on standard input")
    args: list[str] = Field(default_factory=list, max_length=64, description="extra command-line arguments")
    backend: BackendChoice | None = Field(default=None, description="which isolation backend; default the server's")
    memory_mb: int | None = None
    cpu_seconds: int | None = None
    processes: int | None = None
    output_kb: int | None = Field(default=None, description="kept per stream; more is counted and dropped")
    file_mb: int | None = Field(default=None, description="largest file the program may write")


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
    load_time_ms: float
    exec_time_ms: float


class ErrorResponse(BaseModel):
    error: str


class LanguageSummary(BaseModel):
    name: str
    extension: str
    aliases: list[str] = []
    family: str | None = None
    version: str | None = None
    rootfs_built: bool = False


class LanguagesResponse(BaseModel):
    languages: list[LanguageSummary]
    count: int


class LanguageDetails(BaseModel):
    name: str
    extension: str
    aliases: list[str]
    family: str
    version: str | None
    compiled: bool
    compile_command: list[str] | None
    run_command: list[str]
    source_file: str
    packages: list[str]
    rootfs: dict[str, Any]
    snapshot: dict[str, Any]
    sample: str
    expected_output: str


class RootfsEntry(BaseModel):
    language: str
    size: int
    path: str
    sha256: str | None = None
    version: str | None = None
    built_at: float | None = None


class RootfsListResponse(BaseModel):
    rootfs: list[RootfsEntry]
    builds: list[dict[str, Any]] = []


class RootfsCreateRequest(_Request):
    language: str = Field(min_length=1, max_length=64)
    size_mb: int | None = Field(default=None, ge=64, le=65536, description="image size; default: what the tree needs")


class StartedResponse(BaseModel):
    message: str
    language: str
    job: dict[str, Any]


class SnapshotEntry(BaseModel):
    language: str
    vmstate_size: int
    mem_size: int
    backend: str
    mem_mb: int | None = None
    vcpus: int | None = None
    created_at: float | None = None


class SnapshotListResponse(BaseModel):
    snapshots: list[SnapshotEntry]
    jobs: list[dict[str, Any]] = []


class SnapshotCreateRequest(_Request):
    language: str = Field(min_length=1, max_length=64)
    mem_mb: int = Field(default=256, ge=64, le=8192)
    vcpus: int = Field(default=1, ge=1, le=8)
    backend: BackendChoice | None = None


class HealthResponse(BaseModel):
    status: str
    version: str
    backend: str | None
    backends: list[dict[str, Any]]
    load: dict[str, int]
