"""xchat-stream-v1 encrypted blobs: known answers, the format recomputed from its
description, sizes in buckets, and every way a blob can be tampered with refused."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import given, settings
from hypothesis import strategies as st

from xchat.crypto.blob import (
    CHUNK,
    TAG,
    decrypt_blob,
    decrypt_chunks,
    encrypt_blob,
    encrypt_chunks,
    new_blob_key,
    padded_size,
    sealed_size,
)
from xchat.errors import DecodeError, DecryptionError, LocalProtocolError

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "blob.json").read_text())
KEY = bytes(range(32))


def plaintext_of(case: dict[str, object]) -> bytes:
    if "plaintext" in case:
        return bytes.fromhex(str(case["plaintext"]))
    return bytes(i % 251 for i in range(int(str(case["size"]))))


def by_the_description(plaintext: bytes, key: bytes) -> bytes:
    """The format as docs/protocol.md says it, with cryptography directly."""
    need = len(plaintext) + 1
    padded = (
        max(1024, 1 << (need - 1).bit_length())
        if need <= 1 << 20
        else -(-need // (1 << 20)) * (1 << 20)
    )
    data = plaintext + b"\x80" + bytes(padded - need)
    chunks = [data[i : i + (1 << 20)] for i in range(0, len(data), 1 << 20)]
    aead = ChaCha20Poly1305(key)
    return b"".join(
        aead.encrypt(i.to_bytes(11, "big") + bytes([i == len(chunks) - 1]), c, b"xchat-file/v1")
        for i, c in enumerate(chunks)
    )


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["name"])
def test_known_answers(case: dict[str, object]) -> None:
    assert VECTORS["scheme"] == "xchat-stream-v1"
    plaintext = plaintext_of(case)
    key = bytes.fromhex(str(case["key"]))
    sealed = encrypt_blob(plaintext, key)
    if "blob" in case:
        assert sealed.blob.hex() == case["blob"]
    assert (sealed.x, sealed.ox, len(sealed.blob)) == (case["x"], case["ox"], case["stored"])
    assert sealed.blob == by_the_description(plaintext, key)
    assert hashlib.sha256(by_the_description(plaintext, key)).hexdigest() == case["x"]
    assert decrypt_blob(sealed.blob, key, size=len(plaintext), ox=sealed.ox) == plaintext


def test_sizes_fall_in_buckets() -> None:
    assert [padded_size(n) for n in (0, 1, 1023, 1024, 2047, 5000)] == [
        1024,
        1024,
        1024,
        2048,
        2048,
        8192,
    ]
    assert padded_size(CHUNK - 1) == CHUNK
    assert padded_size(CHUNK) == 2 * CHUNK  # the 0x80 marker needs a byte
    assert padded_size(5 * CHUNK + 3) == 6 * CHUNK
    assert sealed_size(0) == 1024 + TAG
    assert sealed_size(3 * CHUNK) == 4 * (CHUNK + TAG)
    with pytest.raises(LocalProtocolError):
        padded_size(-1)


@pytest.mark.parametrize("size", [0, 1, 1024, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7])
def test_round_trip_and_streaming(size: int) -> None:
    plaintext = os.urandom(size)
    key = new_blob_key(os.urandom)
    chunks = list(encrypt_chunks(plaintext, key))
    assert all(len(c) == CHUNK + TAG for c in chunks[:-1])
    assert b"".join(chunks) == encrypt_blob(plaintext, key).blob
    assert b"".join(decrypt_chunks(chunks, key)) == plaintext
    assert len(b"".join(chunks)) == sealed_size(size)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=5000))
def test_any_small_plaintext_round_trips(plaintext: bytes) -> None:
    sealed = encrypt_blob(plaintext, KEY)
    assert decrypt_blob(sealed.blob, KEY, size=len(plaintext), ox=sealed.ox) == plaintext


def test_tampering_is_refused() -> None:
    plaintext = os.urandom(2 * CHUNK + 100)
    chunks = list(encrypt_chunks(plaintext, KEY))
    assert len(chunks) == 3
    flipped = bytearray(chunks[1])
    flipped[10] ^= 1
    cases = {
        "a byte changed": [chunks[0], bytes(flipped), chunks[2]],
        "chunks swapped": [chunks[1], chunks[0], chunks[2]],
        "the last chunk dropped": chunks[:2],
        "a chunk repeated": [chunks[0], chunks[0], chunks[1], chunks[2]],
        "run past the last chunk": [*chunks, chunks[2]],
    }
    for what, sealed in cases.items():
        with pytest.raises(DecryptionError):
            b"".join(decrypt_chunks(sealed, KEY))
        assert what
    with pytest.raises(DecryptionError):
        decrypt_blob(b"".join(chunks), bytes(32))  # another key
    with pytest.raises((DecodeError, DecryptionError)):
        decrypt_blob(b"".join(chunks)[:-1], KEY)  # cut inside the last chunk
    with pytest.raises(DecodeError):
        list(decrypt_chunks([], KEY))
    with pytest.raises(DecodeError):
        list(decrypt_chunks([chunks[0][:TAG]], KEY))


def test_the_message_checks_size_and_hash() -> None:
    sealed = encrypt_blob(b"a photo", KEY)
    with pytest.raises(DecodeError):
        decrypt_blob(sealed.blob, KEY, size=8)
    with pytest.raises(DecodeError):
        decrypt_blob(sealed.blob, KEY, ox=hashlib.sha256(b"another").hexdigest())
    assert "a photo" not in repr(sealed)
    assert sealed.blob.hex() not in repr(sealed)


def test_bad_padding_under_a_valid_tag_is_refused() -> None:
    """A blob sealed by someone holding the key but padded wrongly (no marker, or in a
    bucket that is not its own) is refused, not returned with junk at its end."""
    aead = ChaCha20Poly1305(KEY)
    nonce = bytes(11) + b"\x01"
    no_marker = aead.encrypt(nonce, bytes(1024), b"xchat-file/v1")
    with pytest.raises(DecodeError):
        decrypt_blob(no_marker, KEY)
    wrong_bucket = aead.encrypt(nonce, b"hi\x80" + bytes(2045), b"xchat-file/v1")
    with pytest.raises(DecodeError):
        decrypt_blob(wrong_bucket, KEY)
