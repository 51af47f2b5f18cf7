"""NIP-44 version 2 encrypted payloads: ECDH, HKDF, padding, ChaCha20, HMAC-SHA256, base64.

The payload format that gift wraps and seals carry. ChaCha20 and HKDF-expand come from
``cryptography``, HMAC-SHA256 and HKDF-extract from the OpenSSL-backed standard library,
ECDH from libsecp256k1 via :mod:`xchat.crypto.keys`; this module only slices and checks bytes.
Nonces are passed in, so nothing here reads a global RNG or clock.

Plaintexts are limited to 1..65535 bytes, the limit of the official test vectors (the spec has
since grown a 6-byte length prefix for longer plaintexts, which X Chat neither sends nor accepts).

Spec: https://github.com/nostr-protocol/nips/blob/master/44.md#version-2
"""

from __future__ import annotations

import binascii
import hmac
import threading
from collections import OrderedDict
from typing import Final

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from xchat.crypto.keys import PublicKey, SecretKey
from xchat.errors import DecodeError, DecryptionError, LocalProtocolError

__all__ = [
    "MAX_PLAINTEXT",
    "MIN_PLAINTEXT",
    "ConversationKeyCache",
    "calc_padded_len",
    "conversation_key",
    "decrypt",
    "decrypt_bytes",
    "encrypt",
    "encrypt_bytes",
    "message_keys",
    "pad",
    "unpad",
]

MIN_PLAINTEXT: Final = 1
MAX_PLAINTEXT: Final = 65535

_VERSION: Final = 2
_SALT: Final = b"nip44-v2"
# Decoded payload: version (1) + nonce (32) + padded plaintext with its 2-byte prefix
# (34..65538) + MAC (32); the base64 bounds are those lengths encoded with padding.
_MIN_DECODED: Final = 99
_MAX_DECODED: Final = 65603
_MIN_PAYLOAD: Final = 132
_MAX_PAYLOAD: Final = 87472
_SHA256: Final = SHA256()
_COUNTER_ZERO: Final = b"\x00\x00\x00\x00"


def conversation_key(secret: SecretKey, peer: PublicKey) -> bytes:
    """The long-term key shared by ``secret`` and ``peer``: HKDF-extract of the ECDH x coordinate.

    Symmetric, ``conversation_key(a, B) == conversation_key(b, A)``. Raises
    :class:`DecodeError` if ``peer`` is not a point on the curve.
    """
    return hmac.digest(_SALT, secret.shared_x(peer), "sha256")


