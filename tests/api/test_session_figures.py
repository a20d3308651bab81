"""Matplotlib figures as a python cell's results, through real HTTP, on ``python-data``:
the image the install builds (numpy, pandas, scipy, matplotlib from Debian), so an
agent's first chart needs no setup."""

from __future__ import annotations

import base64

import httpx
import pytest
from conftest import DATA_DIR, require_images
from sessionkit import cell, session

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def plots(client: httpx.Client) -> httpx.Client:
    require_images("python-data")
    return client


def test_python_data_runs_like_python_with_its_scientific_stack(plots: httpx.Client) -> None:
    listed = {entry["name"]: entry for entry in plots.get("/api/v1/languages").json()["languages"]}
    assert listed["python-data"]["base"] == "python"
    sample = plots.get("/api/v1/languages/python-data").json()
    ran = plots.post("/api/v1/execute", json={"language": "python-data", "code": sample["sample"], "timeout": 120})
    assert ran.status_code == 200 and ran.json()["stdout"] == sample["expected_output"], ran.text


@pytest.mark.parametrize("backend", ["jail", "qemu"])
def test_each_figure_a_cell_draws_is_a_png_result(plots: httpx.Client, backend: str) -> None:
    found = next(entry for entry in plots.get("/health").json()["backends"] if entry["name"] == backend)
    if not found["usable"] or (backend == "qemu" and not (DATA_DIR / "kernels" / "kernel.json").exists()):
        why = "; ".join(found["missing"]) or f"no guest kernel in {DATA_DIR}"
        print(f"skipping {backend}: {why}")
        pytest.skip(f"{backend} cannot run here: {why}")
    with session(plots, "python-data", memory_mb=1024, backend=backend) as sid:
        cell(plots, sid, "import matplotlib.pyplot as plt\nimport pandas as pd\nxs = list(range(10))", timeout=120)
        drawn = cell(plots, sid, "pd.Series(xs).pow(2).plot()\nplt.figure()\nplt.bar(xs, xs)\nplt.show()")
        assert drawn["exit_code"] == 0 and drawn["stderr"] == "", drawn["stderr"]
        images = [entry for entry in drawn["results"] if entry["type"] == "image/png"]
        assert len(images) == 2
        assert all(base64.b64decode(entry["data"]).startswith(PNG) for entry in images)
        after = cell(plots, sid, "len(xs)")
        assert after["results"] == [{"type": "text", "text": "10", "data": None}]  # shown figures are closed
