"""Every endpoint of api-contract.md: paths, statuses, shapes and error bodies."""

from __future__ import annotations

import httpx
import pytest

from infra_operator import __version__


def test_health(client: httpx.Client) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["version"] == __version__
    assert body["backend"] == "jail"
    assert {b["name"] for b in body["backends"]} >= {"jail"}


def test_languages_list(client: httpx.Client) -> None:
    body = client.get("/api/v1/languages").json()
    assert body["count"] == len(body["languages"])
    by_name = {entry["name"]: entry for entry in body["languages"]}
    assert by_name["python"]["extension"] == ".py"
    assert {"python", "nodejs", "go", "rust"} <= set(by_name)


def test_language_details(client: httpx.Client) -> None:
    response = client.get("/api/v1/languages/go")
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "go"
    assert body["extension"] == ".go"
    assert body["compiled"] is True
    assert "rootfs" in body and "exists" in body["rootfs"]
    assert "snapshot" in body and "exists" in body["snapshot"]
    assert client.get("/api/v1/languages/golang").json()["name"] == "go"


def test_unknown_language_is_404(client: httpx.Client) -> None:
    response = client.get("/api/v1/languages/ruby2")
    assert response.status_code == 404
    assert response.json() == {"error": "language not found: ruby2"}
    response = client.post("/api/v1/execute", json={"language": "ruby2", "code": "x"})
    assert response.status_code == 404
    assert response.json() == {"error": "language not found: ruby2"}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "malformed JSON"),
        (b'{"language": "python"}', "code"),
        (b'{"code": "print(1)"}', "language"),
        (b'{"language": "python", "code": 5}', "code"),
        (b'{"language": "python", "code": "print(1)", "timeout": "ten"}', "timeout"),
        (b'{"language": "python", "code": "print(1)", "timeout": -1}', "timeout must be between"),
        (b'{"language": "python", "code": "print(1)", "timeout": 100000}', "timeout must be between"),
        (b'[]', "body"),
    ],
)
def test_bad_execute_requests_are_400(client: httpx.Client, body: bytes, fragment: str) -> None:
    response = client.post("/api/v1/execute", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert isinstance(error, str) and fragment in error
    assert "Traceback" not in response.text


def test_unknown_path_is_404_json(client: httpx.Client) -> None:
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert "error" in response.json()


def test_rootfs_list(client: httpx.Client) -> None:
    body = client.get("/api/v1/rootfs").json()
    entries = {entry["language"]: entry for entry in body["rootfs"]}
    assert "python" in entries
    assert entries["python"]["size"] > 0
    # One entry per release: Debian 12's at the path every image had before releases; squashfs
    # when built by this release, ext4 when built by one before, and still listed.
    found = {entry["suite"]: entry for entry in body["rootfs"] if entry["language"] == "python"}
    for suite, entry in found.items():
        assert entry["format"] in ("squashfs", "ext4")
        name = "python" if suite == "bookworm" else f"python@{suite}"
        assert entry["path"].endswith(f"rootfs-{name}.{entry['format']}"), entry


def test_rootfs_create_unknown_language(client: httpx.Client) -> None:
    response = client.post("/api/v1/rootfs", json={"language": "ruby2"})
    assert response.status_code == 404


def test_rootfs_create_bad_size(client: httpx.Client) -> None:
    response = client.post("/api/v1/rootfs", json={"language": "python", "size_mb": -5})
    assert response.status_code == 400


def test_snapshots_list_and_refusal_on_jail(client: httpx.Client) -> None:
    body = client.get("/api/v1/snapshots").json()
    assert isinstance(body["snapshots"], list)
    for entry in body["snapshots"]:
        assert {"language", "vmstate_size", "mem_size", "backend"} <= set(entry)
    response = client.post("/api/v1/snapshots", json={"language": "python", "mem_mb": 512, "vcpus": 1,
                                                      "backend": "jail"})
    assert response.status_code == 400
    assert "cannot make snapshots" in response.json()["error"]


def test_snapshot_for_an_unknown_language_is_404(client: httpx.Client) -> None:
    response = client.post("/api/v1/snapshots", json={"language": "ruby2", "mem_mb": 512, "vcpus": 1})
    assert response.status_code == 404
