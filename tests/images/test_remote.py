"""The remote store against a real S3-compatible server (moto in a subprocess): uploads,
listings, verified downloads into a fresh data directory, and every way it can fail."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import boto3
import pytest
from conftest import ObjectStore, free_port, write_fake_rootfs, write_fake_snapshot

from infra_operator.config import Settings
from infra_operator.errors import InvalidRequest, RemoteStoreError, RootfsNotFound, SnapshotNotFound
from infra_operator.images import RemoteStore, RootfsStore
from infra_operator.services import Services

# Above boto3's 8 MiB multipart threshold, so the managed transfer goes multipart.
IMAGE_SIZE = 9 * 1024 * 1024 + 123


@pytest.fixture
def bucket(object_store: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket name (not yet created), with this process's environment pointed at the store."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    for key, value in object_store.env(name).items():
        monkeypatch.setenv(key, value)
    return name


def remote(data_dir: Path, bucket: str) -> RemoteStore:
    return Services(Settings(data_dir=data_dir, s3_bucket=bucket)).remote()


def s3(object_store: ObjectStore):  # type: ignore[no-untyped-def]
    """A plain boto3 client, to look at and tamper with the bucket behind the store's back."""
    return boto3.client("s3", endpoint_url=object_store.url, region_name="us-east-1")


def test_upload_creates_the_bucket_and_lists(object_store: ObjectStore, bucket: str, tmp_path: Path) -> None:
    sha256 = write_fake_rootfs(tmp_path, "python", IMAGE_SIZE)
    store = remote(tmp_path, bucket)
    assert store.list_rootfs() == []  # no bucket yet: nothing listed, no error
    seen: list[tuple[int, int]] = []

    summary = store.upload_rootfs("python").run(lambda done, total: seen.append((done, total)))

    assert f"s3://{bucket}/rootfs/python/rootfs-python.ext4" in summary
    assert seen[-1] == (IMAGE_SIZE, IMAGE_SIZE)
    assert len(seen) > 2, "progress is reported while the transfer goes on, not only at the end"
    head = s3(object_store).head_object(Bucket=bucket, Key="rootfs/python/rootfs-python.ext4")
    assert head["Metadata"]["sha256"] == sha256
    assert "-" in head["ETag"], "a multipart upload's ETag carries its part count"
    assert store.list_rootfs() == [{
        "language": "python", "suite": "bookworm", "image": "python", "size": IMAGE_SIZE,
        "path": f"s3://{bucket}/rootfs/python/rootfs-python.ext4", "format": "ext4",
        "sha256": sha256, "version": "python 0.test", "built_at": 1.0,
    }]


def test_download_into_a_fresh_data_dir_is_verified_and_found(bucket: str, tmp_path: Path) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    sha256 = write_fake_rootfs(source, "python", IMAGE_SIZE)
    remote(source, bucket).upload_rootfs("python").run()
    write_fake_rootfs(target, "python", 4096)  # an older local image, to be replaced whole

    transfer = remote(target, bucket).download_rootfs("python")
    assert transfer.total_bytes == IMAGE_SIZE
    summary = transfer.run()

    assert "sha256 verified" in summary
    found = RootfsStore(target / "images").find("python")
    assert found is not None
    assert (found.sha256, found.size) == (sha256, IMAGE_SIZE)
    assert hashlib.sha256(found.path.read_bytes()).hexdigest() == sha256
    assert not list((target / "images").glob(".*.tmp-*")), "no temporary file is left behind"


def test_a_corrupted_remote_image_is_refused(object_store: ObjectStore, bucket: str, tmp_path: Path) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    sha256 = write_fake_rootfs(source, "python", IMAGE_SIZE)
    remote(source, bucket).upload_rootfs("python").run()
    # Same name and metadata, other bytes: what bit rot or a bad writer would leave.
    s3(object_store).put_object(Bucket=bucket, Key="rootfs/python/rootfs-python.ext4", Body=b"x" * 1000,
                                Metadata={"sha256": sha256})
    local_sha256 = write_fake_rootfs(target, "python", 4096)

    with pytest.raises(RemoteStoreError, match="checksum mismatch"):
        remote(target, bucket).download_rootfs("python").run()

    kept = RootfsStore(target / "images").find("python")
    assert kept is not None and kept.sha256 == local_sha256, "the local image is untouched"
    assert hashlib.sha256(kept.path.read_bytes()).hexdigest() == local_sha256
    assert not list((target / "images").glob(".*.tmp-*"))


