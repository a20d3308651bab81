"""The endpoints of api-contract.md, and a few additions (jobs). Routes translate
between HTTP and the services; they raise errors and never build error responses."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from .. import __version__
from ..errors import InvalidRequest, NotFound, OperatorError
from ..executor import ExecutionRequest
from ..images import ReleaseState, describe, progress_lines, release_states
from ..jobs import Job, Progress
from ..languages import Language, Packages, split_image
from ..submissions import FINISHED, NewSubmission, TestCase, view
from ._deps import OwnerDep, ServicesDep, require_api_key
from ._metrics import metrics_of
from ._models import (
    BackendView,
    BatchCreated,
    BatchRequest,
    CustomView,
    ErrorResponse,
    ExecuteRequest,
    ExecuteResponse,
    HealthResponse,
    JobView,
    LanguageDetails,
    LanguagesResponse,
    LanguageSummary,
    LoadView,
    PackageLists,
    PoolEntryView,
    ReleaseView,
    RootfsCreateRequest,
    RootfsEntry,
    RootfsListResponse,
    RootfsState,
    SnapshotCreateRequest,
    SnapshotEntry,
    SnapshotListResponse,
    SnapshotState,
    SnapshotTransferRequest,
    StartedResponse,
    SubmissionCreated,
    SubmissionRequest,
    SubmissionView,
    TransferRequest,
)
from ._streaming import EVENT_STREAM, stream, wants_events

if TYPE_CHECKING:
    from ..backends import Listener
    from ..images import Transfer

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 404, 413, 429, 500, 502, 503)
}
STREAMS: dict[int | str, dict[str, Any]] = {
    200: {"content": {EVENT_STREAM: {"schema": {"type": "string"}}},
          "description": "with `Accept: text/event-stream`: `stdout`/`stderr` events, then one `result`"}}

Remote = Annotated[bool, Query(description="list the object store instead of the local disk")]
Bucket = Annotated[str | None, Query(description="with remote: the bucket to list; default: the configured one")]

public = APIRouter(responses=ERRORS)
api = APIRouter(prefix="/api/v1", dependencies=[Depends(require_api_key)], responses=ERRORS)


@public.get("/health", response_model=HealthResponse)
def health(services: ServicesDep) -> HealthResponse:
    try:
        active: str | None = services.backends.default.name
    except OperatorError:
        active = None
    backends = [
        BackendView(name=c.name, usable=c.usable, isolation=c.isolation, accelerator=c.accelerator,
                    snapshots=c.snapshots, evidence=list(c.evidence), missing=list(c.missing))
        for c in services.backends.capabilities()
    ]
    return HealthResponse(status="healthy" if active else "degraded", version=__version__, backend=active,
                          backends=backends, load=LoadView(**services.executor.admission.stats()),
                          pool=[PoolEntryView(**entry) for entry in services.pool.stats()])


def _job_view(job: Job | None) -> JobView | None:
    return JobView(**job.to_json()) if job is not None else None


def _releases(services: ServicesDep, language: Language) -> list[ReleaseState]:
    return release_states(services.catalog, language, services.rootfs)


def _versions(states: list[ReleaseState]) -> list[str]:
    return [state.number for state in states if state.offered and state.number is not None]


def _summary(services: ServicesDep, language: Language) -> LanguageSummary:
    states = _releases(services, language)
    rootfs = states[0].rootfs
    return LanguageSummary(name=language.name, extension=language.extension, aliases=list(language.aliases),
                           family=language.family, version=rootfs.version if rootfs else None,
                           versions=_versions(states), rootfs_built=rootfs is not None, base=language.base)


@api.get("/languages", response_model=LanguagesResponse)
def list_languages(services: ServicesDep) -> LanguagesResponse:
    summaries = [_summary(services, language) for language in services.catalog]
    return LanguagesResponse(languages=summaries, count=len(summaries))


def _rootfs_state(services: ServicesDep, state: ReleaseState) -> RootfsState:
    rootfs = state.rootfs
    return RootfsState(
        exists=rootfs is not None,
        path=str(rootfs.path) if rootfs else None,
        size=rootfs.size if rootfs else None,
        sha256=rootfs.sha256 if rootfs else None,
        built_at=rootfs.built_at if rootfs else None,
        build_seconds=rootfs.build_seconds if rootfs else None,
        registry=list(rootfs.registry) if rootfs else None,
        build=_job_view(services.jobs.latest("rootfs", state.image)),
    )


def _snapshot_state(services: ServicesDep, state: ReleaseState) -> SnapshotState:
    snapshots = [s for s in services.list_snapshots() if s.image == state.image]
    return SnapshotState(exists=bool(snapshots), backends=[s.backend for s in snapshots],
                         build=_job_view(services.jobs.latest("snapshot", state.image)))


@api.get("/languages/{name}", response_model=LanguageDetails)
def language_details(name: str, services: ServicesDep) -> LanguageDetails:
    """The language and each of its releases; the top-level version, packages, rootfs and
    snapshot describe the default release."""
    language = services.catalog.get(name)
    states = _releases(services, language)
    releases = [
        ReleaseView(version=state.number, version_text=state.rootfs.version if state.rootfs else None,
                    suite=state.suite, debian=state.release.suite.debian, label=state.release.suite.label,
                    unstable=state.release.suite.newer_only, default=state.default, offered=state.offered,
                    packages=list(state.release.packages), rootfs=_rootfs_state(services, state),
                    snapshot=_snapshot_state(services, state))
        for state in states
    ]
    default = releases[0]
    return LanguageDetails(
        name=language.name,
        extension=language.extension,
        aliases=list(language.aliases),
        family=language.family,
        version=default.version_text,
        versions=_versions(states),
        releases=releases,
        compiled=language.compiled,
        compile_command=list(language.compile) if language.compile else None,
        run_command=list(language.run),
        source_file=language.source,
        packages=default.packages,
        registry=list(language.registry.pins) if language.registry else [],
        rootfs=default.rootfs,
        snapshot=default.snapshot,
        sample=language.sample,
        expected_output=language.expected,
        base=language.base,
        custom=_custom_view(services, language.name),
    )


def _custom_view(services: ServicesDep, name: str) -> CustomView | None:
    found = services.languages.custom(name)
    if found is None:
        return None
    custom = found[0]
    return CustomView(origin=custom.origin, packages=custom.packages.to_json(), created_at=custom.created_at)


@api.delete("/languages/{name}", status_code=204, response_class=Response)
def delete_language(name: str, services: ServicesDep) -> Response:
    """A custom image's language, its image and snapshots; catalog languages cannot be deleted (400)."""
    services.delete_custom(name)
    return Response(status_code=204)


