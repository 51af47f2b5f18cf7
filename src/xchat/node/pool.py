"""The relay pool: every configured relay, kept connected, read from and written to.

Theory of operation. Each *reading* relay (our own inbox relays) has a worker task that
connects, authenticates (NIP-42) as every key we read mail for, subscribes to gift
wraps addressed to those keys, catches up on what the relay stored meanwhile, and waits;
when the connection drops it reconnects after a jittered exponential backoff (0.5 s
doubling to 60 s, ±50 %). The backoff starts again from 0.5 s only after a connection
that worked (subscribed and caught up), so a relay that accepts connections and then
drops or refuses them is retried ever more slowly, not in a tight loop.

Authentication is pipelined: every AUTH event is sent, then every OK awaited (a relay
round trip per few hundred keys, not per key). A relay that sends no challenge within a
second, or refuses some keys, is still subscribed to: it may serve gift wraps openly.
If it refuses the subscription (``CLOSED``) with ``auth-required`` and a new challenge
(NIP-42 relays that challenge on demand, as rust-nostr's do), every key authenticates
under that challenge and the worker subscribes again; if it refuses although some keys
were accepted, it takes one key per connection (rust-nostr's: a second AUTH finds the
challenge used up), and the worker reads it over one connection per key from then on
(*lanes*, all connected or reconnected together). Any other refusal counts as a failed
connection: its reason becomes the health's ``last_error`` and the worker backs off.

Catching up. The live subscription asks for no stored events (``limit: 0``); stored
ones are fetched page by page by :class:`~xchat.core.catchup.CatchUp` (``until`` = the
oldest ``created_at`` seen so far, ``limit`` sized so that a page holds about 1 MiB),
because a relay returns at most its own limit per query (ours: 500), newest
``created_at`` first, gift wraps are dated up to two days back at random, and some relays
drop a connection whose answer grows large. A connection that drops in the middle of a
page has what came delivered and its catch-up kept on the reader, so the next
connection resumes it with pages half as large, not from the start. Pages start at a
cursor (the time the last complete catch-up began or the last live event arrived, less
the two days of backdating and ten minutes of clock skew), kept per relay through
``cursor_store``/``cursor_load``. :meth:`RelayPool.complete_since` says since when every
reading relay has completed a catch-up of all keys: the node's evidence that a missing
envelope is on none of them. When the keys change (:meth:`keys_changed`)
the old subscription is closed only after the relay answered the new one (EOSE), so
no mail falls between them, and only new keys are caught up. Events from all relays
pass one de-duplication by id before the node sees them.

Publishing gift wraps (:meth:`RelayPool.publish`) goes to any relays (ours, or a
contact's inbox relays) over connections of its own, never authenticated (the reader's
connection is authenticated as our identity: a relay would see who sends each gift
wrap); they are opened on demand, closed after a minute idle, and carry gift wraps
only. Only a relay that answers ``auth-required`` gets the event again over the
reader's connection. Events signed by our identity (:meth:`RelayPool.publish_signed`)
and lookups (:meth:`RelayPool.query`) each go over a one-shot connection of their own
(``xchat.node.oneshot``), so that no connection carries both a gift wrap and anything
that names us or our contacts. The caller gets each relay's answer and decides whether
enough accepted; ``timeout`` bounds the whole attempt, connecting included.

Health per relay (state, last error, consecutive failures, answers, latency, events
received) is kept for the API and the UI. Nothing here trusts a relay: events are
handed over as parsed, and the node authenticates everything it opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import orjson

from xchat.core.catchup import PAGE_BYTES, CatchUp
from xchat.crypto.keys import SecretKey
from xchat.node.oneshot import RelayLimits, fetch_limits, publish_once, query_once
from xchat.node.relay_client import (
    PublishResult,
    RelayConnection,
    RelayError,
    Subscription,
    reap,
)
from xchat.wire.event import Event
from xchat.wire.kinds import KIND_GIFT_WRAP

__all__ = ["RelayHealth", "RelayPool"]

log = logging.getLogger("xchat.node")

BACKOFF_START: Final = 0.5
BACKOFF_MAX: Final = 60.0
#: Gift wraps are dated up to two days back: a cursor must look that far behind.
CURSOR_SLACK: Final = 2 * 24 * 3600 + 600
#: Connecting (TCP and WebSocket handshake) to a reading relay.
CONNECT_TIMEOUT: Final = 10.0
#: How long a relay has to send its NIP-42 challenge before we subscribe without one.
#: Relays that challenge on connect do so at once; others challenge with a refusal.
CHALLENGE_TIMEOUT: Final = 1.0
#: How long a relay that refused a subscription (``auth-required``) has to challenge.
REFUSAL_CHALLENGE_TIMEOUT: Final = 5.0
#: Authentications after ``auth-required`` refusals on one connection before giving up.
_AUTH_RETRIES: Final = 2
#: How long a batch of AUTH events has for its OKs.
AUTH_TIMEOUT: Final = 10.0
#: How often a connected reader re-reads stored mail (seconds): relays may drop or
#: never send a live event; the re-read finds it. None: never.
RESYNC_INTERVAL: Final = 300.0
#: What :meth:`RelayPool._until_woken` returns when it is time to re-read.
_RESYNC: Final = "\x00resync"
#: One page of stored events while catching up.
QUERY_TIMEOUT: Final = 30.0
#: How long the events already received on a closing subscription may take to hand over.
DRAIN_TIMEOUT: Final = 30.0
_SEEN_CAPACITY: Final = 200_000
_IDLE_CLOSE: Final = 60.0
#: 250 keys of 67 bytes in a filter, 4 filters in a REQ: ~67 KB, under common relays'
#: message limits (ours: 256 KiB) and filter limits (ours: 1000 values, 10 filters).
_KEYS_PER_FILTER: Final = 250
_FILTERS_PER_REQ: Final = 4
#: AUTH events in flight at once on one connection.
_AUTH_BATCH: Final = 256
_WATCH_INTERVAL: Final = 0.25
#: Unfinished catch-ups kept per relay to resume after a dropped connection.
_MAX_RESUMED: Final = 64


@dataclass
class RelayHealth:
    """What the node knows about one relay, for the API and the UI.

    ``state``: ``connecting`` (connecting, authenticating, catching up), ``connected``
    (subscribed and caught up; a relay only written to is ``connected`` once opened),
    ``disconnected`` (waiting ``next_retry_at`` to retry). ``failures`` counts failed
    connections since the last one that worked; ``received`` counts events the relay
    sent us, duplicates of other relays' included. ``warning`` says that the relay
    refused (or did not take) our device bundle or inbox relay list, and why; it is
    cleared once the relay accepts them.
    """

    url: str
    reading: bool
    state: str = "connecting"  # connecting, connected, disconnected
    last_error: str = ""
    failures: int = 0
    accepted: int = 0
    refused: int = 0
    received: int = 0
    latency_ms: float | None = None
    connected_since: float | None = None
    next_retry_at: float | None = None
    warning: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "reading": self.reading,
            "state": self.state,
            "last_error": self.last_error,
            "failures": self.failures,
            "accepted": self.accepted,
            "refused": self.refused,
            "received": self.received,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
            "connected_since": self.connected_since,
            "next_retry_at": self.next_retry_at,
            "warning": self.warning,
        }


@dataclass(eq=False)
class _Lane:
    """One connection of a reader: it reads all the keys, or (a relay that serves one
    authenticated key per connection) just ``only``."""

    conn: RelayConnection
    only: str | None = None
    extra: bool = True  # also subscribes to ``extra_filters``
    authed: set[str] = field(default_factory=set)
    challenge: str | None = None  # the NIP-42 challenge ``authed`` answered
    caught_up: bool = False
    full_since: int | None = None  # when its latest complete catch-up of all keys began
    retries: int = 0  # authentications after auth-required refusals
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # keys_changed()


@dataclass
class _Reader:
    url: str
    health: RelayHealth
    task: asyncio.Task[None] | None = None
    lanes: list[_Lane] = field(default_factory=list)
    #: The relay authenticates one key per connection (rust-nostr's relays): a lane each.
    per_key: bool = False
    lane_keys: frozenset[str] = frozenset()  # the keys the per-key lanes were made for
    cursor: int | None = None
    backoff: float = BACKOFF_START
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # ends a backoff early
    #: Catch-ups cut short by a dropped connection, to resume (by lane key and filters).
    resume: dict[str, CatchUp] = field(default_factory=dict)
    #: Bytes a catch-up page aims at: lowered for good when the relay drops pages.
    page_bytes: int = PAGE_BYTES
    #: When the latest catch-up of every key that was completed on every lane began
    #: (Unix seconds): every event stored before then has been delivered.
    complete_since: int | None = None
    #: Since when (Unix seconds) every connection to it failed; None once one worked.
    down_since: float | None = None

    @property
    def conn(self) -> RelayConnection | None:
        """An open connection to the relay, for writing."""
        return next((lane.conn for lane in self.lanes if not lane.conn.closed), None)

    @property
    def caught_up(self) -> bool:
        """Every event up to now is known to have arrived (every lane live, caught up)."""
        return bool(self.lanes) and all(lane.caught_up for lane in self.lanes)


class _Rebuild(Exception):
    """The reader's lanes must be made again (new keys, or one key per connection)."""


