"""The local API's JSON: one function per domain type or node event (docs/api.md).

The node and the core hand out typed objects (:mod:`xchat.model`,
:mod:`xchat.core.node_events`); only this module knows their JSON shape, so a change
of shape is one change here and in the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xchat.core.identity import ContactCard
from xchat.core.nip17 import FILE_NOTE
from xchat.core.node_events import (
    ContactChanged,
    DeviceAdded,
    ForwardSecrecyUpgraded,
    MessageChanged,
    ReadMarked,
    RelayChanged,
    RelayWarning,
    StateChanged,
)
from xchat.crypto.keys import PublicKey
from xchat.model import Contact, ConversationSummary, Message
from xchat.node.contacts import ContactMarks
from xchat.node.stream import Resync, StreamItem

__all__ = ["contact_json", "conversation_json", "event_json", "message_json"]


def message_json(row: Message) -> dict[str, Any]:
    """A message; ``conversation`` is its conversation's id."""
    return {
        "id": row.id,
        "conversation": row.conversation,
        "outgoing": row.outgoing,
        "sender": row.sender,
        "type": row.type,
        "body": row.body,
        "sent_at": row.sent_at,
        "received_at": row.received_at,
        "state": str(row.state),
        "state_detail": row.state_detail,
        "forward_secret": row.forward_secret,
        "reply_to": row.reply_to,
        "edited_at": row.edited_at,
        "deleted": row.deleted,
        "reactions": row.reactions or {},
        "seq": row.seq,
        # a file from another app: shown as a message that says so
        "note": FILE_NOTE if row.type == "file" else None,
    }


def contact_json(contact: Contact, marks: ContactMarks | None = None) -> dict[str, Any]:
    """A contact. ``marks``: today's safety number (if they were verified) and when
    their keys are looked up again (see ``Contacts.marks``)."""
    current = marks.current_number if marks else None
    next_lookup = marks.next_lookup if marks else None
    card = ContactCard.create(PublicKey.from_hex(contact.pubkey), tuple(contact.relays[:3]))
    return {
        "pubkey": contact.pubkey,
        "npub": card.npub,
        "nprofile": card.nprofile,
        "name": contact.name,
        "state": str(contact.state),
        "conversation": contact.conversation or None,
        "relays": contact.relays,
        "forward_secret": not contact.nip17_only,
        # why not: no device bundle (X Chat keys) of theirs found, so far
        "not_forward_secret_reason": "no_keys" if contact.nip17_only else None,
        "keys_checked_at": contact.bundle_checked_at or None,
        "next_keys_check_at": None if next_lookup is None else int(next_lookup),
        "verified": contact.verified is not None and contact.verified == current,
        "verification_changed": contact.verified is not None
        and current is not None
        and contact.verified != current,
        "created_at": contact.created_at,
    }


def conversation_json(summary: ConversationSummary) -> dict[str, Any]:
    """A line of the conversation list."""
    conversation = summary.conversation
    peer = conversation.peer
    return {
        "id": conversation.id,
        "kind": str(conversation.kind),
        "peer": peer,
        "members": list(conversation.members),
        # the peer's key and address (direct conversations), kept for older clients
        "pubkey": peer,
        "npub": ContactCard.create(PublicKey.from_hex(peer)).npub if peer else None,
        "name": summary.name,
        "state": None if summary.state is None else str(summary.state),
        "last_activity": summary.last_activity,
        "last_message": message_json(summary.last_message) if summary.last_message else None,
        "unread": summary.unread,
        "forward_secret": summary.forward_secret,
    }


def event_json(  # noqa: PLR0911 - one answer per kind of event
    item: StreamItem, marks: Callable[[Contact], ContactMarks]
) -> list[dict[str, Any]]:
    """The stream's JSON for one node event (docs/api.md, "Stream")."""
    match item:
        case MessageChanged(message):
            return [{"type": "message", "message": message_json(message)}]
        case StateChanged(message_id, state, detail):
            return [{"type": "state", "id": message_id, "state": str(state), "detail": detail}]
        case ContactChanged(contact):
            return [{"type": "contact", "contact": contact_json(contact, marks(contact))}]
        case ForwardSecrecyUpgraded(contact):
            view = contact_json(contact, marks(contact))
            return [{"type": "forward_secrecy", "pubkey": contact.pubkey, "contact": view}]
        case DeviceAdded(pubkey, device_id):
            return [{"type": "device_added", "pubkey": pubkey, "device": device_id}]
        case ReadMarked(conversation, ids):
            return [{"type": "read", "conversation": conversation, "ids": list(ids)}]
        case RelayChanged(relay):
            return [{"type": "relay", "relay": relay}]
        case RelayWarning(relay, warning):
            return [{"type": "warning", "relay": relay, "warning": warning}]
        case Resync():
            return [{"type": "resync"}]