@api.post("/execute", response_model=ExecuteResponse, responses=STREAMS)
async def execute(body: ExecuteRequest, request: Request, services: ServicesDep) -> ExecuteResponse | Response:
    execution = ExecutionRequest.from_json(body.model_dump())

    def work(listener: Listener | None) -> ExecuteResponse:
        with metrics_of(request).counting(request, body.language, body.backend) as ran:
            result = services.execute(execution, listener)
            ran(result)
        return ExecuteResponse(**result.answer())

    if wants_events(request):
        return await stream(request, work)
    return await anyio.to_thread.run_sync(work, None)


def _new_submission(body: SubmissionRequest) -> NewSubmission:
    tests: list[TestCase] | None = None
    if body.tests is not None:
        tests = [{"stdin": test.stdin, "expected_output": test.expected_output} for test in body.tests]
    return NewSubmission(request=body.model_dump(exclude={"tests", "callback_url"}), tests=tests,
                         callback_url=body.callback_url)


# How long ?wait=true waits past the submission's own time limits before answering what it has.
WAIT_GRACE_SECONDS = 60


@api.post("/submissions", status_code=202, response_model=SubmissionCreated,
          responses={200: {"model": SubmissionView, "description": "with ?wait=true: the finished submission"}})
def create_submission(body: SubmissionRequest, services: ServicesDep, owner: OwnerDep,
                      wait: Annotated[bool, Query(description="answer once it has finished")] = False) -> JSONResponse:
    [submission_id] = services.submissions.submit(owner, [_new_submission(body)])
    if not wait:
        return JSONResponse({"id": submission_id, "status": "queued"}, status_code=202)
    runs = 1 + len(body.tests or ())
    seconds = runs * (body.timeout or services.settings.limits.timeout_seconds.default) + WAIT_GRACE_SECONDS
    found = services.submissions.wait(submission_id, owner, seconds)
    return JSONResponse(view(found), status_code=200 if found["status"] in FINISHED else 202)


