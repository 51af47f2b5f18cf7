"""The node's local database: contacts, conversations, messages, sessions, outbox.

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
  ``_MIGRATIONS`` applied (0: an empty file). Opening applies the missing steps in one
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

# Every SQL text in this module is assembled from this module's constants (column lists,
# placeholders); values are always bound, never formatted in.
# ruff: noqa: S608

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TypeVar

import orjson
import sqlcipher3.dbapi2 as _sqlcipher

from xchat.errors import (
    DecodeError,
    InvalidInput,
    KeystoreCorrupt,
    KeystoreError,
    LocalProtocolError,
    XChatError,
)
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
from xchat.store.migrations import Migration
from xchat.wire.event import parse_event

if TYPE_CHECKING:  # sqlcipher3 mirrors the sqlite3 module and ships no type information
    from sqlite3 import Connection

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

#: Contact states: a person we talk to, a stranger's first messages, or blocked.
CONTACT_STATES: Final = ("accepted", "request", "blocked")
MESSAGE_STATES: Final = ("queued", "sent", "delivered", "read", "failed")
#: Order of the forward-only states (failed is outside it).
STATE_RANK: Final = {"queued": 0, "sent": 1, "delivered": 2, "read": 3}


#: The rows are the domain types of :mod:`xchat.model` (older names kept as aliases).
ContactRow = Contact
DeviceRow = Device
SessionRow = SessionRecord
MessageRow = Message
OutboxRow = OutboxEntry


#: How incoming messages are stored: unread, or read by us.
_INCOMING_STATES: Final = ("received", "read")
_OUTBOX_STATES: Final = tuple(OutboxState)
#: For each state set_state moves to, the states it may move from: the transition
#: table of :mod:`xchat.model`, read backwards (outgoing messages only).
_MOVES_FROM: Final[dict[str, tuple[MessageState, ...]]] = {
    to: tuple(sorted(frm for frm, moves in MESSAGE_MOVES.items() if to in moves))
    for to in MessageState
    if to is not MessageState.RECEIVED
}
_E = TypeVar("_E", bound=StrEnum)
_KEY_BYTES: Final = 32
_SQLITE_CORRUPT: Final = 11  # primary result codes
_SQLITE_NOTADB: Final = 26
_DB_ERRORS: Final = (_sqlcipher.Error, sqlite3.Error)
_ARGUMENT_ERRORS: Final = (
    _sqlcipher.InterfaceError,
    _sqlcipher.ProgrammingError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
)
_INTEGRITY_ERRORS: Final = (_sqlcipher.IntegrityError, sqlite3.IntegrityError)
#: Raised by bindings and JSON encoding for values that cannot be stored.
_VALUE_ERRORS: Final = (TypeError, ValueError, OverflowError)
_TRANSLATED: Final = (*_DB_ERRORS, *_VALUE_ERRORS)

#: The schema, step by step: step ``n`` takes ``PRAGMA user_version`` from ``n - 1`` to
#: ``n`` (0 is an empty file). Never edit a released step: add one.
_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "first layout",
        (
            "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
            # pos orders the relays as they were added; AUTOINCREMENT never reuses one
            "CREATE TABLE relays (pos INTEGER PRIMARY KEY AUTOINCREMENT, url TEXT NOT NULL UNIQUE)",
            """CREATE TABLE contacts (
                pubkey TEXT PRIMARY KEY,
                name TEXT,
                state TEXT NOT NULL,
                relays TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                nip17_only INTEGER NOT NULL,
                verified TEXT,
                bundle_checked_at INTEGER NOT NULL
            )""",
            # Keyed by person and device: nobody's certificate can replace another
            # person's device row.
            """CREATE TABLE devices (
                pubkey TEXT NOT NULL,
                device_id TEXT NOT NULL,
                curve25519 TEXT NOT NULL,
                certificate TEXT NOT NULL,
                first_seen INTEGER NOT NULL,
                bundle TEXT,
                PRIMARY KEY (pubkey, device_id)
            )""",
            """CREATE TABLE sessions (
                session_id TEXT PRIMARY KEY,
                pubkey TEXT NOT NULL,
                device_curve TEXT NOT NULL,
                record BLOB NOT NULL,
                updated_at INTEGER NOT NULL
            )""",
            """CREATE TABLE messages (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                id TEXT NOT NULL UNIQUE,
                conversation TEXT NOT NULL,
                outgoing INTEGER NOT NULL,
                sender TEXT NOT NULL,
                type TEXT NOT NULL,
                body TEXT NOT NULL,
                sent_at INTEGER NOT NULL,
                received_at INTEGER NOT NULL,
                state TEXT NOT NULL,
                forward_secret INTEGER NOT NULL,
                reply_to TEXT,
                state_detail TEXT NOT NULL,
                edited_at INTEGER,
                deleted INTEGER NOT NULL,
                reactions TEXT
            )""",
            "CREATE INDEX messages_conversation ON messages (conversation, sent_at, seq)",
            "CREATE INDEX messages_unread ON messages (conversation)"
            " WHERE outgoing = 0 AND state = 'received'",
            """CREATE TABLE outbox (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                message_id TEXT NOT NULL,
                recipient TEXT NOT NULL,
                event TEXT,
                relays TEXT NOT NULL,
                accepted TEXT NOT NULL,
                state TEXT NOT NULL,
                attempts INTEGER NOT NULL,
                next_attempt_at INTEGER NOT NULL,
                last_error TEXT NOT NULL,
                created_at INTEGER NOT NULL
            )""",
            "CREATE INDEX outbox_message ON outbox (message_id)",
            "CREATE INDEX outbox_due ON outbox (next_attempt_at)"
            " WHERE state IN ('unsealed', 'pending')",
            "CREATE TABLE seen (event_id TEXT PRIMARY KEY, at INTEGER NOT NULL) WITHOUT ROWID",
            "CREATE INDEX seen_at ON seen (at)",
        ),
    ),
    Migration(
        2,
        "envelopes held back for their chain order, and the progress of each chain",
        (
            # Gift wraps not opened yet (far ahead in their Olm chain), not marked seen:
            # kept across restarts so that a backlog is never read into memory only.
            """CREATE TABLE held (
                event_id TEXT PRIMARY KEY,
                event TEXT NOT NULL,
                size INTEGER NOT NULL,
                held_at INTEGER NOT NULL
            ) WITHOUT ROWID""",
            # Per ratchet key (an Olm header's): one past the highest index opened and
            # the missing indices below it, as JSON {"next": n, "missing": [...]}.
            """CREATE TABLE chains (
                ratchet BLOB PRIMARY KEY,
                state TEXT NOT NULL,
                updated_at INTEGER NOT NULL
            ) WITHOUT ROWID""",
            "CREATE INDEX chains_updated ON chains (updated_at)",
            # Sessions from before chain progress was kept: how far their current chain
            # has run is unknown, so the first chain seen in each is taken as it comes
            # (not held as if it began at 0, nor reported as messages lost).
            "CREATE TABLE untracked (session_id TEXT PRIMARY KEY) WITHOUT ROWID",
            "INSERT INTO untracked (session_id) SELECT session_id FROM sessions",
        ),
    ),
    Migration(
        3,
        "conversations with ids and members; outbox jobs of several kinds",
        (
            # A conversation's id is 16 random bytes (hex); a direct one is unique per peer.
            """CREATE TABLE conversations (
                id TEXT PRIMARY KEY,
                kind TEXT NOT NULL,
                peer TEXT UNIQUE,
                created_at INTEGER NOT NULL
            )""",
            # The other participants (we are in every conversation we have).
            """CREATE TABLE members (
                conversation TEXT NOT NULL,
                pubkey TEXT NOT NULL,
                PRIMARY KEY (conversation, pubkey)
            ) WITHOUT ROWID""",
            "CREATE INDEX members_pubkey ON members (pubkey)",
            # One direct conversation per peer known as a contact or by a message.
            """INSERT INTO conversations (id, kind, peer, created_at)
                SELECT lower(hex(randomblob(16))), 'direct', peer, min(at) FROM (
                    SELECT pubkey AS peer, created_at AS at FROM contacts
                    UNION ALL
                    SELECT conversation, received_at / 1000 FROM messages
                ) GROUP BY peer""",
            "INSERT INTO members (conversation, pubkey) SELECT id, peer FROM conversations",
            """UPDATE messages SET conversation =
                (SELECT c.id FROM conversations c WHERE c.peer = messages.conversation)""",
            # The job of a row: publish a sealed envelope, or seal a message later (its
            # payload, in the event column, is {"pending": true, "message": ...}).
            "ALTER TABLE outbox ADD COLUMN kind TEXT NOT NULL DEFAULT 'envelope'",
            """UPDATE outbox SET kind = 'seal_later'
                WHERE state = 'unsealed' OR event LIKE '{"pending"%'""",
            "UPDATE outbox SET state = 'pending' WHERE state = 'unsealed'",
            "DROP INDEX outbox_due",
            "CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE state = 'pending'",
        ),
    ),
)

_CONTACT_COLUMNS: Final = (
    "pubkey, name, state, relays, created_at, nip17_only, verified, bundle_checked_at"
)
#: A contact with the id of its direct conversation ("" if none yet).
_SELECT_CONTACTS: Final = (
    "SELECT "
    + ", ".join(f"k.{column.strip()}" for column in _CONTACT_COLUMNS.split(","))
    + ", coalesce(c.id, '') FROM contacts k LEFT JOIN conversations c ON c.peer = k.pubkey"
)
_DEVICE_COLUMNS: Final = "device_id, pubkey, curve25519, certificate, first_seen, bundle"
_SESSION_COLUMNS: Final = "session_id, pubkey, device_curve, record, updated_at"
_MESSAGE_COLUMNS: Final = (
    "id, conversation, outgoing, sender, type, body, sent_at, received_at, state,"
    " forward_secret, reply_to, state_detail, edited_at, deleted, reactions"
)
_OUTBOX_COLUMNS: Final = (
    "message_id, recipient, event, relays, accepted, state, attempts, next_attempt_at,"
    " last_error, created_at, kind"
)
_SELECT_MESSAGES: Final = f"SELECT {_MESSAGE_COLUMNS}, seq FROM messages"
_SELECT_OUTBOX: Final = f"SELECT id, {_OUTBOX_COLUMNS} FROM outbox"
_NEWEST_FIRST: Final = " ORDER BY sent_at DESC, seq DESC LIMIT ?"
_UNREAD: Final = "conversation = ? AND outgoing = 0 AND state = 'received'"
# One row per conversation, blocked contacts left out. The unread count walks the
# partial index.
_CONVERSATIONS: Final = f"""
SELECT v.id, v.kind, v.peer, v.created_at, k.name, k.state, k.nip17_only,
    (SELECT group_concat(b.pubkey, ' ') FROM members b WHERE b.conversation = v.id),
    (SELECT count(*) FROM messages u
        WHERE u.conversation = v.id AND u.outgoing = 0 AND u.state = 'received'),
    {", ".join(f"m.{column.strip()}" for column in _MESSAGE_COLUMNS.split(","))}, m.seq
