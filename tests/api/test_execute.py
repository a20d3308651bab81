"""POST /api/v1/execute end to end over real HTTP, on the server's default backend."""

from __future__ import annotations

import re

import httpx
import pytest
from conftest import SEED_LANGUAGES, require_images


@pytest.fixture(autouse=True)
def _images() -> None:
    require_images(*SEED_LANGUAGES)


def run(client: httpx.Client, language: str, code: str, **extra: object) -> dict[str, object]:
    response = client.post("/api/v1/execute", json={"language": language, "code": code, **extra})
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_python_sum(client: httpx.Client) -> None:
    body = run(client, "python", "print(sum(range(100)))")
    assert body["stdout"] == "4950\n"
    assert body["stderr"] == ""
    assert body["exit_code"] == 0
    assert re.fullmatch(r"\d+ms", str(body["load_time"]))
    assert re.fullmatch(r"\d+ms", str(body["exec_time"]))
    assert body["backend"] == "jail"
    assert str(body["version"]).startswith("Python 3")


def test_nodejs_array(client: httpx.Client) -> None:
    body = run(client, "nodejs", "console.log(Array.from({length:10},(_,i)=>i*i))")
    assert body["stdout"] == "[\n   0,  1,  4,  9, 16,\n  25, 36, 49, 64, 81\n]\n"
    assert body["exit_code"] == 0


def test_go_hello(client: httpx.Client) -> None:
    code = 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("Hello from Go") }\n'
    body = run(client, "go", code)
    assert body["stdout"] == "Hello from Go\n"
    assert body["exit_code"] == 0
    assert body["compile_exit_code"] == 0


def test_rust_hello(client: httpx.Client) -> None:
    body = run(client, "rust", 'fn main() { println!("Hello from Rust"); }')
    assert body["stdout"] == "Hello from Rust\n"
    assert body["exit_code"] == 0


def test_aliases_reach_the_same_language(client: httpx.Client) -> None:
    assert run(client, "js", "console.log(6*7)")["stdout"] == "42\n"
    assert run(client, "golang", 'package main\nimport "fmt"\nfunc main(){fmt.Println(7)}')["stdout"] == "7\n"


def test_compile_error_is_a_result_with_the_compilers_message(client: httpx.Client) -> None:
    body = run(client, "rust", "fn main() { let x: i32 = \"nope\"; }")
    assert body["exit_code"] != 0
    assert "mismatched types" in str(body["stderr"])
    assert "mismatched types" in str(body["compile_output"])
    assert body["compile_exit_code"] == body["exit_code"]


def test_go_compile_error(client: httpx.Client) -> None:
    body = run(client, "go", "package main\nfunc main() { undefined_call() }\n")
    assert body["exit_code"] != 0
    assert "undefined" in str(body["stderr"])


def test_runtime_failure_is_a_200_with_the_exit_code(client: httpx.Client) -> None:
    body = run(client, "python", "import sys\nprint('out')\nsys.exit(3)")
    assert (body["stdout"], body["exit_code"], body["timed_out"]) == ("out\n", 3, False)


def test_reading_stdin_gets_eof_not_a_hang(client: httpx.Client) -> None:
    body = run(client, "python", "import sys\ndata = sys.stdin.read()\nprint(repr(data))", timeout=5)
    assert body["stdout"] == "''\n"
    assert body["timed_out"] is False


def test_stdin_is_passed(client: httpx.Client) -> None:
    body = run(client, "python", "print(input()[::-1])", stdin="hello\n")
    assert body["stdout"] == "olleh\n"


def test_timeout_is_a_result(client: httpx.Client) -> None:
    body = run(client, "python", "import time\nprint('start', flush=True)\ntime.sleep(60)", timeout=1)
    assert body["timed_out"] is True
    assert body["stdout"] == "start\n"
    assert body["signal"] == "SIGKILL"


def test_each_execution_gets_a_fresh_sandbox(client: httpx.Client) -> None:
    run(client, "python", "open('/work/marker', 'w').write('x'); open('/tmp/marker', 'w').write('x')")
    body = run(client, "python", "import os\nprint(os.path.exists('/work/marker'), os.path.exists('/tmp/marker'))")
    assert body["stdout"] == "False False\n"


def test_cpu_time_and_peak_memory_are_the_programs_own(client: httpx.Client) -> None:
    spin = "import time\nwhile time.process_time() < 0.3: pass\nprint('spun')"
    spun = run(client, "python", spin)
    hold = run(client, "python", "x = bytearray(120 * 2**20)\nx[::4096] = b'1' * len(x[::4096])\nprint('held')")
    idle = run(client, "python", "print(1)")
    assert (spun["stdout"], hold["stdout"]) == ("spun\n", "held\n")
    assert isinstance(spun["cpu_time_ms"], float) and isinstance(idle["cpu_time_ms"], float)
    assert spun["cpu_time_ms"] >= 300 > idle["cpu_time_ms"]
    assert isinstance(hold["memory_kb"], int) and isinstance(idle["memory_kb"], int)
    assert hold["memory_kb"] >= 120 * 1024 > idle["memory_kb"] > 0


def test_a_compiled_program_reports_its_run_not_its_compiler(client: httpx.Client) -> None:
    body = run(client, "go", "package main\nimport \"fmt\"\nfunc main() { fmt.Println(len(make([]byte, 1))) }")
    assert body["stdout"] == "1\n"
    # go build peaks near 48 MiB here, the program it builds near 9 MiB.
    assert isinstance(body["memory_kb"], int) and 0 < body["memory_kb"] < 32 * 1024
