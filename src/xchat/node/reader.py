"""Reading one relay: connect, authenticate, subscribe, catch up, reconnect (:class:`Reader`).

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
(*lanes*, ``xchat.node.lane``, all connected or reconnected together). Any other refusal
counts as a failed connection: its reason becomes the health's ``last_error`` and the
worker backs off.

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
``cursor_store``. :attr:`Reader.complete_since` says since when the relay has completed
a catch-up of all keys. When the keys change (``RelayPool.keys_changed``) the old
subscription is closed only after the relay answered the new one (EOSE), so no mail
falls between them, and only new keys are caught up.

Time and chance come from the pool (:class:`ReadContext`): ``clock`` (Unix seconds) for
cursors, catch-up times and health, ``monotonic`` for the re-read interval, ``rng`` for
the backoff's jitter. Nothing here reads a clock or a random source of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from xchat.core.catchup import PAGE_BYTES, CatchUp
from xchat.crypto.keys import Rng, SecretKey
from xchat.node.health import RelayHealth
from xchat.node.lane import (
    Lane,
    Live,
    authenticate,
    challenged_anew,
    gift_wrap_filters,
    page,
    split_req,
    stop_pumps,
    unsubscribe,
    until_served,
)
from xchat.node.relay_client import RelayConnection, RelayError, Subscription, reap
from xchat.wire.event import Event

__all__ = [
    "BACKOFF_MAX",
    "BACKOFF_START",
    "CURSOR_SLACK",
    "RESYNC_INTERVAL",
    "ReadContext",
    "Reader",
]

log = logging.getLogger("xchat.node")

BACKOFF_START: Final = 0.5
BACKOFF_MAX: Final = 60.0
#: Gift wraps are dated up to two days back: a cursor must look that far behind.
CURSOR_SLACK: Final = 2 * 24 * 3600 + 600
#: Connecting (TCP and WebSocket handshake) to a reading relay.
CONNECT_TIMEOUT: Final = 10.0
#: Authentications after ``auth-required`` refusals on one connection before giving up.
_AUTH_RETRIES: Final = 2
#: How often a connected reader re-reads stored mail (seconds): relays may drop or
#: never send a live event; the re-read finds it. None: never.
RESYNC_INTERVAL: Final = 300.0
#: What :meth:`Reader._until_woken` returns when it is time to re-read.
_RESYNC: Final = "\x00resync"
_WATCH_INTERVAL: Final = 0.25
#: Unfinished catch-ups kept per relay to resume after a dropped connection.
_MAX_RESUMED: Final = 64


def jitter(rng: Rng) -> float:
    """A factor uniform in [0.5, 1.5) from 4 bytes of ``rng`` (jitter, not secrecy)."""
    return 0.5 + int.from_bytes(rng(4), "big") / 2**32


@dataclass(frozen=True)
class ReadContext:
    """What every reader of a pool shares: its keys, clocks, and where events go."""

    keys: Callable[[], dict[str, SecretKey]]
    extra_filters: Callable[[], list[dict[str, Any]]]
    #: Hands a new event over (de-duplicated across relays by the pool).
    deliver: Callable[[str, Event], Awaitable[None]]
    connect: Callable[[str, float], Awaitable[RelayConnection]]  # (url, timeout)
    changed: Callable[[RelayHealth], None]
    closed: Callable[[], bool]
    cursor_store: Callable[[str, int], None] | None
    resync_interval: float | None
    clock: Callable[[], float]
    monotonic: Callable[[], float]
    rng: Rng


class _Rebuild(Exception):
    """The reader's lanes must be made again (new keys, or one key per connection)."""


