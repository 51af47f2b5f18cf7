"""Safety numbers: what two people compare to know they talk to each other.

Each person's half is 30 digits derived from their identity key and the Ed25519 keys
of every device their identity has certified, so a new or replaced device changes that
person's half (and only theirs). The full number is both halves, lower first, so both
sides see the same 60 digits. Hashing is iterated SHA-512, as Signal's numeric
fingerprints do, to make a 30-digit second preimage expensive to search for.

Spec: docs/protocol.md ("Safety numbers"); Signal's NumericFingerprintGenerator.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Final

from xchat.errors import DecodeError, LocalProtocolError

__all__ = ["ITERATIONS", "QR_PREFIX", "fingerprint", "qr_payload", "safety_number", "verify_qr"]

VERSION: Final = 1
ITERATIONS: Final = 5200
QR_PREFIX: Final = b"XCSN"
_CONTEXT: Final = b"xchat-safety-number/v1\x00"


def _digest(identity: bytes, device_keys: Iterable[bytes]) -> bytes:
    if len(identity) != 32:
        raise LocalProtocolError("an identity key is 32 bytes")
    devices = sorted(set(device_keys))
    if any(len(d) != 32 for d in devices):
        raise LocalProtocolError("a device key is 32 bytes")
    h = hashlib.sha512(
        _CONTEXT + identity + len(devices).to_bytes(2, "big") + b"".join(devices)
    ).digest()
    for _ in range(ITERATIONS):
        h = hashlib.sha512(h + identity).digest()
    return h


def fingerprint(identity: bytes, device_keys: Iterable[bytes]) -> str:
    """One person's 30 digits: six 5-byte chunks of the digest, each mod 100000."""
    digest = _digest(identity, device_keys)
    return "".join(
        f"{int.from_bytes(digest[i : i + 5], 'big') % 100000:05d}" for i in range(0, 30, 5)
    )


def safety_number(
    mine: tuple[bytes, Iterable[bytes]], theirs: tuple[bytes, Iterable[bytes]]
) -> str:
    """60 digits in 12 groups of five, identical on both sides."""
    halves = sorted([fingerprint(*mine), fingerprint(*theirs)])
    digits = "".join(halves)
    return " ".join(digits[i : i + 5] for i in range(0, 60, 5))


def qr_payload(mine: tuple[bytes, Iterable[bytes]], theirs: tuple[bytes, Iterable[bytes]]) -> bytes:
    """``"XCSN" || version || digest_low[:32] || digest_high[:32]``, the same on both sides."""
    digests = sorted([_digest(*mine)[:32], _digest(*theirs)[:32]])
    return QR_PREFIX + bytes([VERSION]) + digests[0] + digests[1]


def verify_qr(
    scanned: bytes, mine: tuple[bytes, Iterable[bytes]], theirs: tuple[bytes, Iterable[bytes]]
) -> bool:
    """True if a scanned payload matches what we compute; DecodeError if it is not one."""
    if len(scanned) != 69 or not scanned.startswith(QR_PREFIX):
        raise DecodeError("not an X Chat safety-number code")
    if scanned[4] != VERSION:
        raise DecodeError(f"safety-number code version {scanned[4]} is not supported")
    return hmac.compare_digest(scanned, qr_payload(mine, theirs))
