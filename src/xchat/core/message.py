"""Application messages: what people send each other inside the encrypted channel.

Every message has a unique ``id`` (16 random bytes as 32 hex digits; NIP-17 messages
use their rumor's 64-hex id) and the sender's clock ``sent_at`` in milliseconds. The
JSON form carries a version ``v`` and a ``type``; decoding is strict, because the bytes
come from a peer: unknown types, fields of the wrong type and oversized values raise
:class:`DecodeError`.

Spec: docs/protocol.md ("Application messages").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Final

from xchat.crypto.keys import Rng
from xchat.errors import DecodeError, LocalProtocolError
from xchat.wire.event import is_hex

__all__ = [
    "MAX_EMOJI_BYTES",
    "MAX_RECEIPT_TARGETS",
    "MAX_TEXT_BYTES",
    "MESSAGE_VERSION",
    "AppMessage",
    "Delete",
    "Delivered",
    "Edit",
    "Reaction",
    "Read",
    "Reply",
    "Text",
    "decode_app_message",
    "encode_app_message",
    "new_message_id",
]

MESSAGE_VERSION: Final = 1
#: Longest text body; with the envelope around it, a message still fits one NIP-44 payload.
MAX_TEXT_BYTES: Final = 32 * 1024
MAX_EMOJI_BYTES: Final = 64
MAX_RECEIPT_TARGETS: Final = 500
_MAX_SENT_AT: Final = 2**53


def new_message_id(rng: Rng) -> str:
    """A fresh message id: 16 random bytes, 32 lowercase hex digits."""
    return rng(16).hex()


def _check_id(value: object, what: str) -> str:
    if not (is_hex(value, 32) or is_hex(value, 64)):
        raise DecodeError(f"{what} must be 32 or 64 lowercase hex digits")
    return value  # type: ignore[return-value]  # is_hex guarantees str


def _check_text(value: object, what: str, limit: int, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise DecodeError(f"{what} must be a string")
    if not value and not allow_empty:
        raise DecodeError(f"{what} must not be empty")
    if len(value) > limit or len(value.encode("utf-8", "surrogatepass")) > limit:
        raise DecodeError(f"{what} is longer than {limit} bytes")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise DecodeError(f"{what} is not valid Unicode") from None
    return value


@dataclass(frozen=True, slots=True)
class _Base:
    type: ClassVar[str]
    id: str
    sent_at: int

    def __post_init__(self) -> None:
        try:
            self._validate()
        except DecodeError as exc:
            raise LocalProtocolError(str(exc)) from None

    def _validate(self) -> None:
        _check_id(self.id, "message id")
        if type(self.sent_at) is not int or not 0 <= self.sent_at < _MAX_SENT_AT:
            raise DecodeError("sent_at must be a non-negative integer of milliseconds")

    def _fields(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True, slots=True)
class Text(_Base):
    type: ClassVar[str] = "text"
    body: str

    def _validate(self) -> None:
        _Base._validate(self)
        _check_text(self.body, "text", MAX_TEXT_BYTES)

    def _fields(self) -> dict[str, Any]:
        return {"body": self.body}


@dataclass(frozen=True, slots=True)
class Reply(_Base):
    type: ClassVar[str] = "reply"
    body: str
    reply_to: str

    def _validate(self) -> None:
        _Base._validate(self)
        _check_text(self.body, "text", MAX_TEXT_BYTES)
        _check_id(self.reply_to, "reply_to")

    def _fields(self) -> dict[str, Any]:
        return {"body": self.body, "reply_to": self.reply_to}


@dataclass(frozen=True, slots=True)
class Reaction(_Base):
    """An emoji on a message; an empty ``emoji`` takes the sender's reaction back."""

    type: ClassVar[str] = "reaction"
    target: str
    emoji: str

    def _validate(self) -> None:
        _Base._validate(self)
        _check_id(self.target, "target")
        _check_text(self.emoji, "emoji", MAX_EMOJI_BYTES, allow_empty=True)

    def _fields(self) -> dict[str, Any]:
        return {"target": self.target, "emoji": self.emoji}


