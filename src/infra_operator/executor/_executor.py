"""One execution, start to end: validate, get a sandbox, run, measure, destroy.

The executor holds a ``BackendSet`` and never knows which backend it runs on; it
turns a user's program that fails (non-zero exit, signal, time-out, OOM) into a
result, and only its own failures into errors.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..backends import HostOutcome, SandboxSpec, Warmup
from ..errors import AgentError, AgentTimeout, InvalidRequest
from ..guest import b64decode, b64encode
from ..images import resolve
from . import _limits
from ._admission import Admission
from ._pool import Pool

if TYPE_CHECKING:
    from ..backends import Backend, BackendSet, Listener, Sandbox
    from ..config import Settings
    from ..guest.messages import Artifact, CellReply, ExecuteReply, ExecuteRequest
    from ..images import RootfsInfo, RootfsStore
    from ..languages import Catalog, Language

SandboxStart = Literal["pool", "snapshot", "boot", "session"]
"""How a sandbox was had: taken ready from the pool, restored from a snapshot, booted cold,
or kept by a session for its calls."""
BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8"}
"""The environment every program starts with, under its language's own variables."""
# Beyond the program's own time limit, how long the host waits for the agent's answer
# before it kills the sandbox: the agent enforces the limit itself, this is the backstop.
HOST_GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class ExecutionRequest:
    language: str
    code: str | None
    """None when ``files`` holds the program: its first file."""
    timeout: int | None = None
    stdin: str = ""
    args: tuple[str, ...] = ()
    backend: str | None = None
    memory_mb: int | None = None
    cpu_seconds: int | None = None
    processes: int | None = None
    output_kb: int | None = None
    file_mb: int | None = None
    artifacts: tuple[Artifact, ...] = ()
    """What ``Executor.compile`` made: written into the working folder, and the compile step skipped."""
    files: tuple[tuple[str, bytes], ...] = ()
    """More files for the working folder: a relative path and the bytes."""
    version: str | None = None
    """A release or a prefix of one; None or ``*``: the language's default."""

    @property
    def source(self) -> str:
        """The program's text: ``code``, or else the first of ``files``."""
        if self.code is not None:
            return self.code
        if not self.files:
            raise InvalidRequest("code: give the program as code, or as the first of files")
        return self.files[0][1].decode("utf-8", errors="replace")

    @classmethod
    def from_json(cls, fields: dict[str, Any]) -> ExecutionRequest:
        """From the API's execute fields, as a submission keeps them and a worker receives them
        (``files`` as the API takes them: ``path``, ``content``, ``encoding``)."""
        files = tuple(file_from_json(entry) for entry in fields.get("files", ()))
        return cls(**{**fields, "args": tuple(fields.get("args", ())), "artifacts": (), "files": files})

    def to_json(self) -> dict[str, Any]:
        """The fields ``from_json`` takes; artifacts stay with the host that compiled them."""
        fields = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)
                  if field.name not in ("artifacts", "files")}
        fields["files"] = [{"path": path, "content": b64encode(content), "encoding": "base64"}
                           for path, content in self.files]
        return fields


def file_from_json(entry: dict[str, str]) -> tuple[str, bytes]:
    """A file as the API takes it (``path``, ``content``, ``encoding``): its path and bytes."""
    path, content = entry["path"], entry["content"]
    if entry.get("encoding", "utf8") == "utf8":
        return path, content.encode("utf-8")
    try:
        return path, base64.b64decode(content, validate=True)
    except ValueError as exc:  # binascii.Error, or text that is not ASCII at all
        raise InvalidRequest(f"files: {path}: content is not base64: {exc}") from exc


@dataclass(frozen=True)
class ExecutionResult:
    stdout: str
    stderr: str
    exit_code: int
    load_ms: float
    exec_ms: float
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
    sandbox_start: SandboxStart = "boot"
    """How the sandbox was had: ``pool`` (started ahead), ``snapshot`` (restored) or ``boot`` (cold)."""
    cpu_time_ms: float | None = None
    """User and system CPU time of the program (of the compiler when the compile failed);
    None when the sandbox died with it and nothing could be measured."""
    memory_kb: int | None = None
    """The program's peak resident memory; None as for ``cpu_time_ms``."""
    worker: str | None = None
    """The cluster worker that ran it; None when it ran in this process."""

    def answer(self) -> dict[str, Any]:
        """The contract's execute answer, as JSON: what the API, a submission and a worker send."""
        fields = dataclasses.asdict(self)
        load_ms, exec_ms = fields.pop("load_ms"), fields.pop("exec_ms")
        return {**fields, "load_time": f"{round(load_ms)}ms", "exec_time": f"{round(exec_ms)}ms",
                "load_time_ms": round(load_ms, 3), "exec_time_ms": round(exec_ms, 3)}


