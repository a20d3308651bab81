"""A paused session on disk: one folder per session under ``Settings.paused_sessions_dir``.

    <id>/owner          the pid (and its start time) of the server that holds the session
    <id>/session.json   what the manager needs to find the session again (this record)
    <id>/sandbox/       what the backend saved (``Sandbox.pause``); only the backend reads it

The record is written last, and atomically: a folder without one is a pause that never
finished (the server died during it), and its session was lost with that server. A folder
whose owner still runs is that server's, never taken or removed by another one started on
the same data directory (tests start several). Times are wall-clock epochs, since
monotonic time does not survive a restart.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._limits import ResolvedLimits

log = logging.getLogger(__name__)

RECORD_NAME = "session.json"
SANDBOX_NAME = "sandbox"
OWNER_NAME = "owner"
_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
"""What ``secrets.token_urlsafe`` makes: also safe as a folder name."""


@dataclass(frozen=True)
class PausedRecord:
    id: str
    owner: str
    """A digest of the API key (``api._deps.owner``), never the key."""
    language: str
    backend: str
    rootfs_sha256: str
    """The image the session ran on: a VM resumed over a rebuilt rootfs would read a changed disk."""
    limits: ResolvedLimits
    idle_timeout: int
    created_at: float
    last_used_at: float
    """When it was last called: it expires ``idle_timeout`` seconds after, paused or not."""


def folder(root: Path, session_id: str) -> Path:
    if not _ID.fullmatch(session_id):
        raise ValueError(f"not a session id: {session_id!r}")
    return root / session_id


def sandbox_dir(session_folder: Path) -> Path:
    return session_folder / SANDBOX_NAME


def write(session_folder: Path, record: PausedRecord) -> None:
    partial = session_folder / f".{RECORD_NAME}.partial"
    partial.write_text(json.dumps(dataclasses.asdict(record), indent=2, sort_keys=True) + "\n")
    os.replace(partial, session_folder / RECORD_NAME)


def read(session_folder: Path) -> PausedRecord:
    """Raises ``OSError`` or ``ValueError`` when the record is missing or unreadable."""
    data: dict[str, Any] = json.loads((session_folder / RECORD_NAME).read_text())
    try:
        limits = ResolvedLimits(**data.pop("limits"))
        record = PausedRecord(limits=limits, **data)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{session_folder / RECORD_NAME}: {exc}") from exc
    if record.id != session_folder.name:
        raise ValueError(f"{session_folder / RECORD_NAME} names session {record.id!r}")
    return record


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks: with the pid, it names one process (pids are reused)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def claim(session_folder: Path) -> None:
    """Mark the folder as this process's."""
    pid = os.getpid()
    (session_folder / OWNER_NAME).write_text(f"{pid} {_start_time(pid)}\n")


def held_by_another(session_folder: Path) -> bool:
    """Whether another process that still runs claimed the folder."""
    try:
        pid_text, started = (session_folder / OWNER_NAME).read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return False
    return pid != os.getpid() and _start_time(pid) == started


def scan(root: Path) -> list[Path]:
    """The session folders under ``root`` no running server holds; leftovers of unfinished
    pauses are removed."""
    found: list[Path] = []
    if not root.is_dir():
        return found
    for entry in sorted(root.iterdir()):
        if not entry.is_dir() or not _ID.fullmatch(entry.name) or held_by_another(entry):
            continue
        if not (entry / RECORD_NAME).is_file():
            log.warning("paused sessions: %s holds no record (a pause that never finished): removed", entry)
            remove(entry)
            continue
        found.append(entry)
    return found


def remove(session_folder: Path) -> None:
    shutil.rmtree(session_folder, ignore_errors=True)
