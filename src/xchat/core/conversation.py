"""The conversation rules: what an opened message means, and who may change what.

Sans-I/O: :class:`ConversationRules` reads and writes through a
:class:`ReceivingStore` (the node's SQLCipher store on its store thread, inside the
batch's transaction, or :class:`xchat.core.memory.MemoryStore` in tests) and returns
typed events (:mod:`xchat.core.node_events`). Time and randomness are passed in.

Theory of operation (receiving). :meth:`ConversationRules.apply` takes one batch opened
by :meth:`xchat.core.channel.Channel.open_batch`: the messages that authenticated, and
the ids of envelopes to remember without opening again (duplicates, bad ones). Every
envelope id is marked seen. For each message, in order:

1. *Own copy*: a NIP-17 copy of a message we wrote (``sender`` is us) is filed as an
   outgoing ``sent`` message of the direct conversation with its recipient, unless we
   have it already (our own copy, by its rumor id). A recipient we never wrote to from
   here (another client of ours did) becomes an accepted NIP-17 contact. Only texts and
   replies: effects written in other clients are not synced yet.
2. *Sender*: an unknown sender becomes a contact in state ``request`` (a message
   request) with a direct conversation; a NIP-17 contact who sends an X Chat
   (forward-secret) message is upgraded; a device certificate not seen before is
   stored (an event when the sender has more than one device). A *blocked* sender's
   message stops here: nothing else is stored (the envelope is seen).
3. *Lost*: messages given up on before this one in its chain (``Incoming.lost``) become
   one "could not be decrypted" item just before it.
4. *Message*: a text or reply is stored (a duplicate id changes nothing) and, for an
   accepted contact over X Chat, its id goes to :attr:`Applied.receipts` (a delivery
   receipt to send). Effects (reaction, edit, delete) and receipts apply by the rules
   below. An effect whose target is not stored yet (relays reorder) waits in a bounded
   cache of early effects and is applied when its target arrives.

Authorisation is by conversation and author, never by "the peer's key". An envelope
*comes in on* a conversation: a direct envelope (the only kind today) on the sender's
direct conversation.

* An **edit or delete** applies only if its author is the target's sender, the target
  is incoming and not deleted, and it is in the conversation the envelope came in on.
* A **reaction** applies if its author is a member of the target's conversation.
* A **receipt** moves only our outgoing messages, in a conversation its sender is a
  member of, and only forward (:data:`xchat.model.MESSAGE_MOVES`).

Anything else is ignored silently: a peer cannot touch a message of a conversation it
is not in. Sending reuses the same rules for our own side (:func:`check_edit`,
:func:`check_delete`, :func:`apply_reaction`, :func:`apply_edit`, :func:`apply_delete`).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

import orjson

from xchat.core.channel import Incoming
from xchat.core.device import DeviceCertificate
from xchat.core.message import Delete, Delivered, Edit, Reaction, Read, Reply, Text
from xchat.core.node_events import (
    ContactChanged,
    DeviceAdded,
    ForwardSecrecyUpgraded,
    MessageChanged,
    NodeEvent,
    StateChanged,
)
from xchat.core.stores import ContactStore, ConversationStore, InboxStore, MessageStore
from xchat.crypto.keys import Rng
from xchat.errors import InvalidInput
from xchat.model import (
    Contact,
    ContactState,
    Conversation,
    ConversationKind,
    Device,
    Message,
    MessageState,
)

__all__ = [
    "MAX_EARLY_EFFECTS",
    "Applied",
    "ConversationRules",
    "ReceivingStore",
    "apply_delete",
    "apply_edit",
    "apply_reaction",
    "check_contact",
    "check_delete",
    "check_edit",
    "direct_conversation",
    "lost_item_id",
    "may_edit",
]

#: Early effects (reactions, edits, deletions before their message) kept, by target.
MAX_EARLY_EFFECTS: Final = 2000

_Effect = Reaction | Edit | Delete


class ReceivingStore(ContactStore, ConversationStore, MessageStore, InboxStore, Protocol):
    """What the receiving rules read and write."""


@dataclass(slots=True)
class Applied:
    """What a batch changed: events for subscribers, delivery receipts to send (peer
    pubkey -> message ids), and counts for the node's statistics."""

    events: list[NodeEvent] = field(default_factory=list)
    receipts: dict[str, list[str]] = field(default_factory=dict)
    received: int = 0  # messages opened (duplicates of stored ids included)
    lost: int = 0  # messages given up on (see Incoming.lost)


def direct_conversation(store: ConversationStore, peer: str, now: int, rng: Rng) -> Conversation:
    """The direct conversation with ``peer``, created (id: 16 random bytes, hex) if
    there is none."""
    existing = store.direct_conversation(peer)
    if existing is not None:
        return existing
    conversation = Conversation(rng(16).hex(), ConversationKind.DIRECT, peer, (peer,), now)
    store.add_conversation(conversation)
    return conversation


def lost_item_id(wrap_id: str) -> str:
    """The id of the "could not be decrypted" item before the envelope ``wrap_id``
    (derived, so that the item is stored once however often the envelope is seen)."""
    return hashlib.sha256(b"xchat-lost/" + wrap_id.encode()).hexdigest()[:32]


