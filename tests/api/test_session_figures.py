"""Matplotlib figures as a python cell's results, through real HTTP.

Until the `python-data` image exists, this builds its own: the python image with Debian's
``python3-matplotlib``, once, in the tests' cache folder (``INFRA_OPERATOR_TEST_CACHE``),
served by a server of its own over that folder."""

from __future__ import annotations

import base64
import dataclasses
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import DATA_DIR, Server, require_images, start_server, stop_server
from sessionkit import cell, session

from infra_operator.errors import OperatorError
from infra_operator.images import RootfsStore, build_rootfs
from infra_operator.languages import LEGACY_SUITE, Catalog, Release

PLOT_DATA = Path(os.environ.get("INFRA_OPERATOR_TEST_CACHE", "/var/tmp/infra-operator-tests")) / "python-matplotlib"
PNG = b"\x89PNG\r\n\x1a\n"


def _image_with_matplotlib() -> None:
    store = RootfsStore(PLOT_DATA / "images")
    if store.find("python") is not None:
        return
    catalog = Catalog.load()
    language = dataclasses.replace(catalog.get("python"), packages=("python3-matplotlib",))
    # Debian 12's release, stored under the plain name, which the test's own store then offers.
    release = Release(language="python", suite=catalog.plan.suites[LEGACY_SUITE], packages=language.packages)
    try:
        build_rootfs(language, release, store, DATA_DIR / "cache",
                     progress=lambda line: print(f"python+matplotlib image: {line}"))
    except OperatorError as exc:
        print(f"skipping: cannot build a python image with matplotlib: {exc.message}")
        pytest.skip(f"cannot build a python image with matplotlib: {exc.message}")


@pytest.fixture(scope="module")
def plots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    require_images("python")
    _image_with_matplotlib()
    # The shared guest kernel too, so a microVM can boot this image (it carries the agent).
    shutil.rmtree(PLOT_DATA / "kernels", ignore_errors=True)
    if (DATA_DIR / "kernels").is_dir():
        linked = subprocess.run(["cp", "-al", str(DATA_DIR / "kernels"), str(PLOT_DATA / "kernels")])
        if linked.returncode != 0:  # another filesystem: a copy will do
            shutil.rmtree(PLOT_DATA / "kernels", ignore_errors=True)
            shutil.copytree(DATA_DIR / "kernels", PLOT_DATA / "kernels", symlinks=True)
    server: Server = start_server(tmp_path_factory.mktemp("plots"), env={
        "INFRA_OPERATOR_DATA_DIR": str(PLOT_DATA), "INFRA_OPERATOR_PACKAGE_CACHE_DIR": str(DATA_DIR / "cache")})
    try:
        with server.client(timeout=600) as client:
            yield client
    finally:
        stop_server(server)


@pytest.mark.parametrize("backend", ["jail", "qemu"])
def test_each_figure_a_cell_draws_is_a_png_result(plots: httpx.Client, backend: str) -> None:
    found = next(entry for entry in plots.get("/health").json()["backends"] if entry["name"] == backend)
    if not found["usable"] or (backend == "qemu" and not (PLOT_DATA / "kernels" / "kernel.json").exists()):
        why = "; ".join(found["missing"]) or f"no guest kernel in {DATA_DIR}"
        print(f"skipping {backend}: {why}")
        pytest.skip(f"{backend} cannot run here: {why}")
    with session(plots, memory_mb=1024, backend=backend) as sid:
        cell(plots, sid, "import matplotlib.pyplot as plt\nxs = list(range(10))", timeout=120)
        drawn = cell(plots, sid, "plt.plot(xs, [x * x for x in xs])\nplt.figure()\nplt.bar(xs, xs)\nplt.show()")
        assert drawn["exit_code"] == 0 and drawn["stderr"] == "", drawn["stderr"]
        images = [entry for entry in drawn["results"] if entry["type"] == "image/png"]
        assert len(images) == 2
        assert all(base64.b64decode(entry["data"]).startswith(PNG) for entry in images)
        after = cell(plots, sid, "len(xs)")
        assert after["results"] == [{"type": "text", "text": "10", "data": None}]  # shown figures are closed