@dataclass
class _Live:
    """The live subscriptions of one lane, and the tasks handing their events over."""

    subs: list[Subscription] = field(default_factory=list)
    pumps: list[asyncio.Task[None]] = field(default_factory=list)


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
    ) -> None:
        self._keys = keys
        self._on_event = on_event
        self._extra_filters = extra_filters or (lambda: [])
        self._cursor_store = cursor_store
        self._cursor_load = cursor_load
        self._resync_interval = resync_interval
        self._readers: dict[str, _Reader] = {}
        self._writers: dict[str, tuple[RelayConnection, float]] = {}
        self._writer_locks: dict[str, asyncio.Lock] = {}
        self._health: dict[str, RelayHealth] = {}
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

    async def start(self, urls: Sequence[str]) -> None:
        self._http()
        for url in urls:
            self.add_relay(url)
        if self._janitor is None:
            self._janitor = asyncio.create_task(self._close_idle_writers(), name="pool-janitor")

    async def close(self) -> None:
        """Stop every worker and close every connection; the pool cannot be restarted."""
        self._closed = True
        tasks = [r.task for r in self._readers.values() if r.task is not None]
        if self._janitor is not None:
            tasks.append(self._janitor)
        await reap(*tasks)
        for reader in self._readers.values():
            for lane in reader.lanes:
                await lane.conn.close()
            reader.lanes = []
        for conn, _ in self._writers.values():
            await conn.close()
        self._writers.clear()
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
        reader = _Reader(url, health)
        if self._cursor_load is not None:
            reader.cursor = self._cursor_load(url)
        self._readers[url] = reader
        reader.task = asyncio.create_task(self._run_reader(reader), name=f"reader {url}")

    async def remove_relay(self, url: str) -> None:
        reader = self._readers.pop(url, None)
        if reader is None:
            return
        if reader.task is not None:
            await reap(reader.task)
        for lane in reader.lanes:
            await lane.conn.close()
        reader.lanes = []
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
            reader.wake.set()
            for lane in reader.lanes:
                lane.wake.set()

    def _changed(self, health: RelayHealth) -> None:
        if self.on_health_change is not None:
            with contextlib.suppress(Exception):
                self.on_health_change(health)

    # -- reading --------------------------------------------------------------------

    async def _run_reader(self, reader: _Reader) -> None:
        health = reader.health
        while not self._closed:
            health.state = "connecting"
            self._changed(health)
            try:
                await self._connect_and_serve(reader)
                error = "the relay closed the connection"
            except asyncio.CancelledError:
                raise
            except _Rebuild:
                continue  # at once: no failure (the lanes are closed below)
            except RelayError as exc:
                error = str(exc)
            except TimeoutError:
                error = f"cannot connect to {reader.url}: no answer within {CONNECT_TIMEOUT} s"
            except Exception as exc:  # a bug must not stop reconnecting
                log.exception("reader for a relay failed")
                error = f"internal error: {type(exc).__name__}"
            finally:
                lanes, reader.lanes = reader.lanes, []
                for lane in lanes:
                    await lane.conn.close()
            if self.closed:  # a property: mypy must not narrow it across awaits
                return
            health.state = "disconnected"
            health.connected_since = None
            if reader.down_since is None:
                reader.down_since = time.time()
            health.failures += 1
            health.last_error = error[:300]
            delay = reader.backoff * random.uniform(0.5, 1.5)  # noqa: S311 - jitter, not secrecy
            health.next_retry_at = time.time() + delay
            self._changed(health)
            reader.backoff = min(reader.backoff * 2, BACKOFF_MAX)
            reader.wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await reader.wake.wait()

    async def _connect(self, url: str) -> RelayConnection:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            return await RelayConnection.connect(url, session=self._http(), timeout=CONNECT_TIMEOUT)

    async def _open_lanes(self, reader: _Reader) -> None:
        """One connection with every key, or (``per_key``) one for each key."""
        if not reader.per_key:
            reader.lanes = [_Lane(await self._connect(reader.url))]
            return
        keys = sorted(self._keys())
        reader.lane_keys = frozenset(keys)
        opened = await asyncio.gather(
            *(self._connect(reader.url) for _ in range(max(1, len(keys)))),
            return_exceptions=True,
        )
        for i, conn in enumerate(opened):  # the caller closes the lanes, whatever happens
            if isinstance(conn, RelayConnection):
                reader.lanes.append(_Lane(conn, only=keys[i] if keys else None, extra=i == 0))
        for conn in opened:
            if isinstance(conn, BaseException):
                raise conn

    async def _connect_and_serve(self, reader: _Reader) -> None:
        """Open the reader's lanes and serve them until one ends."""
        await self._open_lanes(reader)
        if len(reader.lanes) == 1:
            await self._serve(reader, reader.lanes[0])
            return
        tasks = [asyncio.create_task(self._serve(reader, lane)) for lane in reader.lanes]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await reap(*tasks)
        for task in done:
            error = None if task.cancelled() else task.exception()
            if error is not None:
                raise error

    async def _authenticate(self, lane: _Lane, keys: dict[str, SecretKey]) -> None:
        """NIP-42 as every key not yet accepted on this connection, pipelined.

        A relay that sends no challenge, or refuses a key, or does not answer, leaves
        those keys unauthenticated; the caller subscribes regardless.
        """
        conn = lane.conn
        todo = [(pubkey, key) for pubkey, key in keys.items() if pubkey not in lane.authed]
        if not todo:
            return
        try:
            lane.challenge = await conn.challenge(CHALLENGE_TIMEOUT)
        except RelayError:
            return  # no challenge (yet): read what the relay serves openly
        for i in range(0, len(todo), _AUTH_BATCH):
            batch = todo[i : i + _AUTH_BATCH]
            results = await asyncio.gather(
                *(conn.authenticate(key, timeout=AUTH_TIMEOUT) for _, key in batch),
                return_exceptions=True,
            )
            for (pubkey, _), result in zip(batch, results, strict=True):
                if isinstance(result, PublishResult):
                    if result.accepted:
                        lane.authed.add(pubkey)
                elif not isinstance(result, RelayError):
                    raise result
            if conn.closed:
                return

    @staticmethod
    def _gift_wrap_filters(keys: list[str], since: int | None) -> list[list[dict[str, Any]]]:
        """REQs (lists of filters) for gift wraps to ``keys``, within relays' limits."""
        filters: list[dict[str, Any]] = []
        for i in range(0, len(keys), _KEYS_PER_FILTER):
            f: dict[str, Any] = {"kinds": [KIND_GIFT_WRAP], "#p": keys[i : i + _KEYS_PER_FILTER]}
            if since is not None:
                f["since"] = since
            filters.append(f)
        return [filters[i : i + _FILTERS_PER_REQ] for i in range(0, len(filters), _FILTERS_PER_REQ)]

    async def _subscribe(
        self, reader: _Reader, lane: _Lane, keys: list[str], since: int | None
    ) -> _Live:
        reqs = [[{**f, "limit": 0} for f in fs] for fs in self._gift_wrap_filters(keys, since)]
        if lane.extra:
            extra = self._extra_filters()
            reqs += [
                extra[i : i + _FILTERS_PER_REQ] for i in range(0, len(extra), _FILTERS_PER_REQ)
            ]
        live = _Live()
        try:
            for filters in reqs:
                sub = await lane.conn.subscribe(filters)
                live.subs.append(sub)
                live.pumps.append(
                    asyncio.create_task(self._pump(reader, sub), name=f"pump {reader.url}")
                )
            await self._until_served(lane, live)
        except BaseException:
            await self._stop_pumps(live)
            raise
        return live

    @staticmethod
    async def _until_served(lane: _Lane, live: _Live) -> None:
        """Wait for the EOSE (or CLOSED) of every new subscription: only then does the
        relay deliver to them, so only then may the subscriptions they replace close.
        Mail the relay sends to an old subscription before that is still read from it;
        closing it at once would drop whatever the relay sent it in between."""
        try:
            async with asyncio.timeout(QUERY_TIMEOUT):
                for sub in live.subs:
                    await sub.eose.wait()
        except TimeoutError:
            await lane.conn.close()  # a relay that does not answer a REQ: reconnect
            raise RelayError(f"no EOSE within {QUERY_TIMEOUT:.0f} s") from None

    async def _unsubscribe(self, lane: _Lane, live: _Live) -> None:
        """Close ``live``'s subscriptions, handing over the events already received."""
        for sub in live.subs:
            await lane.conn.unsubscribe(sub)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_TIMEOUT):
                for sub in live.subs:
                    await sub.events.join()
        await self._stop_pumps(live)

    @staticmethod
    async def _stop_pumps(live: _Live) -> None:
        await reap(*live.pumps)
        live.pumps.clear()

    async def _catch_up(self, reader: _Reader, lane: _Lane, filters: list[dict[str, Any]]) -> None:
        """Every stored event matching ``filters`` (which carry ``since``), page by page
        (:class:`~xchat.core.catchup.CatchUp`: by count and by size, each filter on its
        own). A connection that drops mid-answer has what came delivered, and the
        catch-up is kept on the reader: the next connection resumes it with smaller
        pages instead of starting again."""
        key = orjson.dumps([lane.only, filters]).decode()
        state = reader.resume.pop(key, None) or CatchUp(filters, page_bytes=reader.page_bytes)
        while not state.done:
            try:
                events, complete = await self._page(lane, state.request())
            except RelayError:
                if len(reader.resume) < _MAX_RESUMED:
                    reader.resume[key] = state  # refused or closed: resume it next time
                raise
            for event in state.page(events, complete=complete):
                await self._deliver(reader, event)
            reader.page_bytes = min(reader.page_bytes, state.page_bytes)
            if not complete:
                if len(reader.resume) < _MAX_RESUMED:
                    reader.resume[key] = state
                await lane.conn.close()
                raise RelayError(f"{reader.url} dropped the connection in the middle of a page")

    async def _page(self, lane: _Lane, filters: list[dict[str, Any]]) -> tuple[list[Event], bool]:
        """One page: the events that came, and whether the relay ended it (EOSE).
        A refusal (CLOSED) raises RelayError; no EOSE in time counts as incomplete."""
        conn = lane.conn
        sub = await conn.subscribe(filters)
        try:
            async with asyncio.timeout(QUERY_TIMEOUT):
                await sub.eose.wait()
        except TimeoutError:
            pass
        finally:
            await conn.unsubscribe(sub)
        events = []
        while not sub.events.empty():
            events.append(sub.events.get_nowait())
        if sub.closed is not None and not sub.complete and not conn.closed:
            raise RelayError(sub.closed)
        return events, sub.complete

    def _lane_keys(self, reader: _Reader, lane: _Lane) -> dict[str, SecretKey]:
        keys = self._keys()
        if reader.per_key and frozenset(keys) != reader.lane_keys:
            raise _Rebuild
        if lane.only is None:
            return keys
        return {pubkey: key for pubkey, key in keys.items() if pubkey == lane.only}

    async def _serve(self, reader: _Reader, lane: _Lane) -> None:
        """Authenticate, subscribe, catch up, pump events; return when the connection ends.

        Raises RelayError if the relay refuses the subscription, :class:`_Rebuild` if the
        lanes must be made again.
        """
        conn = lane.conn
        live = _Live()
        subscribed: set[str] | None = None  # the keys of ``live``; None: not subscribed yet
        cancelled = False
        try:
            while not self._closed:
                lane.wake.clear()  # before reading the keys: a change from now on wakes us
                keys = self._lane_keys(reader, lane)
                await self._authenticate(lane, keys)
                wanted = sorted(keys)
                fresh = wanted if subscribed is None else [k for k in wanted if k not in subscribed]
                since = None if reader.cursor is None else max(0, reader.cursor - CURSOR_SLACK)
                started = int(time.time())
                if fresh:
                    lane.caught_up = False
                try:
                    old, live = live, await self._subscribe(reader, lane, wanted, since)
                    await self._unsubscribe(lane, old)  # the new subscriptions are live
                    for filters in self._gift_wrap_filters(fresh, since):
                        await self._catch_up(reader, lane, filters)
                    if fresh == wanted:
                        self._completed(reader, lane, started)
                    subscribed = set(wanted)
                    self._serving(reader, lane, started)
                    reason = await self._watch(reader, lane, live, wanted)
                except RelayError as exc:  # a query refused, or the connection closed
                    if conn.closed:
                        raise
                    reason = str(exc)
                if reason is None:
                    continue  # woken: new keys
                if conn.closed:
                    return
                await self._refused(reader, lane, wanted, reason)
                subscribed = None  # authenticated anew: subscribe and catch up again
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            if cancelled or self._closed:
                await self._stop_pumps(live)
            else:  # hand over what arrived before the end; the caller closes the connection
                await self._unsubscribe(lane, live)

    async def _watch(
        self, reader: _Reader, lane: _Lane, live: _Live, wanted: list[str]
    ) -> str | None:
        """Serve the live subscriptions until woken or ended (see :meth:`_until_woken`),
        re-reading stored mail every ``resync_interval``: a live event the relay dropped
        (or never sent) is found then, and de-duplication drops the rest."""
        while True:
            reason = await self._until_woken(lane, live.subs, self._resync_interval)
            if reason != _RESYNC:
                return reason
            since = None if reader.cursor is None else max(0, reader.cursor - CURSOR_SLACK)
            started = int(time.time())
            for filters in self._gift_wrap_filters(wanted, since):
                await self._catch_up(reader, lane, filters)
            self._completed(reader, lane, started)

    async def _refused(self, reader: _Reader, lane: _Lane, wanted: list[str], reason: str) -> None:
        """The relay refused a subscription: return to try again, or raise."""
        if (
            reason.startswith("auth-required")
            and lane.retries < _AUTH_RETRIES
            and await self._challenged_anew(lane)
        ):
            # NIP-42: the challenge came with the refusal. Authenticate, read again.
            lane.retries += 1
            lane.caught_up = False
            return
        if (
            lane.only is None
            and len(wanted) > 1
            and lane.authed
            and not reason.startswith("rate-limited")
        ):
            # Authenticated, yet refused: a relay that takes one key per connection
            # (rust-nostr's: a second AUTH finds its challenge used up) gets a lane each.
            log.info("a relay serves one key per connection: reading it so")
            reader.per_key = True
            raise _Rebuild
        raise RelayError(f"{reader.url} refused the subscription: {reason}")

    @staticmethod
    async def _challenged_anew(lane: _Lane) -> bool:
        """True if the relay sent a challenge we have not answered (then every key
        authenticates again, under it)."""
        try:
            challenge = await lane.conn.challenge(REFUSAL_CHALLENGE_TIMEOUT)
        except RelayError:
            return False
        if challenge == lane.challenge:
            return False
        lane.authed.clear()
        return True

    @staticmethod
    def _completed(reader: _Reader, lane: _Lane, started: int) -> None:
        """``lane`` read every stored event of all its keys from ``started`` back."""
        lane.full_since = started
        reader.resume.clear()
        times = [other.full_since for other in reader.lanes]
        if all(t is not None for t in times):
            reader.complete_since = min(t for t in times if t is not None)

    def complete_since(self, down_for: float | None = None) -> int | None:
        """The time since which every reading relay has read back everything it
        stored: each completed a catch-up of all keys that began then or later. None
        while some reading relay has not (it is connecting or catching up, or it is
        down, unless every connection to it has failed for over ``down_for`` seconds:
        then it is left out, so one dead relay does not hold the others' evidence back
        for ever). None too when no relay is left."""
        now = time.time()
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

    def _serving(self, reader: _Reader, lane: _Lane, started: int) -> None:
        """Subscribed and caught up; once every lane is, the connection worked."""
        lane.caught_up = True
        if not reader.caught_up:
            return
        reader.backoff = BACKOFF_START
        reader.down_since = None
        self._advance_cursor(reader, started)
        health = reader.health
        if health.state != "connected" or health.failures:
            health.state = "connected"
            health.connected_since = time.time()
            health.failures = 0
            health.last_error = ""
            health.next_retry_at = None
            self._changed(health)

    @staticmethod
    async def _until_woken(
        lane: _Lane, subs: list[Subscription], resync: float | None = None
    ) -> str | None:
        """Wait for :meth:`keys_changed` (None) or the end of the connection or of a
        subscription (the reason), or ``resync`` seconds (:data:`_RESYNC`)."""
        deadline = None if resync is None else time.monotonic() + resync
        while not lane.wake.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                return _RESYNC
            if lane.conn.closed:
                return "the connection closed"
            for sub in subs:
                if sub.closed is not None:
                    return sub.closed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_WATCH_INTERVAL):
                    await lane.wake.wait()
        return None

    async def _pump(self, reader: _Reader, sub: Subscription) -> None:
        while True:
            event = await sub.events.get()
            try:
                await self._deliver(reader, event)
                if reader.caught_up:
                    self._advance_cursor(reader, int(time.time()))
            finally:
                sub.events.task_done()

    async def _deliver(self, reader: _Reader, event: Event) -> None:
        reader.health.received += 1
        if event.id in self._seen:
            return
        self._seen[event.id] = None
        if len(self._seen) > _SEEN_CAPACITY:
            self._seen.popitem(last=False)
        try:
            await self._on_event(reader.url, event)
        except Exception:
            log.exception("handling an incoming event failed")

    def _advance_cursor(self, reader: _Reader, now: int) -> None:
        if reader.cursor is None or now > reader.cursor:
            reader.cursor = now
            if self._cursor_store is not None:
                with contextlib.suppress(Exception):
                    self._cursor_store(reader.url, now)

    # -- writing -----------------------------------------------------------------------

    async def _writer(self, url: str) -> RelayConnection:
        """A connection for publishing and looking up, never authenticated: on the
        reader's connection (authenticated as our identity) a relay would learn who
        sends each gift wrap and whose bundle we fetch, that is, who talks to whom."""
        lock = self._writer_locks.setdefault(url, asyncio.Lock())
        async with lock:
            cached = self._writers.get(url)
            if cached is not None and not cached[0].closed:
                self._writers[url] = (cached[0], time.monotonic())
                return cached[0]
            if self._closed:
                raise RelayError("the relay pool is closed")
            conn = await RelayConnection.connect(url, session=self._http(), timeout=10.0)
            self._writers[url] = (conn, time.monotonic())
            if url not in self._health:
                self._health[url] = RelayHealth(url, reading=False, state="connected")
            return conn

    async def _close_idle_writers(self) -> None:
        while True:
            await asyncio.sleep(_IDLE_CLOSE / 2)
            cutoff = time.monotonic() - _IDLE_CLOSE
            for url, (conn, used) in list(self._writers.items()):
                if used < cutoff or conn.closed:
                    del self._writers[url]
                    await conn.close()
                    health = self._health.get(url)
                    if health is not None and not health.reading:
                        del self._health[url]

    async def publish_one(
        self, url: str, event: Event, timeout: float = 10.0, *, signed: bool = False
    ) -> PublishResult:
        """Publish to one relay; RelayError if it cannot be reached or does not answer
        within ``timeout`` (connecting included). A gift wrap goes over the publishing
        connection; ``signed`` (an event signed by our identity) over a one-shot one."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                if signed:
                    result = await publish_once(self._http(), url, event, timeout)
                else:
                    conn = await self._writer(url)
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
            health.latency_ms = (time.monotonic() - started) * 1000
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
