"""``infra.operator shell``: an interactive prompt over a session.

Each input is a cell of one session (the same ``SessionManager`` the API serves), its
output printed as it streams and its result (a final value, a figure) after it. For
python an input goes on while it is incomplete (``codeop`` says so, as the interactive
interpreter does); in any language a line ending with a backslash goes on too. Ctrl-C
interrupts the running cell, Ctrl-D (or the end of stdin) ends the shell and deletes
the session. ``:pause`` pauses the session to disk (on a microVM backend): the next cell
resumes it. Prompts go to stderr, so stdout holds only what the cells printed.
"""

from __future__ import annotations

import codeop
import sys
import threading
from collections.abc import Callable
from typing import Annotated

import typer

from ..backends import Listener
from ..errors import OperatorError
from ..executor import CellResult, NewSession
from ._common import DataDir, Lang, Version, console, make_services


def _complete(language: str, lines: list[str]) -> bool:
    if lines[-1].endswith("\\"):
        return False
    if language != "python":
        return True
    source = "\n".join(lines)
    try:
        # Incomplete (None) until a blank line closes an indented block, as in the REPL.
        return codeop.compile_command(source, "<cell>", "exec") is not None and not (
            len(lines) > 1 and lines[-1].strip() != "")
    except (SyntaxError, OverflowError, ValueError):
        return True  # the kernel will say what is wrong with it


def _read_cell(language: str) -> str | None:
    lines: list[str] = []
    while True:
        console.print(">>> " if not lines else "... ", end="", highlight=False, markup=False)
        line = sys.stdin.readline()
        if not line:
            return "\n".join(lines) if lines else None
        lines.append(line.rstrip("\n"))
        if _complete(language, lines):
            return "\n".join(line.removesuffix("\\") for line in lines)


def _write(stream: str, data: bytes) -> None:
    target = sys.stdout if stream == "stdout" else sys.stderr
    target.buffer.write(data)
    target.flush()


def _run_cell(work: Callable[[], None], listener: Listener) -> None:
    """Run the cell in a thread and wait; Ctrl-C interrupts it (the session keeps its names
    where it can). An Event, not Thread.join: a join broken by KeyboardInterrupt may leave
    the thread looking finished while it runs."""
    finished = threading.Event()

    def run() -> None:
        try:
            work()
        finally:
            finished.set()

    threading.Thread(target=run, name="shell-cell", daemon=True).start()
    while True:
        try:
            if finished.wait(0.1):
                return
        except KeyboardInterrupt:
            listener.cancel.set()


def _show(cell: CellResult) -> None:
    for entry in cell.results:
        if entry["type"] == "text":
            sys.stdout.write(entry.get("text", "") + "\n")
        else:
            console.print(f"[{entry['type']}, {len(entry.get('data', '')) * 3 // 4} bytes]", highlight=False,
                          markup=False)
    sys.stdout.flush()
    notes = [name for name in ("timed_out", "oom_killed") if getattr(cell.result, name)]
    if cell.reset:
        notes.append("the session was reset: names defined before are gone")
    if cell.result.exit_code != 0 or notes:
        console.print(f"[exit {cell.result.exit_code}{'; ' + '; '.join(notes) if notes else ''}]", style="dim",
                      highlight=False, markup=False)


def shell(
    lang: Lang,
    backend: Annotated[str | None, typer.Option(help="auto, jail, qemu or firecracker")] = None,
    timeout: Annotated[int | None, typer.Option(help="seconds per cell")] = None,
    version: Version = None,
    data_dir: DataDir = None,
) -> None:
    """An interactive prompt over a session: each input runs as a cell, its output streaming."""
    services = make_services(data_dir)
    session_id: str | None = None
    try:
        view = services.sessions.create(NewSession(language=lang, backend=backend, version=version), owner="")
        session_id = view.id
        console.print(f"{view.language} {view.version} on {view.backend}, session {view.id}; "
                      ":pause to pause it, Ctrl-D to end", style="dim", highlight=False, markup=False)
        while (code := _read_cell(view.language)) is not None:
            if not code.strip():
                continue
            if code.strip() == ":pause":
                _pause(services.sessions.pause, view.id)
                continue
            listener = Listener(_write)
            done: list[CellResult | OperatorError] = []

            def work(code: str = code, listener: Listener = listener, done: list[CellResult | OperatorError] = done,
                     ) -> None:
                try:
                    done.append(services.sessions.execute(view.id, "", code, timeout=timeout, listener=listener))
                except OperatorError as exc:
                    done.append(exc)

            _run_cell(work, listener)
            outcome = done[0] if done else OperatorError("the cell ended without an answer")
            if isinstance(outcome, OperatorError):
                console.print(f"error: {outcome.message}", style="bold red", highlight=False, markup=False)
            else:
                _show(outcome)
    finally:
        if session_id is not None:
            # Deleted here, not left to close(): a paused session would outlive the shell on disk.
            try:
                services.sessions.delete(session_id, "")
            except OperatorError as exc:
                console.print(f"error: {exc.message}", style="bold red", highlight=False, markup=False)
        services.close()


def _pause(pause: Callable[[str, str], object], session_id: str) -> None:
    try:
        pause(session_id, "")
    except OperatorError as exc:
        console.print(f"error: {exc.message}", style="bold red", highlight=False, markup=False)
        return
    console.print("[paused to disk; the next cell resumes it]", style="dim", highlight=False, markup=False)
