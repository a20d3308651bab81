"""Settings, from the environment (``INFRA_OPERATOR_*``) or the command line.

One object, made once at start-up and handed to the parts that need it; no part
reads the environment on its own.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

BackendName = Literal["auto", "jail", "qemu", "firecracker"]
BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
"""An S3 bucket name: 3 to 63 lowercase letters, digits, dots and hyphens."""
_AWS_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_PROFILE")


def _on_path(name: str) -> Path | None:
    found = shutil.which(name)
    return Path(found) if found else None


def _read_keys(path: Path) -> list[str]:
    """One key a line; blank lines and lines starting with ``#`` are skipped. Only whole lines are
    comments, so a key that happens to hold a ``#`` is not cut short."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ValueError(f"cannot read the API keys file {path}: {reason}") from exc
    keys = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not keys:
        # Naming a file means keys are wanted: serving without any would be the opposite of the intent.
        raise ValueError(f"the API keys file {path} holds no key (one a line; lines starting with # are comments)")
    return keys


class LimitRange(BaseModel):
    """A per-request limit: the default when the request names none, and the largest allowed."""

    default: int
    minimum: int = 1
    maximum: int


class Limits(BaseModel):
    timeout_seconds: LimitRange = LimitRange(default=30, maximum=300)
    cpu_seconds: LimitRange = LimitRange(default=30, maximum=300)
    memory_mb: LimitRange = LimitRange(default=512, minimum=16, maximum=4096)
    processes: LimitRange = LimitRange(default=128, minimum=4, maximum=1024)
    output_kb: LimitRange = LimitRange(default=1024, minimum=1, maximum=16384)
    file_mb: LimitRange = LimitRange(default=64, minimum=1, maximum=1024)


class PoolSettings(BaseModel):
    """Ready sandboxes (see ``executor.Pool``)."""

    size: int = Field(default=2, ge=0)
    """Ready sandboxes kept per pre-warmed language, at the default limits."""
    sizes: dict[str, int] = Field(default_factory=dict)
    """Per-language overrides of ``size``, by catalog name."""
    prewarm: list[str] | None = Field(default_factory=lambda: ["python", "nodejs", "go", "rust"])
    """Languages to keep ready from start-up (those built of them); None means every language whose
    image is built. Others get ready sandboxes once demand shows (see ``executor.Pool``)."""
    max_size: int = Field(default=8, ge=0)
    """How far demand may grow one key's pool."""
    memory_budget_mb: int = Field(default=8192, ge=0)
    """Ready and starting sandboxes together, each counted at what it holds while ready
    (a ready one at its measured PSS, ``Sandbox.memory``; a starting one, or one that cannot be
    measured, at ``Backend.ready_memory_mb``: a microVM its RAM, a jail about a megabyte)."""
    idle_seconds: float = Field(default=300.0, gt=0)
    """A key not asked for this long is emptied; after a quarter of it without a miss a burst's extras go."""
    workers: int = Field(default=2, ge=1)
    """Sandboxes started at once in the background."""
    warm: bool = True
    """Let a backend warm what it starts ahead (QEMU under TCG runs the language's sample once,
    then puts the VM back as it was): a pooled ``print(1)`` takes about a third of the time,
    and each ready VM holds about 55 MiB more (its translated code). Off, hosts that keep
    many VMs ready hold more of them."""

    def size_for(self, language: str) -> int:
        return self.sizes.get(language, self.size)


class SessionSettings(BaseModel):
    """Sandboxes kept across calls (see ``executor.SessionManager``)."""

    max_open: int = Field(default=100, ge=0)
    """Open sessions the server holds at once; one more is a 429."""
    idle_timeout_seconds: LimitRange = LimitRange(default=300, maximum=86400)
    """A session not called this long is destroyed; a request may ask for any value in the range."""
    paused_dir: Path | None = None
    """Where paused sessions are saved (their VM's memory, one folder each); default ``<data_dir>/sessions``."""


class JobSettings(BaseModel):
    """Background jobs (image builds, snapshots, transfers; see ``jobs.JobBoard``). A running job
    is never forgotten; a finished one is, after ``retention_seconds`` or once ``keep_finished``
    newer ones have finished, whichever comes first."""

    retention_seconds: float = Field(default=3600.0, gt=0)
    keep_finished: int = Field(default=100, ge=1)


