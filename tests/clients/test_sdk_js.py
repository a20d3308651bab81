"""The JavaScript SDK, from the same pytest run: Node's own test runner (``node --test``) on its
unit tests and, against this session's live servers, its live tests; its declarations through
``tsc``; and the package as a user gets it: ``npm pack``, installed from the tarball into an
empty folder, imported and used."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from conftest import Server, require_images

from .conftest import API_KEY, CLIENTS

JS = CLIENTS / "js"
NODE, NPM = shutil.which("node"), shutil.which("npm")
pytestmark = pytest.mark.skipif(not (NODE and NPM), reason="node and npm not found: scripts/install.sh installs them")


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "NO_COLOR": "1", **(env or {})})
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{output[-6000:]}"
    return output


def node_test(path: str, env: dict[str, str] | None = None) -> str:
    output = run([str(NODE), "--test", "--test-reporter=tap", path], JS, env)
    assert re.search(r"^# fail 0$", output, re.M) and re.search(r"^# pass [1-9]", output, re.M), output[-3000:]
    return output


def test_node_is_18_or_later() -> None:
    version = run([str(NODE), "--version"], JS).strip()
    assert int(version.lstrip("v").split(".")[0]) >= 18, version
    assert json.loads((JS / "package.json").read_text())["engines"]["node"] == ">=18"


def test_unit() -> None:
    node_test("test/unit.test.js")


def test_live(server: Server, keyed_server: Server) -> None:
    require_images("python", "nodejs")
    output = node_test("test/live.test.js", {"INFRA_OPERATOR_URL": server.url, "INFRA_OPERATOR_KEYED_URL": keyed_server.url,
                                             "INFRA_OPERATOR_KEY": API_KEY})
    assert re.search(r"^# skipped 0$", output, re.M), f"a live test was skipped:\n{output[-3000:]}"


def typescript() -> Path:
    """tsc from the package's pinned development dependencies (package-lock.json), installed once."""
    tsc = JS / "node_modules" / ".bin" / "tsc"
    if not tsc.exists():
        run([str(NPM), "ci", "--no-audit", "--no-fund"], JS)
    return tsc


def test_declarations_type_check() -> None:
    run([str(typescript()), "-p", "test/tsconfig.json"], JS)


CONSUMER = """
import { Client, NotFound, type ExecuteResult } from "infra-operator-client";
const client = new Client({ baseUrl: "__URL__" });
const result: ExecuteResult = await client.execute("nodejs", "console.log(2 ** 10)");
try {
  await client.execute("ruby2", "x");
} catch (error) {
  if (!(error instanceof NotFound) || error.status !== 404) throw error;
}
console.log(JSON.stringify(result.stdout));
"""


def test_npm_pack_installs_and_imports(server: Server, tmp_path: Path) -> None:
    """The tarball holds the package and nothing else; installed from it into an empty folder, a
    program imports it by name and runs code through it; a TypeScript user's file type-checks."""
    require_images("nodejs")
    packed = json.loads(run([str(NPM), "pack", "--json", "--pack-destination", str(tmp_path)], JS))[0]
    tarball = tmp_path / packed["filename"]
    with tarfile.open(tarball) as archive:
        assert sorted(archive.getnames()) == ["package/README.md", "package/index.d.ts", "package/index.js",
                                              "package/package.json"]
    user = tmp_path / "user"
    user.mkdir()
    (user / "package.json").write_text(json.dumps({"name": "user", "private": True, "type": "module"}))
    run([str(NPM), "install", "--no-audit", "--no-fund", "--offline", str(tarball)], user)
    consumer = CONSUMER.replace("__URL__", server.url)
    (user / "main.mjs").write_text(consumer.replace(", type ExecuteResult", "").replace(": ExecuteResult", ""))
    assert run([str(NODE), "main.mjs"], user).strip() == '"1024\\n"'
    (user / "main.mts").write_text(consumer)
    (user / "tsconfig.json").write_text(json.dumps({"compilerOptions": {
        "strict": True, "noEmit": True, "target": "ES2022", "module": "NodeNext", "moduleResolution": "NodeNext",
        "lib": ["ES2022", "DOM"], "types": []}, "files": ["main.mts"]}))
    run([str(typescript()), "-p", "tsconfig.json"], user)
