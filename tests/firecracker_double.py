"""A Firecracker TEST DOUBLE: not Firecracker, and it runs no guest.

It answers Firecracker's REST API on a unix socket the way the published v1.16.1 spec
(``tests/reference/firecracker-api.yaml``) says: every request's method, path and JSON
body is validated against the spec (``$ref``s resolved, unknown fields refused as
Firecracker's own parser refuses them), recorded to a JSON-lines file, and answered
with 204 or with 400 and the spec's ``Error`` shape ``{"fault_message": "..."}``, for
invalid requests and for faults a test injects. It keeps the state machine of one
Firecracker process (configure, InstanceStart, Paused/Resumed, snapshot create, snapshot
load on a fresh process only, SendCtrlAltDel) so a driver's whole cycle runs against it.

In place of a guest, the vsock socket answers the ``CONNECT <port>`` handshake once the
"guest" has booted (a short delay after InstanceStart) and hands the connection to a real
guest agent process (``python -m infra_operator.guest --channel stdio``), so an execute
round-trip through the driver is real. Pausing the VM stops those agents (SIGSTOP).

``write_fake_firecracker`` writes an executable named ``firecracker`` that runs this
double, so the driver's real process-spawning code is what the tests exercise.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SPEC_PATH = Path(__file__).parent / "reference" / "firecracker-api.yaml"
SRC_DIR = Path(__file__).resolve().parent.parent / "src"
VERSION = "1.16.1"
SNAPSHOT_MAGIC = "firecracker-test-double-snapshot"
PRE_BOOT = ("/boot-source", "/drives/{drive_id}", "/machine-config", "/vsock", "/cpu-config", "/entropy")


# -- the spec ----------------------------------------------------------------------------


class _SpecLoader(yaml.SafeLoader):
    """YAML 1.1 reads On/Off/Yes/No as booleans, which would turn the Logger level enum's
    ``Off`` into False; here only true/false are booleans."""


_SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


@dataclass
class Operation:
    method: str
    template: str
    pattern: re.Pattern[str]
    body: jsonschema.Draft4Validator | None
    body_required: bool
    responses: dict[str, dict[str, Any]]


class ApiSpec:
    """The spec's operations, with a JSON-schema validator for each request body."""

    def __init__(self, path: Path = SPEC_PATH) -> None:
        with open(path) as handle:
            self.document: dict[str, Any] = yaml.load(handle, Loader=_SpecLoader)  # noqa: S506 - SafeLoader
        self.version = str(self.document["info"]["version"])
        self.operations: list[Operation] = []
        for template, methods in self.document["paths"].items():
            pattern = re.compile("^" + re.sub(r"\{[^}]+\}", "([^/]+)", template) + "$")
            for method, operation in methods.items():
                body = next((p for p in operation.get("parameters", []) if p.get("in") == "body"), None)
                validator = None
                if body is not None:
                    validator = jsonschema.Draft4Validator(self.schema(body["schema"]))
                responses = {str(code): answer for code, answer in operation["responses"].items()}
                self.operations.append(
                    Operation(
                        method.upper(),
                        template,
                        pattern,
                        validator,
                        bool(body and body.get("required")),
                        responses,
                    )
                )

    def schema(self, schema: dict[str, Any], seen: tuple[str, ...] = ()) -> dict[str, Any]:
        """``schema`` with every ``$ref`` inlined; objects refuse unknown properties, as
        Firecracker's deserializer does (``deny_unknown_fields``) though Swagger cannot say it."""
        if "$ref" in schema:
            name = schema["$ref"].removeprefix("#/definitions/")
            if name in seen:
                raise ValueError(f"recursive $ref {name}")
            return self.schema(self.document["definitions"][name], (*seen, name))
        result = copy.deepcopy(schema)
        for key in ("properties",):
            if key in result:
                result[key] = {k: self.schema(v, seen) for k, v in result[key].items()}
        if "items" in result:
            result["items"] = self.schema(result["items"], seen)
        if result.get("type") == "object" and "properties" in result:
            result.setdefault("additionalProperties", False)
        return result

    def match(self, method: str, path: str) -> tuple[Operation | None, list[str]]:
        """The operation, and the path parameters; None when method and path are not in the spec."""
        for operation in self.operations:
            found = operation.pattern.match(path)
            if found and operation.method == method:
                return operation, list(found.groups())
        return None, []

    def request_errors(self, method: str, path: str, body: Any) -> list[str]:
        operation, _ = self.match(method, path)
        if operation is None:
            return [f"{method} {path} is not an operation of the spec"]
        if body is None:
            return ["a body is required"] if operation.body_required else []
        if operation.body is None:
            return [f"{method} {operation.template} takes no body"]
        return [
            f"{'/'.join(map(str, error.absolute_path)) or '(body)'}: {error.message}"
            for error in sorted(operation.body.iter_errors(body), key=lambda e: list(e.absolute_path))
        ]

    def response_errors(self, method: str, path: str, status: int, body: Any) -> list[str]:
        operation, _ = self.match(method, path)
        if operation is None:
            return [] if status == 400 else [f"status {status} for an unknown operation"]
        answer = operation.responses.get(str(status)) or operation.responses.get("default")
        if answer is None:
            return [f"status {status} is not a response of {method} {operation.template}"]
        if "schema" not in answer:
            return [] if body is None else ["a body where the spec has none"]
        validator = jsonschema.Draft4Validator(self.schema(answer["schema"]))
        return [error.message for error in validator.iter_errors(body)]


