"""The remote object store (any S3-compatible server) for rootfs images and snapshots.

Layout in the bucket, mirroring the local data directory:

    rootfs/<language>/rootfs-<language>.<format>   the image (squashfs or ext4, as its record
                                               says), its sha256 in the object's metadata
    rootfs/<language>/rootfs-<language>.json   its record, uploaded last: a listed image is whole
    snapshots/<backend>/<language>/<file>      every file of the snapshot folder, metadata.json last

Transfers go through boto3's managed transfer (multipart for big files, several
threads). Each operation is planned first, so a missing image or snapshot is a 404
before anything moves, then run with byte progress. A download is checked against
its sha256 under a temporary name and only then renamed into the local store; a
snapshot folder is staged whole and renamed into place. Every boto3 failure is
translated here into our own errors, so no boto traceback reaches a user.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

import boto3
from boto3.exceptions import S3UploadFailedError
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    NoCredentialsError,
    ParamValidationError,
)

from ..config import BUCKET_PATTERN
from ..errors import InvalidRequest, NotFound, RemoteStoreError, RootfsNotFound, SnapshotNotFound
from ..languages import split_image
from ._files import exclusive, sha256_of, temporary_name, write_json_atomically
from ._progress import ByteProgress, mib
from ._rootfs_store import FORMATS, LEGACY_FORMAT, RootfsStore

log = logging.getLogger(__name__)

SNAPSHOT_METADATA = "metadata.json"
_SNAPSHOT_EXTRAS = ("mem_mb", "vcpus", "created_at")
_MISSING_CODES = {"404", "NoSuchKey", "NoSuchBucket", "NotFound"}
# Few quick retries: a store that is down should be reported in seconds, not minutes.
_CONFIG = Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"})


@dataclass(frozen=True)
class Transfer:
    """A planned upload or download: what it moves and how much; ``run`` does it and says what it did."""

    description: str
    total_bytes: int
    _work: Callable[[ByteProgress], str]

    def run(self, progress: ByteProgress = lambda done, total: None) -> str:
        progress(0, self.total_bytes)
        return self._work(progress)


class _Counter:
    """boto3 calls back from its transfer threads with byte deltas (negative on a retry)."""

    def __init__(self, total: int, progress: ByteProgress) -> None:
        self.total, self.done, self.progress = total, 0, progress
        self._lock = threading.Lock()

    def __call__(self, delta: int) -> None:
        with self._lock:
            self.done += delta
            self.progress(self.done, self.total)


class RemoteStore:
    def __init__(self, rootfs: RootfsStore, snapshots_dir: Path, bucket: str,
                 endpoint_url: str | None = None, region: str | None = None) -> None:
        if not re.match(BUCKET_PATTERN, bucket):
            raise InvalidRequest(f"invalid bucket name {bucket!r}: use 3 to 63 lowercase letters, digits, "
                                 "dots and hyphens")
        self.rootfs = rootfs
        self.snapshots_dir = snapshots_dir
        self.bucket = bucket
        self.where = endpoint_url or "AWS S3"
        self._region = region
        try:
            self._client = boto3.client("s3", endpoint_url=endpoint_url, region_name=region, config=_CONFIG)
        except (ValueError, BotoCoreError) as exc:
            raise InvalidRequest(f"object store endpoint {endpoint_url!r} is not usable: {exc}") from exc

    def uri(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}"

    # Listing

    def list_rootfs(self) -> list[dict[str, Any]]:
        objects = self._objects("rootfs/")
        entries: list[dict[str, Any]] = []
        for key, size in sorted(objects.items()):
            _, language, name = (key.split("/") + ["", ""])[:3]
            record_key = _rootfs_key(language, "json")
            kind = name.removeprefix(f"rootfs-{language}.")
            if kind not in FORMATS or record_key not in objects:
                continue
            record = self._read_json(record_key, partial(RootfsNotFound, f"{record_key} vanished"))
            if record.get("format", LEGACY_FORMAT) != kind:
                continue  # an image of the other format, left by an older upload
            image = language  # objects are stored per release, as on the disk
            language, suite = split_image(image)
            entries.append({"language": language, "suite": suite, "image": image, "size": size,
                            "path": self.uri(key), "format": kind,
                            **{field: record.get(field) for field in ("sha256", "version", "built_at")}})
        return entries

    def list_snapshots(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        for key in sorted(self._objects("snapshots/")):
            parts = key.split("/")
            if len(parts) != 4 or parts[3] != SNAPSHOT_METADATA:
                continue
            metadata = self._read_json(key, partial(SnapshotNotFound, f"{key} vanished"))
            extra: dict[str, Any] = {name: metadata[name] for name in _SNAPSHOT_EXTRAS if name in metadata}
            try:
                sizes = {"vmstate_size": int(metadata["vmstate_size"]), "mem_size": int(metadata["mem_size"])}
            except (KeyError, TypeError, ValueError):
                log.warning("skipping %s: its metadata lacks vmstate_size or mem_size", self.uri(key))
                continue
            entries.append({"language": split_image(parts[2])[0], "image": parts[2], "backend": parts[1], **extra,
                            **sizes})
        return entries

    # Rootfs images

    def upload_rootfs(self, language: str) -> Transfer:
        info = self.rootfs.get(language)
        record = self.rootfs.record_path(language)
        key = _rootfs_key(language, info.format)

        def work(progress: ByteProgress) -> str:
            self._ensure_bucket()
            self._upload(info.path, key, info.sha256, _Counter(info.size, progress))
            self._upload(record, _rootfs_key(language, "json"), sha256_of(record), lambda delta: None)
            return f"uploaded {mib(info.size)}, sha256 {info.sha256[:12]}, to {self.uri(key)}"

        return Transfer(f"uploading rootfs-{language}", info.size, work)

    def download_rootfs(self, language: str) -> Transfer:
        def missing() -> NotFound:
            return RootfsNotFound(f"rootfs for {language} not found in {self.uri('rootfs/')} at {self.where}")

        record_key = _rootfs_key(language, "json")
        record = self._read_json(record_key, missing)
        sha256, kind = record.get("sha256"), record.get("format", LEGACY_FORMAT)
        if not isinstance(sha256, str):
            raise RemoteStoreError(f"{self.uri(record_key)} has no sha256: cannot verify the image")
        if kind not in FORMATS:
            raise RemoteStoreError(f"{self.uri(record_key)} names an image format this release cannot run: {kind}")
        image_key = _rootfs_key(language, kind)
        size = self._size(image_key, missing)
        image = self.rootfs.image_path(language, kind)

        def work(progress: ByteProgress) -> str:
            # Locked by the record, as a build is: both formats of a language share it.
            with exclusive(self.rootfs.record_path(language)):
                self._download(image_key, image, sha256, _Counter(size, progress), missing)
                write_json_atomically(self.rootfs.record_path(language), record)
                self.rootfs.remove_other_formats(language, kind)
            return f"downloaded {self.uri(image_key)} ({mib(size)}, sha256 verified) to {image}"

        return Transfer(f"downloading rootfs-{language}", size, work)

    # Snapshots: a folder of files named by its metadata.json, moved whole

    def upload_snapshot(self, language: str, backend: str | None = None) -> Transfer:
        found = self.snapshots_dir.glob(f"*/{language}/{SNAPSHOT_METADATA}")
        local = [metadata.parent.parent.name for metadata in found]
        backend = _only_backend(language, backend, local, f"in {self.snapshots_dir}")
        folder = self.snapshots_dir / backend / language
        # metadata.json goes last, so the remote snapshot is listed only once whole.
        files = sorted((path for path in folder.rglob("*") if path.is_file()),
                       key=lambda path: (path.name == SNAPSHOT_METADATA, path))
        total = sum(path.stat().st_size for path in files)
        prefix = _snapshot_prefix(backend, language)

        def work(progress: ByteProgress) -> str:
            self._ensure_bucket()
            keys = {prefix + path.relative_to(folder).as_posix(): path for path in files}
            # Unlist the old remote snapshot first, and drop files the new one does not have.
            stale = set(self._objects(prefix)) - set(keys)
            self._delete([prefix + SNAPSHOT_METADATA, *sorted(stale)])
            counter = _Counter(total, progress)
            for key, path in keys.items():
                self._upload(path, key, sha256_of(path), counter)
            return f"uploaded {len(files)} files ({mib(total)}) to {self.uri(prefix)}"

        return Transfer(f"uploading the {backend} snapshot of {language}", total, work)

    def download_snapshot(self, language: str, backend: str | None = None) -> Transfer:
        remote = [key.split("/")[1] for key in self._objects("snapshots/")
                  if key.endswith(f"/{language}/{SNAPSHOT_METADATA}") and key.count("/") == 3]
        backend = _only_backend(language, backend, remote, f"in {self.uri('snapshots/')} at {self.where}")
        prefix = _snapshot_prefix(backend, language)
        objects = self._objects(prefix)
        total = sum(objects.values())
        target = self.snapshots_dir / backend / language

        def missing() -> NotFound:
            return SnapshotNotFound(f"the {backend} snapshot of {language} vanished from {self.uri(prefix)}")

        def work(progress: ByteProgress) -> str:
            staging = temporary_name(target)
            counter = _Counter(total, progress)
            with exclusive(target):
                try:
                    for key in objects:
                        sha256 = self._metadata_sha256(key, missing)
                        destination = staging / _safe_relative(key.removeprefix(prefix))
                        self._download(key, destination, sha256, counter, missing)
                    _replace_folder(staging, target)
                finally:
                    shutil.rmtree(staging, ignore_errors=True)
            return f"downloaded {len(objects)} files ({mib(total)}, sha256 verified) to {target}"

        return Transfer(f"downloading the {backend} snapshot of {language}", total, work)

    # boto3, translated

    @contextmanager
    def _translated(self, missing: Callable[[], NotFound] | None = None) -> Iterator[None]:
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if missing is not None and code in _MISSING_CODES:
                raise missing() from exc
            message = f"{code} {error.get('Message', '')}".strip()
            raise RemoteStoreError(f"object store at {self.where} refused ({self.uri()}): {message}") from exc
        except NoCredentialsError as exc:
            raise RemoteStoreError(
                f"no credentials for the object store at {self.where}: "
                "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)") from exc
        except ParamValidationError as exc:
            raise InvalidRequest(f"invalid object store request: {exc}") from exc
        except (ConnectionError, HTTPClientError) as exc:
            raise RemoteStoreError(f"object store unreachable at {self.where}: {exc}") from exc
        except BotoCoreError as exc:
            raise RemoteStoreError(f"object store at {self.where} failed: {exc}") from exc
        except S3UploadFailedError as exc:
            raise RemoteStoreError(f"upload to {self.uri()} at {self.where} failed: {exc}") from exc

    def _objects(self, prefix: str) -> dict[str, int]:
        """Key → size of every object under ``prefix``; none when the bucket does not exist yet."""
        found: dict[str, int] = {}
        with self._translated():
            try:
                for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                                   Prefix=prefix):
                    found.update((item["Key"], int(item["Size"])) for item in page.get("Contents", ()))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "NoSuchBucket":
                    raise
        return found

    def _read_json(self, key: str, missing: Callable[[], NotFound]) -> dict[str, Any]:
        with self._translated(missing):
            body = self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise RemoteStoreError(f"{self.uri(key)} is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise RemoteStoreError(f"{self.uri(key)} is not a JSON object")
        return data

    def _size(self, key: str, missing: Callable[[], NotFound]) -> int:
        with self._translated(missing):
            return int(self._client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])

    def _metadata_sha256(self, key: str, missing: Callable[[], NotFound]) -> str:
        with self._translated(missing):
            metadata = self._client.head_object(Bucket=self.bucket, Key=key).get("Metadata", {})
        if "sha256" not in metadata:
            raise RemoteStoreError(f"{self.uri(key)} carries no sha256 in its metadata: cannot verify it")
        return str(metadata["sha256"])

    def _ensure_bucket(self) -> None:
        with self._translated():
            try:
                self._client.head_bucket(Bucket=self.bucket)
                return
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in _MISSING_CODES:
                    raise
            log.info("creating bucket %s at %s", self.bucket, self.where)
            location = {} if self._region in (None, "us-east-1") else {
                "CreateBucketConfiguration": {"LocationConstraint": self._region}}
            try:
                self._client.create_bucket(Bucket=self.bucket, **location)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                    raise

    def _upload(self, path: Path, key: str, sha256: str, callback: Callable[[int], None]) -> None:
        with self._translated():
            self._client.upload_file(str(path), self.bucket, key, ExtraArgs={"Metadata": {"sha256": sha256}},
                                     Callback=callback)

    def _delete(self, keys: list[str]) -> None:
        with self._translated():
            for key in keys:
                self._client.delete_object(Bucket=self.bucket, Key=key)

    def _download(self, key: str, destination: Path, sha256: str, callback: Callable[[int], None],
                  missing: Callable[[], NotFound]) -> None:
        """Fetch under a temporary name, check the checksum, then rename: a bad copy never takes the name."""
        destination.parent.mkdir(parents=True, exist_ok=True)
        temporary = temporary_name(destination)
        try:
            with self._translated(missing):
                self._client.download_file(self.bucket, key, str(temporary), Callback=callback)
            actual = sha256_of(temporary)
            if actual != sha256:
                raise RemoteStoreError(
                    f"checksum mismatch for {self.uri(key)}: expected sha256 {sha256}, got {actual}; "
                    "the download was discarded")
            os.replace(temporary, destination)
        finally:
            temporary.unlink(missing_ok=True)


def _rootfs_key(language: str, suffix: str) -> str:
    return f"rootfs/{language}/rootfs-{language}.{suffix}"


def _snapshot_prefix(backend: str, language: str) -> str:
    return f"snapshots/{backend}/{language}/"


def _only_backend(language: str, chosen: str | None, available: list[str], where: str) -> str:
    if chosen is not None:
        if chosen not in available:
            raise SnapshotNotFound(f"no {chosen} snapshot of {language} {where}")
        return chosen
    if len(available) == 1:
        return available[0]
    if not available:
        raise SnapshotNotFound(f"no snapshot of {language} {where}")
    raise InvalidRequest(f"snapshots of {language} exist for {', '.join(sorted(available))} {where}: "
                         "choose a backend")


def _safe_relative(name: str) -> Path:
    """A key's tail as a path inside the snapshot folder; a bucket is not trusted to stay inside it."""
    relative = PurePosixPath(name)
    if not name or relative.is_absolute() or ".." in relative.parts:
        raise RemoteStoreError(f"refusing an object name that leaves its snapshot folder: {name!r}")
    return Path(*relative.parts)


def _replace_folder(staging: Path, target: Path) -> None:
    """Put a complete folder in place of another: the old one moves aside, and goes once the new one is in."""
    aside = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, aside)
    os.replace(staging, target)
    shutil.rmtree(aside, ignore_errors=True)
