"""The keystore file format: secrets sealed under a passphrase with Argon2id.

File (UTF-8 JSON, version 1)::

    {"format": "xchat-keystore", "version": 1,
     "kdf": {"algorithm": "argon2id", "salt": <b64 16 bytes>, "time_cost": 3,
             "memory_kib": 131072, "parallelism": 4},
     "cipher": {"algorithm": "chacha20-poly1305", "nonce": <b64 12 bytes>},
     "ciphertext": <b64>}

The key is ``Argon2id(passphrase NFKC UTF-8, salt, params) -> 32 bytes``. The header's
parameters are bound into the AEAD as associated data, so a file whose cost was lowered
by someone with write access no longer opens. Parameters outside sane bounds are refused
before any work is done (a crafted file cannot make us allocate gigabytes).

Spec: RFC 9106 (Argon2), RFC 8439 (ChaCha20-Poly1305).
"""

from __future__ import annotations

import base64
import binascii
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson
from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from xchat.crypto.keys import Rng
from xchat.errors import InvalidInput, KeystoreCorrupt, WrongPassphrase

__all__ = ["DEFAULT_KDF", "FORMAT", "VERSION", "KdfParams", "open_keystore", "seal_keystore"]

FORMAT: Final = "xchat-keystore"
VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class KdfParams:
    """Argon2id cost. The default takes about 0.3 s and 128 MiB on this project's CI machine."""

    time_cost: int = 3
    memory_kib: int = 128 * 1024
    parallelism: int = 4

    def check(self) -> None:
        if not (
            1 <= self.time_cost <= 64
            and 8 * 1024 <= self.memory_kib <= 4 * 1024 * 1024
            and 1 <= self.parallelism <= 16
        ):
            raise KeystoreCorrupt("keystore Argon2id parameters are outside the accepted range")


DEFAULT_KDF: Final = KdfParams()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: object, length: int | None = None) -> bytes:
    if not isinstance(text, str):
        raise KeystoreCorrupt("keystore field is not base64 text")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise KeystoreCorrupt("keystore field is not valid base64") from None
    if base64.b64encode(raw).decode() != text:  # one encoding per value, no spare bits
        raise KeystoreCorrupt("keystore field is not canonical base64")
    if length is not None and len(raw) != length:
        raise KeystoreCorrupt("keystore field has the wrong length")
    return raw


def _aad(salt: bytes, params: KdfParams) -> bytes:
    return (
        b"xchat-keystore/v1"
        + salt
        + params.time_cost.to_bytes(4, "big")
        + params.memory_kib.to_bytes(4, "big")
        + params.parallelism.to_bytes(4, "big")
    )


def _derive(passphrase: str, salt: bytes, params: KdfParams) -> bytes:
    try:
        secret = unicodedata.normalize("NFKC", passphrase).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("the passphrase is not valid text") from None
    return bytes(
        hash_secret_raw(
            secret,
            salt,
            time_cost=params.time_cost,
            memory_cost=params.memory_kib,
            parallelism=params.parallelism,
            hash_len=32,
            type=Type.ID,
        )
    )


def seal_keystore(
    plaintext: bytes, passphrase: str, rng: Rng, params: KdfParams = DEFAULT_KDF
) -> bytes:
    """The keystore file's bytes holding ``plaintext`` under ``passphrase``."""
    if not passphrase:
        raise InvalidInput("the passphrase must not be empty")
    params.check()
    salt = rng(16)
    nonce = rng(12)
    key = _derive(passphrase, salt, params)
    ciphertext = ChaCha20Poly1305(key).encrypt(nonce, plaintext, _aad(salt, params))
    document: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "kdf": {
            "algorithm": "argon2id",
            "salt": _b64(salt),
            "time_cost": params.time_cost,
            "memory_kib": params.memory_kib,
            "parallelism": params.parallelism,
        },
        "cipher": {"algorithm": "chacha20-poly1305", "nonce": _b64(nonce)},
        "ciphertext": _b64(ciphertext),
    }
    return orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"


def _int(value: object) -> int:
    if type(value) is not int:
        raise KeystoreCorrupt("keystore Argon2id parameters must be integers")
    return value


def open_keystore(data: bytes, passphrase: str) -> bytes:
    """The plaintext sealed in a keystore file.

    Raises :class:`WrongPassphrase` if the passphrase does not open it, and
    :class:`KeystoreCorrupt` if the file is damaged or of an unknown format.
    """
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise KeystoreCorrupt("the keystore is not valid JSON: the file is damaged") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise KeystoreCorrupt("this file is not an X Chat keystore")
    version = document.get("version")
    opener = _OPENERS.get(version) if type(version) is int else None
    if opener is None:
        raise KeystoreCorrupt(f"keystore version {version!r} is not one this X Chat can read")
    return opener(document, passphrase)


def _open_v1(document: dict[str, Any], passphrase: str) -> bytes:
    """Version 1, the format in the module docstring."""
    kdf, cipher = document.get("kdf"), document.get("cipher")
    if not isinstance(kdf, dict) or not isinstance(cipher, dict):
        raise KeystoreCorrupt("keystore header is incomplete")
    if kdf.get("algorithm") != "argon2id" or cipher.get("algorithm") != "chacha20-poly1305":
        raise KeystoreCorrupt("keystore uses an algorithm this X Chat does not know")
    params = KdfParams(
        _int(kdf.get("time_cost")), _int(kdf.get("memory_kib")), _int(kdf.get("parallelism"))
    )
    params.check()
    salt = _unb64(kdf.get("salt"), 16)
    nonce = _unb64(cipher.get("nonce"), 12)
    ciphertext = _unb64(document.get("ciphertext"))
    if len(ciphertext) < 16:
        raise KeystoreCorrupt("keystore ciphertext is truncated")
    key = _derive(passphrase, salt, params)
    try:
        return ChaCha20Poly1305(key).decrypt(nonce, ciphertext, _aad(salt, params))
    except InvalidTag:
        raise WrongPassphrase("the passphrase is wrong: it does not open this keystore") from None


#: Keystore version -> opener. A new version gets an opener here and seal_keystore writes
#: it; the old openers stay, so every released keystore keeps opening
#: (tests/fixtures/keystore-v1.json).
_OPENERS: Final[dict[int, Callable[[dict[str, Any], str], bytes]]] = {1: _open_v1}
