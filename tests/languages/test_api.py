"""The catalog through the HTTP API: every language listed with its aliases, family
and whether its image is built; details found by any alias."""

from __future__ import annotations

import httpx
from conftest import DATA_DIR

from infra_operator.languages import Catalog


def test_the_list_shows_every_language_with_aliases_and_build_state(client: httpx.Client) -> None:
    body = client.get("/api/v1/languages").json()
    catalog = Catalog.load()
    assert body["count"] == len(body["languages"]) == len(catalog)
    by_name = {entry["name"]: entry for entry in body["languages"]}
    for language in catalog:
        entry = by_name[language.name]
        assert entry["extension"] == language.extension
        assert entry["aliases"] == list(language.aliases)
        assert entry["family"] == language.family
        built = (DATA_DIR / "images" / f"rootfs-{language.name}.json").exists()
        assert entry["rootfs_built"] is built, language.name
        assert (entry["version"] is not None) is built, language.name


def test_details_by_alias(client: httpx.Client) -> None:
    aliases = {"c%23": "csharp", "c++": "cpp", "js": "nodejs", "golang": "go", "OBJC": "objective-c"}
    for alias, name in aliases.items():
        response = client.get(f"/api/v1/languages/{alias}")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["name"] == name
        assert "aliases" in body and "family" in body


def test_an_unknown_language_is_a_404(client: httpx.Client) -> None:
    response = client.get("/api/v1/languages/brainfork")
    assert response.status_code == 404
    assert response.json() == {"error": "language not found: brainfork"}
