"""The on-disk record of a paused session (``executor._paused``): what a restarted server reads
to find the session again, and how it treats a pause that never finished."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from infra_operator.executor import _paused
from infra_operator.executor._limits import ResolvedLimits

LIMITS = ResolvedLimits(timeout_seconds=30, cpu_seconds=30, memory_mb=128, processes=64, output_kb=64, file_mb=8)


def _record(session_id: str = "AbCdEfGh_1234-xyz") -> _paused.PausedRecord:
    return _paused.PausedRecord(id=session_id, owner="0f" * 16, language="python", backend="qemu",
                                rootfs_sha256="ab" * 32, limits=LIMITS, idle_timeout=300, created_at=1.5e9,
                                last_used_at=1.5e9 + 10)


def test_a_record_reads_back_as_written(tmp_path: Path) -> None:
    folder = _paused.folder(tmp_path, "AbCdEfGh_1234-xyz")
    folder.mkdir()
    _paused.write(folder, _record())
    assert _paused.read(folder) == _record()
    assert sorted(p.name for p in folder.iterdir()) == ["session.json"], "a temporary file was left"


def test_a_folder_another_running_server_holds_is_neither_taken_nor_removed(tmp_path: Path) -> None:
    held = tmp_path / "AbCdEfGh_held"
    (held / "sandbox").mkdir(parents=True)  # mid-pause in that server: no record yet
    parent = os.getppid()  # a process that runs, and is not this one
    stat = Path(f"/proc/{parent}/stat").read_text()
    (held / "owner").write_text(f"{parent} {stat.rsplit(')', 1)[1].split()[19]}\n")
    assert _paused.scan(tmp_path) == [] and held.exists()
    _paused.claim(held)  # ours now: a pause that never finished here is a leftover to remove
    assert not _paused.held_by_another(held)
    (held / "owner").write_text("999999999 1\n")  # a server that is gone
    assert _paused.scan(tmp_path) == [] and not held.exists()


def test_a_record_naming_another_session_or_missing_a_field_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "AbCdEfGh_other"
    folder.mkdir()
    _paused.write(folder, _record())
    with pytest.raises(ValueError, match="names session"):
        _paused.read(folder)
    data = json.loads((folder / "session.json").read_text())
    del data["owner"]
    (folder / "session.json").write_text(json.dumps({**data, "id": folder.name}))
    with pytest.raises(ValueError, match="owner"):
        _paused.read(folder)


def test_scan_finds_recorded_sessions_and_removes_unfinished_pauses(tmp_path: Path) -> None:
    done = _paused.folder(tmp_path, "AbCdEfGh_done")
    done.mkdir()
    _paused.write(done, _record("AbCdEfGh_done"))
    unfinished = tmp_path / "AbCdEfGh_half"
    (unfinished / "sandbox").mkdir(parents=True)  # the server died while the VM was being saved
    stranger = tmp_path / "not a session"
    stranger.mkdir()
    assert _paused.scan(tmp_path) == [done]
    assert not unfinished.exists()
    assert stranger.exists(), "a folder that is no session's is not ours to remove"
    assert _paused.scan(tmp_path / "absent") == []


@pytest.mark.parametrize("session_id", ["../x", "a/b", "", "short", "x" * 65])
def test_a_session_folder_is_only_ever_under_the_root(tmp_path: Path, session_id: str) -> None:
    with pytest.raises(ValueError, match="not a session id"):
        _paused.folder(tmp_path, session_id)