@dataclass(eq=False)
class Reader:
    """The worker of one reading relay (see the module docstring)."""

    url: str
    health: RelayHealth
    ctx: ReadContext
    task: asyncio.Task[None] | None = None
    lanes: list[Lane] = field(default_factory=list)
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

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"reader {self.url}")

    def keys_changed(self) -> None:
        self.wake.set()
        for lane in self.lanes:
            lane.wake.set()

    async def close_lanes(self) -> None:
        lanes, self.lanes = self.lanes, []
        for lane in lanes:
            await lane.conn.close()

    async def stop(self) -> None:
        if self.task is not None:
            await reap(self.task)
        await self.close_lanes()

    # -- the worker -------------------------------------------------------------------

    async def _run(self) -> None:
        ctx, health = self.ctx, self.health
        while not ctx.closed():
            health.state = "connecting"
            ctx.changed(health)
            try:
                await self._connect_and_serve()
                error = "the relay closed the connection"
            except asyncio.CancelledError:
                raise
            except _Rebuild:
                continue  # at once: no failure (the lanes are closed below)
            except RelayError as exc:
                error = str(exc)
            except TimeoutError:
                error = f"cannot connect to {self.url}: no answer within {CONNECT_TIMEOUT} s"
            except Exception as exc:  # a bug must not stop reconnecting
                log.exception("reader for a relay failed")
                error = f"internal error: {type(exc).__name__}"
            finally:
                await self.close_lanes()
            if ctx.closed():
                return
            now = ctx.clock()
            health.state = "disconnected"
            health.connected_since = None
            if self.down_since is None:
                self.down_since = now
            health.failures += 1
            health.last_error = error[:300]
            delay = self.backoff * jitter(ctx.rng)
            health.next_retry_at = now + delay
            ctx.changed(health)
            self.backoff = min(self.backoff * 2, BACKOFF_MAX)
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self.wake.wait()

    async def _connect(self) -> RelayConnection:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            return await self.ctx.connect(self.url, CONNECT_TIMEOUT)

    async def _open_lanes(self) -> None:
        """One connection with every key, or (``per_key``) one for each key."""
        if not self.per_key:
            self.lanes = [Lane(await self._connect())]
            return
        keys = sorted(self.ctx.keys())
        self.lane_keys = frozenset(keys)
        opened = await asyncio.gather(
            *(self._connect() for _ in range(max(1, len(keys)))), return_exceptions=True
        )
        for i, conn in enumerate(opened):  # the caller closes the lanes, whatever happens
            if isinstance(conn, RelayConnection):
                self.lanes.append(Lane(conn, only=keys[i] if keys else None, extra=i == 0))
        for conn in opened:
            if isinstance(conn, BaseException):
                raise conn

    async def _connect_and_serve(self) -> None:
        """Open the lanes and serve them until one ends."""
        await self._open_lanes()
        if len(self.lanes) == 1:
            await self._serve(self.lanes[0])
            return
        tasks = [asyncio.create_task(self._serve(lane)) for lane in self.lanes]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await reap(*tasks)
        for task in done:
            error = None if task.cancelled() else task.exception()
            if error is not None:
                raise error

    async def _subscribe(self, lane: Lane, keys: list[str], since: int | None) -> Live:
        reqs = [[{**f, "limit": 0} for f in fs] for fs in gift_wrap_filters(keys, since)]
        if lane.extra:
            reqs += split_req(self.ctx.extra_filters())
        live = Live()
        try:
            for filters in reqs:
                sub = await lane.conn.subscribe(filters)
                live.subs.append(sub)
                live.pumps.append(asyncio.create_task(self._pump(sub), name=f"pump {self.url}"))
            await until_served(lane, live)
        except BaseException:
            await stop_pumps(live)
            raise
        return live

    async def _catch_up(self, lane: Lane, filters: list[dict[str, Any]]) -> None:
        """Every stored event matching ``filters`` (which carry ``since``), page by page
        (:class:`~xchat.core.catchup.CatchUp`: by count and by size, each filter on its
        own). A connection that drops mid-answer has what came delivered, and the
        catch-up is kept on the reader: the next connection resumes it with smaller
        pages instead of starting again."""
        key = orjson.dumps([lane.only, filters]).decode()
        state = self.resume.pop(key, None) or CatchUp(filters, page_bytes=self.page_bytes)
        while not state.done:
            try:
                events, complete = await page(lane, state.request())
            except RelayError:
                if len(self.resume) < _MAX_RESUMED:
                    self.resume[key] = state  # refused or closed: resume it next time
                raise
            for event in state.page(events, complete=complete):
                await self._deliver(event)
            self.page_bytes = min(self.page_bytes, state.page_bytes)
            if not complete:
                if len(self.resume) < _MAX_RESUMED:
                    self.resume[key] = state
                await lane.conn.close()
                raise RelayError(f"{self.url} dropped the connection in the middle of a page")

    def _lane_keys(self, lane: Lane) -> dict[str, SecretKey]:
        keys = self.ctx.keys()
        if self.per_key and frozenset(keys) != self.lane_keys:
            raise _Rebuild
        if lane.only is None:
            return keys
        return {pubkey: key for pubkey, key in keys.items() if pubkey == lane.only}

    def _since(self) -> int | None:
        return None if self.cursor is None else max(0, self.cursor - CURSOR_SLACK)

    async def _serve(self, lane: Lane) -> None:
        """Authenticate, subscribe, catch up, pump events; return when the connection ends.

        Raises RelayError if the relay refuses the subscription, :class:`_Rebuild` if the
        lanes must be made again.
        """
        conn = lane.conn
        live = Live()
        subscribed: set[str] | None = None  # the keys of ``live``; None: not subscribed yet
        cancelled = False
        try:
            while not self.ctx.closed():
                lane.wake.clear()  # before reading the keys: a change from now on wakes us
                keys = self._lane_keys(lane)
                await authenticate(lane, keys)
                wanted = sorted(keys)
                fresh = wanted if subscribed is None else [k for k in wanted if k not in subscribed]
                since = self._since()
                started = int(self.ctx.clock())
                if fresh:
                    lane.caught_up = False
                try:
                    old, live = live, await self._subscribe(lane, wanted, since)
                    await unsubscribe(lane, old)  # the new subscriptions are live
                    for filters in gift_wrap_filters(fresh, since):
                        await self._catch_up(lane, filters)
                    if fresh == wanted:
                        self._completed(lane, started)
                    subscribed = set(wanted)
                    self._serving(lane, started)
                    reason = await self._watch(lane, live, wanted)
                except RelayError as exc:  # a query refused, or the connection closed
                    if conn.closed:
                        raise
                    reason = str(exc)
                if reason is None:
                    continue  # woken: new keys
                if conn.closed:
                    return
                await self._refused(lane, wanted, reason)
                subscribed = None  # authenticated anew: subscribe and catch up again
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            if cancelled or self.ctx.closed():
                await stop_pumps(live)
            else:  # hand over what arrived before the end; the caller closes the connection
                await unsubscribe(lane, live)

    async def _watch(self, lane: Lane, live: Live, wanted: list[str]) -> str | None:
        """Serve the live subscriptions until woken or ended (see :meth:`_until_woken`),
        re-reading stored mail every ``resync_interval``: a live event the relay dropped
        (or never sent) is found then, and de-duplication drops the rest."""
        while True:
            reason = await self._until_woken(lane, live.subs)
            if reason != _RESYNC:
                return reason
            since = self._since()
            started = int(self.ctx.clock())
            for filters in gift_wrap_filters(wanted, since):
                await self._catch_up(lane, filters)
            self._completed(lane, started)

    async def _refused(self, lane: Lane, wanted: list[str], reason: str) -> None:
        """The relay refused a subscription: return to try again, or raise."""
        if (
            reason.startswith("auth-required")
            and lane.retries < _AUTH_RETRIES
            and await challenged_anew(lane)
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
            self.per_key = True
            raise _Rebuild
        raise RelayError(f"{self.url} refused the subscription: {reason}")

    def _completed(self, lane: Lane, started: int) -> None:
        """``lane`` read every stored event of all its keys from ``started`` back."""
        lane.full_since = started
        self.resume.clear()
        times = [other.full_since for other in self.lanes]
        if all(t is not None for t in times):
            self.complete_since = min(t for t in times if t is not None)

    def _serving(self, lane: Lane, started: int) -> None:
        """Subscribed and caught up; once every lane is, the connection worked."""
        lane.caught_up = True
        if not self.caught_up:
            return
        self.backoff = BACKOFF_START
        self.down_since = None
        self._advance_cursor(started)
        health = self.health
        if health.state != "connected" or health.failures:
            health.state = "connected"
            health.connected_since = self.ctx.clock()
            health.failures = 0
            health.last_error = ""
            health.next_retry_at = None
            self.ctx.changed(health)

    async def _until_woken(self, lane: Lane, subs: list[Subscription]) -> str | None:
        """Wait for ``keys_changed`` (None) or the end of the connection or of a
        subscription (the reason), or ``resync_interval`` seconds (:data:`_RESYNC`)."""
        resync, monotonic = self.ctx.resync_interval, self.ctx.monotonic
        deadline = None if resync is None else monotonic() + resync
        while not lane.wake.is_set():
            if deadline is not None and monotonic() >= deadline:
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

    async def _pump(self, sub: Subscription) -> None:
        while True:
            event = await sub.events.get()
            try:
                await self._deliver(event)
                if self.caught_up:
                    self._advance_cursor(int(self.ctx.clock()))
            finally:
                sub.events.task_done()

    async def _deliver(self, event: Event) -> None:
        self.health.received += 1
        await self.ctx.deliver(self.url, event)

    def _advance_cursor(self, now: int) -> None:
        if self.cursor is None or now > self.cursor:
            self.cursor = now
            if self.ctx.cursor_store is not None:
                with contextlib.suppress(Exception):
                    self.ctx.cursor_store(self.url, now)
