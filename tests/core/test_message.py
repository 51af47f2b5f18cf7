"""Application messages: strict codec, round trips, and peer input that must be refused."""

from __future__ import annotations

import contextlib

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from xchat.core.message import (
    MAX_RECEIPT_TARGETS,
    MAX_TEXT_BYTES,
    AppMessage,
    Delete,
    Delivered,
    Edit,
    Reaction,
    Read,
    Reply,
    Text,
    decode_app_message,
    encode_app_message,
    new_message_id,
)
from xchat.errors import DecodeError, LocalProtocolError

ids = st.one_of(
    st.binary(min_size=16, max_size=16).map(bytes.hex),
    st.binary(min_size=32, max_size=32).map(bytes.hex),
)
stamps = st.integers(min_value=0, max_value=2**53 - 1)
bodies = st.text(min_size=1, max_size=300).filter(
    lambda t: not any(0xD800 <= ord(c) <= 0xDFFF for c in t)
)
emojis = st.sampled_from(["", "👍", "❤️", "😂", "🎉", "+"])
targets = st.lists(ids, min_size=1, max_size=20).map(tuple)

messages = st.one_of(
    st.builds(Text, ids, stamps, bodies),
    st.builds(Reply, ids, stamps, bodies, ids),
    st.builds(Reaction, ids, stamps, ids, emojis),
    st.builds(Edit, ids, stamps, ids, bodies),
    st.builds(Delete, ids, stamps, ids),
    st.builds(Delivered, ids, stamps, targets),
    st.builds(Read, ids, stamps, targets),
)


@given(messages)
def test_every_message_type_round_trips_through_json(message: AppMessage) -> None:
    wire = orjson.dumps(encode_app_message(message))
    assert decode_app_message(orjson.loads(wire)) == message


def test_encoding_is_the_documented_shape() -> None:
    message = Reply("00" * 16, 1_700_000_000_123, "yes", "11" * 16)
    assert encode_app_message(message) == {
        "v": 1,
        "type": "reply",
        "id": "00" * 16,
        "ts": 1_700_000_000_123,
        "body": "yes",
        "reply_to": "11" * 16,
    }


def test_new_ids_are_random_hex() -> None:
    first, second = new_message_id(lambda n: b"\x01" * n), new_message_id(lambda n: b"\x02" * n)
    assert first == "01" * 16
    assert second == "02" * 16


GOOD = {"v": 1, "type": "text", "id": "ab" * 16, "ts": 1, "body": "hi"}


@pytest.mark.parametrize(
    "change",
    [
        {"v": 2},
        {"v": "1"},
        {"type": "poll"},
        {"type": None},
        {"id": "AB" * 16},
        {"id": "ab" * 15},
        {"id": 5},
        {"ts": -1},
        {"ts": 1.5},
        {"ts": True},
        {"ts": 2**53},
        {"body": ""},
        {"body": 3},
        {"body": "x" * (MAX_TEXT_BYTES + 1)},
        {"body": "é" * (MAX_TEXT_BYTES // 2 + 1)},
        {"extra": 1},
    ],
)
def test_malformed_messages_are_decode_errors(change: dict[str, object]) -> None:
    with pytest.raises(DecodeError):
        decode_app_message({**GOOD, **change})


@pytest.mark.parametrize(
    "obj",
    [
        None,
        [],
        "text",
        {"v": 1, "type": "text", "id": "ab" * 16, "ts": 1},
        {"v": 1, "type": "reaction", "id": "ab" * 16, "ts": 1, "target": "cd" * 16},
        {"v": 1, "type": "reaction", "id": "ab" * 16, "ts": 1, "target": "x", "emoji": "+"},
        {
            "v": 1,
            "type": "reaction",
            "id": "ab" * 16,
            "ts": 1,
            "target": "cd" * 16,
            "emoji": "🙂" * 40,
        },
        {"v": 1, "type": "read", "id": "ab" * 16, "ts": 1, "targets": []},
        {"v": 1, "type": "read", "id": "ab" * 16, "ts": 1, "targets": "cd" * 16},
        {
            "v": 1,
            "type": "read",
            "id": "ab" * 16,
            "ts": 1,
            "targets": ["cd" * 16] * (MAX_RECEIPT_TARGETS + 1),
        },
        {"v": 1, "type": "delivered", "id": "ab" * 16, "ts": 1, "targets": [1]},
    ],
)
def test_incomplete_or_invalid_messages_are_decode_errors(obj: object) -> None:
    with pytest.raises(DecodeError):
        decode_app_message(obj)


@given(
    st.dictionaries(
        st.sampled_from(
            ["v", "type", "id", "ts", "body", "target", "emoji", "targets", "reply_to", "x"]
        ),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.text(max_size=70),
            st.lists(st.text(max_size=70), max_size=3),
        ),
    )
)
def test_arbitrary_objects_raise_only_decode_error(obj: dict[str, object]) -> None:
    with contextlib.suppress(DecodeError):
        decode_app_message(obj)


def test_building_an_invalid_message_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        Text("nothex", 0, "x")
    with pytest.raises(LocalProtocolError):
        Text("ab" * 16, 0, "")
    with pytest.raises(LocalProtocolError):
        Delivered("ab" * 16, 0, ())