class SubmissionSettings(BaseModel):
    """Asynchronous and judged work (see ``submissions``)."""

    store: Path | None = None
    """The embedded store of a single process (sqlite); default ``<data_dir>/submissions.sqlite3``."""
    retention_seconds: float = Field(default=86400.0, gt=0)
    """How long a finished submission is kept, then forgotten (404)."""
    runners: int = Field(default=4, ge=1)
    """Submissions run at once by a single process (each waits for an executor slot as well)."""
    max_queued: int = Field(default=10000, ge=1)
    """Unfinished submissions of all keys together; past it, 503 with Retry-After."""
    max_queued_per_key: int = Field(default=2000, ge=1)
    """Unfinished submissions of one API key; past it, 429 with Retry-After."""
    rate_per_minute: int = Field(default=6000, ge=0)
    """Submissions one API key may make per minute (0: no limit); past it, 429 with Retry-After."""
    max_batch: int = Field(default=1000, ge=1)
    max_tests: int = Field(default=200, ge=1)
    callback_secret: str | None = None
    """The HMAC-SHA256 key callbacks are signed with; a callback_url needs one."""
    callback_allow: list[str] = Field(default_factory=list)
    """Networks (CIDR) a callback may reach although they are loopback, private or link-local."""
    callback_attempts: int = Field(default=5, ge=1)
    callback_backoff_seconds: float = Field(default=1.0, gt=0)
    """The first wait between attempts; each next one doubles."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INFRA_OPERATOR_", env_nested_delimiter="__",
                                      nested_model_default_partial_update=True)

    data_dir: Path = Path("/var/lib/infra-operator")
    runtime_dir: Path = Path("/run/infra-operator")
    """Per-boot state the sandboxes read: image mounts and the installed agent."""
    package_cache_dir: Path | None = None
    """Downloaded .deb files, shared by builds; default: ``<data_dir>/cache``."""
    debian_mirror: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    """A Debian mirror to build images from instead of ``http://deb.debian.org`` (the
    suites' ``/debian`` and ``/debian-security`` under it); see ``languages/releases.toml``."""
    backend: BackendName = "auto"
    limits: Limits = Limits()
    pool: PoolSettings = PoolSettings()
    sessions: SessionSettings = SessionSettings()
    jobs: JobSettings = JobSettings()
    submissions: SubmissionSettings = SubmissionSettings()
    redis_url: str | None = Field(default=None, pattern=r"^(redis|rediss|unix)://\S+$")
    """With one, submissions and executions go through Redis to workers (``infra.operator worker``):
    ``redis://[:PASSWORD@]HOST:PORT/DB``, ``rediss://`` for TLS, or ``unix:///PATH``."""
    api_keys: list[str] = Field(default_factory=list)
    api_keys_file: Path | None = None
    """More keys, read once at start-up (see ``_read_keys``): a file keeps them out of the
    environment, which child processes inherit and ``/proc`` shows."""
    max_body_bytes: int = 2 * 1024 * 1024
    max_concurrency: int = 8
    max_queue: int = 64
    """Executions waiting for a sandbox slot; one more is a 503. Through a cluster (``redis_url``),
    the executes waiting beyond what its workers run at once, counted across the whole cluster."""
    default_rootfs_mb: int = 1024
    vm_memory_mb: int = 256
    vm_vcpus: int = 1
    firecracker_bin: Path | None = Field(default_factory=lambda: _on_path("firecracker"))
    """Default: ``firecracker`` on the PATH (where ``setup --install-firecracker`` puts it)."""
    jailer_bin: Path | None = None
    s3_endpoint_url: str | None = None
    s3_bucket: str = Field(default="infra-operator", pattern=BUCKET_PATTERN)
    s3_region: str | None = None

    @model_validator(mode="after")
    def _add_keys_from_file(self) -> Self:
        if self.api_keys_file is not None:
            self.api_keys = [*self.api_keys, *_read_keys(self.api_keys_file)]
        return self

    @property
    def s3_configured(self) -> bool:
        """An object store is in use when an endpoint is named (MinIO, moto, Ceph, ...) or AWS
        credentials are in the environment (Amazon S3 itself needs no endpoint). boto3 reads the
        credentials on its own; this only decides whether to try, so no store at all is a clear 400."""
        return self.s3_endpoint_url is not None or any(name in os.environ for name in _AWS_CREDENTIALS)

    # Where things live under the data directory; one place names them all.
    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def kernels_dir(self) -> Path:
        return self.data_dir / "kernels"

    @property
    def snapshots_dir(self) -> Path:
        return self.data_dir / "snapshots"

    @property
    def cache_dir(self) -> Path:
        return self.package_cache_dir or self.data_dir / "cache"

    @property
    def submissions_store(self) -> Path:
        return self.submissions.store or self.data_dir / "submissions.sqlite3"

    @property
    def paused_sessions_dir(self) -> Path:
        return self.sessions.paused_dir or self.data_dir / "sessions"

    @property
    def run_dir(self) -> Path:
        """One folder per live sandbox, named by its id, so a start-up sweep finds crash leftovers."""
        return self.data_dir / "run"
