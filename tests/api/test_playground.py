"""The playground at ``GET /`` in a real headless Chromium (Debian's, driven by Playwright),
against a real server running real sandboxes: the language picker, Run and Ctrl+Enter, output
streaming in as the program writes it, the result's fields, a kept session with a figure, and
API keys. The page must fetch nothing from anywhere but the server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from agentkit import FIGURE_CELL
from conftest import Server, require_images, start_server, stop_server

playwright_sync = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the test extra)")
from playwright.sync_api import Browser, Page, Request, expect  # noqa: E402

PAGE_TIMEOUT_SECONDS = 10
"""Past the streaming test's 5 s sleep."""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of the module's own, so the sessions it sees are the page's."""
    require_images("python", "nodejs")
    # A short default time limit, so a page's run that spins shows its verdict within the test.
    running = start_server(tmp_path_factory.mktemp("playground"),
                           env={"INFRA_OPERATOR_LIMITS__TIMEOUT_SECONDS__DEFAULT": str(PAGE_TIMEOUT_SECONDS)})
    try:
        yield running
    finally:
        stop_server(running)


@pytest.fixture
def page(browser: Browser, site: Server) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    opened = context.new_page()
    requested: list[str] = []
    opened.on("request", lambda request: requested.append(request.url))
    violations: list[str] = []
    opened.on("console", lambda message: violations.append(message.text)
              if "Content Security Policy" in message.text else None)
    answer = opened.goto(site.url + "/")
    assert answer is not None and "default-src 'self'" in answer.headers["content-security-policy"]
    expect(opened.locator("#status")).to_have_text("ready")
    try:
        yield opened
    finally:
        context.close()
    foreign = [url for url in requested if not url.startswith((site.url + "/", "data:"))]
    assert foreign == [], "the page fetched something from elsewhere"
    assert violations == [], "the page broke its own Content-Security-Policy"


def type_code(page: Page, code: str) -> None:
    page.locator(".cm-content").click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(code)


def test_the_picker_lists_the_languages_and_the_release_the_server_reports(page: Page, site: Server) -> None:
    languages = httpx.get(f"{site.url}/api/v1/languages").json()["languages"]
    built = [entry["name"] for entry in languages if entry["rootfs_built"]]
    picker = page.get_by_label("Language")
    assert picker.locator("option:not([disabled])").all_inner_texts() == built
    assert len(picker.locator("option").all_inner_texts()) == len(languages)
    expect(picker).to_have_value("python")
    python = next(entry for entry in languages if entry["name"] == "python")
    # One option per release the server offers, the default first and marked so.
    releases = [f"{number} (default)" if index == 0 else number for index, number in enumerate(python["versions"])]
    expect(page.get_by_label("Release").locator("option")).to_have_text(releases)
    expect(page.locator(".cm-content")).to_have_text('print("Hello, World!")')
    expect(page.get_by_role("button", name="Run")).to_be_enabled()


def test_the_release_picked_is_the_one_that_runs(page: Page, site: Server) -> None:
    languages = httpx.get(f"{site.url}/api/v1/languages").json()["languages"]
    versions = next(entry for entry in languages if entry["name"] == "python")["versions"]
    if len(versions) < 2:
        pytest.skip("python has one release built here, so there is no other to pick: "
                    "`infra.operator rootfs create --lang python --version bookworm` builds one")
    default, other = versions[0], versions[-1]
    for label, version in ((other, other), (f"{default} (default)", default)):
        page.get_by_label("Release").select_option(label=label)
        type_code(page, "import sys\nprint('%d.%d' % sys.version_info[:2])")
        page.get_by_role("button", name="Run").click()
        expect(page.locator("#stdout")).to_have_text(".".join(version.split(".")[:2]) + "\n", timeout=60_000)
        expect(page.locator('#summary [data-field="version"]')).to_contain_text(version)


def test_output_streams_in_before_the_program_ends_then_the_result(page: Page) -> None:
    type_code(page, "import time\nprint('first', flush=True)\ntime.sleep(5)\nprint('second')\n")
    page.get_by_role("button", name="Run").click()
    expect(page.locator("#stdout")).to_have_text("first\n")
    assert page.locator("#summary dd").count() == 0, "the result came with the first output: nothing streamed"
    expect(page.locator("#stdout")).to_have_text("first\nsecond\n", timeout=60_000)
    expect(page.locator('#summary [data-field="exit_code"]')).to_have_text("0")
    expect(page.locator('#summary [data-field="verdict"]')).to_have_text("ok")
    expect(page.locator('#summary [data-field="exec_time"]')).to_have_text(re.compile(r"^\d+ms$"))
    expect(page.locator('#summary [data-field="load_time"]')).to_have_text(re.compile(r"^\d+ms$"))
    measured = page.evaluate("performance.measure('to-first-output', 'run', 'first-output').duration")
    assert measured > 0


