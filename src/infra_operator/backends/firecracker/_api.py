"""Firecracker's REST API over its unix socket, as the published v1.16.1 spec names it.

Only this module speaks HTTP to Firecracker. Every fault (a refused request with its
``fault_message``, a socket that is gone, a request that times out) leaves as an
``errors.BootFailed`` naming the request, chained to the httpx error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from ...errors import BootFailed

# Requests that copy guest memory may take a while; configuration requests are instant.
_QUICK_SECONDS = 5.0
_SLOW_SECONDS = 120.0


class Refused(BootFailed):
    """Firecracker answered, and said no: the process is alive and the message is its own."""


class FirecrackerApi:
    def __init__(self, socket_path: Path, sandbox: str, transport: httpx.BaseTransport | None = None) -> None:
        self.sandbox = sandbox
        self._client = httpx.Client(
            transport=transport or httpx.HTTPTransport(uds=str(socket_path)),
            base_url="http://localhost",
            timeout=_QUICK_SECONDS,
        )

    def close(self) -> None:
        self._client.close()

    def _send(self, method: str, path: str, body: dict[str, Any], timeout: float = _QUICK_SECONDS) -> None:
        where = f"sandbox {self.sandbox}: firecracker {method} {path}"
        try:
            response = self._client.request(method, path, json=body, timeout=timeout)
        except httpx.TimeoutException as exc:
            raise BootFailed(f"{where}: no answer within {timeout:g} s") from exc
        except httpx.HTTPError as exc:
            raise BootFailed(f"{where}: {exc}") from exc
        if response.status_code == 204:
            return
        raise Refused(f"{where} refused ({response.status_code}): {_fault_message(response)}")

    def ping(self) -> None:
        """GET /version: answers as soon as the API server listens."""
        try:
            response = self._client.get("/version", timeout=1.0)
        except httpx.HTTPError as exc:
            raise BootFailed(f"sandbox {self.sandbox}: firecracker API not answering: {exc}") from exc
        if response.status_code != 200:
            raise BootFailed(f"sandbox {self.sandbox}: GET /version: {_fault_message(response)}")

    def boot_source(self, kernel: str, initrd: str, boot_args: str) -> None:
        self._send(
            "PUT",
            "/boot-source",
            {"kernel_image_path": kernel, "initrd_path": initrd, "boot_args": boot_args},
        )

    def drive(self, drive_id: str, path: str, *, read_only: bool) -> None:
        # Not the root device: the initramfs mounts /dev/vda itself, so Firecracker must
        # not add a root= of its own to the command line.
        self._send(
            "PUT",
            f"/drives/{drive_id}",
            {"drive_id": drive_id, "path_on_host": path, "is_root_device": False, "is_read_only": read_only},
        )

    def machine_config(self, vcpus: int, memory_mib: int) -> None:
        self._send("PUT", "/machine-config", {"vcpu_count": vcpus, "mem_size_mib": memory_mib})

    def vsock(self, guest_cid: int, uds_path: str) -> None:
        self._send("PUT", "/vsock", {"guest_cid": guest_cid, "uds_path": uds_path})

    def start(self) -> None:
        self._send("PUT", "/actions", {"action_type": "InstanceStart"})

    def pause(self) -> None:
        self._send("PATCH", "/vm", {"state": "Paused"})

    def create_snapshot(self, snapshot_path: str, mem_file_path: str) -> None:
        body = {"snapshot_type": "Full", "snapshot_path": snapshot_path, "mem_file_path": mem_file_path}
        self._send("PUT", "/snapshot/create", body, timeout=_SLOW_SECONDS)

    def load_snapshot(self, snapshot_path: str, mem_path: str, vsock_uds_path: str) -> None:
        # mem_backend, not the deprecated mem_file_path; vsock_override (new in the v1.16
        # spec) points the restored vsock at this sandbox's socket, not the recorded one.
        body = {
            "snapshot_path": snapshot_path,
            "mem_backend": {"backend_type": "File", "backend_path": mem_path},
            "vsock_override": {"uds_path": vsock_uds_path},
            "resume_vm": True,
        }
        self._send("PUT", "/snapshot/load", body, timeout=_SLOW_SECONDS)


def _fault_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text.strip() or "(empty body)"
    if isinstance(body, dict) and isinstance(body.get("fault_message"), str):
        return str(body["fault_message"])
    return json.dumps(body)
