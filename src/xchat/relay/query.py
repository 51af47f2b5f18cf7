"""Stored results of a REQ, streamed with back-pressure and bounded memory.

Theory of operation. A REQ's filters are read from the store as keyset pages of keys
``(created_at, id)`` (:meth:`EventStore.query_keys`, at most ``KEY_PAGE`` keys per filter
at a time, each filter counting its own ``limit``), merged newest first (ties: lowest id)
with duplicates dropped, as NIP-01 asks of one answer to several filters. The JSON of the
merged events is then loaded in batches bounded by count and by bytes
(:meth:`EventStore.load`), and a batch is loaded only when the connection has less than a
window of bytes still unsent: the relay waits on its writer instead of buffering, so a
client that reads at any speed gets everything, and one that stops reading is dropped by
the writer's timeout (``write_timeout``), never by the size of what it asked for.

Memory of one query: ``KEY_PAGE`` keys per filter (10 filters x 200 keys, about 0.3 MB),
one batch of JSON (``query_batch_bytes``, exceeded by less than one event), and at most a
window plus a batch of queued frames per stream (``query_window_bytes``). Store calls of
all connections share a semaphore (``max_concurrent_queries``) and each connection serves
at most ``max_queries_per_connection`` REQs from the store at a time; the others wait
their turn, holding only their filters.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from typing import Any, Final, Protocol

from xchat.relay.config import RelayConfig
from xchat.store.events import KIND_GIFT_WRAP, EventStore, Key
from xchat.wire import messages as m
from xchat.wire.filter import Filter

__all__ = [
    "KEY_PAGE",
    "QueryLimits",
    "gift_wrap_refusal",
    "query_turn",
    "serve_stored",
    "stored_results",
    "with_limits",
]

log = logging.getLogger("xchat.relay")

#: Keys read from the store per filter and page.
KEY_PAGE: Final = 200


class QueryLimits(Protocol):
    """The relay limits a stream obeys (:class:`xchat.relay.config.RelayLimits`)."""

    @property
    def query_batch_events(self) -> int: ...
    @property
    def query_batch_bytes(self) -> int: ...
    @property
    def query_window_bytes(self) -> int: ...


class _Cursor:
    """One filter's position: the keys read but not merged yet, and how many it may add."""

    __slots__ = ("after", "done", "filter", "keys", "left", "page")

    def __init__(self, f: Filter, page: int) -> None:
        self.filter = f
        self.page = page
        self.left = 0 if f.limit is None else f.limit
        self.after: Key | None = None
        self.keys: deque[Key] = deque()
        self.done = self.left <= 0

    async def next(
        self,
        store: EventStore,
        now: int,
        recipients: frozenset[str] | None,
        gate: asyncio.Semaphore,
    ) -> Key | None:
        if not self.keys and not self.done:
            wanted = min(self.page, self.left)
            async with gate:
                page = await store.query_keys(
                    self.filter, now, after=self.after, limit=wanted, recipients=recipients
                )
            self.left -= len(page)
            self.done = len(page) < wanted or self.left <= 0
            if page:
                self.after = page[-1]
                self.keys.extend(page)
        return self.keys.popleft() if self.keys else None


async def stored_results(
    store: EventStore,
    filters: Sequence[Filter],
    now: int,
    *,
    recipients: frozenset[str] | None,
    limits: QueryLimits,
    gate: asyncio.Semaphore,
    key_page: int = KEY_PAGE,
) -> AsyncGenerator[list[str], None]:
    """Batches of stored event JSON matching ``filters`` (each with its ``limit`` set),
    newest first, no duplicates; see the module docstring."""
    cursors = [_Cursor(f, key_page) for f in filters]
    heap: list[tuple[int, str, int]] = []
    for index, cursor in enumerate(cursors):
        key = await cursor.next(store, now, recipients, gate)
        if key is not None:
            heap.append((-key[0], key[1], index))
    heapq.heapify(heap)
    pending: deque[str] = deque()
    last: tuple[int, str] | None = None
    while heap or pending:
        while heap and len(pending) < limits.query_batch_events:
            negated, event_id, index = heapq.heappop(heap)
            if (negated, event_id) != last:  # one event matched by two filters
                pending.append(event_id)
                last = (negated, event_id)
            key = await cursors[index].next(store, now, recipients, gate)
            if key is not None:
                heapq.heappush(heap, (-key[0], key[1], index))
        async with gate:
            consumed, texts = await store.load(list(pending), now, limits.query_batch_bytes)
        for _ in range(consumed):
            pending.popleft()
        if texts:
            yield texts


