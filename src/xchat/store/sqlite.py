"""The relay's event store on SQLite: WAL, one writer thread, a few reader threads.

Theory of operation: all writes go through one thread that owns the write connection
(a single-worker executor, so batches are applied in the order they were submitted and
never contend for SQLite's write lock); queries run on a small pool of reader threads,
each with its own connection, which WAL lets read a consistent snapshot while the writer
commits. The asyncio methods only hand work to those threads, so the event loop never
waits on the disk; sqlite3 releases the GIL inside SQLite, so reading, writing and the
loop really run in parallel.

``save_batch`` is one ``BEGIN IMMEDIATE`` transaction committed with ``synchronous=FULL``
(the WAL is fsynced before the call returns, so an acknowledged event survives a crash
or a power loss). The batch is cut at each deletion request: the events before one are
checked against the database with a few set-wise queries (duplicates, tombstones,
current versions of replaceable events), decided in order in Python, and written with
``executemany``; then the deletion is applied, so later events see its effect.

Schema and its versions: :mod:`xchat.store.migrations`. Spec: NIP-01, NIP-09, NIP-40,
NIP-59 (see :mod:`xchat.store.events`).
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import string
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import orjson

from xchat.errors import LocalProtocolError
from xchat.store.events import (
    KIND_DELETION,
    KIND_GIFT_WRAP,
    Key,
    SaveOutcome,
    SaveStatus,
    StoredEvent,
    d_tag,
    expiration_of,
    is_addressable,
    is_ephemeral,
    is_replaceable,
)
from xchat.store.migrations import SQLITE_MIGRATIONS, pending
from xchat.wire.event import Event, is_hex
from xchat.wire.filter import Filter

__all__ = ["SqliteEventStore"]

T = TypeVar("T")

_SYNCHRONOUS: Final = frozenset({"EXTRA", "FULL", "NORMAL"})
_TAG_NAMES: Final = frozenset(string.ascii_letters)
_OUTCOME: Final = {status: SaveOutcome(status) for status in SaveStatus}
_CHUNK: Final = 5000  # values bound in one IN (...) list, well under SQLite's 32766
_PURGE_CHUNK: Final = 1000  # rows deleted per purge transaction, so batches interleave
_INLINE_VALUES: Final = 16  # longer tag value lists are bound as one JSON array

_INSERT_EVENT: Final = (
    "INSERT INTO events (seq, id, pubkey, created_at, kind, d_tag, expiration, received_at, json)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_TAG: Final = (
    "INSERT INTO tags (event_seq, name, value, created_at, kind) VALUES (?, ?, ?, ?, ?)"
)
# NIP-09: the author's own event, or (NIP-59) a gift wrap addressed to the author; never
# a deletion request.
_DELETE_BY_ID: Final = """DELETE FROM events WHERE id = ? AND kind <> 5 AND (
    pubkey = ? OR (kind = 1059 AND EXISTS (
        SELECT 1 FROM tags WHERE event_seq = events.seq AND name = 'p' AND value = ?)))"""
_DELETE_ADDRESS: Final = (
    "DELETE FROM events WHERE kind = ? AND pubkey = ? AND d_tag = ? AND created_at <= ?"
)
_REMEMBER_ADDRESS: Final = """INSERT INTO deleted_addresses (kind, pubkey, d_tag, until)
    VALUES (?, ?, ?, ?)
    ON CONFLICT (kind, pubkey, d_tag) DO UPDATE SET until = max(until, excluded.until)"""
# Query parts on tags (formatted with terms and IN clauses of placeholders only).
_FROM_TAG: Final = "tags t CROSS JOIN events e ON e.seq = t.event_seq"
_FROM_TAGS: Final = (
    "(SELECT DISTINCT x.event_seq FROM tags x WHERE {}) m"
    " CROSS JOIN events e ON e.seq = m.event_seq"
)
_HAS_TAG: Final = (
    "EXISTS (SELECT 1 FROM tags x WHERE x.event_seq = e.seq AND x.name = ? AND x.value {})"
)
# NIP-59: a gift wrap is visible only to a recipient named in one of its p tags.
_VISIBLE_WRAP: Final = (
    "(e.kind <> 1059 OR EXISTS (SELECT 1 FROM tags r"
    " WHERE r.event_seq = e.seq AND r.name = 'p' AND r.value IN ({})))"
)
_LOAD_ONE: Final = "SELECT json FROM events WHERE id = ? AND (expiration IS NULL OR expiration > ?)"
# Control characters are escaped inside JSON strings and never appear outside them.
_SEPARATOR: Final = "\x1e"
_JOINED: Final = "SELECT count(*), group_concat(json, char(30)) FROM ({})"
_PURGE_EXPIRED: Final = """DELETE FROM events WHERE seq IN (SELECT seq FROM events
    WHERE expiration IS NOT NULL AND expiration <= ? LIMIT ?)"""
_PURGE_GIFT_WRAPS: Final = """DELETE FROM events WHERE seq IN (SELECT seq FROM events
    INDEXED BY events_gift_wrap_received WHERE kind = 1059 AND received_at < ? LIMIT ?)"""


_COMMON_PRAGMAS: Final = ("PRAGMA busy_timeout = 10000", "PRAGMA temp_store = MEMORY")
_READER_PRAGMAS: Final = (*_COMMON_PRAGMAS, "PRAGMA query_only = ON", "PRAGMA cache_size = -16384")
# Random keys (ids, authors, tag values, created_at of gift wraps) dirty a page each per
# event, so a bigger cache and fewer, larger checkpoints (up to ~40 MB of WAL instead of
# SQLite's 4 MB) write each hot index page once per several batches: about 40% more
# events/s here. The WAL file is truncated back to 64 MB at most after a checkpoint.
_WRITER_PRAGMAS: Final = (
    *_COMMON_PRAGMAS,
    "PRAGMA cache_size = -65536",  # KiB
    "PRAGMA wal_autocheckpoint = 10000",  # pages
    "PRAGMA journal_size_limit = 67108864",  # bytes
)


class SqliteEventStore:
    """:class:`~xchat.store.events.EventStore` in one SQLite file (plus its ``-wal``).

    ``batch_synchronous`` is SQLite's ``synchronous`` for writes: ``FULL`` (the default)
    makes every acknowledged batch survive a power loss; ``NORMAL`` survives a crash of
    the process but may lose the last batches on a power loss, for more throughput.
    ``readers`` is the number of reader threads and connections.
    """

    def __init__(
        self, path: str | Path, *, batch_synchronous: str = "FULL", readers: int = 4
    ) -> None:
        if batch_synchronous.upper() not in _SYNCHRONOUS:
            raise LocalProtocolError("batch_synchronous must be FULL, EXTRA or NORMAL")
        if readers < 1:
            raise LocalProtocolError("an event store needs at least one reader")
        if str(path) in ("", ":memory:"):
            raise LocalProtocolError("the event store needs a file: its connections share it")
        self._path = str(path)
        self._synchronous = batch_synchronous.upper()
        self._reader_count = readers
        self._writer: ThreadPoolExecutor | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._reader_conns: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()

    def __repr__(self) -> str:
        return f"SqliteEventStore({self._path!r})"

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xchat-store-write")
        try:
            self._conn = await loop.run_in_executor(writer, self._open_writer)
        except BaseException:
            writer.shutdown(wait=False)
            raise
        self._writer = writer
        self._readers = ThreadPoolExecutor(
            max_workers=self._reader_count, thread_name_prefix="xchat-store-read"
        )
        for _ in range(self._reader_count):
            conn = await loop.run_in_executor(self._readers, self._connect, True)
            self._reader_conns.put(conn)

    async def close(self) -> None:
        writer, readers, conn = self._writer, self._readers, self._conn
        self._writer = self._readers = self._conn = None
        if readers is not None:
            await asyncio.to_thread(readers.shutdown, True)
        while not self._reader_conns.empty():
            self._reader_conns.get().close()
        if writer is not None and conn is not None:
            # Queued behind any pending batch; the last connection to close checkpoints
            # the WAL into the database file.
            await asyncio.get_running_loop().run_in_executor(writer, conn.close)
            writer.shutdown(wait=True)

    def _connect(self, read_only: bool) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self._path, isolation_level=None, check_same_thread=False, cached_statements=256
            )
        except sqlite3.Error as exc:
            raise LocalProtocolError(f"cannot open the event database {self._path}: {exc}") from exc
        try:
            for pragma in _READER_PRAGMAS if read_only else _WRITER_PRAGMAS:
                conn.execute(pragma)
        except sqlite3.Error as exc:
            conn.close()
            raise LocalProtocolError(f"cannot open the event database {self._path}: {exc}") from exc
        return conn

    def _open_writer(self) -> sqlite3.Connection:
        conn = self._connect(read_only=False)
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise LocalProtocolError(f"{self._path}: SQLite refused WAL mode ({mode})")
            conn.execute("PRAGMA synchronous = FULL")
            _migrate(conn, self._path)
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise LocalProtocolError(f"cannot open the event database {self._path}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        return conn

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        if self._writer is None or self._conn is None:
            raise LocalProtocolError("the event store is not open")
        return await asyncio.get_running_loop().run_in_executor(
            self._writer, _transaction, self._conn, fn, *args
        )

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        if self._readers is None:
            raise LocalProtocolError("the event store is not open")
        return await asyncio.get_running_loop().run_in_executor(
            self._readers, self._with_reader, fn, *args
        )

    def _with_reader(self, fn: Callable[..., T], *args: Any) -> T:
        conn = self._reader_conns.get()
        try:
            return fn(conn, *args)
        finally:
            self._reader_conns.put(conn)

    # -- the interface -----------------------------------------------------------------

    async def save_batch(self, events: Sequence[StoredEvent], now: int) -> list[SaveOutcome]:
        if not events:
            return []
        if any(is_ephemeral(stored.event.kind) for stored in events):
            raise LocalProtocolError("ephemeral events (kinds 20000-29999) are never stored")
        return await self._write(_save_batch, list(events), now)

    async def query(self, filters: Sequence[Filter], now: int, max_limit: int) -> list[StoredEvent]:
        return await self._read(_query, list(filters), now, max_limit)

    async def query_keys(
        self,
        f: Filter,
        now: int,
        *,
        after: Key | None,
        limit: int,
        recipients: frozenset[str] | None = None,
    ) -> list[Key]:
        return await self._read(_query_keys, f, now, after, limit, recipients)

    async def load(self, ids: Sequence[str], now: int, max_bytes: int) -> tuple[int, list[str]]:
        return await self._read(_load_json, list(ids), now, max_bytes)

    async def count(
        self, filters: Sequence[Filter], now: int, recipients: frozenset[str] | None = None
    ) -> int:
        return await self._read(_count, list(filters), now, recipients)

    async def purge(self, now: int, gift_wrap_max_age: int) -> int:
        total = 0
        for sql, bound in ((_PURGE_EXPIRED, now), (_PURGE_GIFT_WRAPS, now - gift_wrap_max_age)):
            while True:  # in chunks, each its own transaction, so batches get in between
                deleted = await self._write(_execute_count, sql, (bound, _PURGE_CHUNK))
                total += deleted
                if deleted < _PURGE_CHUNK:
                    break
        return total

    async def schema_version(self) -> int:
        return await self._read(_schema_version)


# -- migrations ----------------------------------------------------------------------------


def _schema_version(conn: sqlite3.Connection, path: str = "") -> int:
    """The version recorded in ``meta``, or -1 for an empty database."""
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "meta" not in tables:
        if tables:
            raise LocalProtocolError(f"{path or 'the database'} is not an X Chat event database")
        return -1
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        raise LocalProtocolError(f"{path or 'the database'} has no schema version")
    return int(row[0])


def _migrate(conn: sqlite3.Connection, path: str) -> None:
    """Bring the schema to the current version, all steps in one transaction."""

    def apply(conn: sqlite3.Connection) -> None:
        for step in pending(_schema_version(conn, path), SQLITE_MIGRATIONS):
            for statement in step.statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (step.version,),
            )

    _transaction(conn, apply)


# -- writing -------------------------------------------------------------------------------


def _transaction(conn: sqlite3.Connection, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(conn, *args)`` in one write transaction: committed, or rolled back."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn, *args)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def _execute_count(conn: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> int:
    return conn.execute(sql, params).rowcount


@dataclass(slots=True)
class _Version:
    """A stored or pending version of a replaceable or addressable event."""

    created_at: int
    id: str
    seq: int | None  # stored: its row
    pending: int | None  # pending in this run: its index


@dataclass(slots=True)
class _Address:
    """What a run knows about one (kind, pubkey, d) address."""

    deleted_until: int | None
    versions: list[_Version] = field(default_factory=list)


def _save_batch(conn: sqlite3.Connection, events: list[StoredEvent], now: int) -> list[SaveOutcome]:
    outcomes: list[SaveOutcome] = []
    seq = conn.execute("SELECT coalesce(max(seq), 0) + 1 FROM events").fetchone()[0]
    start = 0
    while start < len(events):
        end = start
        while end < len(events) and events[end].event.kind != KIND_DELETION:
            end += 1
        if end > start:
            seq = _save_run(conn, events[start:end], now, seq, outcomes)
        if end < len(events):
            seq = _save_deletion(conn, events[end], now, seq, outcomes)
            end += 1
        start = end
    return outcomes


def _save_run(
    conn: sqlite3.Connection,
    events: list[StoredEvent],
    now: int,
    seq: int,
    outcomes: list[SaveOutcome],
) -> int:
    """Store a run of events that holds no deletion request; returns the next seq."""
    ids = [bytes.fromhex(stored.event.id) for stored in events]
    run = _Run(conn, ids)
    for stored, event_id in zip(events, ids, strict=True):
        event = stored.event
        pubkey = bytes.fromhex(event.pubkey)
        d = _address_d(event)
        status = run.decide(event, event_id, pubkey, d)
        outcomes.append(_OUTCOME[status])
        if status is SaveStatus.STORED or status is SaveStatus.REPLACED:
            created_at, kind = event.created_at, event.kind
            row = (
                seq,
                event_id,
                pubkey,
                created_at,
                kind,
                d,
                expiration_of(event),
                now,
                stored.json,
            )
            tags = [(seq, name, value, created_at, kind) for name, value in _indexed(event)]
            run.pending.append(_Pending(row, tags))
            run.present.add(event_id)
            seq += 1
    if run.superseded:
        conn.executemany("DELETE FROM events WHERE seq = ?", run.superseded)
    rows = [p for p in run.pending if p is not None]
    conn.executemany(_INSERT_EVENT, [p.row for p in rows])
    conn.executemany(_INSERT_TAG, [tag for p in rows for tag in p.tags])
    return seq


@dataclass(slots=True)
class _Pending:
    row: tuple[object, ...]
    tags: Sequence[tuple[object, ...]]


class _Run:
    """The state of one run: what the database held at its start, and what the run adds."""

    def __init__(self, conn: sqlite3.Connection, ids: list[bytes]) -> None:
        self.conn = conn
        self.present = {
            row[0] for row in _select_in(conn, "SELECT id FROM events WHERE id IN", ids)
        }
        self.tombstones: dict[bytes, set[bytes]] = {}
        for deleted_id, author in _select_in(
            conn, "SELECT id, pubkey FROM deleted_ids WHERE id IN", ids
        ):
            self.tombstones.setdefault(deleted_id, set()).add(author)
        self.addresses: dict[tuple[int, bytes, str], _Address] = {}
        self.pending: list[_Pending | None] = []
        self.superseded: list[tuple[int]] = []

    def decide(self, event: Event, event_id: bytes, pubkey: bytes, d: str | None) -> SaveStatus:
        """The outcome for the next event; a version it replaces is dropped."""
        if event_id in self.present:
            return SaveStatus.DUPLICATE
        blockers = self.tombstones.get(event_id)
        if blockers is not None and _blocked(event, pubkey, blockers):
            return SaveStatus.DELETED
        if d is None:
            return SaveStatus.STORED
        key = (event.kind, pubkey, d)
        address = self.addresses.get(key)
        if address is None:
            address = self.addresses[key] = _load_address(self.conn, key)
        if address.deleted_until is not None and event.created_at <= address.deleted_until:
            return SaveStatus.DELETED
        if any(_newer(version, event) for version in address.versions):
            return SaveStatus.OBSOLETE
        replaced, address.versions = (
            address.versions,
            [_Version(event.created_at, event.id, None, len(self.pending))],
        )
        for version in replaced:  # gone: sent again, it is obsolete, not a duplicate
            self.present.discard(bytes.fromhex(version.id))
            if version.seq is not None:
                self.superseded.append((version.seq,))
            elif version.pending is not None:
                self.pending[version.pending] = None
        return SaveStatus.REPLACED if replaced else SaveStatus.STORED


def _save_deletion(
    conn: sqlite3.Connection, stored: StoredEvent, now: int, seq: int, outcomes: list[SaveOutcome]
) -> int:
    """Store a NIP-09 deletion request and apply it; returns the next seq.

    A deletion request is never itself refused or deleted by another (NIP-09).
    """
    event = stored.event
    event_id = bytes.fromhex(event.id)
    if conn.execute("SELECT 1 FROM events WHERE id = ?", (event_id,)).fetchone() is not None:
        outcomes.append(_OUTCOME[SaveStatus.DUPLICATE])
        return seq
    pubkey = bytes.fromhex(event.pubkey)
    conn.execute(
        _INSERT_EVENT,
        (
            *(seq, event_id, pubkey, event.created_at, event.kind, None),
            *(expiration_of(event), now, stored.json),
        ),
    )
    conn.executemany(
        _INSERT_TAG,
        [(seq, name, value, event.created_at, event.kind) for name, value in _indexed(event)],
    )
    targets = sorted({bytes.fromhex(v) for v in event.tag_values("e") if is_hex(v, 64)})
    if targets:
        conn.executemany(_DELETE_BY_ID, [(target, pubkey, event.pubkey) for target in targets])
        conn.executemany(
            "INSERT OR IGNORE INTO deleted_ids (id, pubkey) VALUES (?, ?)",
            [(target, pubkey) for target in targets],
        )
    for kind, d in _deleted_addresses(event):
        conn.execute(_DELETE_ADDRESS, (kind, pubkey, d, event.created_at))
        conn.execute(_REMEMBER_ADDRESS, (kind, pubkey, d, event.created_at))
    outcomes.append(_OUTCOME[SaveStatus.STORED])
    return seq + 1


def _load_address(conn: sqlite3.Connection, key: tuple[int, bytes, str]) -> _Address:
    row = conn.execute(
        "SELECT until FROM deleted_addresses WHERE kind = ? AND pubkey = ? AND d_tag = ?", key
    ).fetchone()
    address = _Address(None if row is None else row[0])
    for seq, created_at, stored_id in conn.execute(
        "SELECT seq, created_at, id FROM events WHERE kind = ? AND pubkey = ? AND d_tag = ?", key
    ):
        address.versions.append(_Version(created_at, stored_id.hex(), seq, None))
    return address


def _address_d(event: Event) -> str | None:
    """The ``d_tag`` column: "" for replaceable kinds, the d tag for addressable ones."""
    if is_replaceable(event.kind):
        return ""
    if is_addressable(event.kind):
        return d_tag(event)
    return None


def _newer(version: _Version, event: Event) -> bool:
    """NIP-01: the newest created_at wins; on a tie, the lowest id."""
    return version.created_at > event.created_at or (
        version.created_at == event.created_at and version.id < event.id
    )


def _blocked(event: Event, pubkey: bytes, authors: set[bytes]) -> bool:
    """Whether a deletion by one of ``authors`` covers this event (NIP-09, NIP-59)."""
    if pubkey in authors:
        return True
    return event.kind == KIND_GIFT_WRAP and any(
        is_hex(p, 64) and bytes.fromhex(p) in authors for p in event.tag_values("p")
    )


def _deleted_addresses(event: Event) -> Iterator[tuple[int, str]]:
    """(kind, d) of every ``a`` tag ``kind:pubkey:d`` naming the deletion's own author."""
    for coordinate in event.tag_values("a"):
        parts = coordinate.split(":", 2)
        if len(parts) != 3 or parts[1] != event.pubkey:
            continue
        kind_text, _, d = parts
        if not kind_text.isdecimal() or len(kind_text) > 5:
            continue
        kind = int(kind_text)
        if is_addressable(kind) or (is_replaceable(kind) and d == ""):
            yield kind, d