@dataclass(frozen=True)
class Compiled:
    """A program compiled once: the files to run it from, or, when compiling failed, its result."""

    artifacts: tuple[Artifact, ...] = ()
    failure: ExecutionResult | None = None


def rootfs_for(executor: Executor, language: Language, version: str | None) -> RootfsInfo:
    """The image of the release ``version`` selects (``images.resolve``): ``NotFound`` for a
    version no release has, ``RootfsNotFound`` for a release whose image is not built."""
    return resolve(executor.catalog, language, executor.rootfs, version).require()


def _text(data: str) -> str:
    return b64decode(data).decode("utf-8", errors="replace")


class Executor:
    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        rootfs: RootfsStore,
        backends: BackendSet,
        admission: Admission | None = None,
        pool: Pool | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.rootfs = rootfs
        self.backends = backends
        self.admission = admission or Admission(settings.max_concurrency, settings.max_queue)
        # Not started, a pool never holds anything: one-shot commands start and destroy inline.
        self.pool = pool or Pool(settings.pool)

    def default_spec(self, backend: Backend, language_name: str, version: str | None = None) -> SandboxSpec:
        """The spec of a request that names no limits: what the pool pre-warms."""
        language = self.catalog.get(language_name)
        return self.spec_for(backend, language, rootfs_for(self, language, version),
                             _limits.resolve(self.settings.limits))

    def spec_for(self, backend: Backend, language: Language, rootfs: RootfsInfo,
                 limits: _limits.ResolvedLimits) -> SandboxSpec:
        return backend.prepare(SandboxSpec(
            rootfs=rootfs.path,
            rootfs_sha256=rootfs.sha256,
            # The release's image name: snapshots and pooled sandboxes are per release.
            image=rootfs.image or language.name,
            memory_mb=limits.memory_mb,
            vcpus=self.settings.vm_vcpus,
            processes=limits.processes,
            disk_mb=limits.file_mb,
            labels={"language": language.name, "release": rootfs.suite},
            warmup=self.warmup(language) if self.settings.pool.warm else None,
        ))

    @staticmethod
    def warmup(language: Language) -> Warmup:
        """The language's sample, compiled and run as a request's program is: what a backend may run
        in a sandbox it starts ahead, so the first real execution finds the toolchain warm."""
        program = language.program(language.sample)
        return Warmup(
            files=((program.source, b64encode(language.sample.encode("utf-8"))),),
            compile=program.compile,
            run=program.run,
            env=tuple(sorted({**BASE_ENV, **language.env}.items())),
            prestart=program.source if program.compile is None else None,
        )

    @staticmethod
    def _files(source: str, request: ExecutionRequest) -> dict[str, str]:
        """The working folder's files: the program at its ``source`` name (``code``, or else the
        first of ``files``, which is written at its own path too), and the rest of ``files``."""
        files = {path: b64encode(content) for path, content in request.files}
        if request.code is None:
            return {**files, source: b64encode(request.source.encode("utf-8"))}
        if source in files:
            raise InvalidRequest(f"files: {source} is where code goes; give one or the other")
        return {source: b64encode(request.code.encode("utf-8")), **files}

    def _message(self, language: Language, request: ExecutionRequest, limits: _limits.ResolvedLimits) -> ExecuteRequest:
        program = language.program(request.source)  # the file's name may follow what the code declares
        return {
            "op": "execute",
            # What a compile made holds the source too: it replaces the source and the compile step.
            "files": {} if request.artifacts else self._files(program.source, request),
            "artifacts": list(request.artifacts),
            "compile": list(program.compile) if program.compile and not request.artifacts else None,
            "run": [*program.run, *request.args],
            "env": {**BASE_ENV, **language.env},
            "stdin": b64encode(request.stdin.encode("utf-8")),
            "limits": limits.for_agent(),
            # Fresh per execution: clones of one snapshot must not share random state or a stale clock.
            "entropy": b64encode(os.urandom(64)),
            "clock": time.time(),
        }

    def check(self, request: ExecutionRequest, here: bool = True) -> None:
        """Raise what ``execute`` would for the request itself (an unknown language, a limit out
        of range), without running it; ``here`` also for this host (an image not built, a
        backend it cannot run). Work accepted to run later is checked first."""
        language = self.catalog.get(request.language)
        self._resolve_limits(request)
        language.program(request.source)  # code, or files that hold the program
        if here:
            self.backends.choose(request.backend)
            rootfs_for(self, language, request.version)

    def _resolve_limits(self, request: ExecutionRequest) -> _limits.ResolvedLimits:
        return _limits.resolve(
            self.settings.limits, timeout=request.timeout, cpu_seconds=request.cpu_seconds,
            memory_mb=request.memory_mb, processes=request.processes, output_kb=request.output_kb,
            file_mb=request.file_mb,
        )

    def execute(self, request: ExecutionRequest, listener: Listener | None = None) -> ExecutionResult:
        """Run ``request`` in a fresh sandbox; with a ``listener``, its output goes there as it comes."""
        return self._execute(request, collect=False, listener=listener)[0]

    def compile(self, request: ExecutionRequest) -> Compiled:
        """Compile ``request``'s program once, in a sandbox of its own; each ``execute`` given the
        artifacts then runs only the run step, in a fresh sandbox. A language that does not
        compile has nothing to make."""
        if self.catalog.get(request.language).program(request.source).compile is None:
            return Compiled()
        result, reply = self._execute(request, collect=True)
        if reply is None or "artifacts" not in reply:
            return Compiled(failure=result)
        return Compiled(artifacts=tuple(reply["artifacts"]))

    def _execute(self, request: ExecutionRequest, collect: bool,
                 listener: Listener | None = None) -> tuple[ExecutionResult, ExecuteReply | None]:
        language = self.catalog.get(request.language)
        limits = self._resolve_limits(request)
        backend = self.backends.choose(request.backend)
        rootfs = rootfs_for(self, language, request.version)
        spec = self.spec_for(backend, language, rootfs, limits)
        message = self._message(language, request, limits)
        if collect:
            message["collect"] = True
        if listener is not None:
            message["stream"] = True
        with self.admission.slot():
            started = time.monotonic()
            sandbox = self.pool.take(backend, spec)
            how: SandboxStart = "pool" if sandbox is not None else "snapshot" if spec.snapshot is not None else "boot"
            sandbox = sandbox or backend.start(spec)
            try:
                loaded = time.monotonic()
                reply, outcome = self._run(sandbox, message, limits, listener)
                finished = time.monotonic()
            finally:
                self.pool.dispose(sandbox)
        result = self.result_from(language, rootfs, backend.name, reply, outcome,
                              (loaded - started) * 1000, (finished - loaded) * 1000)
        return dataclasses.replace(result, sandbox_start=how), reply

    def _run(self, sandbox: Sandbox, message: ExecuteRequest, limits: _limits.ResolvedLimits,
             listener: Listener | None = None) -> tuple[ExecuteReply | None, HostOutcome]:
        deadline = time.monotonic() + limits.timeout_seconds + HOST_GRACE_SECONDS
        try:
            reply = sandbox.call(message, deadline, listener)
        except AgentTimeout:
            return None, HostOutcome()  # the program held the sandbox past every limit
        except AgentError:
            outcome = sandbox.outcome()
            if outcome.oom_killed:
                return None, outcome  # the program ran the sandbox out of memory, agent and all
            raise
        assert reply["op"] == "execute"  # Sandbox.call answers the request's op or raises
        return reply, sandbox.outcome()

    def result_from(self, language: Language, rootfs: RootfsInfo, backend: str, reply: ExecuteReply | CellReply | None,
                outcome: HostOutcome, load_ms: float, exec_ms: float) -> ExecutionResult:
        common: dict[str, Any] = {"language": language.name, "version": rootfs.version, "backend": backend,
                  "load_ms": load_ms, "exec_ms": exec_ms}
        if reply is None:
            return ExecutionResult(stdout="", stderr="", exit_code=137, signal="SIGKILL",
                                   timed_out=not outcome.oom_killed, oom_killed=outcome.oom_killed, **common)
        compiled, ran = reply.get("compile"), reply.get("run")
        compile_fields: dict[str, Any] = {}
        if compiled is not None:
            compile_fields = {
                "compile_output": _text(compiled["stdout"]) + _text(compiled["stderr"]),
                "compile_exit_code": compiled["exit_code"],
            }
        step = ran if ran is not None else compiled
        assert step is not None
        return ExecutionResult(
            stdout=_text(step["stdout"]),
            stderr=_text(step["stderr"]),
            exit_code=step["exit_code"],
            signal=step["signal"],
            timed_out=step["timed_out"],
            oom_killed=step["oom_killed"] or outcome.oom_killed,
            stdout_truncated=step["stdout_truncated"],
            stderr_truncated=step["stderr_truncated"],
            output_limit_exceeded=step["output_limit_exceeded"],
            cpu_time_ms=step["cpu_ms"],
            memory_kb=step["memory_kb"],
            **compile_fields,
            **common,
        )
