"""Measures the playground in Debian's Chromium (through Playwright) and can take its screenshot.

    python scripts/playground_benchmark.py [--runs 5] [--url URL] [--screenshot docs/playground.png]

Without --url it starts ``infra.operator api`` on a free port (python kept ready in the pool),
and stops it after. Each run opens the page in a fresh browser context (nothing cached) and
reads the page's own Performance API entries: first paint and first contentful paint, the
page ready (languages listed, editor filled: the page's ``ready`` mark), bytes over the wire
for that first load, and, after Run, the time from the click's ``run`` mark to the page's
``first-output`` mark (the first stdout text shown) and to the result. Prints the median of
each, and every run, as JSON. Measures; asserts nothing.

docs/playground.png was taken with --url to a server whose python image has matplotlib
(python-data has it: the install builds it),
so its cell draws a real figure; elsewhere the same cell just skips it.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "src" / "infra_operator" / "api" / "playground"
CHROMIUM = "/usr/bin/chromium"
PROGRAM = "print('hello from the playground')"
SHOWCASE = """import math, sys, time
for step in range(1, 4):
    print(f"step {step}: {2 ** (10 * step)}", flush=True)
    time.sleep(0.2)
print("a warning on stderr", file=sys.stderr)
try:  # a figure, on an image with matplotlib
    import matplotlib.pyplot as plt
    xs = [x / 10 for x in range(63)]
    plt.figure(figsize=(5, 2.2))
    plt.plot(xs, [math.sin(x) for x in xs])
except ImportError:
    pass
sum(range(10))
"""


@contextmanager
def server(url: str | None) -> Iterator[str]:
    if url:
        yield url.rstrip("/")
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "INFRA_OPERATOR_POOL__PREWARM": '["python"]'}
    process = subprocess.Popen([sys.executable, "-m", "infra_operator", "api", "--port", str(port)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=60)


def one_run(page: Page, base: str) -> dict[str, float]:
    page.goto(base + "/")
    expect(page.locator("#status")).to_have_text("ready", timeout=60_000)
    load: dict[str, Any] = page.evaluate("""() => {
        const paint = Object.fromEntries(performance.getEntriesByType('paint').map(e => [e.name, e.startTime]));
        const bytes = [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')]
            .reduce((sum, e) => sum + e.transferSize, 0);
        return {first_paint_ms: paint['first-paint'], first_contentful_paint_ms: paint['first-contentful-paint'],
                ready_ms: performance.getEntriesByName('ready')[0].startTime, first_load_kib: bytes / 1024};
    }""")
    page.locator(".cm-content").click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(PROGRAM)
    started = time.perf_counter()
    page.get_by_role("button", name="Run").click()
    expect(page.locator("#stdout")).to_have_text(PROGRAM[7:-2] + "\n", timeout=60_000)
    seen = time.perf_counter()
    expect(page.locator('#summary [data-field="exit_code"]')).to_have_text("0", timeout=60_000)
    marks: dict[str, float] = page.evaluate("""() => ({
        first_output_ms: performance.measure('a', 'run', 'first-output').duration})""")
    return {**load, **marks, "click_to_output_seen_ms": (seen - started) * 1000}


def bundle_size() -> dict[str, float]:
    files = [BUNDLE / "index.html", *sorted((BUNDLE / "bundle").glob("*.js"))]
    raw = sum(path.stat().st_size for path in files)
    compressed = sum(len(gzip.compress(path.read_bytes(), 9)) for path in files)
    return {"files": len(files), "raw_kib": round(raw / 1024, 1), "gzip_kib": round(compressed / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--url", help="a running server; default: start one")
    parser.add_argument("--screenshot", type=Path, help="save a screenshot of the page after a run here")
    options = parser.parse_args()
    runs = []
    with server(options.url) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        for _ in range(options.runs):
            context = browser.new_context(viewport={"width": 1280, "height": 720})
            runs.append(one_run(context.new_page(), base))
            context.close()
        if options.screenshot:
            context = browser.new_context(viewport={"width": 1280, "height": 800}, device_scale_factor=1)
            page = context.new_page()
            page.goto(base + "/")
            expect(page.locator("#status")).to_have_text("ready", timeout=60_000)
            page.get_by_label("keep session").check()
            page.locator(".cm-content").click()
            page.keyboard.press("Control+A")
            page.keyboard.insert_text(SHOWCASE)
            page.keyboard.press("Control+Enter")
            expect(page.locator('#summary [data-field="exit_code"]')).to_have_text("0", timeout=60_000)
            page.screenshot(path=str(options.screenshot))
            page.get_by_label("keep session").uncheck()
            expect(page.locator("#session")).to_have_text("")
            context.close()
        browser.close()
    medians = {name: round(statistics.median(run[name] for run in runs), 1) for name in runs[0]}
    print(json.dumps({"runs": options.runs, "median": medians, "bundle": bundle_size(),
                      "each": [{k: round(v, 1) for k, v in run.items()} for run in runs]}, indent=2))


if __name__ == "__main__":
    main()
