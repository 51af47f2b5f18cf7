"""Unpadded base64 (vodozemac's encoding): round trips and one accepted spelling per value."""

from __future__ import annotations

import base64
import contextlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xchat.errors import DecodeError
from xchat.wire.b64 import b64decode, b64encode

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"", ""),
        (b"f", "Zg"),
        (b"fo", "Zm8"),
        (b"foo", "Zm9v"),
        (b"foob", "Zm9vYg"),
        (b"fooba", "Zm9vYmE"),
        (b"foobar", "Zm9vYmFy"),  # RFC 4648 section 10, padding removed
        (b"\xfb\xff", "+/8"),  # the standard alphabet, not the URL-safe one
        (bytes(32), "A" * 43),
    ],
)
def test_known_answers(raw: bytes, text: str) -> None:
    assert b64encode(raw) == text
    assert b64decode(text) == raw


@given(st.binary(max_size=300))
def test_round_trip(raw: bytes) -> None:
    text = b64encode(raw)
    assert "=" not in text
    assert len(text) == -(-len(raw) * 4 // 3)
    assert b64decode(text) == raw
    assert text == base64.b64encode(raw).decode().rstrip("=")


@given(st.binary(min_size=1, max_size=60), st.data())
def test_non_canonical_trailing_bits_are_rejected(raw: bytes, data: st.DataObject) -> None:
    text = b64encode(raw)
    unused_bits = {0: 0, 1: 4, 2: 2}[len(raw) % 3]
    if not unused_bits:
        return
    last = ALPHABET.index(text[-1])
    extra = data.draw(st.integers(min_value=1, max_value=(1 << unused_bits) - 1))
    sloppy = text[:-1] + ALPHABET[last | extra]
    assert base64.b64decode(sloppy + "=" * (-len(sloppy) % 4)) == raw  # lenient decoders agree
    with pytest.raises(DecodeError, match="canonical"):
        b64decode(sloppy)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("Zg==", id="padded"),
        pytest.param("Zm8=", id="padded-one"),
        pytest.param("Zm9v=", id="extra-pad"),
        pytest.param("Z", id="one-char"),
        pytest.param("Zm9vY", id="length-1-mod-4"),
        pytest.param("Zm 9v", id="space"),
        pytest.param("Zm9v\n", id="newline"),
        pytest.param(" Zm9v", id="leading-space"),
        pytest.param("-_8", id="url-safe"),
        pytest.param("Zm9v!", id="punctuation"),
        pytest.param("Zm9vé", id="non-ascii"),
        pytest.param("Zh", id="non-canonical-bits"),
        pytest.param("Zm9=", id="pad-in-3"),
    ],
)
def test_strictness(text: str) -> None:
    with pytest.raises(DecodeError):
        b64decode(text)


@pytest.mark.parametrize("value", [None, 5, b"Zm9v", bytearray(b"Zm9v"), ["Zm9v"]])
def test_non_str_is_a_decode_error(value: Any) -> None:
    with pytest.raises(DecodeError):
        b64decode(value)


@pytest.mark.parametrize("max_bytes", [0, 1, 2, 3, 4, 31, 32, 33])
def test_size_limit_is_exact(max_bytes: int) -> None:
    assert b64decode(b64encode(bytes(max_bytes)), max_bytes=max_bytes) == bytes(max_bytes)
    with pytest.raises(DecodeError, match="size limit"):
        b64decode(b64encode(bytes(max_bytes + 1)), max_bytes=max_bytes)


def test_default_limit_is_one_mebibyte() -> None:
    assert len(b64decode(b64encode(bytes(1 << 20)))) == 1 << 20
    with pytest.raises(DecodeError, match="size limit"):
        b64decode("A" * ((1 << 20) * 4 // 3 + 4))


@given(st.text(max_size=80))
def test_arbitrary_text_raises_only_decode_error(text: str) -> None:
    with contextlib.suppress(DecodeError):
        assert b64encode(b64decode(text)) == text


@given(st.text(alphabet=ALPHABET + "=", max_size=80))
def test_alphabet_text_decodes_only_canonically(text: str) -> None:
    with contextlib.suppress(DecodeError):
        assert b64encode(b64decode(text)) == text
