"""The stores the core's rules drive: Protocols, libsignal ``storage/traits.rs`` style.

The rules of :mod:`xchat.core.conversation`, :mod:`xchat.core.outbox` and
:mod:`xchat.core.directory` are pure functions over these Protocols: they read and write
through them and return typed events (:mod:`xchat.core.node_events`), so they run the
same over the node's SQLCipher store (``xchat.store.node``, on the node's store thread,
inside one transaction) and over :class:`xchat.core.memory.MemoryStore` in unit tests.

Conventions every implementation keeps:

* Reads return fresh objects of :mod:`xchat.model`; mutating one changes nothing until it
  is written back (``upsert_contact``, ``update_message``, ``update_outbox``).
* ``set_state`` is the only way a message's state changes, and it moves only along
  :data:`xchat.model.MESSAGE_MOVES` (a move not in the table returns False, no error).
* Times are unix seconds, except message times (``sent_at``, ``received_at``: ms).
* Nothing here raises for a missing row: getters return None, setters return False.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from xchat.model import (
    Contact,
    ContactState,
    Conversation,
    ConversationSummary,
    Device,
    Message,
    MessageState,
    OutboxEntry,
    SessionRecord,
)

__all__ = [
    "ContactStore",
    "ConversationStore",
    "InboxStore",
    "MessageStore",
    "NodeStoreProtocol",
    "OutboxStore",
    "SessionStore",
    "SettingsStore",
]


class SettingsStore(Protocol):
    def get_setting(self, key: str, default: str | None = None) -> str | None: ...
    def set_setting(self, key: str, value: str) -> None: ...
    def relays(self) -> list[str]: ...
    def add_relay(self, url: str) -> None: ...
    def remove_relay(self, url: str) -> bool: ...


class ContactStore(Protocol):
    def get_contact(self, pubkey: str) -> Contact | None: ...
    def upsert_contact(self, contact: Contact) -> None: ...
    def contacts(self, states: Sequence[ContactState] = ...) -> list[Contact]: ...
    def upsert_device(self, device: Device) -> bool:
        """Store a device of a contact; True if it is new (not known before)."""
        ...

    def devices(self, pubkey: str) -> list[Device]: ...


class ConversationStore(Protocol):
    def get_conversation(self, conversation_id: str) -> Conversation | None: ...
    def direct_conversation(self, peer: str) -> Conversation | None: ...
    def add_conversation(self, conversation: Conversation) -> None:
        """Store a new conversation and its members (an existing id is an error)."""
        ...

    def conversations(self) -> list[ConversationSummary]:
        """Every conversation but those with a blocked contact, newest activity first
        is not promised: callers sort."""
        ...


class MessageStore(Protocol):
    def insert_message(self, message: Message) -> bool:
        """Store a new message; False (and nothing written) if its id exists."""
        ...

    def get_message(self, message_id: str) -> Message | None: ...
    def update_message(self, message: Message) -> None:
        """Write back body, edited_at, deleted and reactions (never the state)."""
        ...

    def set_state(self, message_id: str, state: MessageState, detail: str = "") -> bool: ...
    def set_detail(self, message_id: str, detail: str) -> bool: ...
    def messages(
        self, conversation: str, before: tuple[int, int] | None = None, limit: int = 50
    ) -> list[Message]:
        """Newest first, before ``(sent_at, seq)`` if given."""
        ...

    def search(self, text: str, limit: int = 50) -> list[Message]: ...
    def mark_read(self, conversation: str, up_to_sent_at: int | None = None) -> list[str]:
        """Incoming messages of the conversation become read; their ids."""
        ...


class OutboxStore(Protocol):
    def add_outbox(self, entry: OutboxEntry) -> int:
        """Store a new entry; its id (also set on ``entry``)."""
        ...

    def update_outbox(self, entry: OutboxEntry) -> None: ...
    def due_outbox(self, now: int, limit: int = 500) -> list[OutboxEntry]:
        """Pending entries whose ``next_attempt_at`` is at or before ``now``."""
        ...

    def outbox_waiting(self) -> int: ...
    def outbox_for(self, message_id: str) -> list[OutboxEntry]: ...
    def delete_outbox(self, message_id: str) -> int: ...


class InboxStore(Protocol):
    def seen(self, event_id: str) -> bool: ...
    def mark_seen(self, event_id: str, at: int) -> None: ...
    def forget_seen(self, older_than: int) -> int: ...
    def hold(self, event_id: str, event: str, size: int, held_at: int) -> None: ...
    def release(self, event_ids: Sequence[str]) -> None: ...
    def held(self) -> list[tuple[str, str, int]]: ...
    def save_chain(self, ratchet: bytes, state: str, at: int) -> None: ...
    def chains(self, limit: int = 4096) -> list[tuple[bytes, str]]: ...
    def untracked(self) -> list[str]: ...
    def set_tracked(self, session_ids: Sequence[str]) -> None: ...
    def forget_chains(self, older_than: int) -> int: ...


class SessionStore(Protocol):
    def save_session(self, record: SessionRecord) -> None: ...
    def sessions(self) -> list[SessionRecord]: ...


class NodeStoreProtocol(
    SettingsStore,
    ContactStore,
    ConversationStore,
    MessageStore,
    OutboxStore,
    InboxStore,
    SessionStore,
    Protocol,
):
    """Everything the node keeps, with transactions: writes inside
    ``with store.transaction():`` commit together (a nested one is a savepoint)."""

    def transaction(self) -> AbstractContextManager[None]: ...
