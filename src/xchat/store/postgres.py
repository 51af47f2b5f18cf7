"""The relay's event store on PostgreSQL, through an asyncpg connection pool.

The same design as :mod:`xchat.store.sqlite`, with set-wise statements so that a batch
costs a handful of round trips: ``save_batch`` is one transaction (committed with the
server's default ``synchronous_commit = on``, so durable on return); events are checked
with ``= ANY($1)`` lookups, inserted with ``unnest`` arrays, and deletion requests cut
the batch as in SQLite so later events see their effect. Writes are serialized: in this
process by a lock, across processes by a transaction-scoped advisory lock, so two
batches never both decide that they hold the newest version of a replaceable event.

Tag values and ``d`` tags are stored as UTF-8 bytes (``TEXT`` cannot hold NUL), and a
value longer than 512 bytes as ``0xff`` followed by its SHA-256, which keeps every btree
entry under PostgreSQL's limit of about 2.7 kB; 0xff never occurs in UTF-8, so such a
key never equals a short value.

Schema and its versions: :mod:`xchat.store.migrations`. Spec: NIP-01, NIP-09, NIP-40,
NIP-59 (see :mod:`xchat.store.events`).
"""

from __future__ import annotations

import asyncio
import hashlib
import string
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import asyncpg
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
from xchat.store.migrations import POSTGRES_MIGRATIONS, pending
from xchat.wire.event import Event, is_hex
from xchat.wire.filter import Filter

__all__ = ["PostgresEventStore"]

_TAG_NAMES: Final = frozenset(string.ascii_letters)
_OUTCOME: Final = {status: SaveOutcome(status) for status in SaveStatus}
_LOCK: Final = 0x7863686174  # "xchat": the advisory lock that serializes writers
_LONG_VALUE: Final = 512  # bytes
_PURGE_CHUNK: Final = 1000

_INSERT_EVENTS: Final = """INSERT INTO events
    (id, pubkey, created_at, kind, d_tag, expiration, received_at, json)
    SELECT id, pubkey, created_at, kind, d_tag, expiration, $7, json
    FROM unnest($1::bytea[], $2::bytea[], $3::bigint[], $4::int[], $5::bytea[], $6::bigint[],
        $8::text[]) AS r (id, pubkey, created_at, kind, d_tag, expiration, json)
    RETURNING id, seq"""
_INSERT_TAGS: Final = """INSERT INTO tags (event_seq, name, value, created_at, kind)
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::bytea[], $4::bigint[], $5::int[])"""
_LOAD_VERSIONS: Final = """SELECT e.kind, e.pubkey, e.d_tag, e.seq, e.created_at, e.id
    FROM unnest($1::int[], $2::bytea[], $3::bytea[]) AS k (kind, pubkey, d_tag)
    JOIN events e ON e.kind = k.kind AND e.pubkey = k.pubkey AND e.d_tag = k.d_tag"""
_LOAD_DELETED: Final = """SELECT a.kind, a.pubkey, a.d_tag, a.until
    FROM unnest($1::int[], $2::bytea[], $3::bytea[]) AS k (kind, pubkey, d_tag)
    JOIN deleted_addresses a ON a.kind = k.kind AND a.pubkey = k.pubkey AND a.d_tag = k.d_tag"""
# NIP-09: the author's own events, or (NIP-59) gift wraps addressed to the author; never
# a deletion request.
_DELETE_BY_ID: Final = """DELETE FROM events e WHERE e.id = ANY($1::bytea[]) AND e.kind <> 5
    AND (e.pubkey = $2 OR (e.kind = 1059 AND EXISTS (SELECT 1 FROM tags t
        WHERE t.event_seq = e.seq AND t.name = 'p' AND t.value = $3)))"""
_REMEMBER_IDS: Final = """INSERT INTO deleted_ids (id, pubkey)
    SELECT unnest($1::bytea[]), $2 ON CONFLICT DO NOTHING"""
_DELETE_ADDRESS: Final = """DELETE FROM events
    WHERE kind = $1 AND pubkey = $2 AND d_tag = $3 AND created_at <= $4"""
_REMEMBER_ADDRESS: Final = """INSERT INTO deleted_addresses (kind, pubkey, d_tag, until)
    VALUES ($1, $2, $3, $4) ON CONFLICT (kind, pubkey, d_tag)
    DO UPDATE SET until = greatest(deleted_addresses.until, excluded.until)"""
_PURGE_EXPIRED: Final = """DELETE FROM events WHERE seq IN (SELECT seq FROM events
    WHERE expiration IS NOT NULL AND expiration <= $1 LIMIT $2)"""
