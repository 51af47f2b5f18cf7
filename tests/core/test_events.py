"""Signing and verifying events, and interoperability with rust-nostr (nostr-sdk) both ways."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xchat.core.events import sign_event, verify_event
from xchat.crypto.keys import CURVE_ORDER, SecretKey
from xchat.errors import DecodeError, InvalidSignature, LocalProtocolError
from xchat.wire.event import Event, event_from_json, parse_event

sdk = pytest.importorskip("nostr_sdk")

SECRET = SecretKey(
    bytes.fromhex("b7e151628aed2a6abf7158809cf4f3c762e7160f38b4da56a784d9045190cfef")
)
OTHER = SecretKey(bytes(31) + b"\x02")

text = st.text(st.characters(exclude_categories=["Cs"]), max_size=80)
tag_lists = st.lists(
    st.builds(lambda name, values: [name, *values], text.filter(bool), st.lists(text, max_size=3)),
    max_size=4,
)
secrets = st.integers(min_value=1, max_value=CURVE_ORDER - 1).map(
    lambda n: SecretKey(n.to_bytes(32, "big"))
)


def rng(seed: int = 1) -> Any:
    return random.Random(seed).randbytes


BASE_FIELDS: dict[str, Any] = {
    "kind": 1,
    "tags": [],
    "content": "hello",
    "created_at": 1_700_000_000,
}


def signed(**fields: Any) -> Event:
    return sign_event(SECRET, rng=rng(), **{**BASE_FIELDS, **fields})


# --- our own round trip -------------------------------------------------------------------------


def test_sign_then_verify() -> None:
    event = signed(tags=[["p", OTHER.public_key.hex]])
    assert event.pubkey == SECRET.public_key.hex
    verify_event(event)
    assert parse_event(event.to_dict()) == event
    verify_event(event_from_json(event.to_json()))


def test_one_time_keys_sign_valid_events() -> None:
    key = SecretKey.generate(rng(3))
    event = sign_event(
        key, kind=1059, tags=[], content="wrapped", created_at=1, rng=rng(), one_time=True
    )
    verify_event(event)


def test_signature_is_deterministic_given_the_rng() -> None:
    assert signed() == signed()
    other = sign_event(
        SECRET, kind=1, tags=[], content="hello", created_at=1_700_000_000, rng=rng(2)
    )
    assert other.id == signed().id
    assert other.sig != signed().sig  # fresh BIP-340 aux randomness
    verify_event(other)


def test_sign_draws_32_bytes_of_aux_randomness() -> None:
    draws: list[int] = []

    def counting(n: int) -> bytes:
        draws.append(n)
        return bytes(n)

    sign_event(SECRET, kind=1, tags=[], content="x", created_at=1, rng=counting)
    assert draws == [32]


@settings(max_examples=25, deadline=None)
@given(secret=secrets, kind=st.integers(0, 65535), tags=tag_lists, content=text)
def test_sign_verify_any(secret: SecretKey, kind: int, tags: list[list[str]], content: str) -> None:
    event = sign_event(secret, kind=kind, tags=tags, content=content, created_at=1, rng=rng())
    verify_event(parse_event(event.to_dict()))


# --- bad signatures -----------------------------------------------------------------------------


def test_flipped_signature_is_invalid() -> None:
    event = signed()
    for index in (0, 63, 64, 127):
        digit = event.sig[index]
        flipped = event.sig[:index] + ("0" if digit != "0" else "1") + event.sig[index + 1 :]
        with pytest.raises(InvalidSignature):
            verify_event(dataclasses.replace(event, sig=flipped))


def test_signature_by_another_key_is_invalid() -> None:
    event = signed()
    theirs = sign_event(
        OTHER, kind=1, tags=[], content="hello", created_at=1_700_000_000, rng=rng()
    )
    with pytest.raises(InvalidSignature):
        verify_event(dataclasses.replace(event, sig=theirs.sig))
    # The same event claimed by another author has another id: parse_event catches that first.
    with pytest.raises(InvalidSignature, match="id"):
        parse_event(dict(event.to_dict(), pubkey=OTHER.public_key.hex))


def test_edited_event_with_recomputed_id_is_invalid() -> None:
    """An attacker who edits the content and fixes the id still lacks the signature."""
    event = signed(content="pay alice")
    forged = signed(content="pay mallory")
    with pytest.raises(InvalidSignature):
        verify_event(dataclasses.replace(forged, sig=event.sig))


def test_pubkey_off_the_curve_is_invalid() -> None:
    event = signed()
    with pytest.raises(InvalidSignature):
        verify_event(dataclasses.replace(event, pubkey="00" * 32))
    with pytest.raises(InvalidSignature):
        verify_event(dataclasses.replace(event, pubkey="ff" * 32))


def test_zero_signature_is_invalid() -> None:
    with pytest.raises(InvalidSignature):
        verify_event(dataclasses.replace(signed(), sig="00" * 64))


@pytest.mark.parametrize(
    "fields",
    [{"content": "\ud800"}, {"tags": [["t", "\udfff"]]}, {"content": b"bytes"}],
    ids=["surrogate-content", "surrogate-tag", "bytes-content"],
)
def test_sign_refuses_unserializable_fields(fields: dict[str, Any]) -> None:
    with pytest.raises(LocalProtocolError):
        signed(**fields)


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"kind": 65536}, id="kind-too-big"),
        pytest.param({"kind": -1}, id="kind-negative"),
        pytest.param({"kind": True}, id="kind-bool"),
        pytest.param({"created_at": -5}, id="created_at-negative"),
        pytest.param({"created_at": True}, id="created_at-bool"),
        pytest.param({"tags": [[1]]}, id="tag-value-int"),
        pytest.param({"tags": "e"}, id="tags-str"),
    ],
)
def test_sign_refuses_what_parse_event_refuses(fields: dict[str, Any]) -> None:
    # Today signing succeeds and parse_event(event.to_dict()) raises DecodeError.
    with pytest.raises(LocalProtocolError):
        signed(**fields)


# --- interoperability with rust-nostr -----------------------------------------------------------

SDK_KEYS = sdk.Keys.generate()


def sdk_event(kind: int, tags: list[list[str]], content: str, created_at: int) -> Any:
    builder = sdk.EventBuilder(sdk.Kind(kind), content).tags([sdk.Tag.parse(t) for t in tags])
    return builder.custom_created_at(sdk.Timestamp.from_secs(created_at)).finalize(SDK_KEYS)


def test_nostr_sdk_event_verifies_here() -> None:
    theirs = sdk_event(
        1, [["t", "xchat"], ["p", SECRET.public_key.hex]], "héllo \n 😀", 1_700_000_000
    )
    event = event_from_json(theirs.as_json())
    assert event.id == theirs.id().to_hex()
    verify_event(event)


def test_our_event_verifies_in_nostr_sdk() -> None:
    event = signed(tags=[["t", "xchat"]], content="héllo \n 😀 \u2028")
    theirs = sdk.Event.from_json(event.to_json().decode())
    assert theirs.verify()
    assert theirs.id().to_hex() == event.id
    assert theirs.author().to_hex() == SECRET.public_key.hex


def test_nostr_sdk_refuses_our_event_with_a_bad_signature() -> None:
    event = signed()
    flipped = dataclasses.replace(event, sig=("0" if event.sig[0] != "0" else "1") + event.sig[1:])
    theirs = sdk.Event.from_json(flipped.to_json().decode())
    assert not theirs.verify()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.integers(0, 65535),
    tags=tag_lists,
    content=text,
    created_at=st.integers(min_value=0, max_value=2**32),
)
def test_nostr_sdk_to_us(kind: int, tags: list[list[str]], content: str, created_at: int) -> None:
    theirs = sdk_event(kind, tags, content, created_at)
    event = event_from_json(theirs.as_json())
    assert event.id == theirs.id().to_hex()
    verify_event(event)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    secret=secrets,
    kind=st.integers(0, 65535),
    tags=tag_lists,
    content=text,
    created_at=st.integers(min_value=0, max_value=2**32),
)
def test_us_to_nostr_sdk(
    secret: SecretKey, kind: int, tags: list[list[str]], content: str, created_at: int
) -> None:
    event = sign_event(
        secret, kind=kind, tags=tags, content=content, created_at=created_at, rng=rng()
    )
    theirs = sdk.Event.from_json(event.to_json().decode())
    assert theirs.verify()
    assert theirs.id().to_hex() == event.id


def test_parse_errors_are_remote_errors() -> None:
    with pytest.raises(DecodeError):
        event_from_json(b'{"kind": 1}')
