"""Authenticated encryption of records at rest: ChaCha20-Poly1305 with random nonces.

A sealed record is ``version (1 byte) || nonce (12) || ciphertext || tag (16)``. The
caller's associated data (a record type and id, say) is authenticated, so a record
cannot be swapped for another one encrypted under the same key. Keys are 32 bytes
from :func:`xchat.crypto.kdf.derive_key`, never the keystore's root key itself. Random 96-bit nonces
are safe for far more records than one device ever writes (2^32 per key).

Spec: RFC 8439 (ChaCha20-Poly1305), RFC 5869 (HKDF).
"""

from __future__ import annotations

from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from xchat.crypto.keys import Rng
from xchat.errors import DecodeError, DecryptionError, LocalProtocolError

__all__ = ["RECORD_VERSION", "RecordKey"]

RECORD_VERSION: Final = 1
_OVERHEAD: Final = 1 + 12 + 16


class RecordKey:
    """Seals and opens records under one 32-byte key. ``repr()`` shows no key."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise LocalProtocolError("a record key is 32 bytes")
        self._aead = ChaCha20Poly1305(key)

    def seal(self, plaintext: bytes, associated_data: bytes, rng: Rng) -> bytes:
        nonce = rng(12)
        return (
            bytes([RECORD_VERSION]) + nonce + self._aead.encrypt(nonce, plaintext, associated_data)
        )

    def open(self, sealed: bytes, associated_data: bytes) -> bytes:
        """The plaintext; DecodeError if malformed, DecryptionError if it does not authenticate."""
        if len(sealed) < _OVERHEAD:
            raise DecodeError("sealed record is truncated")
        if sealed[0] != RECORD_VERSION:
            raise DecodeError(f"sealed record has unknown version {sealed[0]}")
        try:
            return self._aead.decrypt(sealed[1:13], sealed[13:], associated_data)
        except InvalidTag:
            raise DecryptionError("sealed record does not authenticate under this key") from None

    def __repr__(self) -> str:
        return "RecordKey(<secret>)"
