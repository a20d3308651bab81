"""The languages whose toolchain comes from PyPI or npm (zig, Deno, Bun, upstream Node and Go)
or from Debian 13 (swift), through the real API: each runs its sample and one of its forms
in a sandbox, shows its pins in its details, and reports a compile error as a result."""

from __future__ import annotations

import httpx
import pytest
from conftest import require_images

from infra_operator.languages import Catalog

NEW_LANGUAGES = ("zig", "deno", "deno-typescript", "bun", "bun-typescript", "nodejs-upstream", "go-upstream", "swift")
CATALOG = Catalog.load()


def _run(client: httpx.Client, language: str, code: str) -> dict[str, object]:
    # A compile on a busy 2-core host (zig, swift, go from a copied cache) takes seconds.
    response = client.post("/api/v1/execute", json={"language": language, "code": code, "timeout": 120})
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


@pytest.mark.parametrize("language", NEW_LANGUAGES)
def test_the_sample_and_a_form_run_through_the_api(client: httpx.Client, language: str) -> None:
    require_images(language)
    entry = CATALOG.get(language)
    assert entry.forms, f"{language} has no form besides its sample"
    for code, expected in ((entry.sample, entry.expected), (entry.forms[0].code, entry.forms[0].expected)):
        body = _run(client, language, code)
        assert (body["stdout"], body["exit_code"]) == (expected, 0), body


@pytest.mark.parametrize("language", [name for name in NEW_LANGUAGES if CATALOG.get(name).registry])
def test_details_show_the_pins_of_the_catalog_and_of_the_image(client: httpx.Client, language: str) -> None:
    require_images(language)
    body = client.get(f"/api/v1/languages/{language}").json()
    registry = CATALOG.get(language).registry
    assert registry is not None
    assert body["registry"] == list(registry.pins) != []
    assert body["rootfs"]["registry"] == body["registry"]
    assert body["version"], body


@pytest.mark.parametrize(("language", "code"), [
    ("zig", "pub fn main() void { undefined_name(); }\n"),
    ("swift", "let x: Int = \"not a number\"\n"),
    ("go-upstream", "package main\n\nfunc main() { undefinedName() }\n"),
])
def test_a_compile_error_is_a_result_with_the_compiler_message(client: httpx.Client, language: str, code: str) -> None:
    require_images(language)
    body = _run(client, language, code)
    assert body["compile_exit_code"] not in (None, 0), body
    assert body["stdout"] == "", body
    assert "undefined" in str(body["compile_output"]) or "cannot convert" in str(body["compile_output"]), body


@pytest.mark.parametrize("language", ["deno", "bun"])
def test_a_program_that_reaches_for_the_network_fails_without_waiting(client: httpx.Client, language: str) -> None:
    """Deno is given no permission and Bun no auto-install: a fetch or an import of a package
    that is not there fails quickly, rather than prompting or hanging on a network the
    sandbox does not have."""
    require_images(language)
    code = {"deno": 'await fetch("https://example.org");\nconsole.log("fetched");\n',
            "bun": 'import chalk from "chalk";\nconsole.log("imported", typeof chalk);\n'}[language]
    body = _run(client, language, code)
    assert body["exit_code"] != 0 and not body["timed_out"], body
    assert "fetched" not in str(body["stdout"]) and "imported" not in str(body["stdout"]), body
