"""NIP-19 bech32 entities: npub, nsec, note, nprofile and nevent.

These strings are for people: display, copy-paste, QR codes. Keys and ids are raw 32-byte
values here; whether a public key is on the curve is for the caller (``xchat.crypto``) to
check, since this layer does no curve arithmetic. :func:`decode` also accepts the NIP-21
``nostr:`` URI scheme.

Decoders parse untrusted input and raise only :class:`DecodeError`; encoders raise
:class:`LocalProtocolError` for bad arguments. No message or repr here ever contains an
nsec string or secret key bytes.

Spec: https://github.com/nostr-protocol/nips/blob/master/19.md
and https://github.com/nostr-protocol/nips/blob/master/21.md
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from xchat.errors import DecodeError, LocalProtocolError
from xchat.wire import bech32

__all__ = [
    "KEY_LENGTH",
    "MAX_LENGTH",
    "MAX_RELAYS",
    "MAX_RELAY_BYTES",
    "EventPointer",
    "Profile",
    "decode",
    "nevent_decode",
    "nevent_encode",
    "note_decode",
    "note_encode",
    "nprofile_decode",
    "nprofile_encode",
    "npub_decode",
    "npub_encode",
    "nsec_decode",
    "nsec_encode",
]

#: Keys and event ids are 32 bytes.
KEY_LENGTH: Final = 32
#: NIP-19: strings SHOULD be at most 5000 characters; we neither emit nor accept longer.
MAX_LENGTH: Final = bech32.DEFAULT_MAX_LENGTH
#: Relay hints per nprofile/nevent, and bytes per relay (a TLV length is one byte).
MAX_RELAYS: Final = 16
MAX_RELAY_BYTES: Final = 255
#: NIP-21: "nostr:" followed by a NIP-19 entity other than nsec.
URI_SCHEME: Final = "nostr:"

_TLV_SPECIAL: Final = 0
_TLV_RELAY: Final = 1
_TLV_AUTHOR: Final = 2
_TLV_KIND: Final = 3
_MAX_KIND: Final = 2**32 - 1
_PREFIXES: Final = frozenset({"npub", "nsec", "note", "nprofile", "nevent", "naddr", "nrelay"})


@dataclass(frozen=True, slots=True)
class Profile:
    """An nprofile: a public key and relays where its events are likely to be found."""

    pubkey: bytes
    relays: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EventPointer:
    """An nevent: an event id with optional relay hints, author public key and kind."""

    id: bytes
    relays: tuple[str, ...] = ()
    author: bytes | None = None
    kind: int | None = None


def _check_key(value: object, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != KEY_LENGTH:
        raise LocalProtocolError(f"{what} must be {KEY_LENGTH} bytes")
    return value


def _check_relays(relays: Sequence[str]) -> list[bytes]:
    if isinstance(relays, str | bytes):  # a lone URL would otherwise become one relay per char
        raise LocalProtocolError("relays must be a sequence of URLs, not a single string")
    encoded = []
    for relay in relays:
        if not isinstance(relay, str) or not relay or not _printable_ascii(relay):
            raise LocalProtocolError("each relay must be a non-empty printable ASCII URL")
        if len(relay) > MAX_RELAY_BYTES:
            raise LocalProtocolError(f"a relay URL is longer than {MAX_RELAY_BYTES} bytes")
        encoded.append(relay.encode("ascii"))
    if len(encoded) > MAX_RELAYS:
        raise LocalProtocolError(f"at most {MAX_RELAYS} relays fit in a NIP-19 pointer")
    return encoded


def _printable_ascii(text: str) -> bool:
    # Stricter than NIP-19's "ascii": spaces and control characters have no place in a
    # relay URL, and a control character would reach the screen.
    return all(33 <= ord(c) <= 126 for c in text)


def _tlv(type_: int, value: bytes) -> bytes:
    return bytes((type_, len(value))) + value


def _encode(prefix: str, data: bytes) -> str:
    text = bech32.encode(prefix, data)
    if len(text) > MAX_LENGTH:
        raise LocalProtocolError(f"the {prefix} would be longer than {MAX_LENGTH} characters")
    return text


def _prefix_name(prefix: str) -> str:
    """The found prefix for an error message, only if it is one we know (never user text)."""
    return f"{prefix}1…" if prefix in _PREFIXES else "an unknown prefix"


def _decode(text: str, expected: str) -> bytes:
    """Decode bech32 ``text`` and check that its prefix is ``expected``."""
    prefix, data = bech32.decode(text, max_length=MAX_LENGTH)
    if prefix != expected:
        article = "a" if expected == "note" else "an"
        raise DecodeError(f"expected {article} {expected}1… address, got {_prefix_name(prefix)}")
    return data


def _key(data: bytes, prefix: str) -> bytes:
    if len(data) != KEY_LENGTH:
        raise DecodeError(f"{prefix} must hold {KEY_LENGTH} bytes, not {len(data)}")
    return data


def _parse_tlv(data: bytes, prefix: str) -> list[tuple[int, bytes]]:
    items = []
    i = 0
    while i < len(data):
        if i + 2 > len(data):
            raise DecodeError(f"{prefix} data ends inside a TLV header: it was truncated")
        type_, length = data[i], data[i + 1]
        value = data[i + 2 : i + 2 + length]
        if len(value) != length:
            raise DecodeError(f"{prefix} data ends inside a TLV value: it was truncated")
        items.append((type_, value))
        i += 2 + length
    return items


def _parse_pointer(
    data: bytes, prefix: str, optional: frozenset[int]
) -> tuple[bytes, tuple[str, ...], dict[int, bytes]]:
    """The fields shared by nprofile and nevent: the special value, relays, and the
    single-valued ``optional`` types present. Types not known here are ignored (NIP-19)."""
    special: bytes | None = None
    relays: list[str] = []
    extra: dict[int, bytes] = {}
    for type_, value in _parse_tlv(data, prefix):
        if type_ == _TLV_SPECIAL:
            if special is not None:
                raise DecodeError(f"{prefix} has more than one TLV of type 0")
            if len(value) != KEY_LENGTH:
                raise DecodeError(f"{prefix} TLV type 0 must hold {KEY_LENGTH} bytes")
            special = value
        elif type_ == _TLV_RELAY:
            # A hint we cannot use is skipped rather than failing the whole address:
            # other clients write empty or odd relay entries, and hints are optional.
            relay = value.decode("latin-1")
            if relay and _printable_ascii(relay) and len(relays) < MAX_RELAYS:
                relays.append(relay)
        elif type_ in optional:
            if type_ in extra:
                raise DecodeError(f"{prefix} has more than one TLV of type {type_}")
            extra[type_] = value
    if special is None:
        raise DecodeError(f"{prefix} lacks the required TLV of type 0")
    return special, tuple(relays), extra


def npub_encode(pubkey: bytes) -> str:
    """Encode a 32-byte x-only public key as an npub."""
    return _encode("npub", _check_key(pubkey, "public key"))


def npub_decode(text: str) -> bytes:
    """Decode an npub into its 32-byte public key (not checked to be on the curve)."""
    return _key(_decode(text, "npub"), "npub")


def nsec_encode(secret: bytes) -> str:
    """Encode a 32-byte secret key as an nsec; show it only where the person asked to."""
    return _encode("nsec", _check_key(secret, "secret key"))


def nsec_decode(text: str) -> bytes:
    """Decode an nsec into its 32-byte secret key (not checked to be in the curve order)."""
    return _key(_decode(text, "nsec"), "nsec")


def note_encode(event_id: bytes) -> str:
    """Encode a 32-byte event id as a note."""
    return _encode("note", _check_key(event_id, "event id"))


def note_decode(text: str) -> bytes:
    """Decode a note into its 32-byte event id."""
    return _key(_decode(text, "note"), "note")


def nprofile_encode(pubkey: bytes, relays: Sequence[str] = ()) -> str:
    """Encode a public key and up to :data:`MAX_RELAYS` relay hints as an nprofile."""
    data = _tlv(_TLV_SPECIAL, _check_key(pubkey, "public key"))
    data += b"".join(_tlv(_TLV_RELAY, relay) for relay in _check_relays(relays))
    return _encode("nprofile", data)


def nprofile_decode(text: str) -> Profile:
    """Decode an nprofile; TLV types other than 0 and 1 are ignored, as NIP-19 asks."""
    return _profile(_decode(text, "nprofile"))


def nevent_encode(
    event_id: bytes,
    relays: Sequence[str] = (),
    author: bytes | None = None,
    kind: int | None = None,
) -> str:
    """Encode an event id with optional relay hints, author and kind as an nevent."""
    data = _tlv(_TLV_SPECIAL, _check_key(event_id, "event id"))
    data += b"".join(_tlv(_TLV_RELAY, relay) for relay in _check_relays(relays))
    if author is not None:
        data += _tlv(_TLV_AUTHOR, _check_key(author, "author public key"))
    if kind is not None:
        if not isinstance(kind, int) or isinstance(kind, bool) or not 0 <= kind <= _MAX_KIND:
            raise LocalProtocolError("event kind must be an integer from 0 to 2**32 - 1")
        data += _tlv(_TLV_KIND, kind.to_bytes(4, "big"))
    return _encode("nevent", data)


def nevent_decode(text: str) -> EventPointer:
    """Decode an nevent; TLV types other than 0 to 3 are ignored, as NIP-19 asks."""
    return _event_pointer(_decode(text, "nevent"))


def _profile(data: bytes) -> Profile:
    pubkey, relays, _ = _parse_pointer(data, "nprofile", frozenset())
    return Profile(pubkey, relays)


def _event_pointer(data: bytes) -> EventPointer:
    optional = frozenset({_TLV_AUTHOR, _TLV_KIND})
    event_id, relays, extra = _parse_pointer(data, "nevent", optional)
    author = extra.get(_TLV_AUTHOR)
    if author is not None and len(author) != KEY_LENGTH:
        raise DecodeError(f"nevent author must be {KEY_LENGTH} bytes")
    kind_bytes = extra.get(_TLV_KIND)
    if kind_bytes is not None and len(kind_bytes) != 4:
        raise DecodeError("nevent kind must be 4 bytes")
    kind = None if kind_bytes is None else int.from_bytes(kind_bytes, "big")
    return EventPointer(event_id, relays, author, kind)


def decode(text: str) -> tuple[str, object]:
    """Decode any entity this module knows, dispatching on its prefix.

    Returns ``(prefix, value)``: bytes for npub, nsec and note, :class:`Profile` for
    nprofile, :class:`EventPointer` for nevent. A leading ``nostr:`` (NIP-21) is accepted,
    except before an nsec: secret keys are not meant to travel as links.
    """
    if not isinstance(text, str):
        raise DecodeError("a NIP-19 entity must be a string")
    is_uri = text[: len(URI_SCHEME)].lower() == URI_SCHEME
    if is_uri:
        text = text[len(URI_SCHEME) :]
    prefix, data = bech32.decode(text, max_length=MAX_LENGTH)
    if prefix == "nsec" and is_uri:
        raise DecodeError("a nostr: link must not hold an nsec secret key")
    if prefix == "nprofile":
        return prefix, _profile(data)
    if prefix == "nevent":
        return prefix, _event_pointer(data)
    if prefix in {"npub", "nsec", "note"}:
        return prefix, _key(data, prefix)
    raise DecodeError(f"unsupported NIP-19 entity: {_prefix_name(prefix)}")
