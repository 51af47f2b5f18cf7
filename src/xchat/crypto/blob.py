"""Encrypted blobs (attachments): ``xchat-stream-v1``, a STREAM construction over
ChaCha20-Poly1305 with padding to size buckets.

A file gets a fresh 32-byte key (never reused: the nonces below repeat across files).
Its plaintext is padded ISO/IEC 7816-4 style (one ``0x80`` byte, then zeros) to
:func:`padded_size`: the next power of two from 1 KiB up to 1 MiB, then a whole number
of MiB, so a server sees few sizes. The padded plaintext is cut into chunks of
:data:`CHUNK` bytes (1 MiB; the last one may be shorter below 1 MiB), and chunk ``i`` of
``n`` is sealed with ChaCha20-Poly1305 under the nonce ``u88be(i) || u8(i == n - 1)``
and the associated data ``b"xchat-file/v1"``. The blob is the sealed chunks one after
another (each ``len + 16`` bytes); its address is the sha256 of the blob (Blossom's
``x``), ``ox`` the sha256 of the unpadded plaintext.

What this protects: a chunk cannot be changed, moved, dropped or repeated (its index is
in the nonce), the blob cannot be cut short or extended (only the last chunk carries the
last flag, and the padding must be well formed), and the real size, type and name stay in
the end-to-end encrypted message that carries the key. This module only cuts, pads and
checks bytes; the cipher is ``cryptography``'s.

Spec: Hoang, Reyhanitabar, Rogaway, Vizár, "Online Authenticated-Encryption and its
Nonce-Reuse Misuse-Resistance" (CRYPTO 2015), the STREAM construction; RFC 8439.
docs/protocol.md, "Encrypted blobs", describes the format and its vectors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from xchat.crypto.keys import Rng
from xchat.errors import DecodeError, DecryptionError, LocalProtocolError

__all__ = [
    "AAD",
    "CHUNK",
    "MAX_BLOB_PLAINTEXT",
    "SCHEME",
    "TAG",
    "SealedBlob",
    "decrypt_blob",
    "decrypt_chunks",
    "encrypt_blob",
    "encrypt_chunks",
    "new_blob_key",
    "padded_size",
    "sealed_size",
]

SCHEME: Final = "xchat-stream-v1"
AAD: Final = b"xchat-file/v1"
CHUNK: Final = 1 << 20  # plaintext bytes per chunk
TAG: Final = 16
MIN_BUCKET: Final = 1 << 10
#: The largest plaintext this format takes (the node's own limit is lower): 4 GiB.
MAX_BLOB_PLAINTEXT: Final = 1 << 32
_LAST: Final = b"\x01"
_NOT_LAST: Final = b"\x00"


def new_blob_key(rng: Rng) -> bytes:
    """A fresh key for one blob (never used for a second one)."""
    return rng(32)


def padded_size(size: int) -> int:
    """The padded plaintext length for ``size`` bytes (room for the 0x80 marker)."""
    if size < 0 or size > MAX_BLOB_PLAINTEXT:
        raise LocalProtocolError(f"a blob holds 0 to {MAX_BLOB_PLAINTEXT} bytes")
    need = size + 1
    if need <= CHUNK:
        return max(MIN_BUCKET, 1 << (need - 1).bit_length())
    return -(-need // CHUNK) * CHUNK


def sealed_size(size: int) -> int:
    """The blob's length, as a server stores it, for ``size`` bytes of plaintext."""
    padded = padded_size(size)
    return padded + TAG * -(-padded // CHUNK)


def _nonce(index: int, last: bool) -> bytes:
    return index.to_bytes(11, "big") + (_LAST if last else _NOT_LAST)


def encrypt_chunks(plaintext: bytes, key: bytes) -> Iterator[bytes]:
    """The sealed chunks of ``plaintext``, one at a time (the blob is their
    concatenation); each is ``min(CHUNK, rest) + TAG`` bytes."""
    aead = _aead(key)
    padded_len = padded_size(len(plaintext))
    count = -(-padded_len // CHUNK)
    view = memoryview(plaintext)
    for index in range(count):
        start = index * CHUNK
        end = min(start + CHUNK, padded_len)
        chunk: bytes | memoryview = view[start:end]  # no copy: the AEAD reads it in place
        if end > len(plaintext):  # the last chunk: the padding lies wholly in it
            chunk = bytes(chunk) + b"\x80" + bytes(end - len(plaintext) - 1)
        yield aead.encrypt(_nonce(index, index == count - 1), chunk, AAD)


@dataclass(frozen=True, slots=True)
class SealedBlob:
    """A blob and what the message that carries its key says of it."""

    blob: bytes  # what a blob server stores
    x: str  # sha256 of ``blob``, hex: its address
    ox: str  # sha256 of the plaintext, hex
    size: int  # the plaintext's length

    def __repr__(self) -> str:  # never the bytes
        return f"SealedBlob(x={self.x}, size={self.size}, stored={len(self.blob)})"


def encrypt_blob(plaintext: bytes, key: bytes) -> SealedBlob:
    blob = b"".join(encrypt_chunks(plaintext, key))
    return SealedBlob(
        blob,
        hashlib.sha256(blob).hexdigest(),
        hashlib.sha256(plaintext).hexdigest(),
        len(plaintext),
    )


def decrypt_chunks(sealed: Iterable[bytes], key: bytes) -> Iterator[bytes]:
    """Opens sealed chunks in order (as :func:`encrypt_chunks` gave them) and yields the
    plaintext, padding removed. Every chunk is checked before its bytes are yielded;
    DecryptionError if one does not authenticate (changed, moved, repeated, another key,
    or the blob cut short or run past its last chunk), DecodeError if a chunk has an
    impossible length or the padding is malformed."""
    aead = _aead(key)
    pending: bytes | None = None  # the previous chunk, sealed: last or not is seen next
    index = 0
    for chunk in sealed:
        if pending is not None:
            yield _open(aead, index, pending, last=False)
            index += 1
        if not TAG < len(chunk) <= CHUNK + TAG:
            raise DecodeError("a blob chunk has an impossible length")
        if pending is not None and len(pending) != CHUNK + TAG:
            raise DecodeError("a blob chunk that is not the last one is short")
        pending = chunk
    if pending is None:
        raise DecodeError("the blob is empty")
    last = _open(aead, index, pending, last=True)
    end = last.rfind(b"\x80")
    if end < 0 or last[end + 1 :].count(0) != len(last) - end - 1:
        raise DecodeError("the blob's padding is malformed")
    if len(pending) - TAG != (padded_size(end) if index == 0 else CHUNK):
        raise DecodeError("the blob's padding does not match its size bucket")
    yield last[:end]


def decrypt_blob(blob: bytes, key: bytes, size: int | None = None, ox: str | None = None) -> bytes:
    """The plaintext of a whole blob. ``size`` and ``ox`` (from the message) are checked
    when given: DecodeError if they do not match."""
    if len(blob) <= TAG:
        raise DecodeError("the blob is too short")
    step = CHUNK + TAG
    plaintext = b"".join(
        decrypt_chunks((blob[i : i + step] for i in range(0, len(blob), step)), key)
    )
    if len(blob) != sealed_size(len(plaintext)):
        raise DecodeError("the blob's length does not match its padding")
    if size is not None and size != len(plaintext):
        raise DecodeError("the blob is not the size its message says")
    if ox is not None and ox != hashlib.sha256(plaintext).hexdigest():
        raise DecodeError("the blob is not the file its message names")
    return plaintext


def _aead(key: bytes) -> ChaCha20Poly1305:
    if len(key) != 32:
        raise LocalProtocolError("a blob key is 32 bytes")
    return ChaCha20Poly1305(key)


def _open(aead: ChaCha20Poly1305, index: int, chunk: bytes, *, last: bool) -> bytes:
    try:
        return aead.decrypt(_nonce(index, last), chunk, AAD)
    except InvalidTag:
        raise DecryptionError(
            f"blob chunk {index} does not authenticate: changed, moved, cut or another key"
        ) from None
