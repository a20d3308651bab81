"""Compressed images end to end, through the real API: a rootfs built now is a zstd
squashfs, the store says so and how big it is, and both the jail (a loop mount on the
host) and a QEMU microVM (the initramfs mounts the drive) run the language's sample
from it, read-only. An ext4 image from an earlier release keeps running next to it,
on the same new initramfs, without a rebuild."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import DATA_DIR, Server, require_images, start_server, stop_server, wait_for_job

from infra_operator.config import Settings
from infra_operator.images import build_kernel

pytestmark = pytest.mark.slow

# Prints the file system / is mounted from and what writing below /usr answers: the
# sandbox runs from the image itself, and it is read-only for the code inside.
PROBE = """import errno, os
root = [line.split() for line in open('/proc/self/mountinfo') if line.split()[4] == '/'][-1]
fstype = root[root.index('-') + 1]
try:
    open('/usr/lib/written-by-a-sandbox', 'w')
    print(fstype, 'writable')
except OSError as exc:
    print(fstype, errno.errorcode[exc.errno])
"""
# The same as PROBE's first line, in bash alone (the image has no awk): the last mount on /.
ROOT_FSTYPE_IN_BASH = """while read -r -a f; do
  [ "${f[4]}" = / ] || continue
  for ((i = 6; i < ${#f[@]}; i++)); do [ "${f[i]}" = - ] && t=${f[i+1]}; done
done < /proc/self/mountinfo
echo "$t"
"""
LEGACY = "bash"
"""A language whose ext4 image, built by the release before, is taken from the shared store."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server over a data dir of its own, with a guest kernel built from this checkout
    (its initramfs must carry squashfs) and, hard-linked from the shared store, one old
    ext4 image with its record as that release wrote it."""
    require_images(LEGACY)
    if shutil.which("qemu-system-x86_64") is None or shutil.which("mksquashfs") is None:
        missing = [tool for tool in ("qemu-system-x86_64", "mksquashfs") if shutil.which(tool) is None]
        print(f"skipping: {', '.join(missing)} not installed")
        pytest.skip(f"{', '.join(missing)} not installed (apt-get install qemu-system-x86 squashfs-tools)")
    root = tmp_path_factory.mktemp("squashfs")
    data = root / "data"
    (data / "images").mkdir(parents=True)
    for suffix in ("ext4", "json"):
        name = f"rootfs-{LEGACY}.{suffix}"
        os.link(DATA_DIR / "images" / name, data / "images" / name)
    cache = DATA_DIR / "cache"
    build_kernel(Settings(data_dir=data, package_cache_dir=cache), lambda line: print(f"kernel: {line}"))
    running = start_server(root, env={"INFRA_OPERATOR_DATA_DIR": str(data),
                                      "INFRA_OPERATOR_PACKAGE_CACHE_DIR": str(cache)})
    try:
        yield running
    finally:
        stop_server(running)


@pytest.fixture(scope="module")
def api(server: Server) -> Iterator[httpx.Client]:
    with server.client(timeout=300) as client:
        yield client


@pytest.fixture(scope="module")
def python_image(api: httpx.Client) -> dict[str, Any]:
    """The python image, built through the API as every new image is: no size asked for."""
    job = wait_for_job(api, api.post("/api/v1/rootfs", json={"language": "python"}), seconds=900)
    assert job["state"] == "succeeded", job
    [entry] = [e for e in api.get("/api/v1/rootfs").json()["rootfs"] if e["language"] == "python"]
    return entry  # type: ignore[no-any-return]


def execute(api: httpx.Client, language: str, code: str, backend: str) -> dict[str, Any]:
    response = api.post("/api/v1/execute", json={"language": language, "code": code, "backend": backend,
                                                 "timeout": 120})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["backend"] == backend
    return body


def test_a_new_build_is_a_compressed_squashfs_and_the_store_says_so(python_image: dict[str, Any]) -> None:
    image = Path(python_image["path"])
    assert python_image["format"] == "squashfs"
    # The default release's (Debian 13): stored under python@trixie, a release of its own.
    assert python_image["image"] == "python@trixie" and image.name == "rootfs-python@trixie.squashfs"
    assert image.read_bytes()[:4] == b"hsqs"
    assert python_image["size"] == image.stat().st_size
    record = image.with_suffix(".json")
    tree_bytes = int(json.loads(record.read_text())["tree_bytes"])
    # The ext4 image of the same tree is about 1.7 times the tree (sparse, 1.25x plus 64 MiB):
    # compression must at least halve the tree itself.
    assert python_image["size"] < tree_bytes / 2, (python_image["size"], tree_bytes)


@pytest.mark.parametrize("backend", ["jail", "qemu"])
def test_the_sample_runs_from_the_squashfs_image_read_only(
        api: httpx.Client, python_image: dict[str, Any], backend: str) -> None:
    details = api.get("/api/v1/languages/python").json()
    sample = execute(api, "python", details["sample"], backend)
    assert (sample["exit_code"], sample["stdout"].strip()) == (0, details["expected_output"].strip()), sample
    probe = execute(api, "python", PROBE, backend)
    assert (probe["exit_code"], probe["stdout"]) == (0, "squashfs EROFS\n"), probe


@pytest.mark.parametrize("backend", ["jail", "qemu"])
def test_an_ext4_image_of_the_release_before_still_runs(api: httpx.Client, backend: str) -> None:
    [entry] = [e for e in api.get("/api/v1/rootfs").json()["rootfs"] if e["language"] == LEGACY]
    assert entry["format"] == "ext4" and entry["path"].endswith(f"rootfs-{LEGACY}.ext4")
    details = api.get(f"/api/v1/languages/{LEGACY}").json()
    result = execute(api, LEGACY, details["sample"], backend)
    assert (result["exit_code"], result["stdout"].strip()) == (0, details["expected_output"].strip()), result
    mounted = execute(api, LEGACY, ROOT_FSTYPE_IN_BASH, backend)
    assert mounted["stdout"] == "ext4\n", mounted