# -- the rules for our own side (sending) ---------------------------------------------


def check_edit(message: Message, me: str) -> None:
    """InvalidInput unless ``me`` may edit ``message``: our own, not deleted."""
    if not message.outgoing or message.sender != me or message.deleted:
        raise InvalidInput("only your own messages can be edited")


def check_delete(message: Message, me: str) -> None:
    """InvalidInput unless ``me`` may delete ``message`` for everyone: our own."""
    if not message.outgoing or message.sender != me:
        raise InvalidInput("only your own messages can be deleted for everyone")


def check_contact(contact: Contact | None, *, editing: bool = False) -> Contact:
    """The contact of a message's conversation, if we may still send to them
    (``editing``: an edit, which NIP-17 cannot carry)."""
    if contact is None or contact.state is ContactState.BLOCKED:
        raise InvalidInput("that conversation's contact is gone or blocked")
    if editing and contact.nip17_only:
        raise InvalidInput("messages to NIP-17 contacts cannot be edited")
    return contact


def apply_reaction(message: Message, reactor: str, emoji: str) -> None:
    """``reactor``'s reaction on ``message`` becomes ``emoji`` ("" takes it back)."""
    reactions = dict(message.reactions or {})
    if emoji:
        reactions[reactor] = emoji
    else:
        reactions.pop(reactor, None)
    message.reactions = reactions


def apply_edit(message: Message, body: str, edited_at: int) -> None:
    message.body, message.edited_at = body, edited_at


def apply_delete(message: Message) -> None:
    message.body, message.deleted = "", True


# -- receiving ----------------------------------------------------------------------------


class ConversationRules:
    """The receiving rules for the identity ``me`` (hex), with the cache of early
    effects (at most ``max_early`` targets; the oldest target is dropped first). Used
    from one thread (the node's store thread)."""

    def __init__(self, me: str, *, max_early: int = MAX_EARLY_EFFECTS) -> None:
        self.me = me
        self._max_early = max_early
        #: target id -> (author, conversation the effect came in on, effect)
        self._early: OrderedDict[str, list[tuple[str, str, _Effect]]] = OrderedDict()

    @property
    def early(self) -> int:
        """Targets with effects waiting for them."""
        return len(self._early)

    def apply(
        self,
        store: ReceivingStore,
        opened: Sequence[Incoming],
        seen_only: Sequence[str],
        now: int,
        now_ms: int,
        rng: Rng,
    ) -> Applied:
        """Apply one batch (see the module docstring); ``now`` in seconds (seen times,
        new rows), ``now_ms`` for received_at."""
        out = Applied()
        for event_id in seen_only:
            store.mark_seen(event_id, now)
        for incoming in opened:
            store.mark_seen(incoming.wrap_id, now)
            out.received += 1
            sender = incoming.sender.hex
            if sender == self.me:
                self._own_copy(store, incoming, now, now_ms, rng, out)
                continue
            contact = self._sender(store, incoming, now, rng, out)
            if contact.state is ContactState.BLOCKED:
                continue
            conversation = direct_conversation(store, sender, now, rng)
            if incoming.lost:
                self._lost(store, incoming, conversation, now_ms, out)
            self._message(store, contact, conversation, incoming, now_ms, out)
        return out

    def _sender(
        self, store: ReceivingStore, incoming: Incoming, now: int, rng: Rng, out: Applied
    ) -> Contact:
        """The sender's contact (created as a message request), upgraded to forward
        secrecy if this message is; their device stored."""
        sender = incoming.sender.hex
        contact = store.get_contact(sender)
        if contact is None:
            contact = Contact(
                sender, None, ContactState.REQUEST, [], now, nip17_only=not incoming.forward_secret
            )
            store.upsert_contact(contact)
            contact.conversation = direct_conversation(store, sender, now, rng).id
            out.events.append(ContactChanged(contact))
        elif incoming.forward_secret and contact.nip17_only:
            contact.nip17_only = False
            store.upsert_contact(contact)
            out.events.append(ForwardSecrecyUpgraded(contact))
        if incoming.device is not None:
            cert = incoming.device
            device = Device(cert.device_id, sender, cert.curve25519, _cert_json(cert), now)
            if store.upsert_device(device) and len(store.devices(sender)) > 1:
                out.events.append(DeviceAdded(sender, cert.device_id))
        return contact

    def _own_copy(
        self,
        store: ReceivingStore,
        incoming: Incoming,
        now: int,
        now_ms: int,
        rng: Rng,
        out: Applied,
    ) -> None:
        message = incoming.message
        peer = incoming.peer
        if not isinstance(message, Text | Reply) or peer in ("", self.me):
            return
        if store.get_message(message.id) is not None:
            return  # our own copy
        if store.get_contact(peer) is None:  # we wrote to them from another app
            contact = Contact(peer, None, ContactState.ACCEPTED, [], now, nip17_only=True)
            store.upsert_contact(contact)
            contact.conversation = direct_conversation(store, peer, now, rng).id
            out.events.append(ContactChanged(contact))
        row = Message(
            id=message.id,
            conversation=direct_conversation(store, peer, now, rng).id,
            outgoing=True,
            sender=self.me,
            type=message.type,
            body=message.body,
            sent_at=message.sent_at,
            received_at=now_ms,
            state=MessageState.SENT,
            forward_secret=False,
            reply_to=message.reply_to if isinstance(message, Reply) else None,
        )
        if store.insert_message(row):
            out.events.append(MessageChanged(row))

    def _lost(
        self,
        store: ReceivingStore,
        incoming: Incoming,
        conversation: Conversation,
        now_ms: int,
        out: Applied,
    ) -> None:
        out.lost += incoming.lost
        sender = incoming.sender.hex
        count = incoming.lost
        row = Message(
            id=lost_item_id(incoming.wrap_id),
            conversation=conversation.id,
            outgoing=False,
            sender=sender,
            type="undecryptable",
            body=f"{count} message{'s' if count != 1 else ''} from this contact could not be"
            " decrypted",
            sent_at=max(0, incoming.message.sent_at - 1),
            received_at=now_ms,
            state=MessageState.RECEIVED,
            forward_secret=True,
            state_detail=str(count),
        )
        if store.insert_message(row):
            out.events.append(MessageChanged(row))

    def _message(
        self,
        store: ReceivingStore,
        contact: Contact,
        conversation: Conversation,
        incoming: Incoming,
        now_ms: int,
        out: Applied,
    ) -> None:
        message = incoming.message
        sender = incoming.sender.hex
        if isinstance(message, Text | Reply):
            self._text(store, contact, conversation, incoming, message, now_ms, out)
        elif isinstance(message, Delivered | Read):
            out.events.extend(_apply_receipt(store, sender, message))
        elif store.get_message(message.target) is None:
            # its target has not arrived yet (relays reorder): apply it when it does
            self._early.setdefault(message.target, []).append((sender, conversation.id, message))
            while len(self._early) > self._max_early:
                self._early.popitem(last=False)
        else:
            out.events.extend(_apply_effect(store, sender, conversation.id, message))

    def _text(
        self,
        store: ReceivingStore,
        contact: Contact,
        conversation: Conversation,
        incoming: Incoming,
        message: Text | Reply,
        now_ms: int,
        out: Applied,
    ) -> None:
        sender = incoming.sender.hex
        row = Message(
            id=message.id,
            conversation=conversation.id,
            outgoing=False,
            sender=sender,
            type=message.type,
            body=message.body,
            sent_at=message.sent_at,
            received_at=now_ms,
            state=MessageState.RECEIVED,
            forward_secret=incoming.forward_secret,
            reply_to=message.reply_to if isinstance(message, Reply) else None,
        )
        if not store.insert_message(row):
            return
        out.events.append(MessageChanged(row))
        if contact.state is ContactState.ACCEPTED and incoming.forward_secret:
            out.receipts.setdefault(sender, []).append(message.id)
        for author, came_in_on, effect in self._early.pop(message.id, []):
            out.events.extend(_apply_effect(store, author, came_in_on, effect))


