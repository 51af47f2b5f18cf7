"""Tests for xchat.wire.bech32: BIP-173 vectors, round trips and strict rejection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xchat.errors import DecodeError, LocalProtocolError
from xchat.wire import bech32

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent.parent / "vectors" / "bech32.json").read_text(encoding="utf-8")
)

hrps = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=83)
payloads = st.binary(max_size=300)


def reference_checksum(hrp: str, groups: list[int]) -> str:
    """An independent BIP-173 checksum, to build strings the encoder would never emit."""
    chk = 1
    values = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp] + groups + [0] * 6
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i, g in enumerate([0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]):
            chk ^= g if (top >> i) & 1 else 0
    chk ^= 1
    return "".join(bech32.CHARSET[(chk >> 5 * (5 - i)) & 31] for i in range(6))


def from_groups(hrp: str, groups: list[int]) -> str:
    data = "".join(bech32.CHARSET[g] for g in groups)
    return f"{hrp}1{data}{reference_checksum(hrp, groups)}"


def test_vectors_name_their_source() -> None:
    assert "BIP-173" in VECTORS["source"]


@pytest.mark.parametrize("text", VECTORS["valid"])
def test_bip173_valid_strings_decode(text: str) -> None:
    hrp, data = bech32.decode(text)
    assert hrp == text.lower()[: text.rfind("1")]
    assert bech32.encode(hrp, data) == text.lower()


@pytest.mark.parametrize("case", VECTORS["invalid"], ids=lambda case: case["reason"])
def test_bip173_invalid_strings_are_rejected(case: dict[str, str]) -> None:
    with pytest.raises(DecodeError):
        bech32.decode(case["string"])


def test_known_answer() -> None:
    assert bech32.decode("abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw") == (
        "abcdef",
        bytes.fromhex("00443214c74254b635cf84653a56d7c675be77df"),
    )


def test_reference_checksum_agrees_with_encoder() -> None:
    assert from_groups("abcdef", list(range(32))) == bech32.encode(
        "abcdef", bytes.fromhex("00443214c74254b635cf84653a56d7c675be77df")
    )


@given(hrps, payloads)
def test_round_trip(hrp: str, data: bytes) -> None:
    text = bech32.encode(hrp, data)
    assert text == text.lower()
    assert bech32.decode(text) == (hrp.lower(), data)


@given(hrps, payloads)
def test_uppercase_round_trip(hrp: str, data: bytes) -> None:
    assert bech32.decode(bech32.encode(hrp, data).upper()) == (hrp.lower(), data)


@given(payloads, st.data())
def test_mixed_case_is_rejected(data: bytes, draw: st.DataObject) -> None:
    text = bech32.encode("xchat", data)
    letters = [i for i, c in enumerate(text) if c.isalpha()]
    i = draw.draw(st.sampled_from(letters))
    with pytest.raises(DecodeError, match="mixes upper and lower case"):
        bech32.decode(text[:i] + text[i].upper() + text[i + 1 :])


def test_bad_checksum_reason() -> None:
    text = bech32.encode("a", b"hello")
    last = "q" if text[-1] != "q" else "p"
    with pytest.raises(DecodeError, match="checksum does not match"):
        bech32.decode(text[:-1] + last)


def test_non_zero_padding_is_rejected() -> None:
    # One byte is two groups: 8 data bits and 2 padding bits, here 0b01.
    assert bech32.decode(from_groups("a", [0, 0])) == ("a", b"\x00")
    with pytest.raises(DecodeError, match="padding bits are not zero"):
        bech32.decode(from_groups("a", [0, 1]))


@pytest.mark.parametrize("count", [1, 3, 6])
def test_incomplete_group_is_rejected(count: int) -> None:
    # 5, 15 and 30 bits leave 5, 7 and 6 bits over: more than padding can explain.
    with pytest.raises(DecodeError, match="incomplete group"):
        bech32.decode(from_groups("a", [0] * count))


def test_max_length() -> None:
    text = bech32.encode("a", bytes(100))
    assert len(text) == 168
    assert bech32.decode(text, max_length=168) == ("a", bytes(100))
    with pytest.raises(DecodeError, match="longer than 167"):
        bech32.decode(text, max_length=167)
    long = bech32.encode("a", bytes(3200))
    assert len(long) > bech32.DEFAULT_MAX_LENGTH
    with pytest.raises(DecodeError):
        bech32.decode(long)


def test_no_90_character_limit() -> None:
    text = bech32.encode("nprofile", bytes(200))
    assert len(text) > 90
    assert bech32.decode(text) == ("nprofile", bytes(200))


@pytest.mark.parametrize("value", [None, b"a12uel5l", 5, ["a12uel5l"]])
def test_non_str_input_is_a_decode_error(value: object) -> None:
    with pytest.raises(DecodeError):
        bech32.decode(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("hrp", "data"),
    [("", b""), ("a" * 84, b""), ("é", b""), ("a b", b""), ("a", "text"), (None, b"")],
)
def test_encode_rejects_bad_arguments(hrp: object, data: object) -> None:
    with pytest.raises(LocalProtocolError):
        bech32.encode(hrp, data)  # type: ignore[arg-type]


def test_errors_never_repeat_the_input() -> None:
    secretish = "s3cr3tprefix1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq"
    with pytest.raises(DecodeError) as info:
        bech32.decode(secretish)
    assert "s3cr3t" not in str(info.value)
    assert info.value.__context__ is None


@given(st.text(max_size=200))
def test_arbitrary_text_raises_only_decode_error(text: str) -> None:
    try:
        hrp, data = bech32.decode(text)
    except DecodeError:
        return
    assert bech32.encode(hrp, data) == text.lower()
