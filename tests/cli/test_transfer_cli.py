"""``infra.operator rootfs|snapshot upload|download|list --remote`` as a user runs them:
subprocesses against a real S3-compatible server (moto)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from conftest import DATA_DIR, ObjectStore, require_images, write_fake_snapshot

from infra_operator.images import RootfsStore


@pytest.fixture
def env(object_store: ObjectStore) -> dict[str, str]:
    # Wide enough for the listings' every column (language, release, size, version, path).
    return {**os.environ, **object_store.env(f"test-{uuid.uuid4().hex[:12]}"), "COLUMNS": "200"}


def cli(env: dict[str, str], *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "infra_operator", *args], env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == expect, f"{args}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return result


def test_the_real_python_image_goes_up_comes_down_and_runs(env: dict[str, str], tmp_path: Path) -> None:
    require_images("python")
    local = RootfsStore(DATA_DIR / "images").get("python")

    # Debian 12's release, at its path from before releases; the download names no version, and
    # gets it as the first release of the plan the bucket holds.
    upload = cli(env, "rootfs", "upload", "--lang", "python", "--version", "bookworm", "--data-dir", str(DATA_DIR))
    assert "100% of" in upload.stderr, "progress is shown"
    listing = cli(env, "rootfs", "list", "--remote")
    assert "python" in listing.stdout and local.version in listing.stdout and "bookworm" in listing.stdout
    download = cli(env, "rootfs", "download", "--lang", "py", "--data-dir", str(tmp_path))
    assert "sha256 verified" in download.stdout

    fetched = RootfsStore(tmp_path / "images").get("python")
    assert (fetched.sha256, fetched.size, fetched.version) == (local.sha256, local.size, local.version)
    run = cli(env, "run", "--lang", "python", "--code", "print(6 * 7)", "--data-dir", str(tmp_path))
    assert run.stdout == "42\n"
    backing = [f.read_text() for f in Path("/sys/block").glob("loop*/loop/backing_file")]
    assert not [name for name in backing if name.startswith(str(tmp_path))], "the command unmounts what it mounted"


def test_snapshot_commands(env: dict[str, str], tmp_path: Path) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    write_fake_snapshot(source, "qemu", "python", {"vmstate": b"s" * 2048, "memory": b"m" * (3 << 20)})

    cli(env, "snapshot", "upload", "--lang", "python", "--backend", "qemu", "--data-dir", str(source))
    listing = cli(env, "snapshot", "list", "--remote")
    assert "python" in listing.stdout and "qemu" in listing.stdout and "2 KiB" in listing.stdout
    cli(env, "snapshot", "download", "--lang", "python", "--data-dir", str(target))
    for name in ("vmstate", "memory", "metadata.json"):
        assert (target / "snapshots/qemu/python" / name).read_bytes() == (
            source / "snapshots/qemu/python" / name).read_bytes()


def test_errors_are_messages_and_exit_codes(env: dict[str, str], tmp_path: Path) -> None:
    missing = cli(env, "rootfs", "download", "--lang", "go", "--data-dir", str(tmp_path), expect=3)
    assert "rootfs for go@trixie not found" in missing.stderr  # nothing anywhere: the default release
    unknown = cli(env, "snapshot", "download", "--lang", "ruby2", "--data-dir", str(tmp_path), expect=3)
    assert "language not found: ruby2" in unknown.stderr
    bad_bucket = cli(env, "rootfs", "list", "--remote", "--bucket", "Not_A_Bucket", expect=2)
    assert "invalid bucket name 'Not_A_Bucket'" in bad_bucket.stderr
    store_settings = {"INFRA_OPERATOR_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_PROFILE"}
    unconfigured = {key: value for key, value in env.items() if key not in store_settings}
    assert "no object store is configured" in cli(unconfigured, "rootfs", "list", "--remote", expect=2).stderr
