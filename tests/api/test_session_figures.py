"""Matplotlib figures as a python cell's results, through real HTTP.

Until the `python-data` image exists, this builds its own: the python image with Debian's
``python3-matplotlib``, once, in the tests' cache folder (``INFRA_OPERATOR_TEST_CACHE``),
served by a server of its own over that folder."""

from __future__ import annotations

import base64
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import DATA_DIR, Server, require_images, start_server, stop_server
from sessionkit import cell, session

from infra_operator.config import Settings
from infra_operator.errors import OperatorError
from infra_operator.images import RootfsStore, build_rootfs
from infra_operator.languages import Catalog

PLOT_DATA = Path(os.environ.get("INFRA_OPERATOR_TEST_CACHE", "/var/tmp/infra-operator-tests")) / "python-matplotlib"
PNG = b"\x89PNG\r\n\x1a\n"


def _image_with_matplotlib() -> None:
    store = RootfsStore(PLOT_DATA / "images")
    if store.find("python") is not None:
        return
    settings = Settings()
    language = dataclasses.replace(Catalog.load().get("python"), packages=("python3-matplotlib",))
    try:
        build_rootfs(language, store, DATA_DIR / "cache", settings.debian_sources, settings.debian_suite,
                     progress=lambda line: print(f"python+matplotlib image: {line}"))
    except OperatorError as exc:
        print(f"skipping: cannot build a python image with matplotlib: {exc.message}")
        pytest.skip(f"cannot build a python image with matplotlib: {exc.message}")


@pytest.fixture(scope="module")
def plots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    require_images("python")
    _image_with_matplotlib()
    server: Server = start_server(tmp_path_factory.mktemp("plots"), env={
        "INFRA_OPERATOR_DATA_DIR": str(PLOT_DATA), "INFRA_OPERATOR_PACKAGE_CACHE_DIR": str(DATA_DIR / "cache")})
    try:
        with server.client() as client:
            yield client
    finally:
        stop_server(server)


def test_each_figure_a_cell_draws_is_a_png_result(plots: httpx.Client) -> None:
    with session(plots, memory_mb=1024) as sid:
        cell(plots, sid, "import matplotlib.pyplot as plt\nxs = list(range(10))", timeout=120)
        drawn = cell(plots, sid, "plt.plot(xs, [x * x for x in xs])\nplt.figure()\nplt.bar(xs, xs)\nplt.show()")
        assert drawn["exit_code"] == 0 and drawn["stderr"] == "", drawn["stderr"]
        images = [entry for entry in drawn["results"] if entry["type"] == "image/png"]
        assert len(images) == 2
        assert all(base64.b64decode(entry["data"]).startswith(PNG) for entry in images)
        after = cell(plots, sid, "len(xs)")
        assert after["results"] == [{"type": "text", "text": "10", "data": None}]  # shown figures are closed
