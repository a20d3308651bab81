"""The object store over real HTTP: ``?remote=true`` listings and the transfer jobs, from a real
server pointed at a real S3-compatible server (moto)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ObjectStore, free_port, start_server, stop_server, wait_for_job, write_fake_rootfs, write_fake_snapshot


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("remote-data")


@pytest.fixture(scope="module")
def bucket() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def remote_client(object_store: ObjectStore, data_dir: Path, bucket: str,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    env = {**object_store.env(bucket), "INFRA_OPERATOR_DATA_DIR": str(data_dir)}
    server = start_server(tmp_path_factory.mktemp("remote-server"), env=env)
    try:
        with server.client() as session:
            yield session
    finally:
        stop_server(server)


def test_upload_list_and_download_over_http(remote_client: httpx.Client, data_dir: Path, bucket: str) -> None:
    sha256 = write_fake_rootfs(data_dir, "python", 3 << 20)
    write_fake_snapshot(data_dir, "qemu", "python", {"vmstate": b"v" * 13516, "memory": b"m" * 4096})
    assert remote_client.get("/api/v1/rootfs", params={"remote": "true"}).json()["rootfs"] == []

    upload = remote_client.post("/api/v1/rootfs/upload", json={"language": "python"})
    assert upload.json()["message"] == "rootfs upload started"
    job = wait_for_job(remote_client, upload)
    assert job["state"] == "succeeded", job
    assert "100% of 3.0 MiB" in " ".join(job["log"])
    assert wait_for_job(remote_client, remote_client.post("/api/v1/snapshots/upload", json={"language": "python"})
                    )["state"] == "succeeded"

    rootfs = remote_client.get("/api/v1/rootfs?remote=true")
    assert rootfs.status_code == 200
    [entry] = rootfs.json()["rootfs"]
    assert entry["language"] == "python" and entry["size"] == 3 << 20 and entry["sha256"] == sha256
    assert entry["path"] == f"s3://{bucket}/rootfs/python/rootfs-python.ext4"
    snapshots = remote_client.get("/api/v1/snapshots?remote=true")
    assert snapshots.status_code == 200
    [snapshot] = snapshots.json()["snapshots"]
    assert (snapshot["language"], snapshot["backend"], snapshot["vmstate_size"], snapshot["mem_size"],
            snapshot["disk_size"]) == ("python", "qemu", 13516, 256 << 20, 13516 + 4096)

    (data_dir / "images" / "rootfs-python.ext4").unlink()
    assert remote_client.get("/api/v1/rootfs").json()["rootfs"] == []
    download = wait_for_job(remote_client, remote_client.post("/api/v1/rootfs/download", json={"language": "py"}))
    assert download["state"] == "succeeded", download
    [local] = remote_client.get("/api/v1/rootfs").json()["rootfs"]
    assert (local["language"], local["sha256"]) == ("python", sha256)


@pytest.mark.parametrize(("path", "body", "status", "error"), [
    ("/api/v1/rootfs/download", {"language": "ruby2"}, 404, "language not found: ruby2"),
    # Nothing built here nor in the store: the default release (Debian 13's) is the one missing.
    ("/api/v1/rootfs/download", {"language": "go"}, 404, "rootfs for go@trixie not found in s3://"),
    ("/api/v1/rootfs/upload", {"language": "rust"}, 404, "rootfs not built for language rust"),
    ("/api/v1/snapshots/download", {"language": "nodejs"}, 404, "no snapshot of nodejs@trixie in s3://"),
    ("/api/v1/snapshots/upload", {"language": "go", "backend": "firecracker"}, 404, "no firecracker snap"),
    ("/api/v1/snapshots/upload", {"language": "go", "backend": "jail"}, 400, "backend"),
    ("/api/v1/rootfs/download", {"language": "python", "bucket": "Bad_Bucket"}, 400, "invalid bucket name"),
    ("/api/v1/rootfs/download", {"language": 5}, 400, "language"),
])
def test_transfer_errors(remote_client: httpx.Client, path: str, body: dict[str, Any], status: int,
                         error: str) -> None:
    response = remote_client.post(path, json=body)
    assert response.status_code == status, response.text
    assert error in response.json()["error"]


def test_listing_a_bucket_not_yet_made_is_empty(remote_client: httpx.Client) -> None:
    never_made = f"never-made-{uuid.uuid4().hex}"
    response = remote_client.get("/api/v1/rootfs", params={"remote": "true", "bucket": never_made})
    assert response.status_code == 200
    assert response.json()["rootfs"] == []


def test_unreachable_store_is_502(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    env = {"INFRA_OPERATOR_S3_ENDPOINT_URL": url, "INFRA_OPERATOR_DATA_DIR": str(tmp_path),
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    server = start_server(tmp_path, env=env)
    try:
        with server.client() as client:
            response = client.get("/api/v1/snapshots?remote=true")
    finally:
        stop_server(server)
    assert response.status_code == 502
    assert response.json()["error"].startswith(f"object store unreachable at {url}")


def test_without_a_store_remote_listing_is_400(client: httpx.Client) -> None:
    if {"AWS_ACCESS_KEY_ID", "AWS_PROFILE", "INFRA_OPERATOR_S3_ENDPOINT_URL"} & set(os.environ):
        pytest.skip("the environment configures an object store for the shared server")
    response = client.get("/api/v1/rootfs?remote=true")
    assert response.status_code == 400
    assert "no object store is configured" in response.json()["error"]


def test_the_server_forgets_finished_jobs_past_its_setting(tmp_path: Path) -> None:
    """Jobs the store fails at once (nothing listens at its address) stand in for any: with
    ``jobs.keep_finished`` 1, a finished job is forgotten once a newer one has finished."""
    write_fake_rootfs(tmp_path, "python", 1 << 20)
    env = {"INFRA_OPERATOR_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}", "INFRA_OPERATOR_DATA_DIR": str(tmp_path),
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "INFRA_OPERATOR_JOBS__KEEP_FINISHED": "1"}
    server = start_server(tmp_path, env=env)
    try:
        with server.client() as client:
            first = wait_for_job(client, client.post("/api/v1/rootfs/upload", json={"language": "python"}))
            assert client.get(f"/api/v1/jobs/{first['id']}").status_code == 200, "a recent job is there"
            second = wait_for_job(client, client.post("/api/v1/rootfs/upload", json={"language": "python"}))
            forgotten = client.get(f"/api/v1/jobs/{first['id']}")
            listed = [job["id"] for job in client.get("/api/v1/jobs").json()["jobs"]]
    finally:
        stop_server(server)
    assert (first["state"], second["state"]) == ("failed", "failed")
    assert forgotten.status_code == 404 and forgotten.json() == {"error": f"job not found: {first['id']}"}
    assert listed == [second["id"]]