_PURGE_GIFT_WRAPS: Final = """DELETE FROM events WHERE seq IN (SELECT seq FROM events
    WHERE kind = 1059 AND received_at < $1 LIMIT $2)"""
# Query parts on tags (formatted with terms of placeholders only).
_FROM_TAG: Final = "tags t JOIN events e ON e.seq = t.event_seq"
_FROM_TAGS: Final = (
    "(SELECT DISTINCT x.event_seq FROM tags x WHERE {}) m JOIN events e ON e.seq = m.event_seq"
)
_HAS_TAG: Final = (
    "EXISTS (SELECT 1 FROM tags x WHERE x.event_seq = e.seq AND x.name = {} AND x.value = ANY({}))"
)
# NIP-59: a gift wrap is visible only to a recipient named in one of its p tags.
_VISIBLE_WRAP: Final = (
    "(e.kind <> 1059 OR EXISTS (SELECT 1 FROM tags r"
    " WHERE r.event_seq = e.seq AND r.name = 'p' AND r.value = ANY({})))"
)
# octet_length reads a TOASTed value's header, not the value: sizes cost no I/O.
_SIZES: Final = """SELECT id, octet_length(json) FROM events
    WHERE id = ANY($1::bytea[]) AND (expiration IS NULL OR expiration > $2::bigint)"""
_JSON: Final = "SELECT id, json FROM events WHERE id = ANY($1::bytea[])"


class PostgresEventStore:
    """:class:`~xchat.store.events.EventStore` in a PostgreSQL database.

    ``dsn`` is a libpq connection string or URL; ``pool_size`` bounds the connections
    (one writes at a time, the others serve queries).
    """

    def __init__(self, dsn: str, *, pool_size: int = 4) -> None:
        if pool_size < 2:
            raise LocalProtocolError("a PostgreSQL event store needs at least two connections")
        self._dsn = dsn
        self._pool_size = pool_size
        self._pool: Any = None
        self._write_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return "PostgresEventStore(...)"  # the DSN may hold a password

    async def open(self) -> None:
        try:
            pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=self._pool_size)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise LocalProtocolError(f"cannot connect to the event database: {exc}") from exc
        try:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
                for step in pending(await _schema_version(conn), POSTGRES_MIGRATIONS):
                    for statement in step.statements:
                        await conn.execute(statement)
                    await conn.execute(
                        "INSERT INTO meta (key, value) VALUES ('schema_version', $1)"
                        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        step.version,
                    )
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            async with self._write_lock:  # let a batch in progress finish
                await pool.close()

    def _connection(self) -> Any:
        if self._pool is None:
            raise LocalProtocolError("the event store is not open")
        return self._pool.acquire()

    async def save_batch(self, events: Sequence[StoredEvent], now: int) -> list[SaveOutcome]:
        if not events:
            return []
        if any(is_ephemeral(stored.event.kind) for stored in events):
            raise LocalProtocolError("ephemeral events (kinds 20000-29999) are never stored")
        async with self._write_lock, self._connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
            return await _save_batch(conn, list(events), now)

    async def query(self, filters: Sequence[Filter], now: int, max_limit: int) -> list[StoredEvent]:
        parts: list[str] = []
        sql = _Sql()
        for f in filters:
            limit = max_limit if f.limit is None else min(f.limit, max_limit)
            select = _select(sql, f, now, "e.json") if limit > 0 else None
            if select is not None:
                text, order = select
                parts.append(f"({text} ORDER BY {order} LIMIT {sql.param(limit)})")
        if not parts:
            return []
        async with self._connection() as conn:
            rows = await conn.fetch(" UNION ALL ".join(parts), *sql.params)
        found: dict[str, StoredEvent] = {}
        for row in rows:
            stored = _load(row[0])
            found.setdefault(stored.event.id, stored)
        result = list(found.values())
        if len(parts) > 1:
            result.sort(key=lambda s: (-s.event.created_at, s.event.id))
        return result

    async def query_keys(
        self,
        f: Filter,
        now: int,
        *,
        after: Key | None,
        limit: int,
        recipients: frozenset[str] | None = None,
    ) -> list[Key]:
        sql = _Sql()
        select = (
            _select(sql, f, now, "e.created_at, e.id", after, recipients) if limit > 0 else None
        )
        if select is None:
            return []
        text, order = select
        async with self._connection() as conn:
            rows = await conn.fetch(
                f"{text} ORDER BY {order} LIMIT {sql.param(limit)}", *sql.params
            )
        return [(int(row[0]), bytes(row[1]).hex()) for row in rows]

    async def load(self, ids: Sequence[str], now: int, max_bytes: int) -> tuple[int, list[str]]:
        """Sizes first (no I/O for large values), then the JSON of the prefix that fits."""
        wanted = [bytes.fromhex(i) for i in ids if is_hex(i, 64)]
        if not wanted:
            return len(ids), []
        async with self._connection() as conn:
            sizes = {bytes(row[0]): int(row[1]) for row in await conn.fetch(_SIZES, wanted, now)}
            take: list[bytes] = []
            total = consumed = 0
            for event_id in ids:
                if total >= max_bytes:
                    break
                consumed += 1
                key = bytes.fromhex(event_id) if is_hex(event_id, 64) else b""
                if key in sizes:
                    take.append(key)
                    total += sizes[key]
            rows = await conn.fetch(_JSON, take) if take else []
        found = {bytes(row[0]): str(row[1]) for row in rows}
        return consumed, [found[key] for key in take if key in found]

    async def count(
        self, filters: Sequence[Filter], now: int, recipients: frozenset[str] | None = None
    ) -> int:
        sql = _Sql()
        selects = (_select(sql, f, now, "e.seq", None, recipients) for f in filters)
        parts = [s[0] for s in selects if s is not None]
        if not parts:
            return 0
        async with self._connection() as conn:
            value = await conn.fetchval(
                f"SELECT count(*) FROM ({' UNION '.join(parts)}) AS matches",  # noqa: S608
                *sql.params,
            )
        return int(value)

    async def purge(self, now: int, gift_wrap_max_age: int) -> int:
        total = 0
        for statement, bound in (
            (_PURGE_EXPIRED, now),
            (_PURGE_GIFT_WRAPS, now - gift_wrap_max_age),
        ):
            while True:  # in chunks, each its own transaction, so batches get in between
                async with self._write_lock, self._connection() as conn, conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
                    status = await conn.execute(statement, bound, _PURGE_CHUNK)
                deleted = int(status.split()[-1])
                total += deleted
                if deleted < _PURGE_CHUNK:
                    break
        return total

    async def schema_version(self) -> int:
        async with self._connection() as conn:
            return await _schema_version(conn)


