"""The Nostr relay protocol's messages (NIP-01, NIP-42 AUTH, NIP-45 COUNT), both ways.

Four groups of functions, one per direction and side:

* :func:`parse_client_message` — what a relay reads from a client: ``EVENT``, ``REQ``,
  ``CLOSE``, ``AUTH``, ``COUNT``. Malformed input raises :class:`MessageError`, which
  carries what could be read (verb, subscription id, event id) so the relay can answer
  with ``OK``/``CLOSED``/``NOTICE`` (see :meth:`MessageError.reply`).
* ``*_message`` serializers for what a relay writes: ``EVENT``, ``OK``, ``EOSE``,
  ``CLOSED``, ``NOTICE``, ``AUTH`` challenge, ``COUNT`` result. They return ``str`` (one
  WebSocket text frame) and run once per delivery, so they do little beyond orjson.
* :func:`parse_relay_message` — what a client reads from a relay.
* :func:`req_message`, :func:`close_message`, :func:`publish_message`,
  :func:`auth_message`, :func:`count_request` — what a client writes.

Events are checked with :func:`xchat.wire.event.parse_event` (fields, sizes and id),
never their signatures: that needs curve arithmetic and is the relay's or the client's
next step. Filters are checked with :func:`xchat.wire.filter.parse_filter`.

Specs: https://github.com/nostr-protocol/nips/blob/master/01.md (messages),
https://github.com/nostr-protocol/nips/blob/master/42.md (AUTH),
https://github.com/nostr-protocol/nips/blob/master/45.md (COUNT).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, TypeAlias

import orjson

from xchat.errors import DecodeError, InvalidSignature, LocalProtocolError
from xchat.wire.event import DEFAULT_LIMITS as DEFAULT_EVENT_LIMITS
from xchat.wire.event import Event, EventLimits, is_hex, parse_event
from xchat.wire.filter import DEFAULT_FILTER_LIMITS, Filter, FilterLimits, parse_filter

__all__ = [
    "DEFAULT_MESSAGE_LIMITS",
    "MAX_SUB_ID_LENGTH",
    "ClientAuth",
    "ClientClose",
    "ClientCount",
    "ClientEvent",
    "ClientMessage",
    "ClientReq",
    "MessageError",
    "MessageLimits",
    "OkPrefix",
    "RelayAuth",
    "RelayClosed",
    "RelayCount",
    "RelayEose",
    "RelayEvent",
    "RelayMessage",
    "RelayNotice",
    "RelayOk",
    "auth_challenge_message",
    "auth_message",
    "close_message",
    "closed_message",
    "count_message",
    "count_request",
    "eose_message",
    "event_message",
    "neg_err_message",
    "notice_message",
    "ok_message",
    "parse_client_message",
    "parse_relay_message",
    "prefixed",
    "publish_message",
    "req_message",
    "split_prefixed",
]

#: NIP-01: "an arbitrary, non-empty string of max length 64 chars".
MAX_SUB_ID_LENGTH: Final = 64
_ECHO_ID_LENGTH: Final = 64  # longest malformed event id echoed in OK

# The seven fields of a signed event: an object with exactly these is stored as received
# (re-serialized compactly), anything more is reduced to them.
_EVENT_FIELD_COUNT: Final = 7


@dataclass(frozen=True, slots=True)
class MessageLimits:
    """Bounds applied to every message read, whichever side reads it.

    ``max_message_bytes`` (256 KiB, UTF-8 bytes of one WebSocket text frame) is checked
    before any parsing, so it bounds the work one message can cause. It is the bound that
    usually binds: an event at ``event_limits.max_content_bytes`` (256 KiB by default)
    does not fit in a 256 KiB frame; a relay that wants smaller events lowers the content
    limit (``xchat relay`` uses 128 KiB). ``max_sub_id_length`` is NIP-01's 64 characters.
    ``max_filters_per_req`` (10) bounds the matching work of one REQ or COUNT, together
    with ``filter_limits`` (1000 values per list).
    """

    max_message_bytes: int = 256 * 1024
    max_filters_per_req: int = 10
    max_sub_id_length: int = MAX_SUB_ID_LENGTH
    event_limits: EventLimits = field(default=DEFAULT_EVENT_LIMITS)
    filter_limits: FilterLimits = field(default=DEFAULT_FILTER_LIMITS)


DEFAULT_MESSAGE_LIMITS: Final = MessageLimits()


class MessageError(DecodeError):
    """A malformed protocol message. ``str(exc)`` is ``reason``.

    ``reason`` is a short sentence meant for the other side (it never quotes more than a
    few characters of the input). ``verb`` is set once the message type is known,
    ``sub_id`` once a subscription id string was read (also an empty or over-long one,
    so that ``CLOSED`` can name it), ``event_id`` once an event object with an ``id``
    string of 1 to 64 characters was read (well-formed or not): what a client would
    match an ``OK`` against. An id that is not such a string cannot be echoed, so the
    answer is a ``NOTICE``.
    """

    def __init__(
        self,
        reason: str,
        *,
        verb: str | None = None,
        sub_id: str | None = None,
        event_id: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.verb = verb
        self.sub_id = sub_id
        self.event_id = event_id

    def reply(self) -> str:
        """The relay's answer to the client message that raised this error.

        ``OK false`` for an EVENT or AUTH whose id could be read, ``CLOSED`` for a REQ or
        COUNT whose subscription id could be read, otherwise ``NOTICE``; the text is
        ``"invalid: " + reason`` in all three. A NIP-77 ``NEG-OPEN`` gets ``NEG-ERR``
        (``"blocked: " + reason``): its clients wait for that, not for a NOTICE.
        """
        text = prefixed(OkPrefix.INVALID, self.reason)
        if self.verb in ("EVENT", "AUTH") and self.event_id is not None:
            return ok_message(self.event_id, False, text)
        if self.verb in ("REQ", "COUNT") and self.sub_id is not None:
            return closed_message(self.sub_id, text)
        if self.verb == "NEG-OPEN" and self.sub_id is not None:
            return neg_err_message(self.sub_id, prefixed(OkPrefix.BLOCKED, self.reason))
        return notice_message(text)


class OkPrefix(StrEnum):
    """Machine-readable prefixes of ``OK`` and ``CLOSED`` messages (NIP-01, NIP-42)."""

    DUPLICATE = "duplicate"
    POW = "pow"
    BLOCKED = "blocked"
    RATE_LIMITED = "rate-limited"
    INVALID = "invalid"
    RESTRICTED = "restricted"
    MUTE = "mute"
    ERROR = "error"
    AUTH_REQUIRED = "auth-required"
    #: Not in NIP-01's list, but its own CLOSED example uses it (unknown filter fields).
    UNSUPPORTED = "unsupported"


def prefixed(prefix: OkPrefix | str, human_text: str) -> str:
    """``"prefix: human text"``, the form NIP-01 asks of OK and CLOSED messages."""
    return f"{prefix}: {human_text}"


def split_prefixed(message: str) -> tuple[str, str]:
    """``("auth-required", "text")`` from ``"auth-required: text"``; ``("", message)`` if
    the message has no single-word prefix."""
    head, sep, tail = message.partition(":")
    if not sep or not head or any(c.isspace() for c in head):
        return "", message
    return head, tail.removeprefix(" ")


# --- messages ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientEvent:
    """``["EVENT", <event>]``. ``json`` is the event object as compact JSON, ready to store
    and to send in ``EVENT`` messages (:func:`event_message`): the client's own fields and
    key order, without whitespace, duplicate keys or extra fields."""

    event: Event
    json: str


@dataclass(frozen=True, slots=True)
class ClientReq:
    """``["REQ", <sub_id>, <filter>, ...]``: at least one filter."""

    sub_id: str
    filters: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class ClientClose:
    """``["CLOSE", <sub_id>]``."""

    sub_id: str


@dataclass(frozen=True, slots=True)
class ClientAuth:
    """``["AUTH", <event>]`` (NIP-42). The event's kind, tags and age are not checked."""

    event: Event
    json: str