# -- the double's microVM ----------------------------------------------------------------


class Fault(Exception):
    """Answered as 400 with this fault_message, as Firecracker answers a refused request."""


@dataclass
class DoubleConfig:
    record: Path | None = None
    faults: dict[str, str] = field(default_factory=dict)
    """``"PUT /boot-source": "message"``: answer that request (once valid) with this fault."""
    exit_on: str | None = None
    """``"PUT /actions"``: the process dies when it gets that request, without answering."""
    guest: str = "agent"
    """``agent``: a real agent answers on vsock port 1024; ``silent``: no guest ever listens."""
    boot_seconds: float = 0.05
    work_root: Path | None = None
    """Where agents get their work folders; must be traversable by uid 65534."""

    @classmethod
    def load(cls, path: Path | None) -> DoubleConfig:
        if path is None or not path.exists():
            return cls()
        raw = json.loads(path.read_text())
        return cls(
            record=Path(raw["record"]) if raw.get("record") else None,
            faults=dict(raw.get("faults", {})),
            exit_on=raw.get("exit_on"),
            guest=raw.get("guest", "agent"),
            boot_seconds=float(raw.get("boot_seconds", 0.05)),
            work_root=Path(raw["work_root"]) if raw.get("work_root") else None,
        )


class DoubleVm:
    def __init__(self, instance_id: str, config: DoubleConfig) -> None:
        self.id = instance_id
        self.config = config
        self.state = "Not started"
        self.boot_source: dict[str, Any] | None = None
        self.drives: dict[str, dict[str, Any]] = {}
        self.machine: dict[str, Any] = {"vcpu_count": 1, "mem_size_mib": 128}
        self.vsock: dict[str, Any] | None = None
        self.configured: set[str] = set()
        self.guest_up_at: float | None = None
        self.agents: list[subprocess.Popen[bytes]] = []
        self.lock = threading.Lock()

    # Each handler raises Fault for a refused request, as Firecracker's VMM does.

    def put(self, template: str, params: list[str], body: dict[str, Any]) -> None:
        if template in PRE_BOOT:
            if self.state != "Not started":
                raise Fault("The requested operation is not supported after starting the microVM.")
            self.configured.add(template)
        if template == "/boot-source":
            for key in ("kernel_image_path", "initrd_path"):
                if key in body and not Path(body[key]).is_file():
                    raise Fault(
                        f"Boot source error: cannot open {key} {body[key]}: No such file or directory"
                    )
            self.boot_source = body
        elif template == "/drives/{drive_id}":
            if body["drive_id"] != params[0]:
                raise Fault("The id from the path does not match the id from the body!")
            if not Path(body.get("path_on_host", "")).is_file():
                raise Fault(f"Unable to create the block device: cannot open {body.get('path_on_host')}")
            self.drives[params[0]] = body
        elif template == "/machine-config":
            if body["vcpu_count"] > 1 and body["vcpu_count"] % 2 and body.get("smt"):
                raise Fault("The vCPU number is invalid!")
            self.machine = body
        elif template == "/vsock":
            self._listen(body["uds_path"])
            self.vsock = body
        elif template == "/actions":
            self._action(body["action_type"])
        elif template == "/snapshot/create":
            self._snapshot_create(body)
        elif template == "/snapshot/load":
            self._snapshot_load(body)
        elif template in ("/logger", "/metrics", "/entropy", "/cpu-config"):
            pass
        else:
            raise Fault(f"The test double does not model PUT {template}")

    def patch(self, template: str, body: dict[str, Any]) -> None:
        if template != "/vm":
            raise Fault(f"The test double does not model PATCH {template}")
        if self.state == "Not started":
            raise Fault("The requested operation is not supported before starting the microVM.")
        wanted = "Paused" if body["state"] == "Paused" else "Running"
        for agent in self.agents:
            if agent.poll() is None:
                os.kill(agent.pid, signal.SIGSTOP if wanted == "Paused" else signal.SIGCONT)
        self.state = wanted

    def _action(self, action: str) -> None:
        if action == "InstanceStart":
            if self.state != "Not started":
                raise Fault("The requested operation is not supported after starting the microVM.")
            if self.boot_source is None:
                raise Fault("Cannot start microvm without kernel configuration.")
            self.state = "Running"
            self.guest_up_at = time.monotonic() + self.config.boot_seconds
        elif action == "SendCtrlAltDel":
            if self.state != "Running":
                raise Fault("The requested operation is not supported before starting the microVM.")
            # The guest reboots, which with reboot=k ends the Firecracker process.
            threading.Timer(0.05, self.shutdown).start()
        # FlushMetrics: nothing to flush.

    def _snapshot_create(self, body: dict[str, Any]) -> None:
        if self.state != "Paused":
            raise Fault("Create snapshot error: the microVM must be paused.")
        state = {
            "magic": SNAPSHOT_MAGIC,
            "machine": self.machine,
            "drives": self.drives,
            "vsock": self.vsock,
        }
        try:
            Path(body["snapshot_path"]).write_text(json.dumps(state))
            # The real file holds all guest RAM; this one only says how much there was.
            Path(body["mem_file_path"]).write_bytes(
                f"guest memory of {self.machine['mem_size_mib']} MiB\n".encode()
            )
        except OSError as exc:
            raise Fault(f"Create snapshot error: {exc.strerror}: {exc.filename}") from exc

    def _snapshot_load(self, body: dict[str, Any]) -> None:
        if self.state != "Not started" or self.configured:
            raise Fault("Loading a microVM snapshot not allowed after configuring boot-specific resources.")
        if ("mem_backend" in body) == ("mem_file_path" in body):
            raise Fault("Exactly one of the two mem_* fields (mem_backend, mem_file_path) must be present.")
        memory = body["mem_backend"]["backend_path"] if "mem_backend" in body else body["mem_file_path"]
        if "mem_backend" in body and body["mem_backend"]["backend_type"] != "File":
            raise Fault("The test double models only the File memory backend.")
        try:
            state = json.loads(Path(body["snapshot_path"]).read_text())
            Path(memory).read_bytes()
        except (OSError, ValueError) as exc:
            raise Fault(f"Load snapshot error: cannot read the snapshot: {exc}") from exc
        if state.get("magic") != SNAPSHOT_MAGIC:
            raise Fault("Load snapshot error: not a snapshot of this double")
        for drive in state["drives"].values():
            # Firecracker reopens each drive at the path recorded in the snapshot.
            if not Path(drive["path_on_host"]).is_file():
                raise Fault(f"Load snapshot error: cannot open drive {drive['path_on_host']}")
        self.machine, self.drives, self.vsock = state["machine"], state["drives"], state["vsock"]
        if self.vsock is not None:
            override = body.get("vsock_override", {}).get("uds_path")
            self.vsock = {**self.vsock, "uds_path": override or self.vsock["uds_path"]}
            self._listen(self.vsock["uds_path"])
        self.guest_up_at = time.monotonic()  # a restored guest is already up
        self.state = "Running" if body.get("resume_vm") else "Paused"

    # -- the vsock device, with a real agent behind it ------------------------------------

    def _listen(self, uds_path: str) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(uds_path)
        except OSError as exc:
            listener.close()
            raise Fault(f"Cannot create vsock device: cannot bind {uds_path}: {exc.strerror}") from exc
        listener.listen(16)
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            connection, _ = listener.accept()
            try:
                self._handshake(connection)
            except OSError:
                pass
            finally:
                connection.close()

    def _handshake(self, connection: socket.socket) -> None:
        line = b""
        while not line.endswith(b"\n") and len(line) < 64:
            chunk = connection.recv(1)
            if not chunk:
                return
            line += chunk
        match = re.fullmatch(rb"CONNECT (\d+)\n", line)
        booted = self.guest_up_at is not None and time.monotonic() >= self.guest_up_at
        if match is None or int(match.group(1)) != 1024 or not booted or self.state != "Running":
            return  # nobody listens on that port in the guest (yet): Firecracker closes
        if self.config.guest != "agent":
            return
        work = Path(tempfile.mkdtemp(prefix="agent-", dir=self.config.work_root))
        work.chmod(0o755)  # the agent runs programs as uid 65534 in it
        env = {**os.environ, "PYTHONPATH": str(SRC_DIR)}
        agent = subprocess.Popen(
            [sys.executable, "-m", "infra_operator.guest", "--channel", "stdio", "--work-dir", str(work)],
            stdin=connection.fileno(),
            stdout=connection.fileno(),
            env=env,
        )
        with self.lock:
            self.agents.append(agent)
        # Firecracker's answer: OK and the host-side port it picked.
        connection.sendall(b"OK 1073741824\n")

    def shutdown(self) -> None:
        for agent in self.agents:
            if agent.poll() is None:
                agent.kill()
        os._exit(0)


