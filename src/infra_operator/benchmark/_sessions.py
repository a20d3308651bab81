"""``benchmark --sessions``: what a session costs, measured side by side in one run.

Against a real server over HTTP (the benchmark's own), on one backend:

- session create, from a pool of ready python sandboxes (the pool is warm before each sample);
- a python cell ``print(x + 1)`` in an open session, beside a bare ``python3 -c`` on the host
  (the cell pays no interpreter start: the ratio is the point);
- the PSS of one idle python session (its processes' proportional set size, shared pages
  divided among their sharers), and how many idle sessions the server holds at once: the
  given number is opened on a second server without a pool, and each one's share of the
  memory, the host's total memory divided by it, is the capacity this host would have;
- the delay from a program's write to the client's SSE event (the program prints its clock
  and the client compares with its own: the jail shares the host's clock, a VM's is set
  from it at each start);
- on a microVM backend, the time to pause a python session (``POST .../pause``: its VM saved
  to disk and stopped) and to resume it (the next call, a file listing, until it answers);
  none on the jail, which cannot pause.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from ..errors import OperatorError
from ._bench import HELPER_PYTHON, Stats
from ._targets import OverHttp

GOAL_CREATE_MS = 30.0
GOAL_CELL_RATIO = 0.5
GOAL_IDLE_PSS_MIB = 16.0
GOAL_IDLE_SESSIONS = 500
GOAL_SSE_DELAY_P95_MS = 50.0

Progress = Callable[[str], None]


@dataclass
class SessionReport:
    backend: str
    create_ms: Stats
    cell_ms: Stats
    bare_ms: Stats
    idle_pss_mib: float
    opened: int
    """Idle sessions held at once in the capacity run."""
    per_session_mib: float
    """Each one's share of the memory at that count."""
    capacity: int
    """The host's memory divided by ``per_session_mib``."""
    sse_delay_ms: Stats
    pause_ms: Stats | None = None
    """``POST .../pause`` of a python session that holds a name; None where sessions cannot pause."""
    resume_ms: Stats | None = None
    """The first call after a pause (a file listing), which resumes the session first."""

    @property
    def cell_ratio(self) -> float:
        return self.cell_ms.p50 / self.bare_ms.p50

    def goals(self) -> dict[str, bool]:
        return {
            f"create p50 <= {GOAL_CREATE_MS:g} ms": self.create_ms.p50 <= GOAL_CREATE_MS,
            f"cell p50 <= {GOAL_CELL_RATIO:g}x bare": self.cell_ratio <= GOAL_CELL_RATIO,
            f"idle PSS <= {GOAL_IDLE_PSS_MIB:g} MiB": self.idle_pss_mib <= GOAL_IDLE_PSS_MIB,
            f"idle sessions >= {GOAL_IDLE_SESSIONS}": min(self.opened, self.capacity) >= GOAL_IDLE_SESSIONS,
            f"SSE delay p95 <= {GOAL_SSE_DELAY_P95_MS:g} ms": self.sse_delay_ms.p95 <= GOAL_SSE_DELAY_P95_MS,
        }

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["cell_ratio"] = self.cell_ratio
        data["goals"] = self.goals()
        return data


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _checked(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    if response.status_code != status:
        raise OperatorError(f"the benchmark's server answered {response.status_code}: {response.text[:300]}")
    body: dict[str, Any] = response.json() if response.content else {}
    return body


def _open(client: httpx.Client) -> str:
    session_id: str = _checked(client.post("/api/v1/sessions", json={"language": "python"}), 201)["id"]
    return session_id


def _cell(client: httpx.Client, session_id: str, code: str) -> dict[str, Any]:
    return _checked(client.post(f"/api/v1/sessions/{session_id}/execute", json={"code": code}))


def _measure_create(target: OverHttp, client: httpx.Client, samples: int) -> Stats:
    times = []
    for _ in range(samples):
        target.wait_warm(["python"])  # "from a pool": each create finds a ready sandbox
        started = time.perf_counter()
        session_id = _open(client)
        times.append(_ms(started))
        _checked(client.delete(f"/api/v1/sessions/{session_id}"), 204)
    return Stats.of(times)


def _measure_cells(client: httpx.Client, samples: int) -> tuple[Stats, Stats]:
    session_id = _open(client)
    try:
        _cell(client, session_id, "x = 41")
        cells = []
        for _ in range(samples):
            started = time.perf_counter()
            if _cell(client, session_id, "print(x + 1)")["stdout"] != "42\n":
                raise OperatorError("the benchmark's cell printed something else")
            cells.append(_ms(started))
    finally:
        client.delete(f"/api/v1/sessions/{session_id}")
    bare = []
    for _ in range(samples):
        started = time.perf_counter()
        subprocess.run([HELPER_PYTHON, "-c", "x = 41\nprint(x + 1)"], check=True, capture_output=True)
        bare.append(_ms(started))
    return Stats.of(cells), Stats.of(bare)


def _measure_pause(client: httpx.Client, samples: int) -> tuple[Stats, Stats] | None:
    """Pause and resume of one python session, ``samples`` times; None when the backend cannot (409)."""
    session_id = _open(client)
    try:
        _cell(client, session_id, "x = 41")
        pauses: list[float] = []
        resumes: list[float] = []
        for _ in range(samples):
            started = time.perf_counter()
            response = client.post(f"/api/v1/sessions/{session_id}/pause")
            if response.status_code == 409 and not pauses:
                return None
            if _checked(response)["state"] != "paused":
                raise OperatorError("the benchmark's session did not pause")
            pauses.append(_ms(started))
            started = time.perf_counter()
            _checked(client.get(f"/api/v1/sessions/{session_id}/files"))
            resumes.append(_ms(started))
        if _cell(client, session_id, "print(x + 1)")["stdout"] != "42\n":
            raise OperatorError("the benchmark's session lost its names in a pause")
    finally:
        client.delete(f"/api/v1/sessions/{session_id}")
    return Stats.of(pauses), Stats.of(resumes)


def _descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, ValueError):
                continue
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _pss_kib(pids: set[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue  # gone meanwhile
    return total


def _measure_memory(backend: str, env: dict[str, str], count: int, show: Progress) -> tuple[float, float, int]:
    """One idle session's PSS, and each one's share with ``count`` open, on a server without a pool."""
    quiet = {**env, "INFRA_OPERATOR_POOL__SIZE": "0", "INFRA_OPERATOR_POOL__MAX_SIZE": "0",
             "INFRA_OPERATOR_SESSIONS__MAX_OPEN": str(count + 1)}
    target = OverHttp(backend, env=quiet)
    try:
        client = target._client()
        _checked(client.post("/api/v1/execute", json={"language": "python", "code": "pass"}))  # shared parts
        server = target.process.pid
        before = _pss_kib(_descendants(server))
        first = _open(client)
        _cell(client, first, "x = 1")
        one = (_pss_kib(_descendants(server)) - before) / 1024
        show(f"one idle session: {one:.1f} MiB PSS; opening {count}")
        for index in range(1, count):
            _cell(client, _open(client), "x = 1")
            if index % 100 == 0:
                show(f"{index} idle sessions open")
        share = (_pss_kib(_descendants(server)) - before) / 1024 / count
        return one, share, count
    finally:
        target.close()


def _measure_sse(client: httpx.Client, samples: int) -> Stats:
    code = f"import time\nfor _ in range({samples}):\n    print(repr(time.time()), flush=True)\n    time.sleep(0.05)\n"
    delays = []
    with client.stream("POST", "/api/v1/execute", json={"language": "python", "code": code},
                       headers={"accept": "text/event-stream"}) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and '"data"' in line:
                now = time.time()
                for written in json.loads(line[len("data: "):])["data"].split():
                    delays.append((now - float(written)) * 1000)
    if not delays:
        raise OperatorError("the SSE run delivered no output")
    return Stats.of(delays)


def _host_memory_mib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_session_benchmark(backend: str, env: dict[str, str], samples: int, count: int,
                          show: Progress) -> SessionReport:
    show(f"sessions on {backend}: starting a server with a python pool")
    target = OverHttp(backend, env={**env, "INFRA_OPERATOR_POOL__PREWARM": '["python"]'})
    try:
        client = target._client()
        _checked(client.post("/api/v1/execute", json={"language": "python", "code": "pass"}))  # warm-up
        show("session create, from the pool")
        create = _measure_create(target, client, samples)
        show("a cell print(x + 1), beside a bare python3 -c")
        cells, bare = _measure_cells(client, samples)
        show("the delay from a write to its SSE event")
        sse = _measure_sse(client, samples)
        show("pause and resume of a session")
        paused = _measure_pause(client, samples)
    finally:
        target.close()
    one, share, opened = _measure_memory(backend, env, count, show)
    capacity = int(_host_memory_mib() / share) if share > 0 else 0
    return SessionReport(backend=backend, create_ms=create, cell_ms=cells, bare_ms=bare, idle_pss_mib=round(one, 2),
                         opened=opened, per_session_mib=round(share, 2), capacity=capacity, sse_delay_ms=sse,
                         pause_ms=paused[0] if paused else None, resume_ms=paused[1] if paused else None)
