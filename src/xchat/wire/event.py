"""Nostr events (NIP-01): validation, canonical serialization and ids.

An event arrives from a relay or a peer as parsed JSON; :func:`parse_event` checks every
field's type, format and size, recomputes the id and returns an :class:`Event`. It does
not check the BIP-340 signature: that needs curve arithmetic, which lives in
``xchat.crypto`` (``xchat.core.events.verify_event`` and the relay do it).

Spec: https://github.com/nostr-protocol/nips/blob/master/01.md#events-and-signatures
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from xchat.errors import DecodeError, InvalidSignature, LocalProtocolError

__all__ = [
    "MAX_CREATED_AT",
    "Event",
    "EventLimits",
    "Rumor",
    "check_fields",
    "compute_id",
    "event_from_json",
    "is_hex",
    "parse_event",
    "parse_rumor",
]

#: Latest ``created_at`` accepted at all (year 36812); relays apply a tighter skew.
MAX_CREATED_AT: Final = 2**40

_HEX = re.compile("[0-9a-f]*")


def is_hex(text: object, length: int) -> bool:
    """True if ``text`` is a str of exactly ``length`` lowercase hex digits."""
    return isinstance(text, str) and len(text) == length and _HEX.fullmatch(text) is not None


@dataclass(frozen=True, slots=True)
class EventLimits:
    """Size bounds applied while parsing untrusted events; every one is explicit."""

    max_content_bytes: int = 256 * 1024
    max_tags: int = 2000
    max_tag_values: int = 64
    max_tag_value_bytes: int = 4096


DEFAULT_LIMITS: Final = EventLimits()


def compute_id(
    pubkey: str, created_at: int, kind: int, tags: list[list[str]], content: str
) -> bytes:
    """sha256 of the NIP-01 canonical serialization ``[0,pubkey,created_at,kind,tags,content]``.

    orjson writes compact JSON, UTF-8 without escaping non-ASCII, and escapes exactly the
    characters JSON requires, which is the serialization NIP-01 specifies.
    """
    try:
        data = orjson.dumps([0, pubkey, created_at, kind, tags, content])
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise DecodeError("event fields cannot be serialized") from exc
    return hashlib.sha256(data).digest()


class _Fields:
    """What events and rumors share: tag look-ups and JSON."""

    __slots__ = ()
    tags: list[list[str]]

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    def tag_values(self, name: str) -> list[str]:
        """The first value of every tag called ``name``, in order."""
        return [t[1] for t in self.tags if len(t) >= 2 and t[0] == name]

    def first_tag(self, name: str) -> str | None:
        for t in self.tags:
            if len(t) >= 2 and t[0] == name:
                return t[1]
        return None


@dataclass(frozen=True, slots=True)
class Event(_Fields):
    """A signed Nostr event with validated fields. Tags must not be mutated."""

    id: str
    pubkey: str
    created_at: int
    kind: int
    tags: list[list[str]] = field(hash=False)
    content: str
    sig: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "pubkey": self.pubkey,
            "created_at": self.created_at,
            "kind": self.kind,
            "tags": self.tags,
            "content": self.content,
            "sig": self.sig,
        }


@dataclass(frozen=True, slots=True)
class Rumor(_Fields):
    """An unsigned event (NIP-59): carries an id but no signature."""

    id: str
    pubkey: str
    created_at: int
    kind: int
    tags: list[list[str]] = field(hash=False)
    content: str

    @classmethod
    def create(
        cls, pubkey: str, created_at: int, kind: int, tags: list[list[str]], content: str
    ) -> Rumor:
        """A rumor with its id computed; raises LocalProtocolError on malformed fields."""
        try:
            check_fields(pubkey, created_at, kind, tags, content, DEFAULT_LIMITS)
        except DecodeError as exc:
            raise LocalProtocolError(str(exc)) from None
        return cls(
            compute_id(pubkey, created_at, kind, tags, content).hex(),
            pubkey,
            created_at,
            kind,
            tags,
            content,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "pubkey": self.pubkey,
            "created_at": self.created_at,
            "kind": self.kind,
            "tags": self.tags,
            "content": self.content,
        }


def check_fields(
    pubkey: object,
    created_at: object,
    kind: object,
    tags: object,
    content: object,
    limits: EventLimits = DEFAULT_LIMITS,
) -> None:
    """DecodeError unless the fields of an event (all but id and sig) are well-formed."""
    if not is_hex(pubkey, 64):
        raise DecodeError("event pubkey must be 64 lowercase hex digits")
    if type(created_at) is not int or not 0 <= created_at <= MAX_CREATED_AT:
        raise DecodeError("event created_at must be a non-negative integer")
    if type(kind) is not int or not 0 <= kind <= 65535:
        raise DecodeError("event kind must be an integer from 0 to 65535")
    if type(content) is not str:
        raise DecodeError("event content must be a string")
    if len(content) > limits.max_content_bytes or (
        len(content) * 4 > limits.max_content_bytes
        and len(content.encode("utf-8", "surrogatepass")) > limits.max_content_bytes
    ):
        raise DecodeError("event content is over the size limit")
    if type(tags) is not list:
        raise DecodeError("event tags must be a list")
    if len(tags) > limits.max_tags:
        raise DecodeError("event has too many tags")
    for tag in tags:
        if type(tag) is not list or len(tag) > limits.max_tag_values:
            raise DecodeError("each event tag must be a list of strings within the size limit")
        for value in tag:
            if type(value) is not str or (
                len(value) * 4 > limits.max_tag_value_bytes
                and len(value.encode("utf-8", "surrogatepass")) > limits.max_tag_value_bytes
            ):
                raise DecodeError("each event tag must be a list of strings within the size limit")


def parse_event(obj: object, limits: EventLimits = DEFAULT_LIMITS) -> Event:
    """Validate a parsed JSON object as a signed event and check its id.

    Raises :class:`DecodeError` for anything malformed and :class:`InvalidSignature`
    when the id does not match the content. The signature itself is not checked here.
    """
    if type(obj) is not dict:
        raise DecodeError("an event must be a JSON object")
    try:
        event_id = obj["id"]
        pubkey = obj["pubkey"]
        created_at = obj["created_at"]
        kind = obj["kind"]
        tags = obj["tags"]
        content = obj["content"]
        sig = obj["sig"]
    except KeyError as exc:
        raise DecodeError(f"event is missing the field {exc.args[0]!r}") from None
    if not is_hex(event_id, 64):
        raise DecodeError("event id must be 64 lowercase hex digits")
    if not is_hex(sig, 128):
        raise DecodeError("event sig must be 128 lowercase hex digits")
    check_fields(pubkey, created_at, kind, tags, content, limits)
    if compute_id(pubkey, created_at, kind, tags, content).hex() != event_id:
        raise InvalidSignature("event id does not match its content")
    return Event(event_id, pubkey, created_at, kind, tags, content, sig)


def parse_rumor(obj: object, limits: EventLimits = DEFAULT_LIMITS) -> Rumor:
    """Validate an unsigned event (NIP-59 rumor); the id, if present, must match."""
    if type(obj) is not dict:
        raise DecodeError("a rumor must be a JSON object")
    try:
        pubkey = obj["pubkey"]
        created_at = obj["created_at"]
        kind = obj["kind"]
        tags = obj["tags"]
        content = obj["content"]
    except KeyError as exc:
        raise DecodeError(f"rumor is missing the field {exc.args[0]!r}") from None
    check_fields(pubkey, created_at, kind, tags, content, limits)
    computed = compute_id(pubkey, created_at, kind, tags, content).hex()
    claimed = obj.get("id", computed)
    if claimed != computed:
        raise InvalidSignature("rumor id does not match its content")
    if "sig" in obj:
        raise DecodeError("a rumor must not be signed")
    return Rumor(computed, pubkey, created_at, kind, tags, content)


def event_from_json(data: bytes | str, limits: EventLimits = DEFAULT_LIMITS) -> Event:
    """Parse JSON text and validate it as an event."""
    try:
        obj = orjson.loads(data)
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise DecodeError("event is not valid JSON") from exc
    return parse_event(obj, limits)
