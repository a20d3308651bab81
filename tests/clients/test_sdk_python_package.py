"""The Python SDK as a user gets it: a wheel built from clients/python (in a copy, so the
checkout gets no build folders), holding the package and its py.typed marker, installed into
an empty folder, imported from there and used against the live server."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import Server, require_images

from .conftest import CLIENTS


def run(*command: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_wheel_installs_and_imports(server: Server, tmp_path: Path) -> None:
    require_images("python")
    source = tmp_path / "source"
    shutil.copytree(CLIENTS / "python", source, ignore=shutil.ignore_patterns(".*_cache", "build", "*.egg-info"))
    run(sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "--no-deps", "-w", str(tmp_path / "dist"),
        str(source), cwd=tmp_path)
    [wheel] = (tmp_path / "dist").glob("infra_operator_client-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = {name for name in archive.namelist() if not name.startswith("infra_operator_client-")}
    assert names == {f"infra_operator_client/{name}" for name in (
        "__init__.py", "_async_client.py", "_calls.py", "_client.py", "_common.py", "_exceptions.py", "_sse.py",
        "_types.py", "py.typed")}
    target = tmp_path / "installed"
    run(sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps", "--target",
        str(target), str(wheel), cwd=tmp_path)
    program = ("import infra_operator_client as sdk, sys; c = sdk.Client(sys.argv[1]); "
               "print(sdk.__file__); print(c.execute('python', 'print(2 ** 10)')['stdout'], end='')")
    printed = run(sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); {program}", server.url,
                  cwd=tmp_path)
    assert printed.splitlines() == [str(target / "infra_operator_client" / "__init__.py"), "1024"]