# -- the HTTP server ---------------------------------------------------------------------


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    spec: ApiSpec
    vm: DoubleVm


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # the record file is the log

    def do_GET(self) -> None:
        self._handle("GET")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def _handle(self, method: str) -> None:
        spec, vm = self.server.spec, self.server.vm
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = self.path.split("?")[0]
        body: Any = None
        errors: list[str] = []
        if raw:
            try:
                body = json.loads(raw)
            except ValueError as exc:
                errors = [f"body is not JSON: {exc}"]
        if not errors:
            errors = spec.request_errors(method, path, body)
        key = f"{method} {path}"
        if key == vm.config.exit_on:
            self._record(method, path, body, errors, None, None)
            os._exit(3)
        status, answer = self._answer(method, path, body, errors)
        self._record(method, path, body, errors, status, answer)
        payload = json.dumps(answer).encode() if answer is not None else b""
        self.send_response(status)
        if payload:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _answer(self, method: str, path: str, body: Any, errors: list[str]) -> tuple[int, Any]:
        spec, vm = self.server.spec, self.server.vm
        operation, params = spec.match(method, path)
        if operation is None:
            return 400, {"fault_message": f"Invalid request method and/or path: {method} {path}."}
        if errors:
            return 400, {
                "fault_message": f"An error occurred when deserializing the json body: {'; '.join(errors)}"
            }
        injected = vm.config.faults.get(f"{method} {path}")
        if injected is not None:
            return 400, {"fault_message": injected}
        if method == "GET":
            if operation.template == "/":
                state = vm.state
                return 200, {"app_name": "Firecracker", "id": vm.id, "state": state, "vmm_version": VERSION}
            if operation.template == "/version":
                return 200, {"firecracker_version": VERSION}
            if operation.template == "/machine-config":
                return 200, vm.machine
            return 400, {"fault_message": f"The test double does not model GET {operation.template}"}
        try:
            with vm.lock:
                if method == "PUT":
                    vm.put(operation.template, params, body)
                else:
                    vm.patch(operation.template, body)
        except Fault as fault:
            return 400, {"fault_message": str(fault)}
        return 204, None

    def _record(
        self, method: str, path: str, body: Any, errors: list[str], status: int | None, answer: Any
    ) -> None:
        record = self.server.vm.config.record
        if record is None:
            return
        response_errors = (
            [] if status is None else self.server.spec.response_errors(method, path, status, answer)
        )
        line = json.dumps(
            {
                "at": time.time(),
                "instance": self.server.vm.id,
                "pid": os.getpid(),
                "cwd": os.getcwd(),
                "method": method,
                "path": path,
                "body": body,
                "errors": errors,
                "status": status,
                "response": answer,
                "response_errors": response_errors,
            }
        )
        # One write with O_APPEND: lines of several double processes never interleave.
        fd = os.open(record, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)


