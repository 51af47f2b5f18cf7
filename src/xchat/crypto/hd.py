"""BIP-32 private key derivation, used for NIP-06 identities.

Each step is HMAC-SHA512 (stdlib, OpenSSL) and a scalar addition done by libsecp256k1
(:meth:`SecretKey.tweak_add`); no curve arithmetic happens in Python.

Specs: https://github.com/bitcoin/bips/blob/master/bip-0032.mediawiki ,
https://github.com/nostr-protocol/nips/blob/master/06.md
"""

from __future__ import annotations

import hmac
import re
from typing import Final

from xchat.crypto.keys import CURVE_ORDER, SecretKey
from xchat.errors import LocalProtocolError

__all__ = ["HARDENED", "NOSTR_PATH", "derive_path", "master_key", "parse_path"]

HARDENED: Final = 0x8000_0000
_DIGITS: Final = re.compile("[0-9]+")  # ASCII only: str.isdigit() also accepts '²' and '٣'
#: NIP-06: m/44'/1237'/<account>'/0/0; X Chat uses account 0.
NOSTR_PATH: Final = "m/44'/1237'/0'/0/0"


def master_key(seed: bytes) -> tuple[SecretKey, bytes]:
    """The master key and chain code of a 16 to 64 byte seed."""
    if not 16 <= len(seed) <= 64:
        raise LocalProtocolError("a BIP-32 seed is 16 to 64 bytes")
    digest = hmac.digest(b"Bitcoin seed", seed, "sha512")
    if not 0 < int.from_bytes(digest[:32], "big") < CURVE_ORDER:
        raise LocalProtocolError("this seed gives an invalid BIP-32 master key")  # p < 2^-127
    return SecretKey(digest[:32]), digest[32:]


def _child(key: SecretKey, chain: bytes, index: int) -> tuple[SecretKey, bytes]:
    if index >= HARDENED:
        data = b"\x00" + key.to_bytes() + index.to_bytes(4, "big")
    else:
        data = key.compressed_public_key() + index.to_bytes(4, "big")
    digest = hmac.digest(chain, data, "sha512")
    # tweak_add refuses a tweak >= n or a zero result: BIP-32's "invalid child" case,
    # which has probability below 2^-127 and is reported rather than skipped.
    return key.tweak_add(digest[:32]), digest[32:]


def parse_path(path: str) -> list[int]:
    """``m/44'/1237'/0'/0/0`` (``'``, ``h`` or ``H`` for hardened) as a list of indexes."""
    parts = path.split("/")
    if parts[0] != "m":
        raise LocalProtocolError("a derivation path starts with 'm'")
    indexes = []
    for part in parts[1:]:
        hardened = part[-1:] in ("'", "h", "H")
        digits = part[:-1] if hardened else part
        if not _DIGITS.fullmatch(digits) or int(digits) >= HARDENED:
            raise LocalProtocolError(f"bad derivation path component {part!r}")
        indexes.append(int(digits) + (HARDENED if hardened else 0))
    return indexes


def derive_path(seed: bytes, path: str) -> SecretKey:
    """The private key at ``path`` below the master key of ``seed``."""
    key, chain = master_key(seed)
    for index in parse_path(path):
        key, chain = _child(key, chain, index)
    return key
