"""The node's local database: contacts, conversations, messages, sessions, outbox.

A package: :mod:`.db` (opening, key, pragmas, schema, transactions, errors), and one
module per part of the store, each implementing a Protocol of :mod:`xchat.core.stores`
over the domain types of :mod:`xchat.model`: :mod:`.settings`, :mod:`.contacts`,
:mod:`.conversations`, :mod:`.messages` (with search), :mod:`.outbox`, :mod:`.inbox`
(seen, held, chains, untracked) and :mod:`.sessions` (sessions, devices).
:class:`NodeStore` is all of them over one connection.

One SQLCipher file (``node.db`` in the home), encrypted as a whole (pages, indexes and
the journal) under a 32-byte key derived from the keystore's storage key: a stolen
laptop learns neither messages nor contacts nor how many there are or when they were
sent. SQLCipher was chosen over per-record AEAD in SQLite by measurement
(docs/benchmarks.md): per-record encryption leaves indexes, timestamps and the contact
graph in clear, and whole-file encryption was fast enough.

The store is synchronous and thread-confined: the node calls it from one dedicated
thread. Writes that belong together go in :meth:`NodeStore.transaction`. The schema is
versioned; opening an older database upgrades it.

Message states only move forward (``queued -> sent -> delivered -> read``), except that
``failed`` can be retried back to ``queued``.

Theory of operation:

* **Opening**: the file is created owner-only (0600) before SQLite sees it (SQLite gives
  its ``-wal`` and ``-shm`` files the mode of the database file); the raw 32-byte key is
  set with ``PRAGMA key = "x'<hex>'"`` (no passphrase KDF: the key already comes from
  one) and SQLCipher 4's page format is pinned with ``cipher_compatibility``. Reading
  ``sqlite_master`` proves the key: a wrong key, a damaged file or a file that is not an
  X Chat database raise :class:`~xchat.errors.KeystoreCorrupt`. Then WAL,
  ``synchronous=FULL`` (a committed write is on disk: a message is persisted before it
  is sent) and foreign keys.
* **Schema versions**: ``PRAGMA user_version`` is the number of steps of
  :data:`~xchat.store.migrations.node.NODE_MIGRATIONS` applied (0: an empty file).
  Opening applies the missing steps in one
  ``BEGIN IMMEDIATE`` transaction, so an interrupted upgrade leaves the old version; a
  database from a newer X Chat is refused. A released step is never edited.
* **Transactions**: ``isolation_level=None``; a call outside :meth:`NodeStore.transaction`
  commits on its own (methods of several statements open their own transaction), a
  transaction inside a transaction joins it as a savepoint: nothing is committed before
  the outermost one ends, and an exception escaping the inner block undoes only the
  inner block's writes.
* **Rows**: lists (relays, accepted) and dicts (reactions) are JSON, booleans 0/1.
  Messages carry ``seq``, an AUTOINCREMENT key: a strictly increasing insertion counter,
  the tie-break of ``(sent_at, seq)`` ordering. Message states change only through
  :meth:`NodeStore.set_state` and :meth:`NodeStore.mark_read`, never backwards.
* **Errors**: every method raises only :class:`~xchat.errors.XChatError` subclasses:
  ``InvalidInput`` for a bad argument, ``LocalProtocolError`` when the store is not open,
  ``KeystoreCorrupt`` when the file turns out damaged, ``KeystoreError`` for other
  failures of the database (disk full, I/O, locked). No message carries key material or
  stored content.
"""

from __future__ import annotations

from xchat.model import Contact, Device, Message, OutboxEntry, SessionRecord
from xchat.store.node.contacts import CONTACT_STATES, Contacts
from xchat.store.node.conversations import Conversations
from xchat.store.node.inbox import Inbox
from xchat.store.node.messages import MESSAGE_STATES, STATE_RANK, Messages
from xchat.store.node.outbox import Outbox
from xchat.store.node.sessions import Sessions
from xchat.store.node.settings import Settings

__all__ = [
    "CONTACT_STATES",
    "MESSAGE_STATES",
    "STATE_RANK",
    "ContactRow",
    "DeviceRow",
    "MessageRow",
    "NodeStore",
    "OutboxRow",
    "SessionRow",
]

#: The rows are the domain types of :mod:`xchat.model` (older names kept as aliases).
ContactRow = Contact
DeviceRow = Device
SessionRow = SessionRecord
MessageRow = Message
OutboxRow = OutboxEntry


class NodeStore(Settings, Contacts, Conversations, Messages, Outbox, Inbox, Sessions):
    """See the package docstring: every part of the node's store over one SQLCipher
    connection (:class:`xchat.store.node.db.Database`). It implements
    :class:`xchat.core.stores.NodeStoreProtocol` (tests/store/test_node_protocol.py).
    Every method raises only documented X Chat errors.

    ``key`` is the 32-byte database key (derived from the keystore's storage key); it
    appears in no repr or error message.
    """
