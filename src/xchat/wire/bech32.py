"""Bech32 strings (BIP-173, the original checksum, not bech32m) over 8-bit data.

NIP-19 uses bech32 for keys, ids and TLV pointers. It drops BIP-173's 90-character limit
(TLV strings are longer) and says strings SHOULD be limited to 5000 characters, so
:func:`decode` takes an explicit ``max_length`` instead. Everything else is as strict as
BIP-173: one case throughout, a valid checksum, and padding bits that are zero.

Error messages never repeat the input: the same code decodes secret keys.

Spec: https://github.com/bitcoin/bips/blob/master/bip-0173.mediawiki#bech32
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from xchat.errors import DecodeError, LocalProtocolError

__all__ = ["CHARSET", "DEFAULT_MAX_LENGTH", "MAX_HRP_LENGTH", "decode", "encode"]

#: The 32 data characters; a character's index is its 5-bit value.
CHARSET: Final = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
#: BIP-173 bounds the human-readable part to 1..83 characters.
MAX_HRP_LENGTH: Final = 83
#: NIP-19: "Bech32-formatted strings SHOULD be limited in size to 5000 characters."
DEFAULT_MAX_LENGTH: Final = 5000

_CHECKSUM_LENGTH: Final = 6
_VALUES: Final = {char: value for value, char in enumerate(CHARSET)}
_GENERATOR: Final = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _polymod(values: Iterable[int]) -> int:
    """BIP-173's BCH checksum over 5-bit values; a valid string's checksum comes out as 1."""
    checksum = 1
    for value in values:
        top = checksum >> 25
        checksum = ((checksum & 0x1FFFFFF) << 5) ^ value
        for i, generator in enumerate(_GENERATOR):
            if (top >> i) & 1:
                checksum ^= generator
    return checksum


def _hrp_expand(hrp: str) -> list[int]:
    """The human-readable part as the checksum sees it: high bits, a zero, low bits."""
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _valid_hrp(hrp: str) -> bool:
    return 1 <= len(hrp) <= MAX_HRP_LENGTH and all(33 <= ord(c) <= 126 for c in hrp)


def _to_5bit(data: bytes) -> list[int]:
    """Regroup bytes into 5-bit values, zero-padding the last group."""
    groups = []
    acc = bits = 0
    for byte in data:
        acc = ((acc << 8) | byte) & 0xFFF  # only the bits not yet emitted matter
        bits += 8
        while bits >= 5:
            bits -= 5
            groups.append((acc >> bits) & 31)
    if bits:
        groups.append((acc << (5 - bits)) & 31)
    return groups


def _from_5bit(groups: list[int]) -> bytes:
    """Regroup 5-bit values into bytes; fewer than 5 bits may remain and they must be zero."""
    out = bytearray()
    acc = bits = 0
    for group in groups:
        acc = ((acc << 5) | group) & 0xFFF
        bits += 5
        if bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 0xFF)
    if bits >= 5:
        raise DecodeError("bech32 data ends with an incomplete group: the text was truncated")
    if acc & ((1 << bits) - 1):
        raise DecodeError("bech32 padding bits are not zero: the text is not canonical")
    return bytes(out)


def encode(hrp: str, data: bytes) -> str:
    """Encode 8-bit ``data`` under the human-readable part ``hrp`` as a lowercase string.

    There is no length limit here; callers that must stay decodable check the length.
    """
    if not isinstance(hrp, str) or not _valid_hrp(hrp):
        raise LocalProtocolError("bech32 prefix must be 1 to 83 printable ASCII characters")
    if not isinstance(data, bytes):
        raise LocalProtocolError("bech32 data must be bytes")
    hrp = hrp.lower()
    groups = _to_5bit(data)
    polymod = _polymod([*_hrp_expand(hrp), *groups, *([0] * _CHECKSUM_LENGTH)]) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(_CHECKSUM_LENGTH)]
    return hrp + "1" + "".join(CHARSET[g] for g in groups + checksum)


def decode(text: str, *, max_length: int = DEFAULT_MAX_LENGTH) -> tuple[str, bytes]:
    """Decode a bech32 string into its lowercase human-readable part and 8-bit data.

    Raises :class:`DecodeError` for anything that is not a canonical bech32 string of at
    most ``max_length`` characters, whatever ``text`` is.
    """
    if not isinstance(text, str):
        raise DecodeError("bech32 text must be a string")
    if len(text) > max_length:
        raise DecodeError(f"bech32 text is longer than {max_length} characters")
    if not all(33 <= ord(c) <= 126 for c in text):
        raise DecodeError("bech32 text contains a space, control or non-ASCII character")
    lower = text.lower()
    if lower != text and text.upper() != text:
        raise DecodeError("bech32 text mixes upper and lower case")
    separator = lower.rfind("1")
    if separator < 0:
        raise DecodeError("bech32 text has no '1' separator")
    hrp, rest = lower[:separator], lower[separator + 1 :]
    if not hrp:
        raise DecodeError("bech32 text has an empty prefix before the '1' separator")
    if len(hrp) > MAX_HRP_LENGTH:
        raise DecodeError(f"bech32 prefix is longer than {MAX_HRP_LENGTH} characters")
    if len(rest) < _CHECKSUM_LENGTH:
        raise DecodeError("bech32 text is too short to hold a checksum: it was truncated")
    if not all(c in _VALUES for c in rest):
        raise DecodeError("bech32 data contains a character outside the bech32 set")
    groups = [_VALUES[c] for c in rest]
    if _polymod([*_hrp_expand(hrp), *groups]) != 1:
        raise DecodeError("bech32 checksum does not match: the text was mistyped or truncated")
    return hrp, _from_5bit(groups[:-_CHECKSUM_LENGTH])