@dataclass(frozen=True, slots=True)
class ClientCount:
    """``["COUNT", <sub_id>, <filter>, ...]`` (NIP-45)."""

    sub_id: str
    filters: tuple[Filter, ...]


ClientMessage: TypeAlias = ClientEvent | ClientReq | ClientClose | ClientAuth | ClientCount


@dataclass(frozen=True, slots=True)
class RelayEvent:
    """``["EVENT", <sub_id>, <event>]``."""

    sub_id: str
    event: Event


@dataclass(frozen=True, slots=True)
class RelayOk:
    """``["OK", <event_id>, <accepted>, <message>]``."""

    event_id: str
    accepted: bool
    message: str


@dataclass(frozen=True, slots=True)
class RelayEose:
    """``["EOSE", <sub_id>]``."""

    sub_id: str


@dataclass(frozen=True, slots=True)
class RelayClosed:
    """``["CLOSED", <sub_id>, <message>]``."""

    sub_id: str
    message: str


@dataclass(frozen=True, slots=True)
class RelayNotice:
    """``["NOTICE", <message>]``."""

    message: str


@dataclass(frozen=True, slots=True)
class RelayAuth:
    """``["AUTH", <challenge>]`` (NIP-42)."""

    challenge: str


@dataclass(frozen=True, slots=True)
class RelayCount:
    """``["COUNT", <sub_id>, {"count": n}]`` (NIP-45); ``approximate`` if the relay says so.
    An ``hll`` value, if any, is ignored."""

    sub_id: str
    count: int
    approximate: bool = False