def _indexed(event: Event) -> set[tuple[str, str]]:
    """The (name, first value) pairs of single-letter tags, the ones filters can ask for."""
    return {(t[0], t[1]) for t in event.tags if len(t) >= 2 and t[0] in _TAG_NAMES}


def _select_in(conn: sqlite3.Connection, sql: str, values: list[bytes]) -> Iterator[Any]:
    for start in range(0, len(values), _CHUNK):
        chunk = values[start : start + _CHUNK]
        yield from conn.execute(f"{sql} ({_marks(len(chunk))})", chunk)


def _marks(n: int) -> str:
    return ", ".join("?" * n)


# -- reading -------------------------------------------------------------------------------


def _load(text: str) -> StoredEvent:
    """An event from its stored JSON: trusted, so not validated again."""
    obj = orjson.loads(text)
    return StoredEvent(
        Event(
            obj["id"],
            obj["pubkey"],
            obj["created_at"],
            obj["kind"],
            obj["tags"],
            obj["content"],
            obj["sig"],
        ),
        text,
    )


def _query(
    conn: sqlite3.Connection, filters: list[Filter], now: int, max_limit: int
) -> list[StoredEvent]:
    if len(filters) < 2:
        return _query_snapshot(conn, filters, now, max_limit)
    conn.execute("BEGIN")  # one snapshot for all the filters
    try:
        return _query_snapshot(conn, filters, now, max_limit)
    finally:
        conn.execute("COMMIT")


