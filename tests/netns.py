"""Hosts for cluster tests: network namespaces joined by veth pairs on a bridge, each with
an address the test assigns, so the traffic between "hosts" is real network traffic that
never leaves namespaces the test made.

Addresses come from 198.18.0.0/15 (set aside for benchmarking networks, RFC 2544), one
/24 per network, chosen from the process id so parallel runs do not collide. The test's
own process reaches the hosts through one more veth pair into the bridge."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def require_namespaces() -> None:
    """Skip, saying why, where network namespaces cannot be made."""
    if os.geteuid() != 0:
        pytest.skip("cluster tests make network namespaces: they need root")
    for tool in ("ip", "nsenter", "redis-server"):
        if shutil.which(tool) is None:
            pytest.skip(f"cluster tests need {tool} on the PATH (redis-server: apt-get install redis-server)")


@dataclass
class Network:
    tag: str = field(default_factory=lambda: f"io{os.getpid() % 100000}")
    subnet: str = field(default_factory=lambda: f"198.18.{os.getpid() % 250}")
    hosts: dict[str, str] = field(default_factory=dict)
    """Host name to its address."""
    _namespaces: list[str] = field(default_factory=list)
    _links: list[str] = field(default_factory=list)

    @property
    def hub(self) -> str:
        return f"{self.tag}-hub"

    def create(self) -> None:
        self._namespace(self.hub)
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        # The test's own end, in its own namespace.
        local, peer = f"{self.tag}t", f"{self.tag}tp"
        _ip("link", "add", local, "type", "veth", "peer", "name", peer, "netns", self.hub)
        self._links.append(local)
        self._attach(peer)
        _ip("addr", "add", f"{self.subnet}.254/24", "dev", local)
        _ip("link", "set", local, "up")

    def add_host(self, name: str) -> str:
        """A namespace with one address on the bridge; returns the address."""
        number = len(self.hosts) + 1
        namespace = self.namespace(name)
        self._namespace(namespace)
        peer = f"{self.tag}h{number}"
        _ip("-n", namespace, "link", "add", "eth0", "type", "veth", "peer", "name", peer, "netns", self.hub)
        self._attach(peer)
        address = f"{self.subnet}.{number}"
        _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip("-n", namespace, "link", "set", "eth0", "up")
        _ip("-n", namespace, "link", "set", "lo", "up")
        self.hosts[name] = address
        return address

    def namespace(self, name: str) -> str:
        return f"{self.tag}-{name}"

    def command(self, host: str, argv: Sequence[str]) -> list[str]:
        """``argv`` run in ``host``'s network namespace and nothing else of it: nsenter, not
        ``ip netns exec``, which remounts /sys and so hides the cgroups the jail needs."""
        return ["nsenter", f"--net=/run/netns/{self.namespace(host)}", *argv]

    def _namespace(self, name: str) -> None:
        _ip("netns", "add", name)
        self._namespaces.append(name)

    def _attach(self, link: str) -> None:
        _ip("-n", self.hub, "link", "set", link, "master", "br0")
        _ip("-n", self.hub, "link", "set", link, "up")

    def destroy(self) -> None:
        for link in self._links:
            subprocess.run(["ip", "link", "del", link], capture_output=True)
        for namespace in reversed(self._namespaces):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


def redis_command(data_dir: Path, address: str, port: int) -> list[str]:
    """A Redis of the test's own, persisting every write to its append-only file before answering."""
    return ["redis-server", "--bind", address, "--port", str(port), "--dir", str(data_dir), "--appendonly", "yes",
            "--appendfsync", "always", "--save", "", "--protected-mode", "no", "--daemonize", "no"]
