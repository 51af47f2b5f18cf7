"""Schema versions of the node database (``node.db``).

Step ``n`` takes ``PRAGMA user_version`` from ``n - 1`` to ``n`` (0 is an empty file).
The mechanism (one transaction, newer databases refused, released steps never edited) is
:mod:`xchat.store.migrations.common`; the tables are described in
:mod:`xchat.store.node` and docs/storage.md.

Released: step 1 (the first layout) and step 2 (issue 9: held envelopes, chain progress,
untracked sessions); tests/fixtures/node-v1.db and node-v2.db were written by them. Step 3
(issue 10): conversations with ids and members, outbox job kinds.
"""

from __future__ import annotations

from typing import Final

from xchat.store.migrations.common import Migration, step_list

__all__ = ["NODE_MIGRATIONS", "NODE_SCHEMA_VERSION"]

# The SQL texts are kept byte for byte as released (SQLite stores CREATE statements as
# written): never re-indent or edit them.
_STEPS: Final = (
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

NODE_MIGRATIONS: Final = step_list(1, _STEPS)

NODE_SCHEMA_VERSION: Final = NODE_MIGRATIONS[-1].version
