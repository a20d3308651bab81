"""Jail templates: sandboxes forked from one template share nothing a program could use,
a dead template is replaced, and a template never outlives its server.

Real servers and real jails throughout; the template's processes are found on the
host by their command line (``--template``) under the server's process tree.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import Sandboxes, Server, require_images, start_server, stop_server, wait_for
from hostcheck import cmdline, descendants, parent

from infra_operator.backends import Sandbox, SandboxSpec
from infra_operator.backends.jail import JailBackend, JailSandbox, _backend
from infra_operator.config import Settings
from infra_operator.errors import AgentError
from infra_operator.services import Services

NAMESPACES = ("pid", "mnt", "net", "ipc", "uts", "cgroup", "user")

# Prints its namespaces, then stays alive long enough that its sibling runs meanwhile.
SHOW_NAMESPACES = f"""
import json, os, time
print(json.dumps({{name: os.readlink(f"/proc/self/ns/{{name}}") for name in {NAMESPACES!r}}}), flush=True)
time.sleep(2)
"""

# One sandbox holds a pty open while the other looks at /dev/pts; both try to write /dev.
SHOW_DEV = """
import os, sys, time
try:
    open("/dev/planted", "w")
    wrote = "wrote /dev"
except OSError as exc:
    wrote = exc.strerror
if sys.argv[1] == "hold":
    master, slave = os.openpty()
    print(wrote, sorted(os.listdir("/dev/pts")), flush=True)
    time.sleep(3)
else:
    time.sleep(1)
    print(wrote, sorted(os.listdir("/dev/pts")), flush=True)
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    require_images("python")
    running = start_server(tmp_path, "--backend", "jail")
    yield running
    stop_server(running)




def templates_of(starter: int) -> set[int]:
    """The template agents a process started itself (not those of a server it started): each
    the python child of a bwrap that is the process's own child. The sandboxes a template
    forks have its command line too, but the template for a parent."""
    found = descendants(starter)
    bwraps = {pid for pid in found if parent(pid) == starter and cmdline(pid).startswith("bwrap")}
    return {pid for pid in found if parent(pid) in bwraps and "--template" in cmdline(pid)}


def sandboxes_of(server: int) -> set[int]:
    """The sandboxes a server's templates forked: template agents whose parent is one too."""
    found = {pid for pid in descendants(server) if "--template" in cmdline(pid)}
    return {pid for pid in found if parent(pid) in found}


def pool_ready(client: httpx.Client) -> int:
    return sum(int(entry["ready"]) for entry in client.get("/health").json().get("pool", []))


def execute(client: httpx.Client, code: str, *args: str) -> dict[str, object]:
    response = client.post("/api/v1/execute", json={"language": "python", "code": code, "args": list(args)})
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    assert body["exit_code"] == 0, body["stderr"]
    return body


def test_concurrent_sandboxes_share_no_namespace_with_each_other_or_their_template(server: Server) -> None:
    with server.client() as client, ThreadPoolExecutor(2) as threads:
        seen = [json.loads(str(body["stdout"])) for body in threads.map(lambda _: execute(client, SHOW_NAMESPACES), range(2))]
    (template,) = templates_of(server.process.pid)
    own = {name: os.readlink(f"/proc/{template}/ns/{name}") for name in NAMESPACES}
    for name in NAMESPACES:
        if name == "user":  # by design: one user namespace mapping only uid 65534 (see jail/_userns.py)
            assert seen[0][name] == seen[1][name] == own[name]
            continue
        assert len({seen[0][name], seen[1][name], own[name]}) == 3, name


def test_dev_is_read_only_and_each_sandbox_has_its_own_ptys(server: Server) -> None:
    with server.client() as client, ThreadPoolExecutor(2) as threads:
        holder = threads.submit(execute, client, SHOW_DEV, "hold")
        # The holder's sandbox is forked (its program opens the pty at once; the looker waits a second more).
        wait_for(lambda: sandboxes_of(server.process.pid), "the holder's sandbox")
        looker = threads.submit(execute, client, SHOW_DEV, "look")
        held, looked = holder.result()["stdout"], looker.result()["stdout"]
    assert held == "Read-only file system ['0', 'ptmx']\n"
    assert looked == "Read-only file system ['ptmx']\n"


