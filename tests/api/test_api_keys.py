"""The API-key check compares against every key, whichever matches, so its time tells nothing."""

from __future__ import annotations

import hmac

import pytest

from infra_operator.api import _deps

KEYS = ["first-key", "second-key", "third-key"]


@pytest.mark.parametrize(("offered", "expected"), [
    ("first-key", True), ("third-key", True), ("wrong", False), ("first-ke", False), ("first-key-", False)])
def test_every_key_is_compared_whether_or_not_one_matches(
        monkeypatch: pytest.MonkeyPatch, offered: str, expected: bool) -> None:
    compared: list[tuple[bytes, bytes]] = []
    compare = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    assert _deps.key_matches(offered, KEYS) is expected
    assert len(compared) == len(KEYS)
    # Compared at one length whatever the key's, so a mismatch in length returns no sooner.
    assert {len(side) for pair in compared for side in pair} == {32}