RelayMessage: TypeAlias = (
    RelayEvent | RelayOk | RelayEose | RelayClosed | RelayNotice | RelayAuth | RelayCount
)


# --- reading ----------------------------------------------------------------------------------


def _load(data: object, max_bytes: int) -> list[Any]:
    """The message as a non-empty list, after the size check; MessageError otherwise."""
    if type(data) is str:
        size = len(data)
        # Each character is 1 to 4 bytes: only count bytes when the answer is in doubt
        # (isascii() reads a flag CPython keeps on every str).
        if size * 4 > max_bytes and size <= max_bytes and not data.isascii():
            size = len(data.encode("utf-8", "surrogatepass"))
    elif type(data) is bytes:
        size = len(data)
    else:
        raise MessageError("a message must be text")
    if size > max_bytes:
        raise MessageError(f"message is larger than {max_bytes} bytes")
    try:
        msg = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise MessageError("message is not valid JSON") from None
    if type(msg) is not list or not msg:
        raise MessageError("a message must be a non-empty JSON array")
    return msg


def _readable_id(obj: object) -> str | None:
    """The id of what was meant to be an event, if a string short enough to echo back
    in ``OK`` (NIP-01 ids are 64 characters); None otherwise."""
    if type(obj) is dict:
        event_id = obj.get("id")
        if type(event_id) is str and 1 <= len(event_id) <= _ECHO_ID_LENGTH:
            return event_id
    return None


def _event(msg: list[Any], index: int, verb: str, limits: EventLimits, sub_id: str | None) -> Event:
    obj = msg[index]
    try:
        return parse_event(obj, limits)
    except (DecodeError, InvalidSignature) as exc:
        raise MessageError(str(exc), verb=verb, sub_id=sub_id, event_id=_readable_id(obj)) from None


def _event_json(obj: dict[str, Any], event: Event) -> str:
    # Measured: as cheap as slicing the event out of the message text (~0.25 µs for a
    # 500-byte event), and it drops whitespace, duplicate keys (orjson keeps the last,
    # other parsers the first or fail) and, rarely needed, extra fields.
    if len(obj) == _EVENT_FIELD_COUNT:
        return orjson.dumps(obj).decode()
    return orjson.dumps(event.to_dict()).decode()


def _sub_id(msg: list[Any], verb: str, max_length: int) -> str:
    if len(msg) < 2:
        raise MessageError(f"{verb} message needs a subscription id", verb=verb)
    sub_id = msg[1]
    if type(sub_id) is not str or not sub_id or len(sub_id) > max_length:
        raise MessageError(
            f"subscription id must be a non-empty string of at most {max_length} characters",
            verb=verb,
            # CLOSED names what was sent, so the client can match it
            sub_id=sub_id if type(sub_id) is str and verb in ("REQ", "COUNT") else None,
        )
    return sub_id


def _filters(msg: list[Any], verb: str, sub_id: str, limits: MessageLimits) -> tuple[Filter, ...]:
    count = len(msg) - 2
    if count < 1:
        raise MessageError(f"{verb} message needs at least one filter", verb=verb, sub_id=sub_id)
    if count > limits.max_filters_per_req:
        raise MessageError(
            f"{verb} message has more than {limits.max_filters_per_req} filters",
            verb=verb,
            sub_id=sub_id,
        )
    filter_limits = limits.filter_limits
    try:
        return tuple([parse_filter(obj, filter_limits) for obj in msg[2:]])
    except DecodeError as exc:
        raise MessageError(str(exc), verb=verb, sub_id=sub_id) from None


def _length(msg: list[Any], length: int, verb: str, **known: str | None) -> None:
    if len(msg) != length:
        raise MessageError(f"{verb} message must have {length} elements", verb=verb, **known)