def serve(api_sock: str, instance_id: str, config: DoubleConfig) -> None:
    server = _Server(api_sock, _Handler)
    server.spec = ApiSpec()
    server.vm = DoubleVm(instance_id, config)
    signal.signal(signal.SIGTERM, lambda *_: server.vm.shutdown())
    server.serve_forever(poll_interval=0.05)


def main(argv: list[str], config_path: Path | None = None) -> int:
    # Firecracker's own options that matter here; the rest (--seccomp-filter, ...) are accepted.
    parser = argparse.ArgumentParser(prog="firecracker (test double)")
    parser.add_argument("--api-sock", default="/run/firecracker.socket")
    parser.add_argument("--id", default="anonymous-instance")
    parser.add_argument("--version", action="store_true")
    args, _unknown = parser.parse_known_args(argv)
    if args.version:
        print(f"Firecracker v{VERSION} (infra.operator test double, not Firecracker)")
        return 0
    serve(args.api_sock, args.id, DoubleConfig.load(config_path))
    return 0


def write_fake_firecracker(directory: Path, config: dict[str, Any]) -> Path:
    """Write ``directory/firecracker`` (an executable running this double) and its config.

    The config is a JSON file the script names, so a test can change it (faults, ...)
    between starts without touching the environment."""
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "double.json"
    config_path.write_text(json.dumps(config))
    script = directory / "firecracker"
    script.write_text(
        f"#!{sys.executable}\n"
        "# A Firecracker TEST DOUBLE (tests/firecracker_double.py), not Firecracker.\n"
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})\n"
        "from pathlib import Path\n"
        "from firecracker_double import main\n"
        f"sys.exit(main(sys.argv[1:], Path({str(config_path)!r})))\n"
    )
    script.chmod(0o755)
    return script


