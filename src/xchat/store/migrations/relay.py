"""Schema versions of the relay's event store, for SQLite and PostgreSQL.

Each backend has an ordered list of steps, version 0, 1, ...; a database records the last
step applied in its ``meta`` table (``key = 'schema_version'``). The mechanism (one
transaction, newer databases refused, released steps never edited) is
:mod:`xchat.store.migrations.common`.

Theory of the schema (both backends):

* ``events``: one row per stored event. ``seq`` is a small integer key that the tag rows
  point at (cheaper than the 32-byte id in every tag index entry); ``id`` and ``pubkey``
  are the 32 raw bytes; ``d_tag`` is ``''`` for replaceable kinds, the ``d`` value for
  addressable kinds and NULL otherwise, so one partial index serves both lookups;
  ``expiration`` is the NIP-40 time or NULL; ``received_at`` is the ``now`` of the batch
  that stored it (gift wrap retention); ``json`` is the exact text the event arrived as.
* ``tags``: one row per distinct single-letter tag (name, first value) of an event, with
  the event's ``created_at`` and ``kind`` copied in so that a tag query walks one index in
  time order and checks the kind without visiting the event.
* ``deleted_ids`` (id, author) and ``deleted_addresses`` (kind, author, d, until):
  NIP-09 tombstones, so a deleted event sent again is refused. Only a deletion by the
  event's own author (or, for a gift wrap, by its recipient) counts, hence the author.

History: version 0 was the first layout; version 1 added ``received_at`` (existing rows
get their ``created_at``) and the partial indexes that make purges cheap.
"""

from __future__ import annotations

from typing import Final

from xchat.store.migrations.common import Migration, step_list

__all__ = ["POSTGRES_MIGRATIONS", "SCHEMA_VERSION", "SQLITE_MIGRATIONS"]

SQLITE_MIGRATIONS: Final = step_list(
    0,
    (
        Migration(
            0,
            "first layout: events, tags, tombstones",
            (
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
                """CREATE TABLE events (
                    seq INTEGER PRIMARY KEY,
                    id BLOB NOT NULL UNIQUE,
                    pubkey BLOB NOT NULL,
                    created_at INTEGER NOT NULL,
                    kind INTEGER NOT NULL,
                    d_tag TEXT,
                    expiration INTEGER,
                    json TEXT NOT NULL
                )""",
                "CREATE INDEX events_created ON events (created_at)",
                "CREATE INDEX events_pubkey ON events (pubkey, created_at)",
                "CREATE INDEX events_kind ON events (kind, created_at)",
                "CREATE INDEX events_address ON events (kind, pubkey, d_tag)"
                " WHERE d_tag IS NOT NULL",
                """CREATE TABLE tags (
                    event_seq INTEGER NOT NULL,
                    name TEXT NOT NULL,
                    value TEXT NOT NULL,
                    created_at INTEGER NOT NULL,
                    kind INTEGER NOT NULL,
                    PRIMARY KEY (event_seq, name, value)
                ) WITHOUT ROWID""",
                "CREATE INDEX tags_value ON tags (name, value, created_at, kind)",
                """CREATE TRIGGER events_delete_tags AFTER DELETE ON events BEGIN
                    DELETE FROM tags WHERE event_seq = old.seq;
                END""",
                """CREATE TABLE deleted_ids (
                    id BLOB NOT NULL,
                    pubkey BLOB NOT NULL,
                    PRIMARY KEY (id, pubkey)
                ) WITHOUT ROWID""",
                """CREATE TABLE deleted_addresses (
                    kind INTEGER NOT NULL,
                    pubkey BLOB NOT NULL,
                    d_tag TEXT NOT NULL,
                    until INTEGER NOT NULL,
                    PRIMARY KEY (kind, pubkey, d_tag)
                ) WITHOUT ROWID""",
            ),
        ),
        Migration(
            1,
            "received_at for gift wrap retention; purge indexes",
            (
                "ALTER TABLE events ADD COLUMN received_at INTEGER NOT NULL DEFAULT 0",
                "UPDATE events SET received_at = created_at",
                "CREATE INDEX events_gift_wrap_received ON events (received_at) WHERE kind = 1059",
                "CREATE INDEX events_expiration ON events (expiration)"
                " WHERE expiration IS NOT NULL",
            ),
        ),
    ),
)

# PostgreSQL: the same design. Tag values and d tags are BYTEA (UTF-8) because TEXT cannot
# hold NUL characters, and values too long for a btree entry are stored as a digest (see
# ``xchat.store.postgres``). ``tags`` rows go with their event by a statement trigger.
POSTGRES_MIGRATIONS: Final = step_list(
    0,
    (
        Migration(
            0,
            "first layout: events, tags, tombstones",
            (
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL)",
                """CREATE TABLE events (
                    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    id BYTEA NOT NULL UNIQUE,
                    pubkey BYTEA NOT NULL,
                    created_at BIGINT NOT NULL,
                    kind INTEGER NOT NULL,
                    d_tag BYTEA,
                    expiration BIGINT,
                    json TEXT NOT NULL
                )""",
                "CREATE INDEX events_created ON events (created_at)",
                "CREATE INDEX events_pubkey ON events (pubkey, created_at)",
                "CREATE INDEX events_kind ON events (kind, created_at)",
                "CREATE INDEX events_address ON events (kind, pubkey, d_tag)"
                " WHERE d_tag IS NOT NULL",
                """CREATE TABLE tags (
                    event_seq BIGINT NOT NULL,
                    name TEXT COLLATE "C" NOT NULL,
                    value BYTEA NOT NULL,
                    created_at BIGINT NOT NULL,
                    kind INTEGER NOT NULL,
                    PRIMARY KEY (event_seq, name, value)
                )""",
                "CREATE INDEX tags_value ON tags (name, value, created_at, kind)",
                # Not a foreign key: checking one per tag row cost a quarter of a batch.
                """CREATE FUNCTION delete_event_tags() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    DELETE FROM tags WHERE event_seq IN (SELECT seq FROM gone);
                    RETURN NULL;
                END $$""",
                """CREATE TRIGGER events_delete_tags AFTER DELETE ON events
                    REFERENCING OLD TABLE AS gone
                    FOR EACH STATEMENT EXECUTE FUNCTION delete_event_tags()""",
                """CREATE TABLE deleted_ids (
                    id BYTEA NOT NULL,
                    pubkey BYTEA NOT NULL,
                    PRIMARY KEY (id, pubkey)
                )""",
                """CREATE TABLE deleted_addresses (
                    kind INTEGER NOT NULL,
                    pubkey BYTEA NOT NULL,
                    d_tag BYTEA NOT NULL,
                    until BIGINT NOT NULL,
                    PRIMARY KEY (kind, pubkey, d_tag)
                )""",
            ),
        ),
        Migration(
            1,
            "received_at for gift wrap retention; purge indexes",
            (
                "ALTER TABLE events ADD COLUMN received_at BIGINT NOT NULL DEFAULT 0",
                "UPDATE events SET received_at = created_at",
                "CREATE INDEX events_gift_wrap_received ON events (received_at) WHERE kind = 1059",
                "CREATE INDEX events_expiration ON events (expiration)"
                " WHERE expiration IS NOT NULL",
            ),
        ),
    ),
)

SCHEMA_VERSION: Final = SQLITE_MIGRATIONS[-1].version
if POSTGRES_MIGRATIONS[-1].version != SCHEMA_VERSION:
    raise AssertionError("both backends must be at the same schema version")
