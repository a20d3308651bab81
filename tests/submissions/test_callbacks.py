"""Callbacks: a finished submission is POSTed, signed, retried; addresses inside our own
networks are refused before any connection, also when a name resolves to one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import require_images, start_server, stop_server, wait_for
from judgekit import SECRET, Receiver, signed

from infra_operator.config import SubmissionSettings
from infra_operator.submissions import CallbackRefused, CallbackSender


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver(failures=1)
    try:
        yield running
    finally:
        running.close()


def _settings(**changes: Any) -> SubmissionSettings:
    return SubmissionSettings(callback_secret=SECRET, callback_backoff_seconds=0.05, **changes)


def test_a_callback_is_signed_and_retried(tmp_path: Path, receiver: Receiver) -> None:
    require_images("python")
    env = {"INFRA_OPERATOR_SUBMISSIONS__STORE": str(tmp_path / "s.sqlite3"),
           "INFRA_OPERATOR_SUBMISSIONS__CALLBACK_SECRET": SECRET,
           "INFRA_OPERATOR_SUBMISSIONS__CALLBACK_ALLOW": '["127.0.0.0/8"]',
           "INFRA_OPERATOR_SUBMISSIONS__CALLBACK_BACKOFF_SECONDS": "0.2"}
    server = start_server(tmp_path, env=env)
    try:
        with server.client() as client:
            answer = client.post("/api/v1/submissions", json={
                "language": "python", "code": "print('called back')",
                "callback_url": f"http://127.0.0.1:{receiver.port}/hook?x=1"})
            assert answer.status_code == 202, answer.text
            wait_for(lambda: len(receiver.received) >= 2, "the callback and its retry")
    finally:
        stop_server(server)
    headers, body = receiver.received[-1]
    assert signed(headers, body)
    assert headers["content-type"] == "application/json"
    sent = json.loads(body)
    assert sent["id"] == answer.json()["id"] and sent["status"] == "done"
    assert sent["result"]["stdout"] == "called back\n"
    assert receiver.received[0][1] == body  # the retry sent the same submission


@pytest.mark.unit
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "10.1.2.3", "192.168.0.10", "172.16.5.5",
                                  "169.254.169.254", "100.64.0.1", "[::1]", "[fe80::1]", "[fd00:ec2::254]",
                                  "[::ffff:10.0.0.1]", "0.0.0.0"])
def test_our_own_networks_are_refused(host: str) -> None:
    sender = CallbackSender(_settings())
    with pytest.raises(CallbackRefused, match="not a public address"):
        sender.check(f"http://{host}:8080/hook")


def test_a_refused_submission_is_a_400_and_nothing_is_sent(tmp_path: Path) -> None:
    require_images("python")
    listener = Receiver()
    env = {"INFRA_OPERATOR_SUBMISSIONS__STORE": str(tmp_path / "s.sqlite3"),
           "INFRA_OPERATOR_SUBMISSIONS__CALLBACK_SECRET": SECRET}
    server = start_server(tmp_path, env=env)
    try:
        with server.client() as client:
            for host in ("127.0.0.1", "localhost"):  # localhost: a name the host resolves to loopback
                answer = client.post("/api/v1/submissions", json={
                    "language": "python", "code": "print(1)", "callback_url": f"http://{host}:{listener.port}/"})
                assert answer.status_code == 400 and "not a public address" in answer.json()["error"], answer.text
    finally:
        stop_server(server)
        listener.close()
    assert listener.received == []


@pytest.mark.unit
def test_a_name_resolving_to_a_private_address_is_refused_before_connecting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    looked_up: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        looked_up.append(host)
        return ["93.184.216.34", "10.0.0.7"]  # one public address is not enough: every one must be

    def no_connection(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(httpx.Client, "post", no_connection)
    sender = CallbackSender(_settings(), resolver=resolver)
    try:
        assert sender.send("http://hooks.example.com/done", {"id": "x"}) is False
    finally:
        sender.close()
    assert looked_up == ["hooks.example.com"]  # refused at once, not retried


@pytest.mark.unit
def test_the_connection_goes_to_the_checked_address(receiver: Receiver) -> None:
    # A name no DNS knows (.invalid): only a connection pinned to the resolved address can reach
    # the receiver, and the receiver still sees the name in Host.
    receiver.failures = 0
    sender = CallbackSender(_settings(callback_allow=["127.0.0.0/8"]),
                            resolver=lambda host, port: ["127.0.0.1"] if host == "hooks.invalid" else [])
    try:
        assert sender.send(f"http://hooks.invalid:{receiver.port}/done", {"id": "y"}) is True
    finally:
        sender.close()
    headers, body = receiver.received[0]
    assert headers["host"] == f"hooks.invalid:{receiver.port}" and json.loads(body) == {"id": "y"}