def write_fake_jailer(directory: Path) -> Path:
    """Write ``directory/jailer``: a TEST DOUBLE of Firecracker's jailer. It checks the
    arguments the driver gives and the chroot it prepared, then runs the exec file with
    its working directory at the chroot's root, without chroot, setuid or cgroups: so
    every path the driver hands Firecracker must be relative to that root, as in a jail."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "jailer"
    script.write_text(
        f"#!{sys.executable}\n"
        "# A jailer TEST DOUBLE (tests/firecracker_double.py), not Firecracker's jailer.\n"
        "import argparse, os, sys\n"
        "p = argparse.ArgumentParser()\n"
        "for name in ('--id', '--exec-file', '--uid', '--gid', '--chroot-base-dir', '--cgroup-version'):\n"
        "    p.add_argument(name, required=True)\n"
        "p.add_argument('--cgroup', action='append', default=[])\n"
        "args, rest = p.parse_known_args()\n"
        "assert rest[:1] == ['--'], rest\n"
        "assert os.path.isabs(args.exec_file), 'the jailer wants an absolute --exec-file'\n"
        "assert args.uid.isdigit() and args.gid.isdigit() and args.uid != '0'\n"
        "root = os.path.join(args.chroot_base_dir, os.path.basename(args.exec_file), args.id, 'root')\n"
        "assert os.path.isdir(root), f'no chroot at {root}'\n"
        "os.chdir(root)\n"
        "assert 'firecracker' in os.path.basename(args.exec_file), 'the jailer runs only firecracker'\n"
        "os.execv(args.exec_file, [args.exec_file, f'--id={args.id}', *rest[1:]])\n"
    )
    script.chmod(0o755)
    return script


def read_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


if __name__ == "__main__":
    sys.exit(
        main(sys.argv[1:], Path(os.environ["FC_DOUBLE_CONFIG"]) if "FC_DOUBLE_CONFIG" in os.environ else None)
    )
