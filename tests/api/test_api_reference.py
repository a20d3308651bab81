"""docs/api.md, the user-facing reference, in step with the server and the command: every
operation of the server's OpenAPI document has a section naming its parameters, request
fields, answer fields and statuses; every command has a section naming its options; and
the page names no path, operation or command that does not exist. An endpoint or a command
added without its documentation fails here."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer

from infra_operator.cli import app

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# Served by FastAPI itself, outside the document.
SERVED_OUTSIDE_THE_DOCUMENT = ("/openapi.json", "/docs", "/redoc")
URL_PATH = re.compile(r"(?<![\w/.-])(?:/api/v\d+(?:/[\w{}.-]+)*|/health|/openapi\.json)")


def sections() -> dict[str, str]:
    """The page's sections by heading, each up to the next heading."""
    parts = re.split(r"^#{2,4} (.+)$", DOC.read_text(), flags=re.MULTILINE)
    return {heading.strip(): body for heading, body in zip(parts[1::2], parts[2::2], strict=True)}


def names(text: str) -> set[str]:
    return set(re.findall(r"`([^`\n]+)`", text))


@pytest.fixture(scope="module")
def document(client: httpx.Client) -> dict[str, Any]:
    served: dict[str, Any] = client.get("/openapi.json").json()
    return served


def operations(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield f"{method.upper()} {path}", operation


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        found: dict[str, Any] = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
        return found
    return schema


def fields(document: dict[str, Any], schema: dict[str, Any], nested: bool = True) -> set[str]:
    """The property names of ``schema``, through references and unions; with ``nested``, also
    those of the models in it (list items, objects in fields)."""
    schema = resolve(document, schema)
    found: set[str] = set()
    for part in [*schema.get("anyOf", []), *schema.get("allOf", []), *schema.get("oneOf", [])]:
        found |= fields(document, part, nested)
    if nested and isinstance(schema.get("items"), dict):
        found |= fields(document, schema["items"])
    for name, value in schema.get("properties", {}).items():
        found |= {name} | (fields(document, value) if nested else set())
    return found


def test_every_operation_has_a_section_and_every_section_an_operation(document: dict[str, Any]) -> None:
    served = {name for name, _ in operations(document)}
    documented = {heading for heading in sections() if heading.split(" ")[0] in METHODS}
    assert sorted(served - documented) == [], "operations the reference does not document"
    assert sorted(documented - served) == [], "sections for operations the server does not have"


def test_each_section_names_the_fields_and_statuses_of_its_operation(document: dict[str, Any]) -> None:
    """Parameters, request fields and the answer's own fields in the operation's section; the
    fields of models the answer holds (a job, a list's entries) anywhere on the page, as a
    model shared by several answers is described once."""
    text = sections()
    page = names(DOC.read_text())
    for name, operation in operations(document):
        section = text[name]
        wanted = {parameter["name"] for parameter in operation.get("parameters", [])}
        held: set[str] = set()
        for content in operation.get("requestBody", {}).get("content", {}).values():
            wanted |= fields(document, content["schema"])
        for status, response in operation["responses"].items():
            if status.startswith("2"):
                assert status in section, f"{name}: its success status {status}"
                for content in response.get("content", {}).values():
                    if "schema" not in content:
                        continue  # a text answer (Prometheus's format) has no fields
                    wanted |= fields(document, content["schema"], nested=False)
                    held |= fields(document, content["schema"])
        assert sorted(wanted - names(section)) == [], f"{name}: fields its section does not name"
        assert sorted(held - page) == [], f"{name}: fields of its answer the page does not name"


def test_every_error_status_is_in_the_errors_table(document: dict[str, Any]) -> None:
    errors = sections()["Errors"]
    statuses = {status for _, operation in operations(document) for status in operation["responses"]
                if not status.startswith("2")}
    assert statuses, "the document lists error statuses"
    assert sorted(status for status in statuses if f"| {status} |" not in errors) == []
    assert "`error`" in errors


def test_the_reference_names_no_path_the_server_does_not_serve(document: dict[str, Any]) -> None:
    templates = [re.compile(re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(path)) + "$")
                 for path in [*document["paths"], *SERVED_OUTSIDE_THE_DOCUMENT]]
    mentioned = set(URL_PATH.findall(DOC.read_text()))
    assert {"/health", "/api/v1/execute", "/api/v1/jobs/{job_id}"} <= mentioned, "the pattern finds paths"
    assert sorted(path for path in mentioned if not any(template.match(path) for template in templates)) == []


def commands() -> dict[str, list[str]]:
    """Every command of ``infra.operator``, with its options."""
    found: dict[str, list[str]] = {}

    def walk(command: Any, words: list[str]) -> None:
        if hasattr(command, "list_commands"):
            context = typer.Context(command)
            for word in command.list_commands(context):
                walk(command.get_command(context, word), [*words, word])
            return
        found[" ".join(words)] = [option for parameter in command.params
                                  for option in [*parameter.opts, *parameter.secondary_opts]]

    walk(typer.main.get_command(app), ["infra.operator"])
    return found


def test_every_command_has_a_section_naming_its_options() -> None:
    text = sections()
    offered = commands()
    assert {"infra.operator run", "infra.operator rootfs create"} <= set(offered)
    documented = {heading for heading in text if heading.startswith("infra.operator")}
    assert sorted(set(offered) - documented) == [], "commands the reference does not document"
    assert sorted(documented - set(offered)) == [], "sections for commands that do not exist"
    for command, options in offered.items():
        assert sorted(set(options) - names(text[command])) == [], f"{command}: options its section does not name"