@api.post("/submissions/batch", status_code=202, response_model=BatchCreated)
def create_batch(body: BatchRequest, services: ServicesDep, owner: OwnerDep) -> JSONResponse:
    ids = services.submissions.submit(owner, [_new_submission(item) for item in body.submissions])
    return JSONResponse({"ids": ids}, status_code=202)


@api.get("/submissions/{submission_id}", response_model=SubmissionView)
def submission_details(submission_id: str, services: ServicesDep, owner: OwnerDep) -> JSONResponse:
    return JSONResponse(view(services.submissions.get(submission_id, owner)))


@api.get("/rootfs", response_model=RootfsListResponse)
def list_rootfs(services: ServicesDep, remote: Remote = False, bucket: Bucket = None) -> RootfsListResponse:
    if remote:
        return RootfsListResponse(rootfs=[RootfsEntry(**e) for e in services.remote(bucket).list_rootfs()])
    entries = [RootfsEntry(language=i.language, size=i.size, path=str(i.path), format=i.format, sha256=i.sha256,
                           version=i.version, built_at=i.built_at, suite=i.suite, image=i.image)
               for i in services.rootfs.list()]
    builds = [JobView(**job.to_json()) for job in services.jobs.list() if job.kind == "rootfs"]
    return RootfsListResponse(rootfs=entries, builds=builds)


@api.post("/rootfs", status_code=202, response_model=StartedResponse)
def create_rootfs(body: RootfsCreateRequest, services: ServicesDep) -> JSONResponse:
    if body.base is None:
        if body.packages is not None:
            raise InvalidRequest("packages need a base: a custom image is a new language built on a catalog one")
        language = services.catalog.get(body.language)
        release = services.catalog.releases(language)[0] if body.version in (None, "", "*") else \
            services.release(language.name, body.version).release
        name, suite = language.name, release.suite.name
        # One job per release: building trixie's while bookworm's builds is no duplicate.
        job, new = services.jobs.start(
            "rootfs", release.image, lambda progress: services.build_rootfs(name, body.size_mb, progress, suite))
    else:
        lists = body.packages or PackageLists()
        custom = services.new_custom(body.language, body.base, Packages.checked(lists.debian, lists.pip, lists.npm))
        name, suite = custom.name, services.catalog.plan.default
        job, new = services.jobs.start(
            "rootfs", name, lambda progress: services.build_custom(custom, body.size_mb, progress))
    message = "rootfs creation started" if new else "rootfs creation already in progress"
    return JSONResponse(status_code=202, content={"message": message, "language": name, "suite": suite,
                                                  "job": job.to_json()})


@api.get("/snapshots", response_model=SnapshotListResponse)
def list_snapshots(services: ServicesDep, remote: Remote = False, bucket: Bucket = None) -> SnapshotListResponse:
    if remote:
        remote_entries = services.remote(bucket).list_snapshots()
        return SnapshotListResponse(snapshots=[SnapshotEntry(**describe(e)) for e in remote_entries])
    entries = [SnapshotEntry(**describe(dataclasses.asdict(s))) for s in services.list_snapshots()]
    jobs = [JobView(**job.to_json()) for job in services.jobs.list() if job.kind == "snapshot"]
    return SnapshotListResponse(snapshots=entries, jobs=jobs)


