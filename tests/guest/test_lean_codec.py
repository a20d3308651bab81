"""The agent speaks JSON through the C codec directly and names signals without the
``signal`` module's enums (both for its start-up time): the same answers as the modules."""

from __future__ import annotations

import json
import signal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra_operator.guest import ProtocolError
from infra_operator.guest._signals import name
from infra_operator.guest.protocol import decode_json, encode_json

pytestmark = pytest.mark.unit

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text(), values))
def test_encoding_matches_json_dumps_and_decoding_round_trips(message: dict[str, object]) -> None:
    encoded = encode_json(message)
    assert encoded == json.dumps(message, separators=(",", ":")).encode("utf-8")
    assert decode_json(encoded) == json.loads(encoded) == message


@pytest.mark.parametrize("payload", [b'{"a":', b"{} x", b"\xff", b"", b"[1,]", b"{'a': 1}", b"nan"])
def test_what_json_loads_refuses_is_a_protocol_error(payload: bytes) -> None:
    with pytest.raises(ValueError):
        json.loads(payload)
    with pytest.raises(ProtocolError):
        decode_json(payload)


def test_whitespace_around_the_value_is_allowed_as_json_loads_allows_it() -> None:
    assert decode_json(b' \n{"a": [1, 2]}\r\n') == {"a": [1, 2]}


def test_signal_names_are_the_enums_names() -> None:
    named = {member.value: member.name for member in signal.Signals}
    for number in range(1, 65):
        assert name(number) == named.get(number, f"SIG{number}")