async def _schema_version(conn: Any) -> int:
    """The version recorded in ``meta``, or -1 for an empty database."""
    if await conn.fetchval("SELECT to_regclass('meta')") is None:
        tables = await conn.fetchval(
            "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"
        )
        if tables:
            raise LocalProtocolError("the database is not an X Chat event database")
        return -1
    value = await conn.fetchval("SELECT value FROM meta WHERE key = 'schema_version'")
    if value is None:
        raise LocalProtocolError("the event database has no schema version")
    return int(value)


# -- writing -------------------------------------------------------------------------------


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

    deleted_until: int | None = None
    versions: list[_Version] = field(default_factory=list)


@dataclass(slots=True)
class _Pending:
    id: bytes
    event: Event
    pubkey: bytes
    d: bytes | None
    json: str


async def _save_batch(conn: Any, events: list[StoredEvent], now: int) -> list[SaveOutcome]:
    outcomes: list[SaveOutcome] = []
    start = 0
    while start < len(events):
        end = start
        while end < len(events) and events[end].event.kind != KIND_DELETION:
            end += 1
        if end > start:
            await _save_run(conn, events[start:end], now, outcomes)
        if end < len(events):
            await _save_deletion(conn, events[end], now, outcomes)
            end += 1
        start = end
    return outcomes


async def _save_run(
    conn: Any, events: list[StoredEvent], now: int, outcomes: list[SaveOutcome]
) -> None:
    """Store a run of events that holds no deletion request."""
    ids = [bytes.fromhex(stored.event.id) for stored in events]
    pubkeys = [bytes.fromhex(stored.event.pubkey) for stored in events]
    ds = [_address_d(stored.event) for stored in events]
    run = _Run()
    await run.load(conn, events, ids, pubkeys, ds)
    for stored, event_id, pubkey, d in zip(events, ids, pubkeys, ds, strict=True):
        status = run.decide(stored.event, event_id, pubkey, d)
        outcomes.append(_OUTCOME[status])
        if status is SaveStatus.STORED or status is SaveStatus.REPLACED:
            run.pending.append(_Pending(event_id, stored.event, pubkey, d, stored.json))
            run.present.add(event_id)
    if run.superseded:
        await conn.execute("DELETE FROM events WHERE seq = ANY($1::bigint[])", run.superseded)
    await _insert(conn, [p for p in run.pending if p is not None], now)


