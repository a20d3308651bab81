"""Programs as people write them: every form the catalog records for a language of the CI
subset (Java with any public class name, bc without a final newline, ...) runs through
the real API and prints what the catalog expects."""

from __future__ import annotations

import httpx
import pytest
from conftest import require_images

from infra_operator.languages import Catalog, Form

FORMS = [(language.name, form) for language in Catalog.load() if language.ci for form in language.forms]


@pytest.mark.parametrize(("language", "form"), FORMS, ids=[f"{name}: {form.name}" for name, form in FORMS])
def test_a_form_runs_through_the_api(client: httpx.Client, language: str, form: Form) -> None:
    require_images(language)
    response = client.post("/api/v1/execute", json={"language": language, "code": form.code, "timeout": 60})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["stdout"], body["exit_code"]) == (form.expected, 0), body


def test_the_forms_the_issue_names_are_recorded() -> None:
    """Java with any public class name and bc without a final newline: the list itself is
    checked, so that the test above cannot pass by running nothing."""
    assert {"java", "bc"} <= {language for language, _ in FORMS}
