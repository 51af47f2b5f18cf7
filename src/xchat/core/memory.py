"""An in-memory node store: :class:`~xchat.core.stores.NodeStoreProtocol` over dicts.

The reference the core's rules are unit-tested against, in-process and in
microseconds. It mirrors the documented behaviour of the node's SQLCipher store
(``xchat.store.node.NodeStore``): tests/core/test_memory_store.py runs the same cases
against both, so a rule proven here holds there.

Theory of operation:

* **Copies**: every object is copied on the way in and on the way out (``copy.deepcopy``),
  as a database row would be: changing a returned object changes nothing until it is
  written back, and the caller's object is never shared with the store.
* **Transactions**: :meth:`MemoryStore.transaction` takes a snapshot of every table (and
  of the ``seq`` and outbox id counters) on entry; an exception escaping the block puts
  the snapshot back and propagates. Nested, it is a savepoint: the inner block's writes
  are undone alone, and kept (until the outer block decides) if it ends normally.
  Outside a transaction every call stands on its own, as the real store autocommits.
* **Messages**: ``seq`` is a strictly increasing insertion counter (a rollback restores
  it, as SQLite's AUTOINCREMENT sequence is itself transactional). Ordering is
  ``(sent_at, seq)``, newest first. States change only through :meth:`MemoryStore.set_state` (along
  :data:`xchat.model.MESSAGE_MOVES`) and :meth:`MemoryStore.mark_read`.
* **Errors**: the same :class:`~xchat.errors.InvalidInput` cases and wording as the real
  store for bad states, kinds, a taken conversation id or peer, unknown rows on update.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final

from xchat.core.stores import NodeStoreProtocol
from xchat.errors import InvalidInput
from xchat.model import (
    MESSAGE_MOVES,
    Contact,
    ContactState,
    Conversation,
    ConversationKind,
    ConversationSummary,
    Device,
    JobKind,
    Message,
    MessageState,
    OutboxEntry,
    OutboxState,
    SessionRecord,
)

__all__ = ["MemoryStore"]

_OUTGOING_STATES: Final = ("queued", "sent", "delivered", "read", "failed")
_INCOMING_STATES: Final = ("received", "read")
#: For each state ``set_state`` moves to, the states it may move from.
_MOVES_FROM: Final[dict[str, frozenset[MessageState]]] = {
    to: frozenset(frm for frm, moves in MESSAGE_MOVES.items() if to in moves)
    for to in MessageState
    if to is not MessageState.RECEIVED
}
_ASCII_FOLD: Final = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@dataclass
class _Tables:
    """Everything the store holds; copied whole for a transaction's snapshot."""

    settings: dict[str, str] = field(default_factory=dict)
    relays: list[str] = field(default_factory=list)
    contacts: dict[str, Contact] = field(default_factory=dict)
    devices: dict[tuple[str, str], Device] = field(default_factory=dict)
    sessions: dict[str, SessionRecord] = field(default_factory=dict)
    messages: dict[str, Message] = field(default_factory=dict)
    conversations: dict[str, Conversation] = field(default_factory=dict)
    outbox: dict[int, OutboxEntry] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)
    held: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # event, size, at
    chains: dict[bytes, tuple[str, int]] = field(default_factory=dict)  # state, at
    untracked: set[str] = field(default_factory=set)
    seq: int = 0
    outbox_id: int = 0


def _check_choice(value: str, allowed: Sequence[str], what: str) -> None:
    if value not in allowed:
        raise InvalidInput(f"{what} must be one of: {', '.join(allowed)}")


def _check_limit(limit: int) -> None:
    if limit < 0:
        raise InvalidInput("a limit cannot be negative")