def parse_client_message(
    data: str | bytes, limits: MessageLimits = DEFAULT_MESSAGE_LIMITS
) -> ClientMessage:
    """Parse one message a client sent to a relay; MessageError if it is malformed.

    An event whose id does not match its content is a MessageError too (with the id).
    """
    msg = _load(data, limits.max_message_bytes)
    verb = msg[0]
    if verb == "EVENT":
        if len(msg) != 2:
            event_id = _readable_id(msg[1]) if len(msg) > 1 else None
            _length(msg, 2, verb, event_id=event_id)
        event = _event(msg, 1, verb, limits.event_limits, None)
        return ClientEvent(event, _event_json(msg[1], event))
    if verb in ("REQ", "COUNT"):
        sub_id = _sub_id(msg, verb, limits.max_sub_id_length)
        filters = _filters(msg, verb, sub_id, limits)
        return ClientReq(sub_id, filters) if verb == "REQ" else ClientCount(sub_id, filters)
    if verb == "CLOSE":
        sub_id = _sub_id(msg, verb, limits.max_sub_id_length)
        _length(msg, 2, verb, sub_id=sub_id)
        return ClientClose(sub_id)
    if verb == "AUTH":
        if len(msg) != 2:
            event_id = _readable_id(msg[1]) if len(msg) > 1 else None
            _length(msg, 2, verb, event_id=event_id)
        if type(msg[1]) is not dict:
            raise MessageError("AUTH message must carry an event object", verb=verb)
        event = _event(msg, 1, verb, limits.event_limits, None)
        return ClientAuth(event, _event_json(msg[1], event))
    if verb == "NEG-OPEN":  # NIP-77: not spoken here (see MessageError.reply)
        sub_id = _sub_id(msg, verb, limits.max_sub_id_length)
        raise MessageError("negentropy syncing (NIP-77) is not supported", verb=verb, sub_id=sub_id)
    raise MessageError("unknown message type")


def _text(msg: list[Any], index: int, verb: str, what: str, **known: str | None) -> str:
    value = msg[index]
    if type(value) is not str:
        raise MessageError(f"{verb} {what} must be a string", verb=verb, **known)
    return value


def _relay_event(msg: list[Any], limits: MessageLimits) -> RelayEvent:
    sub_id = _sub_id(msg, "EVENT", limits.max_sub_id_length)
    if len(msg) != 3:
        event_id = _readable_id(msg[2]) if len(msg) > 2 else None
        _length(msg, 3, "EVENT", sub_id=sub_id, event_id=event_id)
    return RelayEvent(sub_id, _event(msg, 2, "EVENT", limits.event_limits, sub_id))


def _relay_ok(msg: list[Any], limits: MessageLimits) -> RelayOk:
    event_id = msg[1] if len(msg) > 1 and is_hex(msg[1], 64) else None
    _length(msg, 4, "OK", event_id=event_id)
    if event_id is None:
        raise MessageError("OK event id must be 64 lowercase hex digits", verb="OK")
    accepted = msg[2]
    if type(accepted) is not bool:
        raise MessageError("OK status must be true or false", verb="OK", event_id=event_id)
    return RelayOk(event_id, accepted, _text(msg, 3, "OK", "message", event_id=event_id))


def _relay_eose(msg: list[Any], limits: MessageLimits) -> RelayEose:
    sub_id = _sub_id(msg, "EOSE", limits.max_sub_id_length)
    _length(msg, 2, "EOSE", sub_id=sub_id)
    return RelayEose(sub_id)


def _relay_closed(msg: list[Any], limits: MessageLimits) -> RelayClosed:
    sub_id = _sub_id(msg, "CLOSED", limits.max_sub_id_length)
    _length(msg, 3, "CLOSED", sub_id=sub_id)
    return RelayClosed(sub_id, _text(msg, 2, "CLOSED", "message", sub_id=sub_id))


def _relay_notice(msg: list[Any], limits: MessageLimits) -> RelayNotice:
    _length(msg, 2, "NOTICE")
    return RelayNotice(_text(msg, 1, "NOTICE", "message"))


def _relay_auth(msg: list[Any], limits: MessageLimits) -> RelayAuth:
    _length(msg, 2, "AUTH")
    return RelayAuth(_text(msg, 1, "AUTH", "challenge"))


def _relay_count(msg: list[Any], limits: MessageLimits) -> RelayCount:
    sub_id = _sub_id(msg, "COUNT", limits.max_sub_id_length)
    _length(msg, 3, "COUNT", sub_id=sub_id)
    result = msg[2]
    count = result.get("count") if type(result) is dict else None
    approximate = result.get("approximate", False) if type(result) is dict else False
    if type(count) is not int or count < 0 or type(approximate) is not bool:
        raise MessageError(
            'COUNT result must be {"count": <non-negative integer>}', verb="COUNT", sub_id=sub_id
        )
    return RelayCount(sub_id, count, approximate)