@api.post("/snapshots", status_code=202, response_model=StartedResponse)
def create_snapshot(body: SnapshotCreateRequest, services: ServicesDep) -> JSONResponse:
    language = services.catalog.get(body.language)
    backend = services.backends.for_snapshots(body.backend)
    rootfs = services.check_can_snapshot(backend, language.name, body.version)
    job, new = services.jobs.start(
        "snapshot", rootfs.image,
        lambda progress: services.create_snapshot(backend, language.name, body.mem_mb, body.vcpus, progress,
                                                  rootfs.suite))
    message = "snapshot creation started" if new else "snapshot creation already in progress"
    return JSONResponse(status_code=202, content={"message": message, "language": language.name,
                                                  "suite": rootfs.suite, "job": job.to_json()})


def _start_transfer(services: ServicesDep, kind: str, language: str, transfer: Transfer) -> JSONResponse:
    """A planned transfer (so a missing image is already a 404) runs as a job; its log says how far it got."""
    def work(line: Progress) -> None:
        line(transfer.run(progress_lines(line, transfer.description)))

    job, new = services.jobs.start(kind, language, work)
    message = f"{kind.replace('-', ' ')} {'started' if new else 'already in progress'}"
    content = {"message": message, "language": split_image(language)[0], "suite": split_image(language)[1],
               "job": job.to_json()}
    return JSONResponse(status_code=202, content=content)


def _image(services: ServicesDep, body: TransferRequest) -> str:
    """The image name of the release a transfer names (objects are stored by image name)."""
    return services.release(body.language, body.version).image


@api.post("/rootfs/upload", status_code=202, response_model=StartedResponse)
def upload_rootfs(body: TransferRequest, services: ServicesDep) -> JSONResponse:
    image = _image(services, body)
    return _start_transfer(services, "rootfs-upload", image, services.remote(body.bucket).upload_rootfs(image))


@api.post("/rootfs/download", status_code=202, response_model=StartedResponse)
def download_rootfs(body: TransferRequest, services: ServicesDep) -> JSONResponse:
    remote = services.remote(body.bucket)
    image = services.transfer_image(body.language, body.version, lambda: (e["image"] for e in remote.list_rootfs()))
    return _start_transfer(services, "rootfs-download", image, remote.download_rootfs(image))


@api.post("/snapshots/upload", status_code=202, response_model=StartedResponse)
def upload_snapshot(body: SnapshotTransferRequest, services: ServicesDep) -> JSONResponse:
    image = services.transfer_image(body.language, body.version, lambda: (s.image for s in services.list_snapshots()))
    return _start_transfer(services, "snapshot-upload", image,
                           services.remote(body.bucket).upload_snapshot(image, body.backend))


@api.post("/snapshots/download", status_code=202, response_model=StartedResponse)
def download_snapshot(body: SnapshotTransferRequest, services: ServicesDep) -> JSONResponse:
    remote = services.remote(body.bucket)
    image = services.transfer_image(body.language, body.version,
                                  lambda: (e["image"] for e in remote.list_snapshots()))
    return _start_transfer(services, "snapshot-download", image, remote.download_snapshot(image, body.backend))


@api.get("/jobs")
def list_jobs(services: ServicesDep) -> dict[str, Any]:
    return {"jobs": [job.to_json() for job in services.jobs.list()]}


@api.get("/jobs/{job_id}")
def job_details(job_id: str, services: ServicesDep) -> dict[str, Any]:
    job = services.jobs.get(job_id)
    if job is None:
        raise NotFound(f"job not found: {job_id}")
    return job.to_json()
