"""Per-request limits: each out-of-range value is a 400 naming the range, and each
limit is really applied in the sandbox, with the result saying what happened."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from conftest import require_images

from infra_operator.config import Limits

# request field -> the server's allowed range for it
RANGES = {
    "timeout": Limits().timeout_seconds,
    "cpu_seconds": Limits().cpu_seconds,
    "memory_mb": Limits().memory_mb,
    "processes": Limits().processes,
    "output_kb": Limits().output_kb,
    "file_mb": Limits().file_mb,
}


def run(client: httpx.Client, code: str, **limits: object) -> dict[str, Any]:
    response = client.post("/api/v1/execute", json={"language": "python", "code": code, **limits})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize("field", list(RANGES))
@pytest.mark.parametrize("side", ["below", "above"])
def test_out_of_range_is_400_naming_the_range(client: httpx.Client, field: str, side: str) -> None:
    allowed = RANGES[field]
    value = allowed.minimum - 1 if side == "below" else allowed.maximum + 1
    response = client.post("/api/v1/execute", json={"language": "python", "code": "pass", field: value})
    assert response.status_code == 400, response.text
    assert response.json() == {
        "error": f"{field} must be between {allowed.minimum} and {allowed.maximum}, got {value}"
    }


@pytest.mark.parametrize("field", list(RANGES))
def test_mistyped_limit_is_400(client: httpx.Client, field: str) -> None:
    response = client.post("/api/v1/execute", json={"language": "python", "code": "pass", field: "many"})
    assert response.status_code == 400
    assert field in response.json()["error"]


@pytest.fixture
def _python() -> None:
    require_images("python")


@pytest.mark.usefixtures("_python")
class TestEnforced:
    def test_cpu_seconds_stops_a_busy_loop_before_the_wall_clock(self, client: httpx.Client) -> None:
        body = run(client, "while True:\n    pass\n", cpu_seconds=1, timeout=60)
        assert (body["signal"], body["timed_out"]) == ("SIGXCPU", False), body

    def test_memory_mb_is_per_request(self, client: httpx.Client) -> None:
        code = "block = bytearray(100 << 20)\nblock[::4096] = b'x' * len(block[::4096])\nprint('held')\n"
        small = run(client, code, memory_mb=64)
        assert small["oom_killed"] is True and small["signal"] == "SIGKILL" and small["stdout"] == ""
        large = run(client, code, memory_mb=256)
        assert (large["stdout"], large["oom_killed"]) == ("held\n", False)

    def test_processes_bounds_what_a_program_can_start(self, client: httpx.Client) -> None:
        code = (
            "import os, time\nstarted = 0\nfor _ in range(100):\n"
            "    try:\n        pid = os.fork()\n    except OSError:\n        break\n"
            "    if pid == 0:\n        time.sleep(30)\n        os._exit(0)\n"
            "    started += 1\nprint(started)\n"
        )
        few = int(run(client, code, processes=16)["stdout"])
        more = int(run(client, code, processes=64)["stdout"])
        assert 0 < few < 16 and few < more < 64, (few, more)

    def test_output_past_the_cap_is_truncated_and_the_program_runs_on(self, client: httpx.Client) -> None:
        body = run(
            client,
            "print('A' * 10000)\nprint('finished', flush=True)\nimport sys\nsys.exit(4)\n",
            output_kb=4,
        )
        assert len(body["stdout"]) == 4096 and body["stdout_truncated"] is True
        assert (body["exit_code"], body["output_limit_exceeded"], body["signal"]) == (4, False, None)

    def test_output_past_the_hard_cap_kills_the_program(self, client: httpx.Client) -> None:
        body = run(
            client, "import sys\nwhile True:\n    sys.stderr.write('E' * 4096)\n", output_kb=1, timeout=30
        )
        assert body["output_limit_exceeded"] is True and body["stderr_truncated"] is True
        assert body["signal"] == "SIGKILL" and body["timed_out"] is False and len(body["stderr"]) == 1024

    def test_file_mb_bounds_one_file_and_the_whole_scratch_space(self, client: httpx.Client) -> None:
        one = run(client, "open('/tmp/f', 'wb').write(b'x' * (3 << 20))\n", file_mb=2)
        # CPython ignores SIGXFSZ, so the write fails with EFBIG instead of the signal killing it.
        assert "File too large" in one["stderr"] and one["exit_code"] == 1, one
        code = (
            "import os\nn = 0\ntry:\n    while True:\n"
            "        open(f'/tmp/f{n}', 'wb').write(b'x' * (1 << 20))\n"
            "        n += 1\nexcept OSError as e:\n    print(e.strerror, n)\n"
        )
        many = run(client, code, file_mb=4)
        assert many["stdout"].startswith("No space left on device") and int(many["stdout"].split()[-1]) <= 4
