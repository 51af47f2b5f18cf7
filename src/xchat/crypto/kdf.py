"""Key derivation: purpose-bound subkeys and rotating mailbox keys (HKDF-SHA256).

Every derived key names its purpose in HKDF's ``info`` so that no two uses of one root
key can collide. Mailbox keys are secp256k1 keys a relay sees as random recipients;
docs/protocol.md ("Mailbox keys") specifies the derivation for other implementations.

Spec: RFC 5869.
"""

from __future__ import annotations

from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from xchat.crypto.keys import CURVE_ORDER, SecretKey
from xchat.errors import LocalProtocolError

__all__ = ["MAILBOX_SALT", "derive_key", "hkdf_sha256", "mailbox_key"]

MAILBOX_SALT: Final = b"xchat-mailbox/v1"


def hkdf_sha256(ikm: bytes, *, salt: bytes | None, info: bytes, length: int = 32) -> bytes:
    return HKDF(hashes.SHA256(), length, salt=salt, info=info).derive(ikm)


def derive_key(root: bytes, purpose: str, length: int = 32) -> bytes:
    """A subkey of a 32-byte root key for one named purpose (``xchat/...``)."""
    if len(root) != 32:
        raise LocalProtocolError("a root key is 32 bytes")
    return hkdf_sha256(root, salt=None, info=purpose.encode(), length=length)


def mailbox_key(seed: bytes, epoch: int) -> SecretKey:
    """The mailbox key of ``seed`` for one epoch.

    ``HKDF-SHA256(ikm=seed, salt="xchat-mailbox/v1", info=u64be(epoch) || u8(counter))``
    with counter 0, 1, ... until the 32 bytes are a valid scalar (counter > 0 happens
    with probability below 2^-127).
    """
    if len(seed) != 32 or not 0 <= epoch < 2**64:
        raise LocalProtocolError("a mailbox seed is 32 bytes and an epoch a u64")
    for counter in range(256):
        candidate = hkdf_sha256(
            seed, salt=MAILBOX_SALT, info=epoch.to_bytes(8, "big") + bytes([counter])
        )
        if 0 < int.from_bytes(candidate, "big") < CURVE_ORDER:
            return SecretKey(candidate)
    raise LocalProtocolError("no valid mailbox key")  # pragma: no cover - p < 2^-32000