class _Run:
    """The state of one run: what the database held at its start, and what the run adds."""

    def __init__(self) -> None:
        self.present: set[bytes] = set()
        self.tombstones: dict[bytes, set[bytes]] = {}
        self.addresses: dict[tuple[int, bytes, bytes], _Address] = {}
        self.pending: list[_Pending | None] = []
        self.superseded: list[int] = []

    async def load(
        self,
        conn: Any,
        events: list[StoredEvent],
        ids: list[bytes],
        pubkeys: list[bytes],
        ds: list[bytes | None],
    ) -> None:
        rows = await conn.fetch("SELECT id FROM events WHERE id = ANY($1::bytea[])", ids)
        self.present = {bytes(row[0]) for row in rows}
        rows = await conn.fetch(
            "SELECT id, pubkey FROM deleted_ids WHERE id = ANY($1::bytea[])", ids
        )
        for row in rows:
            self.tombstones.setdefault(bytes(row[0]), set()).add(bytes(row[1]))
        keys = sorted(
            {
                (stored.event.kind, pubkey, d)
                for stored, pubkey, d in zip(events, pubkeys, ds, strict=True)
                if d is not None
            }
        )
        if not keys:
            return
        self.addresses = {key: _Address() for key in keys}
        columns = [list(column) for column in zip(*keys, strict=True)]
        for row in await conn.fetch(_LOAD_DELETED, *columns):
            self.addresses[(row[0], bytes(row[1]), bytes(row[2]))].deleted_until = row[3]
        for row in await conn.fetch(_LOAD_VERSIONS, *columns):
            self.addresses[(row[0], bytes(row[1]), bytes(row[2]))].versions.append(
                _Version(row[4], bytes(row[5]).hex(), row[3], None)
            )

    def decide(self, event: Event, event_id: bytes, pubkey: bytes, d: bytes | None) -> SaveStatus:
        """The outcome for the next event; a version it replaces is dropped."""
        if event_id in self.present:
            return SaveStatus.DUPLICATE
        blockers = self.tombstones.get(event_id)
        if blockers is not None and _blocked(event, pubkey, blockers):
            return SaveStatus.DELETED
        if d is None:
            return SaveStatus.STORED
        address = self.addresses[(event.kind, pubkey, d)]
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
                self.superseded.append(version.seq)
            elif version.pending is not None:
                self.pending[version.pending] = None
        return SaveStatus.REPLACED if replaced else SaveStatus.STORED


async def _insert(conn: Any, rows: list[_Pending], now: int) -> None:
    if not rows:
        return
    returned = await conn.fetch(
        _INSERT_EVENTS,
        [p.id for p in rows],
        [p.pubkey for p in rows],
        [p.event.created_at for p in rows],
        [p.event.kind for p in rows],
        [p.d for p in rows],
        [expiration_of(p.event) for p in rows],
        now,
        [p.json for p in rows],
    )
    seqs = {bytes(row[0]): row[1] for row in returned}
    tags: tuple[list[Any], ...] = ([], [], [], [], [])
    for p in rows:
        seq = seqs[p.id]
        for name, value in _indexed(p.event):
            tags[0].append(seq)
            tags[1].append(name)
            tags[2].append(value)
            tags[3].append(p.event.created_at)
            tags[4].append(p.event.kind)
    if tags[0]:
        await conn.execute(_INSERT_TAGS, *tags)


async def _save_deletion(
    conn: Any, stored: StoredEvent, now: int, outcomes: list[SaveOutcome]
) -> None:
    """Store a NIP-09 deletion request and apply it.

    A deletion request is never itself refused or deleted by another (NIP-09).
    """
    event = stored.event
    event_id = bytes.fromhex(event.id)
    if await conn.fetchval("SELECT 1 FROM events WHERE id = $1", event_id) is not None:
        outcomes.append(_OUTCOME[SaveStatus.DUPLICATE])
        return
    pubkey = bytes.fromhex(event.pubkey)
    await _insert(conn, [_Pending(event_id, event, pubkey, None, stored.json)], now)
    targets = sorted({bytes.fromhex(v) for v in event.tag_values("e") if is_hex(v, 64)})
    if targets:
        await conn.execute(_DELETE_BY_ID, targets, pubkey, _key(event.pubkey))
        await conn.execute(_REMEMBER_IDS, targets, pubkey)
    for kind, d in _deleted_addresses(event):
        await conn.execute(_DELETE_ADDRESS, kind, pubkey, d, event.created_at)
        await conn.execute(_REMEMBER_ADDRESS, kind, pubkey, d, event.created_at)
    outcomes.append(_OUTCOME[SaveStatus.STORED])


def _key(value: str) -> bytes:
    """A tag value or d tag as stored: UTF-8, or 0xff and a digest if long."""
    data = value.encode("utf-8", "surrogatepass")
    if len(data) > _LONG_VALUE:
        return b"\xff" + hashlib.sha256(data).digest()
    return data