def _query_snapshot(
    conn: sqlite3.Connection, filters: list[Filter], now: int, max_limit: int
) -> list[StoredEvent]:
    found: dict[str, StoredEvent] = {}
    for f in filters:
        limit = max_limit if f.limit is None else min(f.limit, max_limit)
        select = _select(f, now, "e.json") if limit > 0 else None
        if select is None:
            continue
        sql, params, order = select
        sql = f"{sql} ORDER BY {order} LIMIT ?"
        params.append(limit)
        # All rows in one string: sqlite3 releases and retakes the GIL for every row it
        # steps through, and with several threads each retake can wait for another's
        # switch interval. Concurrent queries ran at half the speed of one at a time.
        count, joined = conn.execute(_JOINED.format(sql), params).fetchone()
        texts = joined.split(_SEPARATOR) if count else []
        if len(texts) != count:  # a raw separator in some JSON text (not valid JSON)
            texts = [row[0] for row in conn.execute(sql, params)]
        for text in texts:
            stored = _load(text)
            found.setdefault(stored.event.id, stored)
    result = list(found.values())
    result.sort(key=lambda s: (-s.event.created_at, s.event.id))
    return result


def _query_keys(
    conn: sqlite3.Connection,
    f: Filter,
    now: int,
    after: Key | None,
    limit: int,
    recipients: frozenset[str] | None,
) -> list[Key]:
    select = _select(f, now, "e.created_at, e.id", after, recipients) if limit > 0 else None
    if select is None:
        return []
    sql, params, order = select
    params.append(limit)
    rows = conn.execute(f"{sql} ORDER BY {order} LIMIT ?", params).fetchall()
    return [(created_at, event_id.hex()) for created_at, event_id in rows]