_RELAY_PARSERS: Final[dict[str, Callable[[list[Any], MessageLimits], RelayMessage]]] = {
    "EVENT": _relay_event,
    "OK": _relay_ok,
    "EOSE": _relay_eose,
    "CLOSED": _relay_closed,
    "NOTICE": _relay_notice,
    "AUTH": _relay_auth,
    "COUNT": _relay_count,
}


def parse_relay_message(
    data: str | bytes, limits: MessageLimits = DEFAULT_MESSAGE_LIMITS
) -> RelayMessage:
    """Parse one message a relay sent to a client; MessageError if it is malformed.

    Events are checked like a relay checks them (fields, sizes, id), not their signatures.
    """
    msg = _load(data, limits.max_message_bytes)
    verb = msg[0]
    parser = _RELAY_PARSERS.get(verb) if type(verb) is str else None
    if parser is None:
        raise MessageError("unknown message type")
    return parser(msg, limits)


# --- writing ----------------------------------------------------------------------------------


def _dumps(value: object) -> str:
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError as exc:  # lone surrogates, non-JSON types, huge ints
        raise LocalProtocolError(f"cannot serialize a protocol message: {exc}") from None


# Relay to client. Arguments come from parsed messages and the relay's store and are not
# re-validated; strings are escaped by orjson, so no argument can change the message shape.


def event_message(sub_id: str, event_json: str) -> str:
    """``["EVENT", sub_id, <event>]`` around an event's stored JSON (not re-checked)."""
    return '["EVENT",' + _dumps(sub_id) + "," + event_json + "]"


def ok_message(event_id: str, accepted: bool, message: str) -> str:
    """``["OK", event_id, accepted, message]``; use :func:`prefixed` for the message."""
    return _dumps(["OK", event_id, accepted, message])


def eose_message(sub_id: str) -> str:
    return '["EOSE",' + _dumps(sub_id) + "]"


def closed_message(sub_id: str, message: str) -> str:
    return _dumps(["CLOSED", sub_id, message])


def neg_err_message(sub_id: str, message: str) -> str:
    """NIP-77's refusal of a negentropy subscription (``blocked:`` or ``closed:``)."""
    return _dumps(["NEG-ERR", sub_id, message])


def notice_message(message: str) -> str:
    return _dumps(["NOTICE", message])


def auth_challenge_message(challenge: str) -> str:
    return _dumps(["AUTH", challenge])


def count_message(sub_id: str, count: int, approximate: bool = False) -> str:
    """``["COUNT", sub_id, {"count": count}]``, with ``"approximate": true`` if so."""
    result: dict[str, Any] = {"count": count}
    if approximate:
        result["approximate"] = True
    return _dumps(["COUNT", sub_id, result])


# Client to relay. These check their arguments (LocalProtocolError) so that we never send
# a message a strict relay, or our own, would refuse.


def _check_sub_id(sub_id: object) -> None:
    if type(sub_id) is not str or not 1 <= len(sub_id) <= MAX_SUB_ID_LENGTH:
        raise LocalProtocolError(
            f"a subscription id must be a string of 1 to {MAX_SUB_ID_LENGTH} characters"
        )


def _filter_objects(filters: Sequence[Filter | dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(filters, str | bytes | dict | Filter) or not filters:
        raise LocalProtocolError("give a non-empty sequence of filters")
    objects = []
    for f in filters:
        if isinstance(f, Filter):
            objects.append(f.to_json())
        elif isinstance(f, dict):
            objects.append(f)
        else:
            raise LocalProtocolError("each filter must be a Filter or a dict")
    return objects


def req_message(sub_id: str, filters: Sequence[Filter | dict[str, Any]]) -> str:
    """``["REQ", sub_id, <filter>, ...]``. Dicts are sent as given (other relays'
    extensions, such as NIP-50 ``search``, are allowed here)."""
    _check_sub_id(sub_id)
    return _dumps(["REQ", sub_id, *_filter_objects(filters)])


def count_request(sub_id: str, filters: Sequence[Filter | dict[str, Any]]) -> str:
    """``["COUNT", sub_id, <filter>, ...]`` (NIP-45)."""
    _check_sub_id(sub_id)
    return _dumps(["COUNT", sub_id, *_filter_objects(filters)])


def close_message(sub_id: str) -> str:
    _check_sub_id(sub_id)
    return _dumps(["CLOSE", sub_id])


def publish_message(event: Event) -> str:
    """``["EVENT", <event>]``."""
    return '["EVENT",' + _dumps(event.to_dict()) + "]"


def auth_message(event: Event) -> str:
    """``["AUTH", <event>]`` (NIP-42): ``event`` is a signed kind-22242 event."""
    return '["AUTH",' + _dumps(event.to_dict()) + "]"
