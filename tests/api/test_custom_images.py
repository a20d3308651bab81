"""Custom images through real HTTP and the real command: a new language on a catalog one,
with pip and npm packages installed at build time, imported from docker archives,
listed, run, kept across a restart, deleted; bad input refused with a 400.

Each test has a data folder of its own (so nothing it builds lands among the shared
images), sharing the package cache."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from archives import docker_save, file, folder, layer, oci_layout
from conftest import DATA_DIR, Server, require_images, start_server, stop_server, wait_for_job
from sessionkit import cell, session

from infra_operator.images import RootfsStore

CACHE = {"INFRA_OPERATOR_PACKAGE_CACHE_DIR": str(DATA_DIR / "cache")}


def own_env(data_dir: Path) -> dict[str, str]:
    return {"INFRA_OPERATOR_DATA_DIR": str(data_dir), **CACHE}


@contextmanager
def serving(tmp: Path, data_dir: Path) -> Iterator[httpx.Client]:
    server: Server = start_server(tmp, env=own_env(data_dir))
    try:
        with server.client(timeout=300) as client:
            yield client
    finally:
        stop_server(server)


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, **own_env(data_dir), "COLUMNS": "300"}
    return subprocess.run([sys.executable, "-m", "infra_operator", *args], capture_output=True, text=True,
                          env=environment, timeout=900)


def listed(client: httpx.Client) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in client.get("/api/v1/languages").json()["languages"]}


def run(client: httpx.Client, language: str, code: str) -> dict[str, Any]:
    answer = client.post("/api/v1/execute", json={"language": language, "code": code, "timeout": 60})
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


BAD_REQUESTS: list[tuple[dict[str, Any], str]] = [
    ({"language": "mine", "base": "cobol-2000"}, "unknown base language 'cobol-2000'"),
    ({"language": "python", "base": "python"}, "is taken by the catalog's python"),
    ({"language": "py", "base": "python"}, "is taken by the catalog's python"),
    ({"language": "Mine Two", "base": "python"}, "bad language name"),
    ({"language": "../etc", "base": "python"}, "bad language name"),
    ({"language": "mine", "base": "python", "packages": {"pip": ["--index-url=http://evil.example/"]}},
     "bad pip package name"),
    ({"language": "mine", "base": "python", "packages": {"pip": ["six; rm -rf /"]}}, "bad pip package name"),
    ({"language": "mine", "base": "python", "packages": {"pip": ["git+https://github.com/x/y"]}},
     "bad pip package name"),
    ({"language": "mine", "base": "nodejs", "packages": {"npm": ["-g"]}}, "bad npm package name"),
    ({"language": "mine", "base": "nodejs", "packages": {"npm": ["left-pad@file:../../etc"]}}, "bad npm package name"),
    ({"language": "mine", "base": "nodejs", "packages": {"npm": ["Left-Pad"]}}, "bad npm package name"),
    ({"language": "mine", "base": "python", "packages": {"debian": ["-oAPT::Get=1"]}}, "bad debian package name"),
    ({"language": "mine", "base": "python", "packages": {"debian": ["curl,wget"]}}, "bad debian package name"),
    ({"language": "mine", "packages": {"debian": ["curl"]}}, "packages need a base"),
    ({"language": "mine", "base": "python", "packages": {"apt": ["curl"]}}, "apt"),
]


def test_bad_input_is_a_clear_400_and_builds_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with serving(tmp_path, data_dir) as client:
        for body, message in BAD_REQUESTS:
            answer = client.post("/api/v1/rootfs", json=body)
            assert answer.status_code == 400, (body, answer.text)
            assert message in answer.json()["error"], (body, answer.json())
        assert client.get("/api/v1/jobs").json()["jobs"] == []
        refused = client.delete("/api/v1/languages/python")
        assert refused.status_code == 400 and "only custom languages can be deleted" in refused.json()["error"]
        assert client.delete("/api/v1/languages/nothing-here").status_code == 404
    bad = cli(data_dir, "rootfs", "create", "--lang", "mine", "--base", "python", "--pip", "--pre")
    assert bad.returncode == 2 and "bad pip package name: '--pre'" in bad.stderr, bad.stderr
    alone = cli(data_dir, "rootfs", "create", "--lang", "python", "--npm", "left-pad")
    assert alone.returncode == 2 and "need --base" in alone.stderr, alone.stderr
    assert not (data_dir / "languages").exists()


def test_pip_and_npm_packages_are_installed_at_build_time(tmp_path: Path) -> None:
    require_images("python", "nodejs")  # their packages are in the shared cache, so these builds stay quick
    data_dir = tmp_path / "data"
    suffix = uuid.uuid4().hex[:6]
    python_name, node_name = f"py-six-{suffix}", f"node-pad-{suffix}"
    with serving(tmp_path, data_dir) as client:
        started = client.post("/api/v1/rootfs", json={"language": python_name, "base": "python",
                                                       "packages": {"pip": ["six==1.16.0"]}})
        assert started.json()["message"] == "rootfs creation started" and started.json()["language"] == python_name
        job = wait_for_job(client, started, 900)
        assert job["state"] == "succeeded", job
        assert "Successfully installed six-1.16.0" in " ".join(job["log"]), job["log"]
        node = wait_for_job(client, client.post("/api/v1/rootfs", json={
            "language": node_name, "base": "nodejs", "packages": {"npm": ["left-pad@1.3.0"]}}), 900)
        assert node["state"] == "succeeded", node

        languages = listed(client)
        assert languages[python_name]["base"] == "python" and languages[python_name]["rootfs_built"] is True
        assert languages[node_name]["base"] == "nodejs"
        details = client.get(f"/api/v1/languages/{python_name}").json()
        assert details["custom"]["packages"]["pip"] == ["six==1.16.0"]
        assert details["run_command"] == client.get("/api/v1/languages/python").json()["run_command"]

        pinned = run(client, python_name, "import six\nprint(six.__version__)")
        assert pinned["stdout"] == "1.16.0\n", pinned
        padded = run(client, node_name, "const leftPad = require('left-pad');\nconsole.log(leftPad('7', 3, '0'));")
        assert padded["stdout"] == "007\n", padded
        with session(client, python_name) as sid:  # a session runs in its base's kernel: names persist
            cell(client, sid, "import six\nversion = six.__version__")
            assert cell(client, sid, "version")["results"] == [{"type": "text", "text": "'1.16.0'", "data": None}]
        # The sandbox still has no network: what the image has was installed when it was built.
        offline = run(client, python_name, "import socket\ntry:\n    socket.create_connection(('pypi.org', 443), 3)\n"
                                           "    print('online')\nexcept OSError:\n    print('offline')")
        assert offline["stdout"] == "offline\n", offline

    with serving(tmp_path, data_dir) as client:  # a restart forgets nothing
        assert python_name in listed(client)
        assert run(client, node_name, "console.log(require('left-pad')('x', 2))")["stdout"] == " x\n"
        assert client.delete(f"/api/v1/languages/{node_name}").status_code == 204
        assert node_name not in listed(client) and python_name in listed(client)
        gone = client.post("/api/v1/execute", json={"language": node_name, "code": "1"})
        assert gone.status_code == 404 and f"language not found: {node_name}" in gone.json()["error"]
        assert not list((data_dir / "images").glob(f"rootfs-{node_name}.*")), "the image of any format is gone"
    deleted = cli(data_dir, "rootfs", "delete", "--lang", python_name)
    assert deleted.returncode == 0 and f"deleted {python_name}" in deleted.stdout, deleted.stderr
    assert list((data_dir / "languages").glob("*.json")) == []


@contextmanager
def python_tree() -> Iterator[Path]:
    """The python image's files, mounted read-only: the base layer of an image archive."""
    image = RootfsStore(DATA_DIR / "images").get("python").path  # ext4 or squashfs: mount finds which
    mountpoint = Path(f"/tmp/infra-operator-test-{uuid.uuid4().hex[:8]}")
    mountpoint.mkdir()
    mounted = subprocess.run(["mount", "-o", "loop,ro", str(image), str(mountpoint)], capture_output=True, text=True)
    if mounted.returncode != 0:
        mountpoint.rmdir()
        print(f"skipping: cannot loop-mount {image}: {mounted.stderr.strip()}")
        pytest.skip(f"cannot loop-mount {image}: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)
        mountpoint.rmdir()


@pytest.mark.parametrize("kind", ["docker-save", "oci"])
def test_from_docker_imports_an_archive_and_runs_it(tmp_path: Path, kind: str) -> None:
    require_images("python")
    data_dir = tmp_path / "data"
    with python_tree() as tree:
        def whole_tree(tar: tarfile.TarFile) -> None:
            # As docker exports an image: /dev empty (the device nodes mmdebstrap made would be refused).
            for entry in sorted(os.listdir(tree)):
                if entry != "lost+found":
                    tar.add(tree / entry, arcname=entry, recursive=entry != "dev")
        base = layer([], extra=whole_tree)
    added = layer([folder("srv"), folder("srv/data"), file("srv/data/hello.txt", "hello from a layer\n"),
                   file("etc/.wh.debian_version"), file("usr/share/.wh..wh..opq"), folder("usr/share/keep"),
                   file("usr/share/keep/it", "kept\n")])
    # The OCI layers uncompressed: gzip of the whole python tree in Python takes minutes here
    # (compressed layers are read in tests/images/test_docker_import.py).
    archive = (docker_save(tmp_path / "image.tar", [base, added]) if kind == "docker-save"
               else oci_layout(tmp_path / "image.tar", [base, added], compress=False))
    name = f"imported-{uuid.uuid4().hex[:6]}"
    made = cli(data_dir, "rootfs", "from-docker", "--lang", name, "--base", "python", "--image", str(archive))
    assert made.returncode == 0, made.stderr[-2000:]
    assert "applying layer 2 of 2" in made.stderr and f"rootfs-{name}.squashfs" in made.stdout
    with serving(tmp_path, data_dir) as client:
        assert listed(client)[name]["base"] == "python"
        assert client.get(f"/api/v1/languages/{name}").json()["custom"]["origin"] == "docker"
        code = ("import os\nprint(open('/srv/data/hello.txt').read(), end='')\n"
                "print(os.path.exists('/etc/debian_version'), sorted(os.listdir('/usr/share')))")
        result = run(client, name, code)
        assert result["stdout"] == "hello from a layer\nFalse ['keep']\n", result


def test_from_docker_without_python3_says_so(tmp_path: Path) -> None:
    archive = docker_save(tmp_path / "busybox.tar", [layer([folder("bin"), file("bin/sh", "#!", 0o755)])])
    made = cli(tmp_path / "data", "rootfs", "from-docker", "--lang", "no-python", "--base", "python",
               "--image", str(archive))
    assert made.returncode == 2, made.stderr
    assert "the image has no python3" in made.stderr, made.stderr
    hostile = docker_save(tmp_path / "hostile.tar", [layer([file("/etc/passwd", "x")])])
    refused = cli(tmp_path / "data", "rootfs", "from-docker", "--lang", "hostile", "--base", "python",
                  "--image", str(hostile))
    assert refused.returncode == 2 and "absolute path refused: /etc/passwd" in refused.stderr, refused.stderr
    assert not (tmp_path / "data" / "languages").exists()