def _load_json(
    conn: sqlite3.Connection, ids: list[str], now: int, max_bytes: int
) -> tuple[int, list[str]]:
    """One lookup per id, stopping at the byte budget: no row past it is read at all."""
    texts: list[str] = []
    size = 0
    consumed = 0
    for event_id in ids:
        if size >= max_bytes:
            break
        consumed += 1
        if not is_hex(event_id, 64):
            continue
        row = conn.execute(_LOAD_ONE, (bytes.fromhex(event_id), now)).fetchone()
        if row is not None:
            texts.append(row[0])
            size += len(row[0])
    return consumed, texts


def _count(
    conn: sqlite3.Connection, filters: list[Filter], now: int, recipients: frozenset[str] | None
) -> int:
    selects = [
        s for s in (_select(f, now, "e.seq", None, recipients) for f in filters) if s is not None
    ]
    if not selects:
        return 0
    sql = " UNION ".join(s[0] for s in selects)
    params = [p for s in selects for p in s[1]]
    return int(conn.execute(f"SELECT count(*) FROM ({sql})", params).fetchone()[0])  # noqa: S608


def _select(
    f: Filter,
    now: int,
    columns: str,
    after: Key | None = None,
    recipients: frozenset[str] | None = None,
) -> tuple[str, list[object], str] | None:
    """SQL selecting ``columns`` of the unexpired events matching ``f``, its parameters and
    its ORDER BY; None if no event can match. ``after`` keeps only events after that key
    in query order (a keyset cursor); ``recipients`` hides gift wraps to anyone else.

    Only placeholders and fixed names are put into the SQL text. Without ``ids``, a filter
    with tags starts from the tag with the fewest values: one value walks its index newest
    first and stops at the limit (the relay's typical ``{"kinds": [1059], "#p": [me]}``);
    several values collect the matching rows (bounded by since/until and kinds) and sort
    them. Other tags are checked on the tags table's primary key; without tags, SQLite
    picks an events index (the authors' one when there are authors).
    """
    bound = _bind(f)
    if bound is None:
        return None
    ids, authors, tags = bound
    start = _Where()  # conditions on the tag rows the query starts from
    where = _Where()
    if ids is None and tags:
        name = min(tags, key=lambda name: (len(tags[name]), name))
        values = tags.pop(name)
        if len(values) == 1:
            source, order, alias = _FROM_TAG, "t.created_at", "t"
            start.add("t.name = ? AND t.value = ?", name, values[0])
        else:
            source, order, alias = _FROM_TAGS, "e.created_at", "x"
            matches, bound_values = _in_values(values)
            start.add(f"x.name = ? AND x.value {matches}", name, *bound_values)
    else:
        source, order, alias = "events e", "e.created_at", "e"
    conditions = where if alias != "x" else start
    # With authors, "+" keeps SQLite (which has no statistics) off the kind index: a
    # profile lookup must not scan every profile of every author.
    kind = "+e.kind" if alias == "e" and authors is not None else f"{alias}.kind"
    conditions.add_in(kind, None if f.kinds is None else sorted(f.kinds))
    if f.since is not None:
        conditions.add(f"{alias}.created_at >= ?", f.since)
    if f.until is not None:
        conditions.add(f"{alias}.created_at <= ?", f.until)
    if after is not None:  # the bound on the index column, then the tie on the id
        conditions.add(f"{alias}.created_at <= ?", after[0])
        where.add("(e.created_at < ? OR e.id > ?)", after[0], bytes.fromhex(after[1]))
    if recipients is not None:
        allowed = sorted(recipients)
        where.add(_VISIBLE_WRAP.format(_marks(len(allowed)) or "NULL"), *allowed)
    where.add_in("e.id", ids)
    where.add_in("e.pubkey", authors)
    for name in sorted(tags):
        matches, bound_values = _in_values(tags[name])
        where.add(_HAS_TAG.format(matches), name, *bound_values)
    where.add("(e.expiration IS NULL OR e.expiration > ?)", now)
    if alias == "x":
        source = source.format(" AND ".join(start.terms))
        terms, params = where.terms, start.params + where.params
    else:
        terms, params = start.terms + where.terms, start.params + where.params
    sql = f"SELECT {columns} FROM {source} WHERE {' AND '.join(terms)}"  # noqa: S608
    return sql, params, f"{order} DESC, e.id"


