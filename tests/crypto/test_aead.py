"""Records at rest: ChaCha20-Poly1305 with a version byte, random nonce and associated data."""

from __future__ import annotations

import random
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import given
from hypothesis import strategies as st

from xchat.crypto.aead import RECORD_VERSION, RecordKey
from xchat.errors import DecodeError, DecryptionError, LocalProtocolError

KEY = bytes(range(32))
AAD = b"contact:42"
PLAINTEXT = b"a record at rest"
REMOTE_ERRORS = (DecodeError, DecryptionError)

keys32 = st.binary(min_size=32, max_size=32)


def rng(seed: int = 1) -> Any:
    return random.Random(seed).randbytes


def test_layout_matches_the_docstring() -> None:
    """``version || nonce || ChaCha20-Poly1305(key, nonce, plaintext, aad)``."""
    sealed = RecordKey(KEY).seal(PLAINTEXT, AAD, rng())
    nonce = rng()(12)
    assert RECORD_VERSION == 1
    assert sealed[0] == RECORD_VERSION
    assert sealed[1:13] == nonce
    assert sealed[13:] == ChaCha20Poly1305(KEY).encrypt(nonce, PLAINTEXT, AAD)
    assert len(sealed) == len(PLAINTEXT) + 29


@given(key=keys32, plaintext=st.binary(max_size=2000), aad=st.binary(max_size=100))
def test_round_trip(key: bytes, plaintext: bytes, aad: bytes) -> None:
    record = RecordKey(key)
    assert record.open(record.seal(plaintext, aad, rng()), aad) == plaintext


def test_fresh_nonce_per_seal() -> None:
    record = RecordKey(KEY)
    draw = random.Random(5).randbytes
    first, second = record.seal(PLAINTEXT, AAD, draw), record.seal(PLAINTEXT, AAD, draw)
    assert first[1:13] != second[1:13]
    assert first != second
    assert record.open(first, AAD) == record.open(second, AAD) == PLAINTEXT


@given(aad=st.binary(max_size=40), other=st.binary(max_size=40))
def test_associated_data_is_bound(aad: bytes, other: bytes) -> None:
    record = RecordKey(KEY)
    sealed = record.seal(PLAINTEXT, aad, rng())
    if other == aad:
        assert record.open(sealed, other) == PLAINTEXT
    else:
        with pytest.raises(DecryptionError):
            record.open(sealed, other)


def test_record_swapped_between_ids_does_not_open() -> None:
    record = RecordKey(KEY)
    sealed = record.seal(PLAINTEXT, b"contact:1", rng())
    with pytest.raises(DecryptionError):
        record.open(sealed, b"contact:2")


def test_wrong_key() -> None:
    sealed = RecordKey(KEY).seal(PLAINTEXT, AAD, rng())
    with pytest.raises(DecryptionError) as info:
        RecordKey(bytes(32)).open(sealed, AAD)
    assert info.value.__cause__ is None


@given(plaintext=st.binary(max_size=200), data=st.data())
def test_any_flipped_bit_is_detected(plaintext: bytes, data: st.DataObject) -> None:
    record = RecordKey(KEY)
    sealed = bytearray(record.seal(plaintext, AAD, rng()))
    index = data.draw(st.integers(min_value=0, max_value=len(sealed) - 1), label="index")
    sealed[index] ^= 1 << data.draw(st.integers(min_value=0, max_value=7), label="bit")
    expected = DecodeError if index == 0 else DecryptionError
    with pytest.raises(expected):
        record.open(bytes(sealed), AAD)


@pytest.mark.parametrize("length", [0, 1, 13, 28])
def test_truncated_below_the_overhead_is_a_decode_error(length: int) -> None:
    sealed = RecordKey(KEY).seal(PLAINTEXT, AAD, rng())
    with pytest.raises(DecodeError, match="truncated"):
        RecordKey(KEY).open(sealed[:length], AAD)


def test_truncated_above_the_overhead_does_not_authenticate() -> None:
    record = RecordKey(KEY)
    sealed = record.seal(PLAINTEXT, AAD, rng())
    for length in range(29, len(sealed)):
        with pytest.raises(DecryptionError):
            record.open(sealed[:length], AAD)
    with pytest.raises(DecryptionError):
        record.open(sealed + b"\x00", AAD)


def test_empty_plaintext_is_exactly_the_overhead() -> None:
    record = RecordKey(KEY)
    sealed = record.seal(b"", AAD, rng())
    assert len(sealed) == 29
    assert record.open(sealed, AAD) == b""


@pytest.mark.parametrize("version", [0, 2, 255])
def test_unknown_version_is_a_decode_error(version: int) -> None:
    sealed = RecordKey(KEY).seal(PLAINTEXT, AAD, rng())
    with pytest.raises(DecodeError, match=f"unknown version {version}"):
        RecordKey(KEY).open(bytes([version]) + sealed[1:], AAD)


@given(garbage=st.binary(max_size=200), aad=st.binary(max_size=20))
def test_garbage_raises_only_remote_errors(garbage: bytes, aad: bytes) -> None:
    with pytest.raises(REMOTE_ERRORS):
        RecordKey(KEY).open(garbage, aad)


@pytest.mark.parametrize("key", [b"", bytes(16), bytes(31), bytes(33), bytes(64)])
def test_key_length(key: bytes) -> None:
    with pytest.raises(LocalProtocolError):
        RecordKey(key)


def test_repr_hides_the_key() -> None:
    key = bytes.fromhex("c0ffee" * 10 + "c0ff")
    record = RecordKey(key)
    assert repr(record) == "RecordKey(<secret>)"
    for leaked in (key.hex(), key.hex()[:8], str(key)):
        assert leaked not in repr(record)
        assert leaked not in str(record)