def test_ctrl_enter_runs_and_stderr_and_the_exit_code_show(page: Page) -> None:
    type_code(page, "import sys\nprint('to out')\nprint('to err', file=sys.stderr)\nsys.exit(3)")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#stderr")).to_have_text("to err\n", timeout=60_000)
    expect(page.locator("#stdout")).to_have_text("to out\n")
    expect(page.locator('#summary [data-field="exit_code"]')).to_have_text("3")
    expect(page.locator('#summary [data-field="verdict"]')).to_have_text("exit 3")
    expect(page.locator("#status")).to_have_text("exit 3")


def test_another_language_runs_its_sample_and_a_timeout_is_a_verdict(page: Page) -> None:
    page.get_by_label("Language").select_option("nodejs")
    expect(page.locator(".cm-content")).to_contain_text("console.log")
    page.get_by_role("button", name="Run").click()
    expect(page.locator("#stdout")).to_have_text("Hello, World!\n", timeout=60_000)
    expect(page.locator('#summary [data-field="language"]')).to_have_text("nodejs")
    page.get_by_label("Language").select_option("python")
    expect(page.locator(".cm-content")).to_have_text('print("Hello, World!")')  # its code was kept
    type_code(page, "while True:\n    pass")
    page.get_by_role("button", name="Run").click()
    expect(page.locator('#summary [data-field="verdict"]')).to_have_text("time limit exceeded",
                                                                       timeout=(PAGE_TIMEOUT_SECONDS + 30) * 1000)
    expect(page.locator('#summary [data-field="timed_out"]')).to_have_text("true")


def test_keep_session_keeps_names_and_shows_figures(page: Page, site: Server) -> None:
    page.get_by_label("keep session").check()
    type_code(page, "x = 41")
    page.get_by_role("button", name="Run").click()
    expect(page.locator("#session")).to_contain_text("session ")
    expect(page.locator('#summary [data-field="exit_code"]')).to_have_text("0", timeout=60_000)
    type_code(page, "print(x + 1)\nx * 2")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#stdout")).to_have_text("42\n", timeout=60_000)
    expect(page.locator("#results pre.value")).to_have_text("82")
    type_code(page, FIGURE_CELL)
    page.keyboard.press("Control+Enter")
    figure = page.get_by_role("img", name="figure 1")
    expect(figure).to_be_visible(timeout=60_000)
    assert figure.evaluate("image => [image.complete, image.naturalWidth, image.naturalHeight]") == [True, 120, 80]
    sessions = httpx.get(f"{site.url}/api/v1/sessions").json()["sessions"]
    assert len(sessions) == 1 and sessions[0]["language"] == "python"
    page.get_by_label("keep session").uncheck()
    expect(page.locator("#session")).to_have_text("")
    with httpx.Client(base_url=site.url) as client:
        assert client.get(f"/api/v1/sessions/{sessions[0]['id']}").status_code == 404


@pytest.fixture(scope="module")
def keyed_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    require_images("python")
    running = start_server(tmp_path_factory.mktemp("keyed"), env={"INFRA_OPERATOR_API_KEYS": '["page-key"]'})
    try:
        yield running
    finally:
        stop_server(running)


def test_with_api_keys_the_page_asks_for_one_and_sends_it_as_bearer(browser: Browser, keyed_site: Server,
                                                                   tmp_path: Path) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        sent: list[Request] = []
        page.on("request", lambda request: sent.append(request) if "/api/v1/" in request.url else None)
        page.goto(keyed_site.url + "/")
        expect(page.locator("#status")).to_have_text(re.compile(r"^401: a valid API key is required"))
        expect(page.get_by_label("API key")).to_be_focused()
        page.get_by_label("API key").fill("page-key")
        page.get_by_label("API key").press("Enter")
        page.get_by_label("API key").blur()
        expect(page.locator("#status")).to_have_text("ready")
        page.get_by_role("button", name="Run").click()
        expect(page.locator("#stdout")).to_have_text("Hello, World!\n", timeout=60_000)
        assert sent[-1].headers.get("authorization") == "Bearer page-key"
        assert page.evaluate("localStorage.getItem('infra.operator.apiKey')") is None  # not asked to remember
        page.get_by_label("remember").check()
        assert page.evaluate("localStorage.getItem('infra.operator.apiKey')") == "page-key"
        page.reload()
        expect(page.locator("#status")).to_have_text("ready")
        expect(page.get_by_label("API key")).to_have_value("page-key")
    finally:
        context.close()
