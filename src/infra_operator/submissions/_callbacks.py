"""Callbacks: a finished submission POSTed as JSON to the address its sender gave, signed,
retried with backoff, and never to an address inside our own networks.

The SSRF defence resolves the name first, checks every address it resolves to, and then
connects to the checked address itself (the name goes only in the Host header and TLS's
SNI), so a DNS answer that changes between the check and the connection (rebinding)
cannot redirect the request. Redirects are not followed.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from ..errors import InvalidRequest

if TYPE_CHECKING:
    from ..config import SubmissionSettings

log = logging.getLogger(__name__)

Resolver = Callable[[str, int], Sequence[str]]
"""A host name and port to the addresses it resolves to."""
SIGNATURE_HEADER = "X-Infra-Operator-Signature"
TIMESTAMP_HEADER = "X-Infra-Operator-Timestamp"
_SEND_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def system_resolver(host: str, port: int) -> list[str]:
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise CallbackRefused(f"callback_url: cannot resolve {host}: {exc.strerror}") from exc
    return [str(info[4][0]) for info in found]


class CallbackRefused(InvalidRequest):
    """A callback address we will not send to (or cannot resolve)."""


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 of ``timestamp.body``: a receiver recomputes it with the shared secret, and
    refuses an old timestamp to stop a replay."""
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class CallbackSender:
    def __init__(self, settings: SubmissionSettings, resolver: Resolver = system_resolver) -> None:
        self.settings = settings
        self.resolver = resolver
        self.allowed = [ipaddress.ip_network(network, strict=False) for network in settings.callback_allow]
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="callback")
        self._closed = threading.Event()

    def _permitted(self, address: IPAddress) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        # Not global: loopback, private, link-local (the metadata service), shared, reserved, multicast.
        return address.is_global or any(address in network for network in self.allowed)

    def check(self, url: str) -> tuple[str, int, list[str]]:
        """The URL's host, port and resolved addresses, every one of them permitted; else refused."""
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:  # a bad IPv6 literal, a port out of range
            raise CallbackRefused(f"callback_url: {exc}") from exc
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CallbackRefused(f"callback_url must be an http or https URL with a host: {url!r}")
        if parts.username or parts.password:
            raise CallbackRefused("callback_url must not carry credentials")
        if self.settings.callback_secret is None:
            raise CallbackRefused("callbacks are not configured on this server: it has no signing secret "
                                  "(INFRA_OPERATOR_SUBMISSIONS__CALLBACK_SECRET)")
        addresses = list(self.resolver(parts.hostname, port))
        if not addresses:
            raise CallbackRefused(f"callback_url: {parts.hostname} resolves to no address")
        for text in addresses:
            address = ipaddress.ip_address(text.split("%")[0])
            if not self._permitted(address):
                raise CallbackRefused(f"callback_url refused: {parts.hostname} is {address}, not a public address")
        return parts.hostname, port, addresses

    def deliver(self, url: str, payload: dict[str, Any]) -> None:
        """Send in the background; a closed sender sends nothing more."""
        if not self._closed.is_set():
            self._pool.submit(self._send_logged, url, payload)

    def _send_logged(self, url: str, payload: dict[str, Any]) -> None:
        try:
            self.send(url, payload)
        except Exception:
            log.exception("callback to %s failed", url)

    def send(self, url: str, payload: dict[str, Any]) -> bool:
        """POST with retries and backoff; True once the receiver answered 2xx. A refused address
        is not retried: the answer would be the same."""
        body = json.dumps(payload).encode()
        wait = self.settings.callback_backoff_seconds
        for attempt in range(1, self.settings.callback_attempts + 1):
            try:
                status = self._post(url, body)
                if 200 <= status < 300:
                    return True
                log.warning("callback to %s: attempt %d answered %d", url, attempt, status)
            except CallbackRefused as exc:
                log.warning("callback to %s refused: %s", url, exc.message)
                return False
            except httpx.HTTPError as exc:
                log.warning("callback to %s: attempt %d failed: %s", url, attempt, exc)
            if attempt < self.settings.callback_attempts and self._closed.wait(wait):
                return False
            wait *= 2
        return False

    def _post(self, url: str, body: bytes) -> int:
        host, port, addresses = self.check(url)
        parts = urlsplit(url)
        pinned = addresses[0]
        netloc = f"[{pinned}]:{port}" if ":" in pinned else f"{pinned}:{port}"
        timestamp = str(int(time.time()))
        secret = self.settings.callback_secret
        assert secret is not None  # check() refused otherwise
        headers = {"Host": parts.netloc.rpartition("@")[2], "Content-Type": "application/json",
                   TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature(secret, timestamp, body)}
        with httpx.Client(timeout=_SEND_TIMEOUT, follow_redirects=False, trust_env=False) as client:
            response = client.post(urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")),
                                   content=body, headers=headers, extensions={"sni_hostname": host})
        return response.status_code

    def close(self) -> None:
        self._closed.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