def _address_d(event: Event) -> bytes | None:
    """The ``d_tag`` column: "" for replaceable kinds, the d tag for addressable ones."""
    if is_replaceable(event.kind):
        return b""
    if is_addressable(event.kind):
        return _key(d_tag(event))
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


def _deleted_addresses(event: Event) -> Iterator[tuple[int, bytes]]:
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
            yield kind, _key(d)


def _indexed(event: Event) -> set[tuple[str, bytes]]:
    """The (name, first value) pairs of single-letter tags, the ones filters can ask for."""
    return {(t[0], _key(t[1])) for t in event.tags if len(t) >= 2 and t[0] in _TAG_NAMES}


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


class _Sql:
    """The parameters of one statement, numbered as they are added."""

    def __init__(self) -> None:
        self.params: list[object] = []

    def param(self, value: object, cast: str = "") -> str:
        self.params.append(value)
        return f"${len(self.params)}{cast}"


def _select(
    sql: _Sql,
    f: Filter,
    now: int,
    columns: str,
    after: Key | None = None,
    recipients: frozenset[str] | None = None,
) -> tuple[str, str] | None:
    """A SELECT of ``columns`` of the unexpired events matching ``f`` and its ORDER BY,
    its parameters added to ``sql``; None if no event can match. ``after`` keeps only
    events after that key in query order (a keyset cursor); ``recipients`` hides gift
    wraps to anyone else.

    The plan is the SQLite one (see ``xchat.store.sqlite._select``): start from the tag
    with the fewest values when there are tags and no ids.
    """
    if f.is_empty():
        return None
    ids = None if f.ids is None else _blobs(f.ids)
    authors = None if f.authors is None else _blobs(f.authors)
    if ids == [] or authors == []:
        return None
    tags = {name: sorted({_key(v) for v in values}) for name, values in f.tags.items()}
    start: list[str] = []
    where: list[str] = []
    if ids is None and tags:
        name = min(tags, key=lambda name: (len(tags[name]), name))
        values = tags.pop(name)
        if len(values) == 1:
            source, order, alias = _FROM_TAG, "t.created_at", "t"
            where.append(f"t.name = {sql.param(name)} AND t.value = {sql.param(values[0])}")
        else:
            source, order, alias = _FROM_TAGS, "e.created_at", "x"
            start.append(
                f"x.name = {sql.param(name)} AND x.value = ANY({sql.param(values, '::bytea[]')})"
            )
    else:
        source, order, alias = "events e", "e.created_at", "e"
    (start if alias == "x" else where).extend(_kind_and_time(sql, f, alias))
    if after is not None:  # the bound on the index column, then the tie on the id
        (start if alias == "x" else where).append(
            f"{alias}.created_at <= {sql.param(after[0], '::bigint')}"
        )
        where.append(
            f"(e.created_at < {sql.param(after[0], '::bigint')}"
            f" OR e.id > {sql.param(bytes.fromhex(after[1]), '::bytea')})"
        )
    if recipients is not None:
        allowed = sorted({_key(r) for r in recipients})
        where.append(_VISIBLE_WRAP.format(sql.param(allowed, "::bytea[]")))
    if alias == "x":
        source = source.format(" AND ".join(start))
    if ids is not None:
        where.append(f"e.id = ANY({sql.param(ids, '::bytea[]')})")
    if authors is not None:
        where.append(f"e.pubkey = ANY({sql.param(authors, '::bytea[]')})")
    for name in sorted(tags):
        where.append(_HAS_TAG.format(sql.param(name), sql.param(tags[name], "::bytea[]")))
    where.append(f"(e.expiration IS NULL OR e.expiration > {sql.param(now, '::bigint')})")
    text = f"SELECT {columns} FROM {source} WHERE {' AND '.join(where)}"  # noqa: S608
    return text, f"{order} DESC, e.id"


def _kind_and_time(sql: _Sql, f: Filter, alias: str) -> Iterator[str]:
    if f.kinds is not None:
        yield f"{alias}.kind = ANY({sql.param(sorted(f.kinds), '::int[]')})"
    if f.since is not None:
        yield f"{alias}.created_at >= {sql.param(f.since, '::bigint')}"
    if f.until is not None:
        yield f"{alias}.created_at <= {sql.param(f.until, '::bigint')}"


def _blobs(values: Iterable[str]) -> list[bytes]:
    """Hex ids or keys as stored; a value that is not 64 hex digits matches nothing."""
    return sorted(bytes.fromhex(v) for v in values if is_hex(v, 64))
