"""The agent writes the user's files without following a link someone planted."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra_operator.guest import agent, b64encode

pytestmark = pytest.mark.unit


def test_a_planted_symlink_is_not_followed(tmp_path: Path) -> None:
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    outside.write_text("precious")
    (work / "main.py").symlink_to(outside)
    with pytest.raises(FileExistsError):
        agent._write_files(str(work), {"main.py": b64encode(b"print('pwned')")})
    assert outside.read_text() == "precious"
    reply = agent.handle(
        {
            "op": "execute",
            "files": {"main.py": b64encode(b"x")},
            "run": ["true"],
            "limits": {
                "wall_seconds": 5,
                "cpu_seconds": 5,
                "memory_bytes": 1 << 28,
                "processes": 16,
                "output_bytes": 1024,
                "file_bytes": 1 << 20,
            },
        },
        str(work),
    )
    assert reply["ok"] is False and "FileExistsError" in reply["error"]
    assert outside.read_text() == "precious"


@pytest.mark.parametrize("name", ["../escape.py", "/etc/x", "", ".", ".."])
def test_file_names_cannot_leave_the_work_dir(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError):
        agent._write_files(str(tmp_path), {name: b64encode(b"x")})