class ConversationKeyCache:
    """A bounded LRU cache of conversation keys, so each peer costs one ECDH, not one per message.

    Entries are keyed by our x-only public key and the peer's. Two secrets share an x-only
    public key only as ``d`` and ``n - d``, whose ECDH points differ only in sign and so have
    the same x coordinate: the key identifies the conversation key exactly. Thread-safe.
    """

    __slots__ = ("_entries", "_lock", "_max_entries")

    def __init__(self, max_entries: int = 4096) -> None:
        if type(max_entries) is not int or max_entries < 1:
            raise LocalProtocolError("max_entries must be a positive integer")
        self._max_entries = max_entries
        self._entries: OrderedDict[tuple[bytes, bytes], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, secret: SecretKey, peer: PublicKey) -> bytes:
        """The conversation key of ``secret`` and ``peer``, computed on first use."""
        key = (secret.public_key.raw, peer.raw)
        entries = self._entries
        with self._lock:
            value = entries.get(key)
            if value is not None:
                entries.move_to_end(key)
                return value
        # ECDH outside the lock: a race only computes the same value twice.
        value = conversation_key(secret, peer)
        with self._lock:
            entries[key] = value
            entries.move_to_end(key)
            while len(entries) > self._max_entries:
                entries.popitem(last=False)
        return value

    def clear(self) -> None:
        """Forget every cached key, e.g. when the keys they came from are retired."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return (
            f"ConversationKeyCache(entries={len(self._entries)}, max_entries={self._max_entries})"
        )


def _check_key(conversation_key: bytes) -> None:
    if not isinstance(conversation_key, bytes) or len(conversation_key) != 32:
        raise LocalProtocolError("a NIP-44 conversation key is 32 bytes")


def _derive(conversation_key: bytes, nonce: bytes) -> tuple[bytes, bytes, bytes]:
    keys = HKDFExpand(_SHA256, 76, nonce).derive(conversation_key)
    return keys[:32], keys[32:44], keys[44:]


def message_keys(conversation_key: bytes, nonce: bytes) -> tuple[bytes, bytes, bytes]:
    """Per-message ``(chacha_key, chacha_nonce, hmac_key)``: HKDF-expand of the nonce, 76 bytes."""
    _check_key(conversation_key)
    if not isinstance(nonce, bytes) or len(nonce) != 32:
        raise LocalProtocolError("a NIP-44 nonce is 32 bytes")
    return _derive(conversation_key, nonce)


def _chacha20(key: bytes, nonce: bytes, data: bytes | memoryview) -> bytes:
    # cryptography's ChaCha20 takes a 16-byte nonce: a 4-byte little-endian block counter
    # (NIP-44 starts at 0) followed by the RFC 8439 12-byte nonce.
    return Cipher(algorithms.ChaCha20(key, _COUNTER_ZERO + nonce), None).encryptor().update(data)


def calc_padded_len(unpadded_len: int) -> int:
    """The padded length for a plaintext of ``unpadded_len`` bytes, before the length prefix.

    At least 32, then multiples of an eighth of the next power of two, so that the
    ciphertext leaks only a coarse bucket of the plaintext length.
    """
    if unpadded_len < 1:
        raise LocalProtocolError("a NIP-44 plaintext is at least 1 byte")
    if unpadded_len <= 32:
        return 32
    next_power = 1 << (unpadded_len - 1).bit_length()
    chunk = 32 if next_power <= 256 else next_power // 8
    return chunk * ((unpadded_len - 1) // chunk + 1)


def pad(plaintext: bytes) -> bytes:
    """``plaintext`` with its big-endian u16 length in front and zeros up to the padded length."""
    size = len(plaintext)
    if not MIN_PLAINTEXT <= size <= MAX_PLAINTEXT:
        raise LocalProtocolError("a NIP-44 plaintext is 1 to 65535 bytes")
    return b"".join((size.to_bytes(2, "big"), plaintext, bytes(calc_padded_len(size) - size)))


def unpad(padded: bytes) -> bytes:
    """The plaintext inside ``padded``; :class:`DecodeError` if the prefix or length is wrong.

    As the spec says, only lengths are checked, not that the padding bytes are zero.
    """
    # A zero prefix introduces the extended (u32) length format, for plaintexts over our limit.
    size = int.from_bytes(padded[:2], "big")
    if size == 0 or len(padded) != 2 + calc_padded_len(size):
        raise DecodeError("invalid NIP-44 padding")
    return bytes(padded[2 : 2 + size])


def encrypt_bytes(plaintext: bytes, conversation_key: bytes, nonce: bytes) -> str:
    """Encrypt UTF-8 ``plaintext`` bytes into a base64 payload under a caller-drawn 32-byte nonce.

    The nonce must come from a CSPRNG and never repeat under the same conversation key.
    """
    if not isinstance(plaintext, bytes):
        raise LocalProtocolError("a NIP-44 plaintext is bytes")
    padded = pad(plaintext)
    chacha_key, chacha_nonce, hmac_key = message_keys(conversation_key, nonce)
    body = nonce + _chacha20(chacha_key, chacha_nonce, padded)
    mac = hmac.digest(hmac_key, body, "sha256")
    return binascii.b2a_base64(b"\x02" + body + mac, newline=False).decode("ascii")


def encrypt(plaintext: str, conversation_key: bytes, nonce: bytes) -> str:
    """Encrypt a text message; see :func:`encrypt_bytes`."""
    if not isinstance(plaintext, str):
        raise LocalProtocolError("a NIP-44 plaintext is a string")
    try:
        data = plaintext.encode("utf-8")
    except UnicodeEncodeError:
        raise LocalProtocolError("the plaintext is not encodable as UTF-8") from None
    return encrypt_bytes(data, conversation_key, nonce)


def _decode_payload(payload: str) -> bytes:
    """Base64-decode and check a payload's framing, before any key is used."""
    if not isinstance(payload, str):
        raise DecodeError("a NIP-44 payload is a string")
    if payload[:1] == "#":
        raise DecodeError("unsupported NIP-44 encoding")
    if not _MIN_PAYLOAD <= len(payload) <= _MAX_PAYLOAD:
        raise DecodeError("invalid NIP-44 payload length")
    try:
        data = binascii.a2b_base64(payload, strict_mode=True)
    except ValueError:  # binascii.Error, or a non-ASCII string
        raise DecodeError("invalid base64 in NIP-44 payload") from None
    if not _MIN_DECODED <= len(data) <= _MAX_DECODED:
        raise DecodeError("invalid NIP-44 data length")
    # Strict mode still accepts surplus "=" and non-zero unused bits in the last character;
    # insisting on the canonical encoding makes every altered payload string fail. Only
    # the length and the last quantum can differ from it, so only they are re-encoded.
    size = len(data)
    last = size - (size % 3 or 3)
    if len(payload) != 4 * ((size + 2) // 3) or binascii.b2a_base64(
        data[last:], newline=False
    ) != payload[-4:].encode("ascii"):
        raise DecodeError("non-canonical base64 in NIP-44 payload")
    if data[0] != _VERSION:
        raise DecodeError("unsupported NIP-44 version")
    return data


def decrypt_bytes(payload: str, conversation_key: bytes) -> bytes:
    """Authenticate and decrypt a payload into the plaintext bytes, without decoding UTF-8.

    Raises :class:`DecodeError` for a malformed payload and :class:`DecryptionError` if the
    MAC does not verify under ``conversation_key``; nothing else for any ``payload``.
    """
    _check_key(conversation_key)
    data = _decode_payload(payload)
    view = memoryview(data)
    chacha_key, chacha_nonce, hmac_key = _derive(conversation_key, data[1:33])
    expected = hmac.digest(hmac_key, view[1:-32], "sha256")
    if not hmac.compare_digest(expected, view[-32:]):
        raise DecryptionError("NIP-44 MAC mismatch")
    return unpad(_chacha20(chacha_key, chacha_nonce, view[33:-32]))


def decrypt(payload: str, conversation_key: bytes) -> str:
    """Decrypt a text message; see :func:`decrypt_bytes`. Non-UTF-8 plaintext is a DecodeError."""
    plaintext = decrypt_bytes(payload, conversation_key)
    try:
        return plaintext.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("NIP-44 plaintext is not UTF-8") from None
