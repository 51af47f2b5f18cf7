"""What the relay answers to an EVENT: the checks made before it is queued for storage
(each refusal an ``OK false`` with a NIP-01 prefix), and the ``OK`` once it is stored.

Specs: NIP-01 (OK prefixes), NIP-11 (``max_content_length`` counts characters), NIP-13,
NIP-40, NIP-42, NIP-70.
"""

from __future__ import annotations

from xchat.relay.config import RelayLimits
from xchat.relay.ingest import Rejected, Result
from xchat.store.events import SaveStatus, expiration_of
from xchat.wire import messages as m
from xchat.wire.event import Event
from xchat.wire.kinds import KIND_AUTH

__all__ = ["KIND_AUTH", "event_refusal", "ok_for", "pow_difficulty"]


def pow_difficulty(event_id: str) -> int:
    """NIP-13: leading zero bits of the event id."""
    value = int(event_id, 16)
    return 256 - value.bit_length()


def event_refusal(
    limits: RelayLimits, authed: frozenset[str] | set[str], event: Event, now: int
) -> str | None:
    """Why a well-formed EVENT is refused before its signature is checked, or None.

    The content is limited in characters (NIP-11 ``max_content_length``); its bytes are
    bounded only by the message size (``max_message_bytes``, NIP-11 ``max_message_length``).
    """
    invalid = _invalid(limits, event, now)
    if invalid is not None:
        return "invalid: " + invalid
    least = limits.min_pow_difficulty
    if least and pow_difficulty(event.id) < least:
        return f"pow: difficulty {pow_difficulty(event.id)} is less than {least}"
    if any(len(t) == 1 and t[0] == "-" for t in event.tags) and event.pubkey not in authed:
        return "auth-required: this event is protected; only its author may publish it"
    return None


def _invalid(limits: RelayLimits, event: Event, now: int) -> str | None:
    if len(event.content) > limits.max_content_length:
        return f"content is longer than {limits.max_content_length} characters"
    if event.created_at > now + limits.max_future_seconds:
        return "created_at is too far in the future"
    expiration = expiration_of(event)
    if expiration is not None and expiration <= now:
        return "this event has expired"
    if event.kind == KIND_AUTH:
        return "authentication events are sent with AUTH, not EVENT"
    return None


def ok_for(event_id: str, result: Result) -> str:
    """The ``OK`` for an event the ingest pipeline has stored or rejected."""
    if isinstance(result, Rejected):
        return m.ok_message(event_id, False, result.message)
    status = result.status
    if status is SaveStatus.DUPLICATE:
        return m.ok_message(event_id, True, "duplicate: already have this event")
    if status is SaveStatus.DELETED:
        return m.ok_message(event_id, False, "blocked: this event was deleted by its author")
    if status is SaveStatus.OBSOLETE:
        return m.ok_message(event_id, True, "duplicate: a newer version is stored")
    return m.ok_message(event_id, True, "")
