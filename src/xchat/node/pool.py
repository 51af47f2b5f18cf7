"""The relay pool: every configured relay, kept connected, read from and written to.

Theory of operation. :class:`RelayPool` is the node's one handle on relays. It owns:

* a :class:`~xchat.node.reader.Reader` per *reading* relay (our own inbox relays): a
  worker that connects, authenticates (NIP-42) as every key we read mail for,
  subscribes to their gift wraps, catches up page by page and reconnects with a
  jittered backoff (the whole story is in ``xchat.node.reader``; one connection of a
  reader is a lane, ``xchat.node.lane``). :meth:`RelayPool.complete_since` says since
  when every reading relay has completed a catch-up of all keys: the node's evidence
  that a missing envelope is on none of them. Events from all relays pass one
  de-duplication by id before the node sees them.
* the publishing connections (``xchat.node.writers``). Publishing gift wraps
  (:meth:`RelayPool.publish`) goes to any relays (ours, or a contact's inbox relays)
  over connections of their own, never authenticated (the reader's connection is
  authenticated as our identity: a relay would see who sends each gift wrap); they are
  opened on demand, closed after a minute idle, and carry gift wraps only. Only a relay
  that answers ``auth-required`` gets the event again over the reader's connection.
  Events signed by our identity (:meth:`RelayPool.publish_signed`) and lookups
  (:meth:`RelayPool.query`) each go over a one-shot connection of their own
  (``xchat.node.oneshot``), so that no connection carries both a gift wrap and anything
  that names us or our contacts. The caller gets each relay's answer and decides whether
  enough accepted; ``timeout`` bounds the whole attempt, connecting included.
* the health per relay (:class:`~xchat.node.health.RelayHealth`: state, last error,
  consecutive failures, answers, latency, events received), for the API and the UI.

Every connection speaks NIP-01 through :class:`xchat.wire.client.ClientProtocol`, driven
by ``xchat.node.relay_client``. Time and chance are injected: ``clock`` (Unix seconds:
cursors, health times, AUTH ``created_at``), ``monotonic`` (intervals: re-reads, idle
connections, latency) and ``rng`` (bytes, like ``os.urandom``: the backoff's jitter);
the pool reads no clock or random source of its own (asyncio's timeouts aside). Nothing
here trusts a relay: events are handed over as parsed, and the node authenticates
everything it opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import aiohttp

from xchat.crypto.keys import Rng, SecretKey
from xchat.node.health import RelayHealth
from xchat.node.oneshot import RelayLimits, fetch_limits, publish_once, query_once
from xchat.node.reader import (
    BACKOFF_MAX,
    BACKOFF_START,
    CURSOR_SLACK,
    RESYNC_INTERVAL,
    ReadContext,
    Reader,
)
from xchat.node.relay_client import PublishResult, RelayConnection, RelayError, reap
from xchat.node.writers import Writers
from xchat.wire.event import Event

__all__ = [
    "BACKOFF_MAX",
    "BACKOFF_START",
    "CURSOR_SLACK",
    "RESYNC_INTERVAL",
    "RelayHealth",
    "RelayPool",
]

log = logging.getLogger("xchat.node")

#: Event ids remembered for de-duplication across relays (the oldest is forgotten first).
_SEEN_CAPACITY: Final = 200_000


class RelayPool:
    """See the module docstring.

    ``keys()`` returns the keys we read mail for (identity and mailbox keys) and is
    called on every (re)subscription; call :meth:`keys_changed` when it (or
    ``extra_filters()``) would return something new. ``on_event(relay_url, event)``
    receives each new event once.
    """

    def __init__(
        self,
        keys: Callable[[], dict[str, SecretKey]],
        on_event: Callable[[str, Event], Awaitable[None]],
        *,
        extra_filters: Callable[[], list[dict[str, Any]]] | None = None,
        cursor_store: Callable[[str, int], None] | None = None,
        cursor_load: Callable[[str], int | None] | None = None,
        resync_interval: float | None = RESYNC_INTERVAL,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        rng: Rng = os.urandom,
    ) -> None:
        self._on_event = on_event
        self._cursor_load = cursor_load
        self._clock = clock
        self._monotonic = monotonic
        self._context = ReadContext(
            keys=keys,
            extra_filters=extra_filters or (lambda: []),
            deliver=self._deliver,
            connect=self._connect,
            changed=self._changed,
            closed=lambda: self._closed,
            cursor_store=cursor_store,
            resync_interval=resync_interval,
            clock=clock,
            monotonic=monotonic,
            rng=rng,
        )
        self._readers: dict[str, Reader] = {}
        self._health: dict[str, RelayHealth] = {}
        self._writers = Writers(self._connect, self._health, monotonic)
        self._limits: dict[str, RelayLimits] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._session: aiohttp.ClientSession | None = None
        self._janitor: asyncio.Task[None] | None = None
        self._closed = False
        self.on_health_change: Callable[[RelayHealth], None] | None = None

    # -- lifecycle --------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        """The one HTTP session every connection shares (so that none owns its own)."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def _connect(self, url: str, timeout: float) -> RelayConnection:
        return await RelayConnection.connect(
            url, session=self._http(), timeout=timeout, clock=self._clock
        )

    async def start(self, urls: Sequence[str]) -> None:
        self._http()
        for url in urls:
            self.add_relay(url)
        if self._janitor is None:
            self._janitor = asyncio.create_task(self._writers.run_janitor(), name="pool-janitor")

    async def close(self) -> None:
        """Stop every worker and close every connection; the pool cannot be restarted."""
        self._closed = True
        tasks = [r.task for r in self._readers.values() if r.task is not None]
        if self._janitor is not None:
            tasks.append(self._janitor)
        await reap(*tasks)
        for reader in self._readers.values():
            await reader.close_lanes()
        await self._writers.close()
        if self._session is not None:
            await self._session.close()

    def add_relay(self, url: str) -> None:
        """Start reading from (and writing to) ``url``."""
        if url in self._readers or self._closed:
            return
        health = self._health.get(url) or RelayHealth(url, reading=True)
        health.reading = True
        health.state = "connecting"
        self._health[url] = health
        reader = Reader(url, health, self._context)
        if self._cursor_load is not None:
            reader.cursor = self._cursor_load(url)
        self._readers[url] = reader
        reader.start()

    async def remove_relay(self, url: str) -> None:
        reader = self._readers.pop(url, None)
        if reader is None:
            return
        await reader.stop()
        self._health.pop(url, None)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def reading(self) -> list[str]:
        return list(self._readers)

    def health(self) -> list[RelayHealth]:
        return [self._health[url] for url in sorted(self._health)]

    def keys_changed(self) -> None:
        """Authenticate as new keys and re-subscribe everywhere (new session, new epoch).

        A reader waiting to reconnect retries at once.
        """
        for reader in self._readers.values():
            reader.keys_changed()

    def _changed(self, health: RelayHealth) -> None:
        if self.on_health_change is not None:
            with contextlib.suppress(Exception):
                self.on_health_change(health)

    # -- reading --------------------------------------------------------------------

    def complete_since(self, down_for: float | None = None) -> int | None:
        """The time since which every reading relay has read back everything it
        stored: each completed a catch-up of all keys that began then or later. None
        while some reading relay has not (it is connecting or catching up, or it is
        down, unless every connection to it has failed for over ``down_for`` seconds:
        then it is left out, so one dead relay does not hold the others' evidence back
        for ever). None too when no relay is left."""
        now = self._clock()
        times = [
            reader.complete_since
            for reader in self._readers.values()
            if down_for is None or reader.down_since is None or now - reader.down_since <= down_for
        ]
        if not times or any(t is None for t in times):
            return None
        return min(t for t in times if t is not None)

    def forget(self, event_id: str) -> None:
        """Let ``event_id`` be delivered again when a relay sends it next (the node did
        not keep it, and wants it from the next re-read)."""
        self._seen.pop(event_id, None)

    async def _deliver(self, url: str, event: Event) -> None:
        """Hand a reader's event to ``on_event`` unless some relay sent it already."""
        if event.id in self._seen:
            return
        self._seen[event.id] = None
        if len(self._seen) > _SEEN_CAPACITY:
            self._seen.popitem(last=False)
        try:
            await self._on_event(url, event)
        except Exception:
            log.exception("handling an incoming event failed")

    # -- writing -----------------------------------------------------------------------

    async def publish_one(
        self, url: str, event: Event, timeout: float = 10.0, *, signed: bool = False
    ) -> PublishResult:
        """Publish to one relay; RelayError if it cannot be reached or does not answer
        within ``timeout`` (connecting included). A gift wrap goes over the publishing
        connection; ``signed`` (an event signed by our identity) over a one-shot one."""
        started = self._monotonic()
        try:
            async with asyncio.timeout(timeout):
                if signed:
                    result = await publish_once(self._http(), url, event, timeout)
                else:
                    conn = await self._writers.get(url)
                    result = await conn.publish(event, timeout)
                reader = self._readers.get(url)
                if (
                    not result.accepted
                    and result.message.startswith("auth-required")
                    and reader is not None
                    and reader.conn is not None
                    and not reader.conn.closed
                ):
                    # a relay that takes events only from authenticated clients: the
                    # reader's connection, then (it learns that the sender is us)
                    result = await reader.conn.publish(event, timeout)
        except (RelayError, TimeoutError) as exc:
            if isinstance(exc, RelayError):
                error = exc
            else:
                error = RelayError(f"{url} did not answer within {timeout} s")
            health = self._health.get(url)
            if health is not None:
                health.refused += 1
                health.last_error = str(error)[:300]
            raise error from None
        health = self._health.get(url)
        if health is not None:
            health.latency_ms = (self._monotonic() - started) * 1000
            if result.accepted:
                health.accepted += 1
            else:
                health.refused += 1
        return result

    async def publish(
        self, event: Event, urls: Sequence[str], timeout: float = 10.0, *, signed: bool = False
    ) -> dict[str, PublishResult | str]:
        """Publish to every relay in ``urls`` at once: each one's answer or error text,
        all within about ``timeout``. Gift wraps only, unless ``signed`` (see
        :meth:`publish_signed`)."""

        async def one(url: str) -> PublishResult | str:
            try:
                return await self.publish_one(url, event, timeout, signed=signed)
            except RelayError as exc:
                return str(exc)

        urls = list(dict.fromkeys(urls))
        results = await asyncio.gather(*(one(url) for url in urls))
        return dict(zip(urls, results, strict=True))

    async def publish_signed(
        self, event: Event, urls: Sequence[str], timeout: float = 10.0
    ) -> dict[str, PublishResult | str]:
        """Publish an event signed by our identity (bundle, relay list): to each relay
        over a connection of its own, closed afterwards, never one that carries gift
        wraps (``xchat.node.oneshot``)."""
        return await self.publish(event, urls, timeout, signed=True)

    async def query(
        self, filters: list[dict[str, Any]], urls: Sequence[str], timeout: float = 5.0
    ) -> list[Event]:
        """Stored events from several relays, merged without duplicates; a relay that
        fails or does not answer within ``timeout`` (connecting included) adds nothing.
        Each relay is asked over a one-shot connection (a lookup names whom we are
        about to write to: it must not share a connection with our gift wraps)."""

        async def one(url: str) -> list[Event]:
            try:
                return await query_once(self._http(), url, filters, timeout)
            except (RelayError, TimeoutError):
                return []

        merged: dict[str, Event] = {}
        for events in await asyncio.gather(*(one(url) for url in dict.fromkeys(urls))):
            for event in events:
                merged.setdefault(event.id, event)
        return list(merged.values())

    async def limits(self, url: str, timeout: float) -> RelayLimits:
        """The relay's published limits (NIP-11), read once per pool; the defaults if it
        does not answer within ``timeout`` (asked again next time)."""
        known = self._limits.get(url)
        if known is not None:
            return known
        limits = await fetch_limits(self._http(), url, timeout)
        if limits.published:
            self._limits[url] = limits
        return limits

    def set_warning(self, url: str, warning: str) -> None:
        """Show (or with "" clear) a warning on a relay's health."""
        health = self._health.get(url)
        if health is not None and health.warning != warning:
            health.warning = warning[:300]
            self._changed(health)
