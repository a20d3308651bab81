"""Python programs run in a fork of the sandbox's agent (the interpreter was started
while the sandbox waited in the pool). What the program sees must be what
``python3 -u main.py`` would show it, and nothing of the agent or of another run."""

from __future__ import annotations

import httpx
import pytest
from conftest import require_images


@pytest.fixture(autouse=True)
def _images() -> None:
    require_images("python")


def run(client: httpx.Client, code: str, **extra: object) -> dict[str, object]:
    response = client.post("/api/v1/execute", json={"language": "python", "code": code, **extra})
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_the_program_is_main_with_its_own_argv_path_and_environment(client: httpx.Client) -> None:
    code = (
        "import os, sys\nprint(__name__, __file__, sys.argv)\nprint(sys.path[0])\n"
        "print(sorted(os.environ))\nprint(sys.stdout.write_through)"
    )
    body = run(client, code)
    assert body["stdout"] == (
        "__main__ /work/main.py ['main.py']\n/work\n['HOME', 'LANG', 'PATH', 'TMPDIR']\nTrue\n"
    )


def test_nothing_of_the_agent_is_visible(client: httpx.Client) -> None:
    code = (
        "import sys, os\nprint([m for m in sys.modules if m.split('.')[0] in ('guest', 'infra_operator')])\n"
        "print([p for p in sys.path if 'infra-operator' in p])\nprint(sorted(os.listdir('/proc/self/fd')))"
    )
    body = run(client, code)
    assert body["stdout"] == "[]\n[]\n['0', '1', '2', '3']\n"  # 3: the listing's own descriptor


@pytest.mark.parametrize("suite", ["trixie", "bookworm", "sid"])
def test_an_uncaught_exception_prints_the_interpreters_traceback(client: httpx.Client, suite: str) -> None:
    require_images("python" if suite == "bookworm" else f"python@{suite}")
    body = run(client, "def f():\n    raise ValueError('boom')\nf()", version=suite)
    assert body["exit_code"] == 1
    # Python 3.13 and later point at the failing call with carets, as `python3 main.py` does.
    minor = tuple(int(part) for part in str(body["version"]).split()[1].split(".")[:2])
    carets = "    ~^^\n" if minor >= (3, 13) else ""
    assert body["stderr"] == (
        'Traceback (most recent call last):\n  File "/work/main.py", line 3, in <module>\n'
        f"    f()\n{carets}  File \"/work/main.py\", line 2, in f\n    raise ValueError('boom')\n"
        "ValueError: boom\n"
    )


def test_a_syntax_error_is_reported_like_the_interpreter(client: httpx.Client) -> None:
    body = run(client, "x = (")
    assert body["exit_code"] == 1
    assert str(body["stderr"]).startswith('  File "/work/main.py", line 1\n')
    assert "SyntaxError" in str(body["stderr"])


@pytest.mark.parametrize(
    ("code", "exit_code", "stderr"),
    [
        ("import sys; sys.exit(4)", 4, ""),
        ("import sys; sys.exit('bye')", 1, "bye\n"),
        ("raise SystemExit", 0, ""),
        ("import os; os._exit(9)", 9, ""),
    ],
)
def test_exit_codes(client: httpx.Client, code: str, exit_code: int, stderr: str) -> None:
    body = run(client, code)
    assert (body["exit_code"], body["stderr"]) == (exit_code, stderr)


def test_threads_and_atexit_run_before_the_exit(client: httpx.Client) -> None:
    code = (
        "import atexit, threading, time\natexit.register(lambda: print('atexit'))\n"
        "def late():\n    time.sleep(0.2)\n    print('thread')\n"
        "threading.Thread(target=late).start()\nprint('main')"
    )
    assert run(client, code)["stdout"] == "main\nthread\natexit\n"


def test_random_state_differs_between_executions(client: httpx.Client) -> None:
    code = "import random, os\nprint(random.getrandbits(64), os.urandom(8).hex())"
    outputs = {run(client, code)["stdout"] for _ in range(3)}
    assert len(outputs) == 3


def test_module_state_does_not_survive_into_the_next_execution(client: httpx.Client) -> None:
    run(client, "import json\njson.marker = 1\nimport builtins\nbuiltins.leak = 2")
    body = run(client, "import json, builtins\nprint(hasattr(json, 'marker'), hasattr(builtins, 'leak'))")
    assert body["stdout"] == "False False\n"