@dataclass(frozen=True, slots=True)
class Edit(_Base):
    """New text for one of the sender's own earlier messages."""

    type: ClassVar[str] = "edit"
    target: str
    body: str

    def _validate(self) -> None:
        _Base._validate(self)
        _check_id(self.target, "target")
        _check_text(self.body, "text", MAX_TEXT_BYTES)

    def _fields(self) -> dict[str, Any]:
        return {"target": self.target, "body": self.body}


@dataclass(frozen=True, slots=True)
class Delete(_Base):
    """Delete one of the sender's own messages for everyone."""

    type: ClassVar[str] = "delete"
    target: str

    def _validate(self) -> None:
        _Base._validate(self)
        _check_id(self.target, "target")

    def _fields(self) -> dict[str, Any]:
        return {"target": self.target}


def _check_targets(targets: object) -> None:
    if not isinstance(targets, tuple) or not 0 < len(targets) <= MAX_RECEIPT_TARGETS:
        raise DecodeError(f"a receipt names 1 to {MAX_RECEIPT_TARGETS} messages")
    for target in targets:
        _check_id(target, "receipt target")


@dataclass(frozen=True, slots=True)
class Delivered(_Base):
    """Delivery receipt: these messages reached the receiving device."""

    type: ClassVar[str] = "delivered"
    targets: tuple[str, ...]

    def _validate(self) -> None:
        _Base._validate(self)
        _check_targets(self.targets)

    def _fields(self) -> dict[str, Any]:
        return {"targets": list(self.targets)}


@dataclass(frozen=True, slots=True)
class Read(_Base):
    """Read receipt: the person has seen these messages (sent only if they allow it)."""

    type: ClassVar[str] = "read"
    targets: tuple[str, ...]

    def _validate(self) -> None:
        _Base._validate(self)
        _check_targets(self.targets)

    def _fields(self) -> dict[str, Any]:
        return {"targets": list(self.targets)}


AppMessage = Text | Reply | Reaction | Edit | Delete | Delivered | Read

_TYPES: Final[dict[str, type[_Base]]] = {
    cls.type: cls for cls in (Text, Reply, Reaction, Edit, Delete, Delivered, Read)
}
_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "text": ("body",),
    "reply": ("body", "reply_to"),
    "reaction": ("target", "emoji"),
    "edit": ("target", "body"),
    "delete": ("target",),
    "delivered": ("targets",),
    "read": ("targets",),
}


def encode_app_message(message: AppMessage) -> dict[str, Any]:
    """The JSON object of a message: ``{"v":1,"type":…,"id":…,"ts":…, …fields}``."""
    return {
        "v": MESSAGE_VERSION,
        "type": message.type,
        "id": message.id,
        "ts": message.sent_at,
        **message._fields(),
    }


def decode_app_message(obj: object) -> AppMessage:
    """Validate a peer's JSON object as an application message (DecodeError otherwise)."""
    if not isinstance(obj, dict):
        raise DecodeError("an application message is a JSON object")
    if obj.get("v") != MESSAGE_VERSION:
        raise DecodeError("unsupported application message version")
    kind = obj.get("type")
    if not isinstance(kind, str) or kind not in _TYPES:
        raise DecodeError("unsupported application message type")
    names = _FIELDS[kind]
    if set(obj) - {"v", "type", "id", "ts", *names}:
        raise DecodeError("application message has unexpected fields")
    args: dict[str, Any] = {}
    for name in names:
        if name not in obj:
            raise DecodeError(f"{kind} message is missing {name!r}")
        value = obj[name]
        if name == "targets":
            if not isinstance(value, list):
                raise DecodeError("receipt targets must be a list")
            value = tuple(value)
        args[name] = value
    cls = _TYPES[kind]
    message = object.__new__(cls)
    for attr, value in (("id", obj.get("id")), ("sent_at", obj.get("ts")), *args.items()):
        object.__setattr__(message, attr, value)
    message._validate()  # DecodeError, not LocalProtocolError: the input is the peer's
    return message  # type: ignore[return-value]
