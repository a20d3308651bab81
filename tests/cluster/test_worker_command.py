"""``infra.operator worker`` on its own: a bad Redis URL is a one-line error, and a worker
whose Redis is down waits for it, then drains on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from conftest import DATA_DIR, free_port, stop_process, wait_for


def _worker(*args: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen([sys.executable, "-m", "infra_operator", "worker", *args], stdout=output,
                                stderr=subprocess.STDOUT,
                                env={**os.environ, "INFRA_OPERATOR_DATA_DIR": str(DATA_DIR),
                                     "INFRA_OPERATOR_POOL__SIZE": "0", "INFRA_OPERATOR_POOL__MAX_SIZE": "0"})


def test_a_bad_redis_url_is_a_one_line_error(tmp_path: Path) -> None:
    process = _worker("--redis", "localhost:6379", log=tmp_path / "worker.log")
    assert process.wait(timeout=60) == 2
    output = (tmp_path / "worker.log").read_text()
    assert "invalid setting INFRA_OPERATOR_REDIS_URL" in output and "Traceback" not in output


def test_a_worker_waits_for_its_redis_and_drains_on_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    # Nothing listens on this loopback port: the worker must keep trying, not die.
    process = _worker("--redis", f"redis://127.0.0.1:{free_port()}/0", "--id", "lonely", log=log)
    try:
        wait_for(lambda: "Redis unavailable" in log.read_text(), "the worker to say Redis is unavailable")
        assert process.poll() is None, log.read_text()[-2000:]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log.read_text()[-2000:]
        assert "Traceback" not in log.read_text()
    finally:
        stop_process(process)
