"""Several releases of a language through the real API on the jail: ``version`` picks the
image, and the program runs on that release's toolchain (python 3.11 / 3.13 / 3.14, go's
``slices`` package from 1.21, rust's let-else from 1.65). Each test needs the images it
names, built with ``infra.operator rootfs create --lang LANG --version SUITE``."""

from __future__ import annotations

import re
from typing import Any

import httpx
from conftest import require_images
from sessionkit import cell, session

SYS_VERSION = "import sys; print('%d.%d' % sys.version_info[:2])"
GO_SLICES = '''
package main

import (
	"fmt"
	"slices"
)

func main() {
	values := []int{3, 1, 2}
	slices.Sort(values)
	fmt.Println(values, slices.Contains(values, 2))
}
'''
RUST_LET_ELSE = '''
fn parse(text: &str) -> i32 {
    let Ok(value) = text.parse::<i32>() else { return -1 };
    value
}

fn main() {
    println!("{} {}", parse("41") + 1, parse("x"));
}
'''


def run(client: httpx.Client, language: str, code: str, **fields: object) -> dict[str, Any]:
    response = client.post("/api/v1/execute", json={"language": language, "code": code, **fields})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_python_3_11_3_13_and_3_14_each_run_on_their_own_interpreter(client: httpx.Client) -> None:
    require_images("python@trixie", "python", "python@sid")
    default = run(client, "python", SYS_VERSION)
    assert (default["stdout"], default["version"]) == ("3.13\n", "Python 3.13.5"), default
    assert run(client, "python", SYS_VERSION, version="*")["stdout"] == "3.13\n"
    assert run(client, "python", SYS_VERSION, version="3")["stdout"] == "3.13\n"  # the default wins a tie
    old = run(client, "python", SYS_VERSION, version="3.11")
    assert (old["stdout"], old["version"]) == ("3.11\n", "Python 3.11.2"), old
    new = run(client, "python", SYS_VERSION, version="3.14")
    assert new["stdout"] == "3.14\n" and new["version"].startswith("Python 3.14."), new
    assert run(client, "python", SYS_VERSION, version="sid")["stdout"] == "3.14\n"


def test_a_version_no_release_has_is_a_404_naming_those_there_are(client: httpx.Client) -> None:
    require_images("python@trixie", "python")
    for path, body in (("/api/v1/execute", {"language": "python", "code": "print(1)", "version": "2.7"}),
                       ("/api/v1/sessions", {"language": "python", "version": "2.7"}),
                       ("/api/v1/submissions", {"language": "python", "code": "print(1)", "version": "2.7"}),
                       ("/api/v1/rootfs", {"language": "python", "version": "2.7"}),
                       ("/api/v1/snapshots", {"language": "python", "version": "2.7", "backend": "qemu"})):
        response = client.post(path, json=body)
        assert response.status_code == 404, (path, response.text)
        error = response.json()["error"]
        assert error.startswith("version not found: python 2.7 (available: 3.13.5, 3.11.2"), (path, error)
    # Whole parts only: 3.1 is not a prefix of 3.13 or 3.11.
    assert client.post("/api/v1/execute", json={"language": "python", "code": "1", "version": "3.1"}).status_code == 404


def test_go_1_24_has_the_slices_package_and_go_1_19_has_not(client: httpx.Client) -> None:
    require_images("go@trixie", "go")
    new = run(client, "go", GO_SLICES, timeout=120)
    assert (new["stdout"], new["exit_code"]) == ("[1 2 3] true\n", 0), new
    assert new["version"].startswith("go version go1.24"), new["version"]
    old = run(client, "go", GO_SLICES, version="1.19", timeout=120)
    assert old["compile_exit_code"] not in (None, 0), old
    assert 'cannot find package "slices"' in old["compile_output"], old["compile_output"]


def test_rust_let_else_compiles_on_the_default_release_and_not_on_1_63(client: httpx.Client) -> None:
    require_images("rust@trixie", "rust")
    new = run(client, "rust", RUST_LET_ELSE, timeout=120)
    assert (new["stdout"], new["exit_code"]) == ("42 -1\n", 0), new
    old = run(client, "rust", RUST_LET_ELSE, version="1.63", timeout=120)
    assert old["compile_exit_code"] not in (None, 0) and old["version"].startswith("rustc 1.63"), old
    assert "let...else" in old["compile_output"] or "let-else" in old["compile_output"], old["compile_output"]


def test_sessions_and_submissions_keep_the_release_asked_for(client: httpx.Client) -> None:
    require_images("python@trixie", "python", "python@sid")
    for version, expected in (("3.11", "3.11"), ("3.14", "3.14"), (None, "3.13")):
        fields = {"version": version} if version else {}
        with session(client, "python", **fields) as session_id:
            shown = client.get(f"/api/v1/sessions/{session_id}").json()
            assert shown["version"].startswith(f"Python {expected}."), shown
            cell(client, session_id, "x = 41")  # cells keep names on every release's agent
            assert cell(client, session_id, "print(x + 1)")["stdout"] == "42\n"
            assert cell(client, session_id, SYS_VERSION)["stdout"] == f"{expected}\n"
    done = client.post("/api/v1/submissions?wait=true",
                       json={"language": "python", "code": SYS_VERSION, "version": "3.11"})
    assert done.status_code == 200 and done.json()["result"]["stdout"] == "3.11\n", done.text


def test_the_languages_list_their_releases_and_label_unstable(client: httpx.Client) -> None:
    require_images("python@trixie", "python", "python@sid")
    python = next(e for e in client.get("/api/v1/languages").json()["languages"] if e["name"] == "python")
    assert python["versions"][:2] == ["3.13.5", "3.11.2"] and python["versions"][2].startswith("3.14.")
    assert python["version"] == "Python 3.13.5"
    details = client.get("/api/v1/languages/python").json()
    assert details["versions"] == python["versions"]
    shown = [(r["suite"], r["label"], r["default"], r["unstable"], r["offered"]) for r in details["releases"]]
    assert shown == [("trixie", "Debian 13", True, False, True), ("bookworm", "Debian 12", False, False, True),
                     ("sid", "Debian unstable", False, True, True)]
    # ext4 or squashfs, whichever release of the service built them; Debian 12's at its old path.
    assert re.search(r"/rootfs-python@trixie\.(ext4|squashfs)$", details["releases"][0]["rootfs"]["path"])
    assert re.search(r"/rootfs-python\.(ext4|squashfs)$", details["releases"][1]["rootfs"]["path"])
    assert details["rootfs"] == details["releases"][0]["rootfs"]  # the top level is the default release
    listed = client.get("/api/v1/rootfs").json()["rootfs"]
    suites = {entry["suite"] for entry in listed if entry["language"] == "python"}
    assert {"trixie", "bookworm", "sid"} <= suites