FROM conversations v
LEFT JOIN contacts k ON k.pubkey = v.peer
LEFT JOIN messages m ON m.seq = (
    SELECT l.seq FROM messages l WHERE l.conversation = v.id
    ORDER BY l.sent_at DESC, l.seq DESC LIMIT 1)
WHERE k.state IS NULL OR k.state <> 'blocked'
"""


class NodeStore:
    """See the module docstring. Every method raises only documented X Chat errors.

    ``key`` is the 32-byte database key (derived from the keystore's storage key); it
    appears in no repr or error message.
    """

    def __init__(self, path: Path, key: bytes) -> None:
        if type(key) not in (bytes, bytearray) or len(key) != _KEY_BYTES:
            raise InvalidInput("the node database key must be 32 bytes")
        self._path = Path(path)
        self._key = bytes(key)
        self._conn: Connection | None = None
        self._depth = 0  # transaction nesting: 0 outside, 1 in BEGIN, 2+ in savepoints

    def __repr__(self) -> str:
        return f"NodeStore({str(self._path)!r}, {'open' if self._conn else 'closed'})"

    # -- lifecycle -------------------------------------------------------------------

    def open(self) -> None:
        """Open (creating or migrating) the encrypted database; KeystoreCorrupt if the
        key does not open it or it is damaged."""
        if self._conn is not None:
            raise LocalProtocolError("the node store is already open")
        _create_private(self._path)
        conn = self._connect()
        try:
            with _GUARD:
                _setup(conn, self._path)
            _restrict_companions(self._path)
        except BaseException:
            with _GUARD:
                conn.close()
            raise
        self._conn = conn
        self._depth = 0

    def _connect(self) -> Connection:
        """A connection that the key opens (KeystoreCorrupt otherwise). The benchmark
        overrides this to measure the same store on plain SQLite."""
        try:
            conn: Connection = _sqlcipher.connect(
                str(self._path), isolation_level=None, check_same_thread=False
            )
        except _sqlcipher.Error as exc:
            raise KeystoreError(f"cannot open the node database {self._path}: {exc}") from exc
        try:
            conn.execute("PRAGMA cipher_log_level = NONE")  # a wrong key is our error to report
            conn.execute(f"PRAGMA key = \"x'{self._key.hex()}'\"")
            conn.execute("PRAGMA cipher_compatibility = 4")  # the page format, pinned
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except _sqlcipher.Error as exc:
            conn.close()
            if _primary_code(exc) in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
                raise KeystoreCorrupt(
                    f"the node database {self._path} cannot be opened: the key is wrong or"
                    f" the file is damaged ({exc})"
                ) from None
            raise KeystoreError(f"cannot open the node database {self._path}: {exc}") from None
        return conn

    def close(self) -> None:
        """Close the database (a transaction still open is rolled back); idempotent."""
        conn, self._conn = self._conn, None
        self._depth = 0
        if conn is None:
            return
        with _GUARD:
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            finally:
                conn.close()

    def _db(self) -> Connection:
        if self._conn is None:
            raise LocalProtocolError("the node store is not open")
        return self._conn

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes: all committed at the end, or none if an exception escapes.

        Nested, it joins the outer transaction as a savepoint: its writes are committed
        with the outer one, and undone alone if an exception escapes the inner block.
        """
        conn = self._db()
        depth = self._depth
        if depth:
            name = f"xchat_nested_{depth}"
            with _GUARD:
                conn.execute(f"SAVEPOINT {name}")
            self._depth = depth + 1
            try:
                yield
            except BaseException:
                self._depth = depth
                _quietly(conn, f"ROLLBACK TO {name}", f"RELEASE {name}")
                raise
            self._depth = depth
            with _GUARD:
                conn.execute(f"RELEASE {name}")
            return
        with _GUARD:
            conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            _quietly(conn, "ROLLBACK")
            raise
        self._depth = 0
        try:
            with _GUARD:
                conn.execute("COMMIT")
        except XChatError:
            _quietly(conn, "ROLLBACK")
            raise

    # -- settings and cursors ----------------------------------------------------------

    def get_setting(self, key: str, default: str | None = None) -> str | None:
        with _GUARD:
            row = self._db().execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return default if row is None else str(row[0])

    def set_setting(self, key: str, value: str) -> None:
        with _GUARD:
            self._db().execute(
                "INSERT INTO settings (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # -- relays (our own inbox relays) -------------------------------------------------

    def relays(self) -> list[str]:
        """Our relays in the order they were added."""
        with _GUARD:
            rows = self._db().execute("SELECT url FROM relays ORDER BY pos").fetchall()
        return [str(row[0]) for row in rows]

    def add_relay(self, url: str) -> None:
        """Add a relay at the end of the list; a relay already there keeps its place."""
        if not url:
            raise InvalidInput("a relay URL cannot be empty")
        with _GUARD:
            self._db().execute(
                "INSERT INTO relays (url) VALUES (?) ON CONFLICT (url) DO NOTHING", (url,)
            )

    def remove_relay(self, url: str) -> bool:
        """Remove a relay; False if it was not in the list."""
        with _GUARD:
            cursor = self._db().execute("DELETE FROM relays WHERE url = ?", (url,))
        return cursor.rowcount > 0

    # -- contacts and devices ----------------------------------------------------------

    def upsert_contact(self, contact: ContactRow) -> None:
        """Store a contact, replacing every field of a stored one with the same pubkey."""
        _check_choice(contact.state, CONTACT_STATES, "a contact's state")
        relays = _dump_strings(contact.relays, "a contact's relays")
        with _GUARD:
            self._db().execute(
                f"INSERT INTO contacts ({_CONTACT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (pubkey) DO UPDATE SET name = excluded.name,"
                " state = excluded.state, relays = excluded.relays,"
                " created_at = excluded.created_at, nip17_only = excluded.nip17_only,"
                " verified = excluded.verified, bundle_checked_at = excluded.bundle_checked_at",
                (
                    contact.pubkey,
                    contact.name,
                    contact.state,
                    relays,
                    contact.created_at,
                    int(contact.nip17_only),
                    contact.verified,
                    contact.bundle_checked_at,
                ),
            )

    def get_contact(self, pubkey: str) -> ContactRow | None:
        with _GUARD:
            row = self._db().execute(f"{_SELECT_CONTACTS} WHERE k.pubkey = ?", (pubkey,)).fetchone()
            return None if row is None else _contact(row)

    def contacts(self, states: Sequence[str] = CONTACT_STATES) -> list[ContactRow]:
        """The contacts in these states, oldest first (by created_at, then pubkey)."""
        for state in states:
            _check_choice(state, CONTACT_STATES, "a contact's state")
        if not states:
            return []
        marks = ", ".join("?" * len(states))
        with _GUARD:
            rows = (
                self._db()
                .execute(
                    f"{_SELECT_CONTACTS} WHERE k.state IN ({marks})"
                    " ORDER BY k.created_at, k.pubkey",
                    tuple(states),
                )
                .fetchall()
            )
            return [_contact(row) for row in rows]

    def upsert_device(self, device: DeviceRow) -> bool:
        """Store a device; True if it was not known before (a new device of that person).

        A known device (same person, same device id) gets the new curve25519 key and
        certificate, and the new bundle unless that is None; it keeps its first_seen.
        """
        with _GUARD:
            conn = self._db()
            inserted = conn.execute(
                f"INSERT INTO devices ({_DEVICE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (pubkey, device_id) DO NOTHING",
                (
                    device.device_id,
                    device.pubkey,
                    device.curve25519,
                    device.certificate,
                    device.first_seen,
                    device.bundle,
                ),
            ).rowcount
            if inserted:
                return True
            conn.execute(
                "UPDATE devices SET curve25519 = ?, certificate = ?, bundle = coalesce(?, bundle)"
                " WHERE pubkey = ? AND device_id = ?",
                (
                    device.curve25519,
                    device.certificate,
                    device.bundle,
                    device.pubkey,
                    device.device_id,
                ),
            )
            return False

    def devices(self, pubkey: str) -> list[DeviceRow]:
        """That person's devices, in the order they were first seen."""
        with _GUARD:
            rows = (
                self._db()
                .execute(
                    f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE pubkey = ?"
                    " ORDER BY first_seen, device_id",
                    (pubkey,),
                )
                .fetchall()
            )
        return [Device(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]

    # -- sessions ----------------------------------------------------------------------

    def save_session(self, row: SessionRow) -> None:
        """Store a session record, replacing the one with the same session_id."""
        with _GUARD:
            self._db().execute(
                f"INSERT INTO sessions ({_SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (session_id) DO UPDATE SET pubkey = excluded.pubkey,"
                " device_curve = excluded.device_curve, record = excluded.record,"
                " updated_at = excluded.updated_at",
                (row.session_id, row.pubkey, row.device_curve, bytes(row.record), row.updated_at),
            )

    def sessions(self) -> list[SessionRow]:
        """Every stored session, least recently updated first."""
        with _GUARD:
            rows = (
                self._db()
                .execute(f"SELECT {_SESSION_COLUMNS} FROM sessions ORDER BY updated_at, session_id")
                .fetchall()
            )
        return [SessionRecord(r[0], r[1], r[2], bytes(r[3]), r[4]) for r in rows]

    # -- messages ----------------------------------------------------------------------

    def insert_message(self, message: MessageRow) -> bool:
        """Store a message; False (and no change) if its id is already stored.

        Sets ``message.seq`` when stored. The state must be one of MESSAGE_STATES for an
        outgoing message, "received" or "read" for an incoming one.
        """
        allowed = MESSAGE_STATES if message.outgoing else _INCOMING_STATES
        _check_choice(message.state, allowed, "the state of this message")
        reactions = _dump_reactions(message.reactions)
        with _GUARD:
            cursor = self._db().execute(
                f"INSERT INTO messages ({_MESSAGE_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO NOTHING",
                (
                    message.id,
                    message.conversation,
                    int(message.outgoing),
                    message.sender,
                    message.type,
                    message.body,
                    message.sent_at,
                    message.received_at,
                    message.state,
                    int(message.forward_secret),
                    message.reply_to,
                    message.state_detail,
                    message.edited_at,
                    int(message.deleted),
                    reactions,
                ),
            )
            if cursor.rowcount != 1 or cursor.lastrowid is None:
                return False
            message.seq = int(cursor.lastrowid)
        return True

    def get_message(self, message_id: str) -> MessageRow | None:
        with _GUARD:
            row = self._db().execute(f"{_SELECT_MESSAGES} WHERE id = ?", (message_id,)).fetchone()
            return None if row is None else _message(row)

    def update_message(self, message: MessageRow) -> None:
        """Write back a row read with get_message (edits, deletions, reactions).

        Writes type, body, reply_to, forward_secret, edited_at, deleted and reactions.
        The state is left alone (set_state and mark_read move it, never backwards, even
        if this row was read before a receipt arrived), and so are the fields that
        identify the message (conversation, direction, sender, times, seq).
        InvalidInput if no message has that id.
        """
        reactions = _dump_reactions(message.reactions)
        with _GUARD:
            cursor = self._db().execute(
                "UPDATE messages SET type = ?, body = ?, reply_to = ?, forward_secret = ?,"
                " edited_at = ?, deleted = ?, reactions = ? WHERE id = ?",
                (
                    message.type,
                    message.body,
                    message.reply_to,
                    int(message.forward_secret),
                    message.edited_at,
                    int(message.deleted),
                    reactions,
                    message.id,
                ),
            )
        if cursor.rowcount == 0:
            raise InvalidInput("there is no stored message with that id")

    def set_state(self, message_id: str, state: str, detail: str = "") -> bool:
        """Move an outgoing message forward; False if that would move it backwards.

        Forward by STATE_RANK (queued, sent, delivered, read); "failed" only from queued
        or sent; from failed to queued (a retry) or any forward state. Setting the state
        a message already has, or a state of an incoming or unknown message, returns
        False and changes nothing.

        A non-empty ``detail`` replaces state_detail. An empty one keeps it (a delivery
        receipt leaves the list of relays that accepted the message), except when the
        message leaves "failed": the failure reason no longer applies and is cleared.
        """
        sources = _MOVES_FROM.get(state)
        if sources is None:
            raise InvalidInput(f"a message state is one of {', '.join(MESSAGE_STATES)}")
        marks = ", ".join("?" * len(sources))
        with _GUARD:
            cursor = self._db().execute(
                "UPDATE messages SET state = ?, state_detail = CASE WHEN ? <> '' THEN ?"
                " WHEN state = 'failed' THEN '' ELSE state_detail END"  # the old state
                f" WHERE id = ? AND outgoing = 1 AND state IN ({marks})",
                (state, detail, detail, message_id, *sources),
            )
        return cursor.rowcount > 0

    def messages(
        self, conversation: str, before: tuple[int, int] | None = None, limit: int = 50
    ) -> list[MessageRow]:
        """Newest first, ordered by (sent_at, seq); ``before`` = (sent_at, seq) to page."""
        _check_limit(limit)
        with _GUARD:
            conn = self._db()
            if before is None:
                cursor = conn.execute(
                    f"{_SELECT_MESSAGES} WHERE conversation = ?{_NEWEST_FIRST}",
                    (conversation, limit),
                )
            else:
                sent_at, seq = before
                cursor = conn.execute(
                    f"{_SELECT_MESSAGES} WHERE conversation = ? AND (sent_at, seq) < (?, ?)"
                    f"{_NEWEST_FIRST}",
                    (conversation, int(sent_at), int(seq), limit),
                )
            return [_message(row) for row in cursor.fetchall()]

    def search(self, text: str, limit: int = 50) -> list[MessageRow]:
        """Messages whose body contains ``text`` (case-insensitive), newest first.

        Deleted messages are left out. An ASCII ``text`` is matched with LIKE (its ``%``,
        ``_`` and ``\\`` escaped), which folds ASCII letters only; any other text is
        compared case-folded (Unicode) by a function of ours.
        """
        _check_limit(limit)
        if text.isascii():
            where = "body LIKE ? ESCAPE '\\'"
            escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            needle = f"%{escaped}%"
        else:
            where = "xchat_contains(body, ?)"
            needle = text.casefold()
        with _GUARD:
            rows = (
                self._db()
                .execute(
                    f"{_SELECT_MESSAGES} WHERE deleted = 0 AND {where}{_NEWEST_FIRST}",
                    (needle, limit),
                )
                .fetchall()
            )
            return [_message(row) for row in rows]

    def add_conversation(self, conversation: Conversation) -> None:
        """Store a new conversation and its members; InvalidInput if its id (or, for a
        direct one, its peer) is taken."""
        _check_choice(conversation.kind, tuple(ConversationKind), "a conversation's kind")
        with self.transaction(), _GUARD:
            conn = self._db()
            conn.execute(
                "INSERT INTO conversations (id, kind, peer, created_at) VALUES (?, ?, ?, ?)",
                (conversation.id, conversation.kind, conversation.peer, conversation.created_at),
            )
            conn.executemany(
                "INSERT INTO members (conversation, pubkey) VALUES (?, ?)",
                [(conversation.id, member) for member in conversation.members],
            )

    def get_conversation(self, conversation_id: str) -> Conversation | None:
        return self._conversation("id", conversation_id)

    def direct_conversation(self, peer: str) -> Conversation | None:
        """The direct conversation with ``peer``, if there is one."""
        return self._conversation("peer", peer)

    def _conversation(self, column: str, value: str) -> Conversation | None:
        with _GUARD:
            conn = self._db()
            row = conn.execute(
                f"SELECT id, kind, peer, created_at FROM conversations WHERE {column} = ?",
                (value,),
            ).fetchone()
            if row is None:
                return None
            members = conn.execute(
                "SELECT pubkey FROM members WHERE conversation = ? ORDER BY pubkey", (row[0],)
            ).fetchall()
        return Conversation(
            id=row[0],
            kind=_enum(ConversationKind, row[1]),
            peer=row[2],
            members=tuple(str(m[0]) for m in members),
            created_at=row[3],
        )

    def conversations(self) -> list[ConversationSummary]:
        """Every conversation, by activity, blocked contacts' left out.

        ``last_activity`` is the later of the last message's sent_at and the
        conversation's creation (in ms); newest first, ties by id. Unread counts
        incoming messages still "received". A direct conversation without a contact row
        reports the state "request".
        """
        with _GUARD:
            rows = self._db().execute(_CONVERSATIONS).fetchall()
            out = []
            for row in rows:
                last = None if row[9] is None else _message(row[9:])
                created_ms = int(row[3]) * 1000
                out.append(
                    ConversationSummary(
                        conversation=Conversation(
                            id=row[0],
                            kind=_enum(ConversationKind, row[1]),
                            peer=row[2],
                            members=tuple(sorted((row[7] or "").split())),
                            created_at=row[3],
                        ),
                        name=row[4],
                        state=ContactState.REQUEST
                        if row[5] is None
                        else _enum(ContactState, row[5]),
                        last_activity=max(created_ms, last.sent_at if last else 0),
                        last_message=last,
                        unread=int(row[8]),
                        forward_secret=not row[6],
                    )
                )
        out.sort(key=lambda c: (-c.last_activity, c.conversation.id))
        return out

    def mark_read(self, conversation: str, up_to_sent_at: int | None = None) -> list[str]:
        """Mark incoming messages read; return the ids that were unread.

        Only messages still "received" (with sent_at <= ``up_to_sent_at`` if given), in
        the order (sent_at, seq).
        """
        where, params = _UNREAD, list[object]([conversation])
        if up_to_sent_at is not None:
            where += " AND sent_at <= ?"
            params.append(int(up_to_sent_at))
        with self.transaction(), _GUARD:
            conn = self._db()
            rows = conn.execute(
                f"SELECT id FROM messages INDEXED BY messages_unread WHERE {where}"
                " ORDER BY sent_at, seq",
                params,
            ).fetchall()
            if rows:
                conn.execute(
                    f"UPDATE messages INDEXED BY messages_unread SET state = 'read' WHERE {where}",
                    params,
                )
        return [str(row[0]) for row in rows]

    # -- outbox ------------------------------------------------------------------------

    def add_outbox(self, row: OutboxRow) -> int:
        """Store a new outbox row (its ``id`` is ignored); return and set its new id."""
        values = _outbox_values(row)
        with _GUARD:
            cursor = self._db().execute(
                f"INSERT INTO outbox ({_OUTBOX_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )
            new_id = cursor.lastrowid
        if new_id is None:  # pragma: no cover - SQLite always reports the new rowid
            raise KeystoreError("the node database did not report the new outbox row's id")
        row.id = int(new_id)
        return row.id

    def update_outbox(self, row: OutboxRow) -> None:
        """Write back every field of a stored row; InvalidInput if there is no such id."""
        values = _outbox_values(row)
        with _GUARD:
            cursor = self._db().execute(
                "UPDATE outbox SET message_id = ?, recipient = ?, event = ?, relays = ?,"
                " accepted = ?, state = ?, attempts = ?, next_attempt_at = ?, last_error = ?,"
                " created_at = ?, kind = ? WHERE id = ?",
                (*values, row.id),
            )
        if cursor.rowcount == 0:
            raise InvalidInput("there is no outbox row with that id")

    def due_outbox(self, now: int, limit: int = 500) -> list[OutboxRow]:
        """Rows in state pending whose next attempt is due, the longest due
        first (ordered so that SQLite walks the partial index ``outbox_due``, never the
        whole table)."""
        _check_limit(limit)
        with _GUARD:
            rows = (
                self._db()
                .execute(
                    f"{_SELECT_OUTBOX} WHERE state = 'pending'"
                    " AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?",
                    (now, limit),
                )
                .fetchall()
            )
            return [_outbox(row) for row in rows]

    def outbox_waiting(self) -> int:
        """How many rows are pending (due or not)."""
        with _GUARD:
            row = (
                self._db().execute("SELECT count(*) FROM outbox WHERE state = 'pending'").fetchone()
            )
        return int(row[0])

    def delete_outbox(self, message_id: str) -> int:
        """Forget a message's outbox rows (once every one is done); the number deleted."""
        with _GUARD:
            cursor = self._db().execute("DELETE FROM outbox WHERE message_id = ?", (message_id,))
        return int(cursor.rowcount)

    def set_detail(self, message_id: str, detail: str) -> bool:
        """Replace an outgoing message's state detail without touching its state."""
        with _GUARD:
            cursor = self._db().execute(
                "UPDATE messages SET state_detail = ? WHERE id = ? AND outgoing = 1",
                (detail, message_id),
            )
        return cursor.rowcount > 0

    def outbox_for(self, message_id: str) -> list[OutboxRow]:
        """Every outbox row of a message, in any state, oldest first."""
        with _GUARD:
            rows = (
                self._db()
                .execute(f"{_SELECT_OUTBOX} WHERE message_id = ? ORDER BY id", (message_id,))
                .fetchall()
            )
            return [_outbox(row) for row in rows]

    # -- events already processed (de-duplication across relays and restarts) ----------

    def seen(self, event_id: str) -> bool:
        with _GUARD:
            row = (
                self._db().execute("SELECT 1 FROM seen WHERE event_id = ?", (event_id,)).fetchone()
            )
        return row is not None

    def mark_seen(self, event_id: str, at: int) -> None:
        """Remember an event id; marking it again keeps the first time."""
        with _GUARD:
            self._db().execute(
                "INSERT INTO seen (event_id, at) VALUES (?, ?) ON CONFLICT (event_id) DO NOTHING",
                (event_id, at),
            )

    def forget_seen(self, older_than: int) -> int:
        """Forget the ids marked before ``older_than``; return how many were forgotten."""
        with _GUARD:
            cursor = self._db().execute("DELETE FROM seen WHERE at < ?", (older_than,))
        return cursor.rowcount

    # -- envelopes held back, and chain progress (see xchat.core.holdback) -------------

    def hold(self, event_id: str, event: str, size: int, held_at: int) -> None:
        """Keep an envelope not opened yet; holding it again keeps the first time."""
        with _GUARD:
            self._db().execute(
                "INSERT INTO held (event_id, event, size, held_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (event_id) DO NOTHING",
                (event_id, event, int(size), int(held_at)),
            )

    def release(self, event_ids: Sequence[str]) -> None:
        """Forget held envelopes (opened, given up, or dropped)."""
        with _GUARD:
            self._db().executemany("DELETE FROM held WHERE event_id = ?", [(i,) for i in event_ids])

    def held(self) -> list[tuple[str, str, int]]:
        """Every held envelope: its id, JSON and the time it was first held, oldest
        first."""
        with _GUARD:
            rows = (
                self._db()
                .execute("SELECT event_id, event, held_at FROM held ORDER BY held_at, event_id")
                .fetchall()
            )
        return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]

    def save_chain(self, ratchet: bytes, state: str, at: int) -> None:
        with _GUARD:
            self._db().execute(
                "INSERT INTO chains (ratchet, state, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (ratchet) DO UPDATE SET state = excluded.state,"
                " updated_at = excluded.updated_at",
                (bytes(ratchet), state, int(at)),
            )

    def chains(self, limit: int = 4096) -> list[tuple[bytes, str]]:
        """The most recently updated chains' states (at most ``limit``), oldest first."""
        with _GUARD:
            rows = (
                self._db()
                .execute(
                    "SELECT ratchet, state FROM chains ORDER BY updated_at DESC LIMIT ?",
                    (int(limit),),
                )
                .fetchall()
            )
        return [(bytes(r[0]), str(r[1])) for r in reversed(rows)]

    def untracked(self) -> list[str]:
        """Sessions whose chain progress was never kept (they predate it)."""
        with _GUARD:
            rows = self._db().execute("SELECT session_id FROM untracked").fetchall()
        return [str(r[0]) for r in rows]

    def set_tracked(self, session_ids: Sequence[str]) -> None:
        with _GUARD:
            self._db().executemany(
                "DELETE FROM untracked WHERE session_id = ?", [(i,) for i in session_ids]
            )

    def forget_chains(self, older_than: int) -> int:
        with _GUARD:
            cursor = self._db().execute("DELETE FROM chains WHERE updated_at < ?", (older_than,))
        return cursor.rowcount


# -- opening ---------------------------------------------------------------------------


def _create_private(path: Path) -> None:
    """Create the file owner-only before SQLite opens it (its -wal and -shm files take
    the database file's mode), and take group and other access away from an old one."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
                os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
    except OSError as exc:
        raise KeystoreError(f"cannot create the node database {path}: {exc.strerror}") from None


def _restrict_companions(path: Path) -> None:
    for suffix in ("-wal", "-shm"):
        companion = path.with_name(path.name + suffix)
        try:
            if stat.S_IMODE(companion.stat().st_mode) & 0o077:
                companion.chmod(0o600)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise KeystoreError(f"cannot restrict {companion}: {exc.strerror}") from None


def _setup(conn: Connection, path: Path) -> None:
    """Pragmas, our SQL function, and the schema brought to the current version."""
    _check_version(_user_version(conn), path)
    mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
    if mode.lower() != "wal":
        raise KeystoreError(f"the node database {path} cannot use WAL mode ({mode})")
    for pragma in (
        "PRAGMA synchronous = FULL",  # committed = on disk, before a message is sent
        "PRAGMA foreign_keys = ON",
        "PRAGMA busy_timeout = 5000",
        "PRAGMA temp_store = MEMORY",  # no temporary files next to the encrypted one
        # Pages are decrypted when read into the cache: 16 MiB (SQLite's default is 2)
        # keeps the recent conversations of a large history decrypted once.
        "PRAGMA cache_size = -16384",
    ):
        conn.execute(pragma)
    conn.create_function("xchat_contains", 2, _contains, deterministic=True)
    if _user_version(conn) < _MIGRATIONS[-1].version:
        _migrate(conn, path)


def _user_version(conn: Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _check_version(version: int, path: Path) -> None:
    latest = _MIGRATIONS[-1].version
    if version > latest:
        raise KeystoreCorrupt(
            f"the node database {path} was written by a newer X Chat (schema version"
            f" {version}; this one knows up to {latest}): upgrade X Chat to open it"
        )


def _migrate(conn: Connection, path: Path) -> None:
    """Apply the missing steps in one transaction: all of them, or none."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _user_version(conn)  # again, now that we hold the write lock
        _check_version(version, path)
        for step in _MIGRATIONS:
            if step.version > version:
                for statement in step.statements:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {int(step.version)}")
        conn.execute("COMMIT")
    except BaseException:
        _quietly(conn, "ROLLBACK")
        raise


# -- errors ----------------------------------------------------------------------------


class _Guard:
    """Translates database and value errors into X Chat errors; others pass unchanged."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None or isinstance(exc, XChatError):
            return
        if isinstance(exc, _TRANSLATED):
            raise _translate(exc) from exc


_GUARD: Final = _Guard()


def _primary_code(exc: BaseException) -> int | None:
    """SQLite's primary result code of a database error (extended codes stripped)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def _translate(exc: BaseException) -> XChatError:
    if isinstance(exc, _DB_ERRORS):
        if _primary_code(exc) in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
            return KeystoreCorrupt(f"the node database is damaged ({exc})")
        if isinstance(exc, _INTEGRITY_ERRORS):
            return InvalidInput(f"the node database refused the row ({exc})")
        if isinstance(exc, _ARGUMENT_ERRORS):
            return InvalidInput(f"a value cannot be stored in the node database ({exc})")
        return KeystoreError(f"the node database failed ({exc})")
    # From bindings and orjson; their messages may quote the value, so they are left out.
    return InvalidInput(f"a value cannot be stored in the node database ({type(exc).__name__})")


def _quietly(conn: Connection, *statements: str) -> None:
    """Roll back while an exception is already on its way: never mask it."""
    try:
        for statement in statements:
            if not conn.in_transaction:
                return
            conn.execute(statement)
    except _DB_ERRORS:
        return


# -- values ----------------------------------------------------------------------------


def _check_choice(value: str, allowed: Sequence[str], what: str) -> None:
    if value not in allowed:
        raise InvalidInput(f"{what} must be one of: {', '.join(allowed)}")


def _check_limit(limit: int) -> None:
    if limit < 0:
        raise InvalidInput("a limit cannot be negative")


def _dump_strings(values: list[str], what: str) -> str:
    if not all(isinstance(value, str) for value in values):
        raise InvalidInput(f"{what} must be a list of strings")
    return orjson.dumps(list(values)).decode()


def _dump_reactions(reactions: dict[str, str] | None) -> str | None:
    if reactions is None:
        return None
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in reactions.items()):
        raise InvalidInput("reactions must map pubkeys to emoji strings")
    return orjson.dumps(reactions).decode()


def _load_json(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise KeystoreCorrupt("a row of the node database is damaged") from None


def _load_strings(text: str) -> list[str]:
    value = _load_json(text)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise KeystoreCorrupt("a row of the node database is damaged")
    return value


def _load_reactions(text: str | None) -> dict[str, str] | None:
    if text is None:
        return None
    value = _load_json(text)
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise KeystoreCorrupt("a row of the node database is damaged")
    return value


def _contains(body: object, needle: object) -> int:
    """SQL ``xchat_contains(body, needle)``: needle (already case-folded) in the body."""
    return int(isinstance(body, str) and isinstance(needle, str) and needle in body.casefold())


# -- rows ------------------------------------------------------------------------------


def _enum(kind: type[_E], value: str) -> _E:
    try:
        return kind(value)
    except ValueError:
        raise KeystoreCorrupt("a row of the node database is damaged") from None


def _contact(r: Sequence[Any]) -> Contact:
    return Contact(
        pubkey=r[0],
        name=r[1],
        state=_enum(ContactState, r[2]),
        relays=_load_strings(r[3]),
        created_at=r[4],
        nip17_only=bool(r[5]),
        verified=r[6],
        bundle_checked_at=r[7],
        conversation=r[8] if len(r) > 8 else "",
    )


def _message(r: Sequence[Any]) -> Message:
    return Message(
        id=r[0],
        conversation=r[1],
        outgoing=bool(r[2]),
        sender=r[3],
        type=r[4],
        body=r[5],
        sent_at=r[6],
        received_at=r[7],
        state=_enum(MessageState, r[8]),
        forward_secret=bool(r[9]),
        reply_to=r[10],
        state_detail=r[11],
        edited_at=r[12],
        deleted=bool(r[13]),
        reactions=_load_reactions(r[14]),
        seq=r[15],
    )


#: The payload of a seal_later job (in the ``event`` column): version 1 of the outbox
#: payload, unchanged since schema v1.
_PENDING_KEY: Final = "pending"


def _outbox_values(row: OutboxEntry) -> tuple[object, ...]:
    _check_choice(row.state, _OUTBOX_STATES, "an outbox row's state")
    _check_choice(row.kind, tuple(JobKind), "an outbox row's kind")
    if row.kind is JobKind.ENVELOPE:
        if row.event is None:
            raise InvalidInput("an envelope job needs its sealed event")
        payload: str | None = row.event.to_json().decode()
    elif row.message is None:
        raise InvalidInput("a seal-later job needs its message")
    else:
        try:
            payload = orjson.dumps({_PENDING_KEY: True, "message": row.message}).decode()
        except TypeError:
            raise InvalidInput("a seal-later job's message must be JSON") from None
    return (
        row.message_id,
        row.recipient,
        payload,
        _dump_strings(row.relays, "an outbox row's relays"),
        _dump_strings(row.accepted, "an outbox row's accepted relays"),
        row.state,
        row.attempts,
        row.next_attempt_at,
        row.last_error,
        row.created_at,
        row.kind,
    )


def _outbox(r: Sequence[Any]) -> OutboxEntry:
    kind = _enum(JobKind, r[11])
    event = None
    message = None
    if kind is JobKind.ENVELOPE:
        try:
            event = parse_event(_load_json(r[3] or ""))
        except (DecodeError, KeystoreCorrupt):
            event = None  # damaged: the outbox fails this job (it cannot be published)
    else:
        value = _load_json(r[3] or "")
        if not isinstance(value, dict) or not isinstance(value.get("message"), dict):
            raise KeystoreCorrupt("a row of the node database is damaged")
        message = value["message"]
    return OutboxEntry(
        id=r[0],
        message_id=r[1],
        recipient=r[2],
        kind=kind,
        event=event,
        message=message,
        relays=_load_strings(r[4]),
        accepted=_load_strings(r[5]),
        state=_enum(OutboxState, r[6]),
        attempts=r[7],
        next_attempt_at=r[8],
        last_error=r[9],
        created_at=r[10],
    )