def test_a_killed_template_is_replaced_and_its_sandboxes_die_with_it(server: Server) -> None:
    with server.client() as client:
        execute(client, "print(1)")
        (first,) = templates_of(server.process.pid)
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: first not in templates_of(server.process.pid), "the killed template to go")
        assert execute(client, "print(2)")["stdout"] == "2\n"
        (second,) = templates_of(server.process.pid)
        assert second != first


def test_a_killed_server_takes_its_templates_and_sandboxes_along(tmp_path: Path) -> None:
    require_images("python")
    pool = {"INFRA_OPERATOR_POOL__SIZE": "2", "INFRA_OPERATOR_POOL__MAX_SIZE": "2"}
    server = start_server(tmp_path, "--backend", "jail", env=pool)
    try:
        with server.client() as client:
            execute(client, "print(1)")
            wait_for(lambda: pool_ready(client) >= 2, "the pool's sandboxes")
        left = descendants(server.process.pid)
        assert templates_of(server.process.pid)
    finally:
        server.process.kill()  # SIGKILL: no shutdown code runs
        server.process.wait()
    wait_for(lambda: not any(cmdline(pid) for pid in left), "the server's templates and sandboxes to exit")


def test_stopping_the_server_stops_its_templates(tmp_path: Path) -> None:
    require_images("python")
    server = start_server(tmp_path, "--backend", "jail")
    with server.client() as client:
        execute(client, "print(1)")
    templates = templates_of(server.process.pid)
    assert templates
    stop_server(server)
    assert not any(cmdline(pid) for pid in templates)


# -- retiring: the backend in this process, so its templates are our descendants


@pytest.fixture
def jail() -> Iterator[tuple[Sandboxes[JailSandbox], SandboxSpec]]:
    require_images("python")
    services = Services(Settings())
    backend = services.backends.get("jail")
    assert isinstance(backend, JailBackend)
    started = Sandboxes(backend)
    try:
        yield started, services.executor.default_spec(backend, "python")
    finally:
        started.destroy_all()
        backend.close()
    assert templates_of(os.getpid()) == set(), "closing the backend left a template running"


def answers(sandbox: Sandbox) -> bool:
    return sandbox.call({"op": "ping"}, time.monotonic() + 10)["ok"] is True


def test_a_rebuilt_image_gets_a_new_template_and_the_old_one_stops_with_its_last_sandbox(
    jail: tuple[Sandboxes[JailSandbox], SandboxSpec],
) -> None:
    started, spec = jail
    old_sandbox = started.start(spec)
    (old,) = templates_of(os.getpid())
    # Another checksum is another build as far as the backend can tell: a mount, and a template, of its own.
    rebuilt = dataclasses.replace(spec, rootfs_sha256="f" * 64)
    new_sandbox = started.start(rebuilt)
    assert templates_of(os.getpid()) - {old}
    assert answers(old_sandbox) and answers(new_sandbox)  # retiring ended nothing in use
    old_sandbox.destroy()
    wait_for(lambda: old not in templates_of(os.getpid()), "the retired template to stop")
    assert answers(new_sandbox)
    new_sandbox.destroy()


def test_a_template_hands_over_after_its_share_of_sandboxes(
    jail: tuple[Sandboxes[JailSandbox], SandboxSpec], monkeypatch: pytest.MonkeyPatch,
) -> None:
    started, spec = jail
    monkeypatch.setattr(_backend, "TEMPLATE_SANDBOXES", 2)
    seen = []
    for _ in range(3):
        with started.start(spec) as sandbox:
            assert answers(sandbox)
            seen.append(templates_of(os.getpid()))
    assert seen[0] == seen[1] and len(seen[0]) == 1
    wait_for(lambda: len(templates_of(os.getpid())) == 1, "the first template to stop")
    assert templates_of(os.getpid()) != seen[0]


def test_closing_the_backend_stops_retired_templates_and_their_sandboxes(
    jail: tuple[Sandboxes[JailSandbox], SandboxSpec],
) -> None:
    started, spec = jail
    old_sandbox = started.start(spec)
    new_sandbox = started.start(dataclasses.replace(spec, rootfs_sha256="f" * 64))
    assert len(templates_of(os.getpid())) == 2
    started.backend.close()
    assert templates_of(os.getpid()) == set()
    for sandbox in (old_sandbox, new_sandbox):
        with pytest.raises(AgentError):
            answers(sandbox)
        sandbox.destroy()