@contextlib.asynccontextmanager
async def query_turn(conn: Any, most: int) -> AsyncIterator[None]:
    """One of ``most`` turns to read the store for ``conn`` (its ``queries`` semaphore,
    made on first use and dropped when no REQ holds or awaits it: idle connections are
    most of a relay's memory; ``querying`` counts them)."""
    if conn.queries is None:
        conn.queries = asyncio.Semaphore(most)
    queries = conn.queries
    conn.querying += 1
    try:
        async with queries:
            yield
    finally:
        conn.querying -= 1
        if conn.querying == 0:
            conn.queries = None


class StreamTarget(Protocol):
    """What :func:`serve_stored` needs of a connection."""

    @property
    def closed(self) -> bool: ...
    def send(self, text: str) -> None: ...
    async def wait_unsent_below(self, limit: int) -> None: ...


async def serve_stored(
    conn: StreamTarget,
    sub_id: str,
    current: object,
    still_current: Callable[[str], object],
    batches: AsyncGenerator[list[str], None],
    window: int,
) -> bool:
    """Send ``batches`` as EVENT messages, then EOSE, while the subscription is current.

    ``still_current`` is a callable returning the connection's subscription for
    ``sub_id`` now; sending stops (no EOSE) once it is no longer ``current`` (closed or
    replaced) or the connection closed. Each batch is loaded only when fewer than
    ``window`` bytes wait to be sent. True if EOSE was sent.
    """
    try:
        while True:
            await conn.wait_unsent_below(window)
            if conn.closed or still_current(sub_id) is not current:
                return False
            texts = await anext(batches, None)
            if texts is None:
                break
            if conn.closed or still_current(sub_id) is not current:
                return False
            for text in texts:
                conn.send(m.event_message(sub_id, text))
    finally:
        await batches.aclose()
    conn.send(m.eose_message(sub_id))
    return True


def gift_wrap_refusal(
    config: RelayConfig,
    authed: frozenset[str] | set[str],
    filters: Sequence[Filter],
    *,
    counting: bool = False,
) -> str | None:
    """A filter that asks for gift wraps must name only recipients we authenticated.

    Any other filter is answered without the gift wraps of keys not authenticated (the
    store leaves them out, for COUNT as for REQ); one that names others' gift wraps,
    or would count gift wraps to a ``#p`` not authenticated, is refused instead, so the
    client learns why rather than getting a silent zero.
    """
    if not config.protect_gift_wraps:
        return None
    for f in filters:
        recipients = f.tags.get("p")
        explicit = f.kinds is not None and KIND_GIFT_WRAP in f.kinds
        implicit = counting and f.kinds is None and recipients is not None
        if not (explicit or implicit):
            continue
        if recipients is None or not recipients <= authed:
            return (
                "auth-required: gift wraps are served only to their recipient; "
                "authenticate (NIP-42) as each key in #p"
            )
    return None


def with_limits(filters: Sequence[Filter], default: int, most: int) -> list[Filter]:
    """The filters with the limit the relay applies: ``default`` if none, at most ``most``."""
    out = []
    for f in filters:
        wanted = default if f.limit is None else min(f.limit, most)
        out.append(Filter(f.ids, f.authors, f.kinds, f.tags, f.since, f.until, wanted))
    return out