class _Where:
    """The terms of a WHERE clause, AND'ed, and their parameters."""

    def __init__(self) -> None:
        self.terms: list[str] = []
        self.params: list[object] = []

    def add(self, term: str, *params: object) -> None:
        self.terms.append(term)
        self.params += params

    def add_in(self, column: str, values: Sequence[object] | None) -> None:
        if values is not None:
            self.add(f"{column} IN ({_marks(len(values))})", *values)


def _bind(
    f: Filter,
) -> tuple[list[bytes] | None, list[bytes] | None, dict[str, list[str]]] | None:
    """The filter's lists as SQLite parameters; None if no event can match."""
    if f.is_empty():
        return None
    ids = None if f.ids is None else _blobs(f.ids)
    authors = None if f.authors is None else _blobs(f.authors)
    tags = {name: _texts(values) for name, values in f.tags.items()}
    if ids == [] or authors == [] or not all(tags.values()):
        return None
    return ids, authors, tags


def _in_values(values: list[str]) -> tuple[str, list[object]]:
    """``IN (...)`` for tag values: placeholders, or one JSON array when there are many
    (a filter may hold thousands of values, more than SQLite binds in one statement)."""
    if len(values) > _INLINE_VALUES:
        return "IN (SELECT value FROM json_each(?))", [orjson.dumps(values).decode()]
    return f"IN ({_marks(len(values))})", list(values)


def _blobs(values: Iterable[str]) -> list[bytes]:
    """Hex ids or keys as stored; a value that is not 64 hex digits matches nothing."""
    return sorted(bytes.fromhex(v) for v in values if is_hex(v, 64))


def _texts(values: Iterable[str]) -> list[str]:
    """Tag values SQLite can bind (a lone surrogate cannot be stored, so matches nothing)."""
    out = []
    for value in values:
        try:
            value.encode()
        except UnicodeEncodeError:
            continue
        out.append(value)
    return sorted(out)
