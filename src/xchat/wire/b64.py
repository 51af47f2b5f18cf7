"""Unpadded standard base64, the encoding vodozemac uses for keys, signatures and messages."""

from __future__ import annotations

import base64
import binascii

from xchat.errors import DecodeError

__all__ = ["b64decode", "b64encode"]


def b64encode(data: bytes) -> str:
    """Standard alphabet, no ``=`` padding."""
    return base64.b64encode(data).rstrip(b"=").decode("ascii")


def b64decode(text: object, *, max_bytes: int = 1 << 20) -> bytes:
    """Strict inverse of :func:`b64encode`: no padding, no whitespace, canonical last bits."""
    if not isinstance(text, str) or len(text) > (max_bytes * 4 + 2) // 3:
        raise DecodeError("expected unpadded base64 text within the size limit")
    if len(text) % 4 == 1 or "=" in text:
        raise DecodeError("not valid unpadded base64")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise DecodeError("not valid unpadded base64") from None
    # One encoding per value: re-encode the last quantum, the only place with spare bits.
    last = len(raw) - (len(raw) % 3 or 3)
    if raw and b64encode(raw[last:]) != text[(last // 3) * 4 :]:
        raise DecodeError("not canonical unpadded base64")
    return raw
