"""The parts of a running infra.operator, made once from settings and shared by the
API and the CLI, so both run executions and builds through the same path."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import redis

from . import cluster, images
from .backends import Backend, BackendSet, KernelFiles, SandboxSpec, factories
from .config import Settings
from .errors import Conflict, InvalidRequest, LanguageNotFound, OperatorError
from .executor import ExecutionRequest, ExecutionResult, Executor, Pool, SessionManager
from .images import ReleaseState, RootfsInfo, RootfsStore, SnapshotInfo
from .jobs import JobBoard, Progress
from .languages import Catalog, CustomLanguage, CustomStore, Language, Packages, WithCustom, check_name
from .submissions import CallbackSender, LocalRunners, MemoryLimiter, SqliteStore, Submissions

if TYPE_CHECKING:
    from pathlib import Path

    from .backends import Listener
    from .images import RemoteStore
    from .languages import Origin

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    catalog: Catalog = field(default_factory=Catalog.load)

    def __post_init__(self) -> None:
        # Custom images are languages too, wherever a language is named (execute, sessions, snapshots).
        if not isinstance(self.catalog, WithCustom):
            self.catalog = WithCustom(self.catalog, CustomStore(self.settings.data_dir / "languages"))

    @property
    def languages(self) -> WithCustom:
        """The catalog with the custom languages (``catalog`` as its own type)."""
        assert isinstance(self.catalog, WithCustom)
        return self.catalog

    @cached_property
    def rootfs(self) -> RootfsStore:
        return RootfsStore(self.settings.images_dir)

    @cached_property
    def backends(self) -> BackendSet:
        return BackendSet(self.settings, factories(images.guest_images))

    @cached_property
    def pool(self) -> Pool:
        return Pool(self.settings.pool)

    @cached_property
    def executor(self) -> Executor:
        return Executor(self.settings, self.catalog, self.rootfs, self.backends, pool=self.pool)

    @cached_property
    def local_sessions(self) -> SessionManager:
        """The sessions this process holds: all of them alone, a worker's own in a cluster."""
        return SessionManager(self.settings, self.executor)

    @cached_property
    def sessions(self) -> SessionManager | cluster.RoutedSessions:
        """What the API serves: the sessions held here; in a cluster, those of the workers, each
        call routed to the worker that holds its session."""
        if self.settings.redis_url is None:
            return self.local_sessions
        return cluster.RoutedSessions(self.redis, lambda name: self.catalog.get(name).name,
                                      self.settings.limits.timeout_seconds.maximum)

    def open_sessions(self) -> int:
        """Sessions held in this process now (a cluster's API process holds none: its workers do);
        none before a request made the manager (a scrape must not make it)."""
        return self.local_sessions.count() if "local_sessions" in self.__dict__ else 0

    def start_pool(self) -> list[str]:
        """Keep sandboxes ready on the default backend for the pre-warm languages whose images
        are built (``PoolSettings.prewarm``); return the languages being warmed."""
        self.pool.start()
        wanted = self.settings.pool.prewarm
        names = [language.name for language in self.catalog] if wanted is None else wanted
        try:
            backend = self.backends.default
        except OperatorError as exc:
            log.warning("pool: nothing pre-warmed: %s", exc.message)
            return []
        warmed = []
        for name in names:
            try:
                size = self.settings.pool.size_for(self.catalog.get(name).name)
                if size <= 0 or self.release(name).rootfs is None:  # the default release's image
                    continue
                self.pool.warm(backend, self.executor.default_spec(backend, name), size)
            except OperatorError as exc:
                log.warning("pool: cannot pre-warm %s: %s", name, exc.message)
                continue
            warmed.append(name)
        log.info("pool: keeping %s ready on %s", ", ".join(warmed) or "nothing", backend.name)
        return warmed

    # ---- submissions, and the cluster when there is one (``redis_url``)

    @cached_property
    def redis(self) -> redis.Redis:
        if self.settings.redis_url is None:
            raise InvalidRequest("no Redis is configured (--redis URL)")
        try:
            return redis.Redis.from_url(self.settings.redis_url, health_check_interval=10)
        except ValueError as exc:
            raise InvalidRequest(f"bad Redis URL {self.settings.redis_url!r}: {exc}") from exc

    @cached_property
    def router(self) -> cluster.Router:
        return cluster.Router(self.redis)

    @cached_property
    def callbacks(self) -> CallbackSender:
        return CallbackSender(self.settings.submissions)

    @cached_property
    def local_store(self) -> SqliteStore:
        return SqliteStore(self.settings.submissions_store)

    @cached_property
    def runners(self) -> LocalRunners:
        return LocalRunners(self.local_store, self.executor, self.callbacks, self.settings.submissions)

    @cached_property
    def submissions(self) -> Submissions:
        config = self.settings.submissions
        if self.settings.redis_url is None:
            return Submissions(self.local_store, MemoryLimiter(config.rate_per_minute), self.callbacks, config,
                               self._check)
        return Submissions(cluster.RedisStore(self.redis, self.router, config.retention_seconds),
                           cluster.RedisLimiter(self.redis, config.rate_per_minute), self.callbacks, config,
                           self._check)

    def _check(self, fields: dict[str, Any]) -> None:
        # Through a cluster, this host need not have the image or the backend: the workers do.
        self.executor.check(ExecutionRequest.from_json(fields), here=self.settings.redis_url is None)

    def execute(self, request: ExecutionRequest, listener: Listener | None = None) -> ExecutionResult:
        """Run here, or by a worker of the cluster; with a ``listener``, its output streams there."""
        if self.settings.redis_url is None:
            return self.executor.execute(request, listener)
        self.executor.check(request, here=False)
        return self.dispatcher.execute(request, listener)

    @cached_property
    def dispatcher(self) -> cluster.Dispatcher:
        return cluster.Dispatcher(self.redis, self.router, self.settings.limits.timeout_seconds.default,
                                  self.settings.max_queue)

    def start(self) -> None:
        """What a serving API process starts: alone, the pool and the submission runners; in a
        cluster, nothing (the workers run everything)."""
        if self.settings.redis_url is None:
            self.start_pool()
            self.runners.start()

    def worker(self, worker_id: str, claim_idle_seconds: float) -> cluster.Worker:
        """This host as a worker of the cluster: its pool started, its adverts made."""
        warm = self.start_pool()
        usable = [c.name for c in self.backends.capabilities() if c.usable]
        advert = cluster.Advert(id=worker_id, backends=usable, languages=sorted({i.language for i in self.rootfs.list()}),
                                warm=warm, capacity=self.settings.max_concurrency)
        return cluster.Worker(self.redis, self.router, self.executor, self.local_sessions, self.callbacks, advert,
                              self.settings.submissions.retention_seconds, claim_idle_seconds)

    @cached_property
    def jobs(self) -> JobBoard:
        return JobBoard(self.settings.jobs)

    def release(self, language: str, version: str | None = None) -> ReleaseState:
        """The release of ``language`` that ``version`` selects (see ``images.resolve``)."""
        return images.resolve(self.catalog, self.catalog.get(language), self.rootfs, version)

    def transfer_image(self, language: str, version: str | None, stored: Callable[[], Iterable[str]]) -> str:
        """The image name of the release a transfer means: the one ``version`` selects; without
        one, the default release when it is built here, else the first release of the plan that
        the source holds (``stored``: its image names), so a bucket or a snapshot folder filled
        before releases (Debian 12's, under the plain name) still serves a plain transfer."""
        state = self.release(language, version)
        if (version or "").strip() not in ("", "*") or state.rootfs is not None:
            return state.image
        there = set(stored())
        planned = [release.image for release in self.catalog.releases(self.catalog.get(language))]
        return next((image for image in planned if image in there), state.image)

    def build_rootfs(self, language: str, size_mb: int | None, progress: Progress,
                     version: str | None = None) -> RootfsInfo:
        """Build the image of the release ``version`` selects: the default suite's when absent,
        whichever release is built already."""
        found = self.languages.custom(language)
        if found is not None:  # rebuilt from its definition, its pip and npm packages too
            return self.build_custom(found[0], size_mb, progress)
        entry = self.catalog.get(language)
        if version is None or version.strip() in ("", "*"):
            release = self.catalog.releases(entry)[0]
        else:
            release = self.release(language, version).release
        return images.build_rootfs(entry, release, self.rootfs, self.settings.cache_dir, size_mb, progress,
                                   mirror=self.settings.debian_mirror)

    # ---- custom images: a new language on a catalog language's commands (``languages._custom``)

    def new_custom(self, name: str, base: str, packages: Packages | None = None,
                   origin: Origin = "packages") -> CustomLanguage:
        """A custom language to build, checked: a free name, a catalog language as base."""
        check_name(name, self.languages.catalog)
        try:
            base_language = self.languages.catalog.get(base)
        except LanguageNotFound:
            if self.languages.custom(base) is not None:
                raise InvalidRequest(f"base {base!r} is a custom language: base it on a catalog language "
                                     "and list all the packages") from None
            raise InvalidRequest(f"unknown base language {base!r}: see GET /api/v1/languages") from None
        return CustomLanguage(name=name, base=base_language.name, packages=packages or Packages(), origin=origin)

    def check_not_building(self, name: str) -> None:
        job = self.jobs.latest("rootfs", name)
        if job is not None and job.state == "running":
            raise Conflict(f"the image of {name} is being built (job {job.id}): wait for it to finish")

    def build_custom(self, custom: CustomLanguage, size_mb: int | None, progress: Progress) -> RootfsInfo:
        """Build a custom language's image: its base's packages and its own, then its pip and npm
        installs; the definition is saved once the image is whole."""
        if custom.origin == "docker":
            raise InvalidRequest(f"{custom.name} was imported from an image archive: import it again "
                                 f"(infra.operator rootfs from-docker --lang {custom.name} --base {custom.base} ...)")
        language = custom.derive(self.languages.catalog.get(custom.base))

        def installs(tree: Path, line: Progress) -> None:
            images.pip_install(tree, custom.packages.pip, line)
            images.npm_install(tree, custom.packages.npm, line)

        info = images.build_rootfs(language, self.catalog.releases(language)[0], self.rootfs, self.settings.cache_dir,
                                   size_mb, progress, customize=installs, mirror=self.settings.debian_mirror)
        self.languages.store.save(custom)
        return info

    def import_docker(self, custom: CustomLanguage, archive: Path, size_mb: int | None,
                      progress: Progress) -> RootfsInfo:
        """A custom language whose image is a ``docker save`` or OCI archive, with the agent added."""
        language = custom.derive(self.languages.catalog.get(custom.base))

        def populate(tree: Path, line: Progress) -> None:
            images.import_archive(archive, tree, line)
            images.add_agent(tree, line)

        info = images.build_rootfs(language, self.catalog.releases(language)[0], self.rootfs, self.settings.cache_dir,
                                   size_mb, progress, populate=populate)
        self.languages.store.save(custom)
        return info

    def delete_custom(self, name: str) -> Language:
        """Forget a custom language: its definition, then its image and snapshots."""
        try:
            catalog_language = self.languages.catalog.get(name)
        except LanguageNotFound:
            pass
        else:
            raise InvalidRequest(f"{catalog_language.name} is a catalog language: only custom languages can be "
                                 "deleted")
        found = self.languages.custom(name)
        if found is None:
            raise LanguageNotFound(name)
        custom, language = found
        self.check_not_building(custom.name)
        self.languages.store.remove(custom.name)  # first: no new run picks it up
        self.rootfs.remove(custom.name)
        for snapshot in self.list_snapshots():
            if snapshot.language == custom.name:
                images.remove_snapshot(self.settings, snapshot.backend, custom.name)
        return language

    def list_snapshots(self) -> list[SnapshotInfo]:
        return images.list_snapshots(self.settings)

    def build_kernel(self, progress: Progress) -> KernelFiles:
        return images.build_kernel(self.settings, progress)

    def check_can_snapshot(self, backend: Backend, language: str, version: str | None = None) -> RootfsInfo:
        """The image a snapshot of this release would be made from; raises what would stop it."""
        capabilities = backend.capabilities()
        if not capabilities.snapshots:
            raise InvalidRequest(
                f"backend {backend.name} cannot make snapshots: snapshots need a microVM backend (qemu or firecracker)")
        rootfs = self.release(language, version).require()
        images.require_kernel(self.settings)
        return rootfs

    def create_snapshot(self, backend: Backend, language: str, mem_mb: int, vcpus: int, progress: Progress,
                        version: str | None = None) -> SnapshotInfo:
        """Snapshots are per release: stored under the release's image name, as the backends look them up."""
        rootfs = self.check_can_snapshot(backend, language, version)
        spec = SandboxSpec(rootfs=rootfs.path, rootfs_sha256=rootfs.sha256, image=rootfs.image, memory_mb=mem_mb,
                           vcpus=vcpus, kernel=images.require_kernel(self.settings),
                           labels={"language": rootfs.language, "release": rootfs.suite})
        return images.create_snapshot(self.settings, backend, rootfs.image, spec, progress)

    def remote(self, bucket: str | None = None) -> RemoteStore:
        """The object store, in ``bucket`` or the configured one (see ``Settings.s3_configured``)."""
        if not self.settings.s3_configured:
            raise InvalidRequest("no object store is configured: set INFRA_OPERATOR_S3_ENDPOINT_URL "
                                 "(or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for Amazon S3 itself)")
        return images.RemoteStore(self.rootfs, self.settings.snapshots_dir, bucket or self.settings.s3_bucket,
                                  self.settings.s3_endpoint_url, self.settings.s3_region)

    def close(self) -> None:
        if "local_sessions" in self.__dict__:  # made only once a request needed it
            self.local_sessions.close()
        if "runners" in self.__dict__:
            self.runners.close(timeout=1.0)
        if "callbacks" in self.__dict__:
            self.callbacks.close()
        if "local_store" in self.__dict__:
            self.local_store.close()
        self.pool.close()
        self.jobs.wait(timeout=1.0)
        self.backends.close()

    def sweep(self) -> list[str]:
        """Clear what a crashed server left behind: sandboxes, VMs, cgroups, mounts, temp files."""
        removed = self.backends.sweep() + images.sweep(self.settings.images_dir, self.settings.cache_dir)
        for line in removed:
            log.info("start-up sweep removed %s", line)
        return removed