class MemoryStore:
    """See the module docstring. ``untracked`` seeds the sessions whose chain progress
    was never kept (the real store's migration step 2 fills that table)."""

    def __init__(self, untracked: Sequence[str] = ()) -> None:
        self._t = _Tables(untracked=set(untracked))

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._t.messages)} messages)"

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes of the block, or none if an exception escapes (nested: a
        savepoint, undone alone)."""
        snapshot = copy.deepcopy(self._t)
        try:
            yield
        except BaseException:
            self._t = snapshot
            raise

    # -- settings and relays -----------------------------------------------------------

    def get_setting(self, key: str, default: str | None = None) -> str | None:
        return self._t.settings.get(key, default)

    def set_setting(self, key: str, value: str) -> None:
        self._t.settings[key] = value

    def relays(self) -> list[str]:
        return list(self._t.relays)

    def add_relay(self, url: str) -> None:
        if not url:
            raise InvalidInput("a relay URL cannot be empty")
        if url not in self._t.relays:
            self._t.relays.append(url)

    def remove_relay(self, url: str) -> bool:
        if url not in self._t.relays:
            return False
        self._t.relays.remove(url)
        return True

    # -- contacts and devices ----------------------------------------------------------

    def upsert_contact(self, contact: Contact) -> None:
        _check_choice(contact.state, tuple(ContactState), "a contact's state")
        if not all(isinstance(url, str) for url in contact.relays):
            raise InvalidInput("a contact's relays must be a list of strings")
        stored = copy.deepcopy(contact)
        stored.conversation = ""  # not a column of the contact: filled on reads
        self._t.contacts[contact.pubkey] = stored

    def get_contact(self, pubkey: str) -> Contact | None:
        contact = self._t.contacts.get(pubkey)
        return None if contact is None else self._contact(contact)

    def _contact(self, stored: Contact) -> Contact:
        contact = copy.deepcopy(stored)
        direct = self._direct(stored.pubkey)
        contact.conversation = direct.id if direct is not None else ""
        return contact

    def contacts(self, states: Sequence[ContactState] = tuple(ContactState)) -> list[Contact]:
        """The contacts in these states, oldest first (by created_at, then pubkey)."""
        for state in states:
            _check_choice(state, tuple(ContactState), "a contact's state")
        chosen = [c for c in self._t.contacts.values() if c.state in states]
        chosen.sort(key=lambda c: (c.created_at, c.pubkey))
        return [self._contact(c) for c in chosen]

    def upsert_device(self, device: Device) -> bool:
        """True if new; a known one gets the new curve25519 key and certificate, and the
        new bundle unless that is None, and keeps its first_seen."""
        key = (device.pubkey, device.device_id)
        known = self._t.devices.get(key)
        if known is None:
            self._t.devices[key] = copy.deepcopy(device)
            return True
        known.curve25519 = device.curve25519
        known.certificate = device.certificate
        if device.bundle is not None:
            known.bundle = device.bundle
        return False

    def devices(self, pubkey: str) -> list[Device]:
        found = [d for (owner, _), d in self._t.devices.items() if owner == pubkey]
        found.sort(key=lambda d: (d.first_seen, d.device_id))
        return copy.deepcopy(found)

    # -- sessions ----------------------------------------------------------------------

    def save_session(self, record: SessionRecord) -> None:
        self._t.sessions[record.session_id] = copy.deepcopy(record)

    def sessions(self) -> list[SessionRecord]:
        found = sorted(self._t.sessions.values(), key=lambda s: (s.updated_at, s.session_id))
        return copy.deepcopy(found)

    # -- conversations -----------------------------------------------------------------

    def add_conversation(self, conversation: Conversation) -> None:
        """InvalidInput if its id (or, for a direct one, its peer) is taken."""
        _check_choice(conversation.kind, tuple(ConversationKind), "a conversation's kind")
        if conversation.id in self._t.conversations:
            raise InvalidInput("the node database refused the row (conversation id taken)")
        if conversation.peer is not None and self._direct(conversation.peer) is not None:
            raise InvalidInput("the node database refused the row (conversation peer taken)")
        stored = dataclasses.replace(conversation, members=tuple(sorted(set(conversation.members))))
        self._t.conversations[conversation.id] = stored

    def get_conversation(self, conversation_id: str) -> Conversation | None:
        return copy.deepcopy(self._t.conversations.get(conversation_id))

    def direct_conversation(self, peer: str) -> Conversation | None:
        return copy.deepcopy(self._direct(peer))

    def _direct(self, peer: str) -> Conversation | None:
        for conversation in self._t.conversations.values():
            if conversation.peer == peer:
                return conversation
        return None

    def conversations(self) -> list[ConversationSummary]:
        """Every conversation but those with a blocked contact; newest activity first
        (the later of the last message's sent_at and the creation, in ms), ties by id.
        A direct conversation without a contact row reports the state "request"."""
        out = []
        for conversation in self._t.conversations.values():
            contact = self._t.contacts.get(conversation.peer or "")
            if contact is not None and contact.state is ContactState.BLOCKED:
                continue
            mine = [m for m in self._t.messages.values() if m.conversation == conversation.id]
            last = max(mine, key=lambda m: (m.sent_at, m.seq), default=None)
            unread = sum(1 for m in mine if not m.outgoing and m.state is MessageState.RECEIVED)
            created_ms = conversation.created_at * 1000
            out.append(
                ConversationSummary(
                    conversation=copy.deepcopy(conversation),
                    name=contact.name if contact is not None else None,
                    state=contact.state if contact is not None else ContactState.REQUEST,
                    last_activity=max(created_ms, last.sent_at if last else 0),
                    last_message=copy.deepcopy(last),
                    unread=unread,
                    forward_secret=contact is None or not contact.nip17_only,
                )
            )
        out.sort(key=lambda c: (-c.last_activity, c.conversation.id))
        return out

    # -- messages ----------------------------------------------------------------------

    def insert_message(self, message: Message) -> bool:
        """False (and no change) if its id is stored; sets ``message.seq`` when stored."""
        allowed = _OUTGOING_STATES if message.outgoing else _INCOMING_STATES
        _check_choice(message.state, allowed, "the state of this message")
        if message.id in self._t.messages:
            return False
        self._t.seq += 1
        message.seq = self._t.seq
        self._t.messages[message.id] = copy.deepcopy(message)
        return True

    def get_message(self, message_id: str) -> Message | None:
        return copy.deepcopy(self._t.messages.get(message_id))

    def update_message(self, message: Message) -> None:
        """Writes type, body, reply_to, forward_secret, edited_at, deleted, reactions;
        never the state nor what identifies the message. InvalidInput if unknown."""
        stored = self._t.messages.get(message.id)
        if stored is None:
            raise InvalidInput("there is no stored message with that id")
        stored.type = message.type
        stored.body = message.body
        stored.reply_to = message.reply_to
        stored.forward_secret = message.forward_secret
        stored.edited_at = message.edited_at
        stored.deleted = message.deleted
        stored.reactions = copy.deepcopy(message.reactions)

    def set_state(self, message_id: str, state: MessageState, detail: str = "") -> bool:
        """Move an outgoing message along MESSAGE_MOVES; False (no change) otherwise.

        A non-empty ``detail`` replaces state_detail; an empty one keeps it, except when
        the message leaves "failed" (the failure reason is cleared)."""
        sources = _MOVES_FROM.get(state)
        if sources is None:
            raise InvalidInput(f"a message state is one of {', '.join(_OUTGOING_STATES)}")
        stored = self._t.messages.get(message_id)
        if stored is None or not stored.outgoing or stored.state not in sources:
            return False
        if detail:
            stored.state_detail = detail
        elif stored.state is MessageState.FAILED:
            stored.state_detail = ""
        stored.state = MessageState(state)
        return True

    def set_detail(self, message_id: str, detail: str) -> bool:
        stored = self._t.messages.get(message_id)
        if stored is None or not stored.outgoing:
            return False
        stored.state_detail = detail
        return True

    def messages(
        self, conversation: str, before: tuple[int, int] | None = None, limit: int = 50
    ) -> list[Message]:
        """Newest first by (sent_at, seq); ``before`` = (sent_at, seq) to page."""
        _check_limit(limit)
        found = [m for m in self._t.messages.values() if m.conversation == conversation]
        if before is not None:
            bound = (int(before[0]), int(before[1]))
            found = [m for m in found if (m.sent_at, m.seq) < bound]
        found.sort(key=lambda m: (m.sent_at, m.seq), reverse=True)
        return copy.deepcopy(found[:limit])

    def search(self, text: str, limit: int = 50) -> list[Message]:
        """Bodies containing ``text``, deleted ones left out, newest first: ASCII text
        folds ASCII letters only (as SQL LIKE), other text is compared case-folded."""
        _check_limit(limit)
        if text.isascii():
            needle = text.translate(_ASCII_FOLD)

            def hit(body: str) -> bool:
                return needle in body.translate(_ASCII_FOLD)
        else:
            folded = text.casefold()

            def hit(body: str) -> bool:
                return folded in body.casefold()

        found = [m for m in self._t.messages.values() if not m.deleted and hit(m.body)]
        found.sort(key=lambda m: (m.sent_at, m.seq), reverse=True)
        return copy.deepcopy(found[:limit])

    def mark_read(self, conversation: str, up_to_sent_at: int | None = None) -> list[str]:
        """Incoming messages still "received" (sent_at <= ``up_to_sent_at`` if given)
        become read; their ids in the order (sent_at, seq)."""
        unread = [
            m
            for m in self._t.messages.values()
            if m.conversation == conversation
            and not m.outgoing
            and m.state is MessageState.RECEIVED
            and (up_to_sent_at is None or m.sent_at <= up_to_sent_at)
        ]
        unread.sort(key=lambda m: (m.sent_at, m.seq))
        for m in unread:
            m.state = MessageState.READ
        return [m.id for m in unread]

    # -- outbox ------------------------------------------------------------------------

    def _check_entry(self, entry: OutboxEntry, *, updating: bool = False) -> None:
        _check_choice(entry.state, tuple(OutboxState), "an outbox row's state")
        _check_choice(entry.kind, tuple(JobKind), "an outbox row's kind")
        damaged = entry.event is None and entry.message is None
        if updating and entry.state is OutboxState.FAILED and damaged:
            return  # a damaged payload, given up (the real store keeps the stored text)
        if entry.kind is JobKind.ENVELOPE and entry.event is None:
            raise InvalidInput("an envelope job needs its sealed event")
        if entry.kind is JobKind.SEAL_LATER and entry.message is None:
            raise InvalidInput("a seal-later job needs its message")

    def add_outbox(self, entry: OutboxEntry) -> int:
        """Store a new entry (its ``id`` is ignored); return and set its new id."""
        self._check_entry(entry)
        self._t.outbox_id += 1
        entry.id = self._t.outbox_id
        self._t.outbox[entry.id] = copy.deepcopy(entry)
        return entry.id

    def update_outbox(self, entry: OutboxEntry) -> None:
        """Write back every field; InvalidInput if there is no such id."""
        self._check_entry(entry, updating=True)
        if entry.id not in self._t.outbox:
            raise InvalidInput("there is no outbox row with that id")
        self._t.outbox[entry.id] = copy.deepcopy(entry)

    def due_outbox(self, now: int, limit: int = 500) -> list[OutboxEntry]:
        """Pending entries due at ``now``, the longest due first (then by id)."""
        _check_limit(limit)
        due = [
            e
            for e in self._t.outbox.values()
            if e.state is OutboxState.PENDING and e.next_attempt_at <= now
        ]
        due.sort(key=lambda e: (e.next_attempt_at, e.id))
        return copy.deepcopy(due[:limit])

    def outbox_waiting(self) -> int:
        return sum(1 for e in self._t.outbox.values() if e.state is OutboxState.PENDING)

    def outbox_for(self, message_id: str) -> list[OutboxEntry]:
        """Every entry of a message, in any state, oldest (lowest id) first."""
        found = [e for e in self._t.outbox.values() if e.message_id == message_id]
        found.sort(key=lambda e: e.id)
        return copy.deepcopy(found)

    def delete_outbox(self, message_id: str) -> int:
        doomed = [i for i, e in self._t.outbox.items() if e.message_id == message_id]
        for i in doomed:
            del self._t.outbox[i]
        return len(doomed)

    # -- seen, held, chains ------------------------------------------------------------

    def seen(self, event_id: str) -> bool:
        return event_id in self._t.seen

    def mark_seen(self, event_id: str, at: int) -> None:
        """Marking it again keeps the first time."""
        self._t.seen.setdefault(event_id, at)

    def forget_seen(self, older_than: int) -> int:
        doomed = [i for i, at in self._t.seen.items() if at < older_than]
        for i in doomed:
            del self._t.seen[i]
        return len(doomed)

    def hold(self, event_id: str, event: str, size: int, held_at: int) -> None:
        """Holding it again keeps the first time."""
        self._t.held.setdefault(event_id, (event, int(size), int(held_at)))

    def release(self, event_ids: Sequence[str]) -> None:
        for event_id in event_ids:
            self._t.held.pop(event_id, None)

    def held(self) -> list[tuple[str, str, int]]:
        """(id, JSON, first held) of every held envelope, oldest first."""
        rows = [(i, text, at) for i, (text, _, at) in self._t.held.items()]
        rows.sort(key=lambda r: (r[2], r[0]))
        return rows

    def save_chain(self, ratchet: bytes, state: str, at: int) -> None:
        self._t.chains.pop(bytes(ratchet), None)  # re-inserted: the newest at the end
        self._t.chains[bytes(ratchet)] = (state, int(at))

    def chains(self, limit: int = 4096) -> list[tuple[bytes, str]]:
        """The most recently updated chains' states (at most ``limit``), oldest first."""
        rows = sorted(self._t.chains.items(), key=lambda item: item[1][1])
        return [(ratchet, state) for ratchet, (state, _) in rows[max(0, len(rows) - limit) :]]

    def untracked(self) -> list[str]:
        return sorted(self._t.untracked)

    def set_tracked(self, session_ids: Sequence[str]) -> None:
        self._t.untracked.difference_update(session_ids)

    def forget_chains(self, older_than: int) -> int:
        doomed = [r for r, (_, at) in self._t.chains.items() if at < older_than]
        for r in doomed:
            del self._t.chains[r]
        return len(doomed)


def _conforms(store: MemoryStore) -> NodeStoreProtocol:
    """Never called: mypy proves here that MemoryStore implements the Protocol."""
    return store