def test_unknown_images_are_not_found(bucket: str, tmp_path: Path) -> None:
    store = remote(tmp_path, bucket)
    with pytest.raises(RootfsNotFound, match=f"rootfs for go not found in s3://{bucket}/rootfs/"):
        store.download_rootfs("go")  # the bucket does not even exist
    write_fake_rootfs(tmp_path, "python", 1000)
    store.upload_rootfs("python").run()
    with pytest.raises(RootfsNotFound, match="rootfs for go not found"):
        store.download_rootfs("go")
    with pytest.raises(RootfsNotFound, match="rootfs not built for language nodejs"):
        store.upload_rootfs("nodejs")


def test_an_unreachable_store_is_a_clear_error(bucket: str, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    store = Services(Settings(data_dir=tmp_path, s3_endpoint_url=url, s3_bucket=bucket)).remote()
    with pytest.raises(RemoteStoreError, match=f"object store unreachable at {url}"):
        store.list_rootfs()
    write_fake_rootfs(tmp_path, "python", 1000)
    with pytest.raises(RemoteStoreError, match=f"object store unreachable at {url}"):
        store.upload_rootfs("python").run()


def test_without_endpoint_or_credentials_no_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("INFRA_OPERATOR_S3_ENDPOINT_URL", raising=False)
    with pytest.raises(InvalidRequest, match="no object store is configured"):
        Services(Settings(data_dir=tmp_path)).remote()


def test_snapshot_round_trip(object_store: ObjectStore, bucket: str, tmp_path: Path) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    files = {"vmstate": b"state" * 100, "memory": bytes(IMAGE_SIZE), "extra/kernel.cmdline": b"console=ttyS0"}
    folder = write_fake_snapshot(source, "qemu", "python", {**files, "stale-on-remote": b"old"})
    store = remote(source, bucket)
    store.upload_snapshot("python").run()
    (folder / "stale-on-remote").unlink()
    store.upload_snapshot("python", "qemu").run()  # again, one file fewer: the remote copy follows

    keys = {item["Key"] for item in s3(object_store).list_objects_v2(Bucket=bucket)["Contents"]}
    assert keys == {f"snapshots/qemu/python/{name}" for name in [*files, "metadata.json"]}
    assert store.list_snapshots() == [{"language": "python", "image": "python", "backend": "qemu", "vmstate_size": 500,
                                       "mem_size": IMAGE_SIZE, "mem_mb": 256, "vcpus": 1,
                                       "created_at": "2026-11-28T00:00:00+00:00"}]

    old = write_fake_snapshot(target, "qemu", "python", {"vmstate": b"older", "leftover": b"gone after"})
    remote(target, bucket).download_snapshot("python").run()

    assert sorted(p.relative_to(old).as_posix() for p in old.rglob("*") if p.is_file()) == sorted(
        [*files, "metadata.json"])
    for name, content in files.items():
        assert (old / name).read_bytes() == content
    assert (old / "metadata.json").read_bytes() == (folder / "metadata.json").read_bytes()
    leftovers = [path.name for path in old.parent.glob(".python.*") if not path.name.endswith(".lock")]
    assert leftovers == [], "neither the staging folder nor the old one is left behind"


def test_snapshot_backend_must_be_chosen_when_ambiguous(bucket: str, tmp_path: Path) -> None:
    store = remote(tmp_path, bucket)
    with pytest.raises(SnapshotNotFound, match="no snapshot of python in"):
        store.upload_snapshot("python")
    for backend in ("qemu", "firecracker"):
        write_fake_snapshot(tmp_path, backend, "python", {"vmstate": backend.encode(), "memory": b"m"})
    with pytest.raises(InvalidRequest, match="snapshots of python exist for firecracker, qemu"):
        store.upload_snapshot("python")
    store.upload_snapshot("python", "firecracker").run()
    with pytest.raises(SnapshotNotFound, match="no qemu snapshot of python in s3://"):
        store.download_snapshot("python", "qemu")
    assert "firecracker" in store.download_snapshot("python").description