def _cert_json(cert: DeviceCertificate) -> str:
    return orjson.dumps(cert.to_json()).decode()


def _apply_receipt(
    store: ReceivingStore, sender: str, message: Delivered | Read
) -> list[NodeEvent]:
    """Our messages that a member's device received or read move forward."""
    state = MessageState.DELIVERED if isinstance(message, Delivered) else MessageState.READ
    out: list[NodeEvent] = []
    for target in message.targets:
        row = store.get_message(target)
        if row is None or not row.outgoing or not _is_member(store, row.conversation, sender):
            continue
        if store.set_state(target, state, row.state_detail):
            out.append(StateChanged(target, state, row.state_detail))
    return out


def _apply_effect(
    store: ReceivingStore, author: str, came_in_on: str, message: _Effect
) -> list[NodeEvent]:
    """A reaction, edit or deletion by ``author``, come in on the conversation
    ``came_in_on``: applied if the rules of the module docstring allow it."""
    row = store.get_message(message.target)
    if row is None:
        return []
    if isinstance(message, Reaction):
        if not _is_member(store, row.conversation, author):
            return []  # not in the target's conversation
        apply_reaction(row, author, message.emoji)
    elif row.outgoing or row.deleted or row.sender != author or row.conversation != came_in_on:
        return []  # only the author edits or deletes a message, where it was written
    elif isinstance(message, Edit):
        apply_edit(row, message.body, message.sent_at)
    else:
        apply_delete(row)
    store.update_message(row)
    return [MessageChanged(row)]


def may_edit(target: Message, author: str, came_in_on: str) -> bool:
    """Whether an edit or deletion by ``author``, come in on the conversation
    ``came_in_on``, may change ``target``: it is the author's, incoming, not deleted,
    and in that conversation."""
    return (
        not target.outgoing
        and not target.deleted
        and target.sender == author
        and target.conversation == came_in_on
    )


def _is_member(store: ReceivingStore, conversation_id: str, pubkey: str) -> bool:
    conversation = store.get_conversation(conversation_id)
    return conversation is not None and conversation.has_member(pubkey)
