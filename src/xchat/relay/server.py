"""The relay server: NIP-01 over WebSocket and NIP-11 over HTTP, on one port (aiohttp).

Per connection the relay keeps its subscriptions, the keys it authenticated as (NIP-42,
several allowed), two token buckets and a bounded queue of outgoing messages drained by
a writer task that exists only while there is something to send (an idle connection
costs little). Bad input never ends the process: it is answered with ``OK false``,
``CLOSED`` or ``NOTICE`` and the connection stays usable, except for messages so large
that WebSocket itself says to close (1009), and clients that stop reading (nothing read
for ``write_timeout`` seconds) or let live events pile up past ``max_send_queue_bytes``,
which are disconnected rather than buffered without bound. Stored results of a REQ are
streamed with back-pressure (:mod:`xchat.relay.query`): they never count against a
client that keeps reading.

Privacy: the relay logs no IP addresses, keys or event contents; gift wraps (kind 1059)
are served only to connections authenticated as their recipient (configurable).

Specs: NIP-01, NIP-09, NIP-11, NIP-13, NIP-40, NIP-42, NIP-45, NIP-59, NIP-70.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import struct
import sys
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from xchat import __version__
from xchat.aio import reap
from xchat.errors import XChatError
from xchat.relay import query as rq
from xchat.relay.admission import Admission, GuardedSite, raise_open_file_limit
from xchat.relay.answers import event_refusal, ok_for
from xchat.relay.auth import AuthState, Nip42, RelayAddresses
from xchat.relay.config import RelayConfig
from xchat.relay.ingest import Ingestor
from xchat.relay.ratelimit import TokenBucket
from xchat.relay.subscriptions import Subscription, SubscriptionIndex
from xchat.store.events import KIND_GIFT_WRAP, EventStore, StoredEvent
from xchat.wire import messages as m
from xchat.wire.event import Event, EventLimits
from xchat.wire.filter import FilterLimits

__all__ = ["Relay", "open_store", "run_relay"]

log = logging.getLogger("xchat.relay")
T = TypeVar("T")

SUPPORTED_NIPS: Final = [1, 9, 11, 13, 40, 42, 45, 59, 70]


def open_store(db: str) -> EventStore:
    """SQLite for a path, PostgreSQL for a ``postgresql://`` URL."""
    if db.startswith(("postgresql://", "postgres://")):
        from xchat.store.postgres import PostgresEventStore

        return PostgresEventStore(db)
    from xchat.store.sqlite import SqliteEventStore

    return SqliteEventStore(db)


_NOBODY: Final[frozenset[str]] = frozenset()
_WRITE_CHUNK: Final = 64 * 1024  # bytes of frames joined into one socket write
_WRITE_HIGH_WATER: Final = 256 * 1024  # transport buffer above which the writer waits


def _frame_header(length: int) -> bytes:
    """RFC 6455 header of a final, unmasked text frame of ``length`` bytes."""
    if length < 126:
        return bytes((0x81, length))
    if length < 65536:
        return struct.pack("!BBH", 0x81, 126, length)
    return struct.pack("!BBQ", 0x81, 127, length)


class Connection:
    """One WebSocket client. Outgoing messages go through :meth:`send`.

    Idle connections are most of a relay's memory, so what a connection may never need
    (an outgoing queue, a rate bucket, authenticated keys) is created on first use.
    """

    __slots__ = (
        "auth",
        "authed",
        "bucket",
        "challenge",
        "closed",
        "ip",
        "queries",
        "querying",
        "queue",
        "queued",
        "relay",
        "subs",
        "transport",
        "writer",
        "ws",
    )

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport,
        ip: str,
        relay: Relay,
    ) -> None:
        self.ws = ws
        self.transport = transport
        self.ip = ip
        self.relay = relay
        # None, the only subscription, or a dict of several by id (most clients hold one)
        self.subs: Subscription | dict[str, Subscription] | None = None
        self.authed: frozenset[str] | set[str] = _NOBODY
        self.challenge = os.urandom(16)  # bytes: half the size of its hex text
        self.bucket: TokenBucket | None = None
        self.auth: AuthState | None = None
        self.queue: deque[str] | None = None
        self.queued = 0
        self.writer: asyncio.Task[None] | None = None
        self.queries: asyncio.Semaphore | None = None  # see xchat.relay.query.query_turn
        self.querying = 0
        self.closed = False

    def send(self, text: str) -> None:
        """Queue a message; a client that lets too much pile up is disconnected."""
        if self.closed:
            return
        if self.queue is None:
            self.queue = deque()
        self.queue.append(text)
        self.queued += len(text)
        if self.queued > self.relay.config.limits.max_send_queue_bytes:
            self.closed = True
            self.queue = None
            loop = asyncio.get_running_loop()
            self.relay.keep(
                loop.create_task(
                    self.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"too slow to read")
                )
            )
            # a close frame waits behind what the client does not read: end it anyway
            loop.call_later(self.relay.config.limits.write_timeout, self.transport.abort)
            return
        if self.writer is None:
            self.writer = asyncio.get_running_loop().create_task(self._write())

    def unsent(self) -> int:
        """Bytes (about: characters, until framed) waiting to reach the client's socket."""
        return self.queued + self.transport.get_write_buffer_size()

    async def wait_unsent_below(self, limit: int) -> None:
        """Once fewer than ``limit`` bytes wait to be sent, or the connection closed (as
        the writer does a client that reads nothing for ``write_timeout``)."""
        delay, before = 0.005, self.unsent()
        while not self.closed and before >= limit:
            if self.transport.is_closing():
                self.closed = True
                return
            await asyncio.sleep(delay)
            now = self.unsent()
            # a client that reads slowly is looked at less often (up to 10 times a second)
            delay, before = (0.005 if now < before else min(delay * 2, 0.1)), now

    def _stalled(self) -> None:
        """Drop a client that read nothing for ``write_timeout`` seconds."""
        self.closed = True
        self.queue = None
        log.info(
            "dropped a client that read nothing for %ss", self.relay.config.limits.write_timeout
        )
        self.transport.abort()  # a close frame would wait in the same full buffers

    async def _write(self) -> None:
        """Drain the queue, many WebSocket frames per socket write.

        Frames are built here (server frames are unmasked and we never compress) and
        written straight to the transport: one system call for everything queued rather
        than one per message, which halves the cost of a delivery. Flow control is the
        transport's own buffer size; while it stays full (the client reads nothing) for
        ``write_timeout`` seconds, the client is dropped.
        """
        queue = self.queue
        transport = self.transport
        loop = asyncio.get_running_loop()
        timeout = self.relay.config.limits.write_timeout
        try:
            while queue and not self.closed:
                if transport.is_closing():
                    raise ConnectionError
                parts: list[bytes] = []
                size = 0
                while queue and size < _WRITE_CHUNK:
                    text = queue.popleft()
                    self.queued -= len(text)
                    data = text.encode()
                    parts.append(_frame_header(len(data)))
                    parts.append(data)
                    size += len(data)
                transport.write(b"".join(parts))
                buffered = transport.get_write_buffer_size()
                progress = loop.time()
                while buffered > _WRITE_HIGH_WATER:
                    if transport.is_closing():
                        raise ConnectionError
                    await asyncio.sleep(0.005)  # a slow reader: let the kernel drain it
                    now_buffered = transport.get_write_buffer_size()
                    if now_buffered < buffered:
                        progress = loop.time()
                    elif loop.time() - progress > timeout:
                        self._stalled()
                        return
                    buffered = now_buffered
        except (ConnectionError, RuntimeError):
            self.closed = True  # the peer went away; the reader loop will notice
        finally:
            self.writer = None
            if self.queue is queue and not queue:
                self.queue = None

    def subscription(self, sub_id: str) -> Subscription | None:
        subs = self.subs
        if isinstance(subs, dict):
            return subs.get(sub_id)
        return subs if subs is not None and subs.sub_id == sub_id else None

    def subscriptions(self) -> list[Subscription]:
        subs = self.subs
        if isinstance(subs, dict):
            return list(subs.values())
        return [] if subs is None else [subs]

    def add_subscription(self, sub: Subscription) -> None:
        """Add ``sub`` (the caller removed any subscription with the same id first)."""
        subs = self.subs
        if subs is None:
            self.subs = sub
        elif isinstance(subs, dict):
            subs[sub.sub_id] = sub
        else:
            self.subs = {subs.sub_id: subs, sub.sub_id: sub}

    def remove_subscription(self, sub_id: str) -> Subscription | None:
        subs = self.subs
        if isinstance(subs, dict):
            sub = subs.pop(sub_id, None)
            if len(subs) == 1:
                self.subs = next(iter(subs.values()))
            return sub
        if subs is not None and subs.sub_id == sub_id:
            self.subs = None
            return subs
        return None

    def take_token(self) -> bool:
        if self.bucket is None:
            limits = self.relay.config.limits
            self.bucket = TokenBucket(limits.events_per_second, limits.events_burst)
        return self.bucket.take()

    def authenticate(self, pubkey: str) -> None:
        if self.authed is _NOBODY:
            self.authed = set()
        self.authed.add(pubkey)  # type: ignore[union-attr]  # a set from here on

    def can_see(self, event: Event, protect: bool) -> bool:
        """Gift wraps go only to their authenticated recipient."""
        if not protect or event.kind != KIND_GIFT_WRAP:
            return True
        return any(t[0] == "p" and t[1] in self.authed for t in event.tags if len(t) >= 2)


class Relay:
    """The relay: owns the store, the ingest pipeline, the subscriptions and the app."""

    def __init__(self, config: RelayConfig, store: EventStore) -> None:
        self.config = config
        self.store = store
        limits = config.limits
        # Content is limited in characters (NIP-11) by _refusal; in bytes only by the
        # message size.
        event_limits = EventLimits(
            max_content_bytes=limits.max_message_bytes, max_tags=limits.max_event_tags
        )
        self.message_limits = m.MessageLimits(
            max_message_bytes=limits.max_message_bytes,
            max_filters_per_req=limits.max_filters,
            max_sub_id_length=limits.max_sub_id_length,
            event_limits=event_limits,
            filter_limits=FilterLimits(max_values=limits.max_filter_values),
        )
        self.index = SubscriptionIndex()
        self.connections: set[Connection] = set()
        self.per_ip: defaultdict[str, int] = defaultdict(int)
        self.ip_buckets: dict[str, TokenBucket] = {}
        self.query_gate = asyncio.Semaphore(limits.max_concurrent_queries)
        self._streams: set[asyncio.Task[Any]] = set()  # stored results, closings
        self.admission = Admission(limits)
        self.nip42 = Nip42(RelayAddresses(config.public_url), limits)
        self.ingest = Ingestor(
            store,
            self._fan_out,
            max_batch=config.batch_max_events,
            max_delay=config.batch_max_delay,
            max_events=limits.max_ingest_events,
            max_bytes=limits.max_ingest_bytes,
        )
        self._purger: asyncio.Task[None] | None = None
        self.app = web.Application()
        self.app.router.add_get("/", self._handle)
        self.app.on_startup.append(self._on_startup)
        self.app.on_shutdown.append(self._on_shutdown)
        self.app.on_cleanup.append(self._on_cleanup)
        self._handlers: dict[type[Any], Callable[[Connection, Any], Awaitable[None]]] = {
            m.ClientEvent: self._on_event,
            m.ClientReq: self._on_req,
            m.ClientClose: self._on_close,
            m.ClientAuth: self._on_auth,
            m.ClientCount: self._on_count,
        }

    # -- lifecycle --------------------------------------------------------------

    async def _on_startup(self, _app: web.Application) -> None:
        await self.store.open()
        self.ingest.start()
        self._purger = asyncio.create_task(self._purge_loop(), name="relay-purge")

    async def _on_shutdown(self, _app: web.Application) -> None:
        """Stop taking events, commit what is queued (sending its OKs), close clients."""
        await self.ingest.close()
        await reap(*self._streams)  # stored results still being sent
        for conn in list(self.connections):
            while conn.writer is not None and not conn.closed:
                await asyncio.sleep(0.001)
            conn.closed = True
            with contextlib.suppress(Exception):
                await conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"relay shutting down")

    async def _on_cleanup(self, _app: web.Application) -> None:
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
        self.nip42.close()
        await self.store.close()

    async def _purge_loop(self) -> None:
        while True:
            try:
                await self.purge()
            except Exception:
                log.exception("purge failed")
            await asyncio.sleep(self.config.purge_interval)

    async def purge(self) -> int:
        return await self.store.purge(int(time.time()), self.config.gift_wrap_retention)

    # -- HTTP -------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        Admission.headers_received(request)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request)
        response = self._http(request)
        response.force_close()  # one request per connection: no idle keep-alive
        return response

    def _http(self, request: web.Request) -> web.Response:
        if "application/nostr+json" in request.headers.get("Accept", ""):
            return web.Response(
                body=orjson.dumps(self.info()),
                content_type="application/nostr+json",
                headers={
                    "Access-Control-Allow-Origin": "*",
                    "Access-Control-Allow-Headers": "*",
                    "Access-Control-Allow-Methods": "GET",
                },
            )
        return web.Response(
            text=f"{self.config.name}: a Nostr relay. Connect with a Nostr client over "
            "WebSocket; send Accept: application/nostr+json for its NIP-11 document.\n"
        )

    def info(self) -> dict[str, Any]:
        """The NIP-11 relay information document, with every limit in force."""
        limits = self.config.limits
        return {
            "name": self.config.name,
            "description": self.config.description,
            "contact": self.config.contact,
            "supported_nips": SUPPORTED_NIPS,
            "software": "https://github.com/xchat/xchat",
            "version": __version__,
            "limitation": {
                "max_message_length": limits.max_message_bytes,
                "max_subscriptions": limits.max_subscriptions,
                "max_filters": limits.max_filters,
                "max_limit": limits.max_limit,
                "default_limit": limits.default_limit,
                "max_subid_length": limits.max_sub_id_length,
                "max_event_tags": limits.max_event_tags,
                "max_content_length": limits.max_content_length,
                "min_pow_difficulty": limits.min_pow_difficulty,
                "auth_required": False,
                "payment_required": False,
                "restricted_writes": False,
                "created_at_lower_limit": 0,
                "created_at_upper_limit": limits.max_future_seconds,
            },
            "retention": [{"kinds": [KIND_GIFT_WRAP], "time": self.config.gift_wrap_retention}],
            "xchat_limits": {
                "events_per_second": limits.events_per_second,
                "events_burst": limits.events_burst,
                "ip_events_per_second": limits.ip_events_per_second,
                "ip_events_burst": limits.ip_events_burst,
                "max_connections_per_ip": limits.max_connections_per_ip,
                "max_connections": self.admission.max_connections,
                "header_timeout": limits.header_timeout,
                "handshake_timeout": limits.handshake_timeout,
                "idle_timeout": limits.idle_timeout,
                "max_auth_keys": limits.max_auth_keys,
                "auth_per_second": limits.auth_per_second,
                "auth_burst": limits.auth_burst,
                "max_filter_values": limits.max_filter_values,
                "max_send_queue_bytes": limits.max_send_queue_bytes,
                "write_timeout": limits.write_timeout,
                "query_batch_bytes": limits.query_batch_bytes,
                "query_batch_events": limits.query_batch_events,
                "query_window_bytes": limits.query_window_bytes,
                "max_concurrent_queries": limits.max_concurrent_queries,
                "max_queries_per_connection": limits.max_queries_per_connection,
                "max_ingest_events": limits.max_ingest_events,
                "max_ingest_bytes": limits.max_ingest_bytes,
                "ingest_wait": limits.ingest_wait,
                "gift_wraps_only_to_recipient": self.config.protect_gift_wraps,
            },
        }

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        # Connections are counted and limited at accept (relay/admission.py); per_ip
        # here only tells when an address's event bucket can be forgotten.
        ip = request.remote or "?"
        limits = self.config.limits
        ws = web.WebSocketResponse(
            max_msg_size=4 * limits.max_message_bytes,
            compress=False,
            autoping=True,
            heartbeat=limits.idle_timeout,
        )
        await ws.prepare(request)
        transport = request.transport
        if transport is None:  # the client left during the handshake
            return ws
        Admission.opened(request)
        conn = Connection(ws, transport, sys.intern(ip), self)
        self.connections.add(conn)
        self.per_ip[ip] += 1
        conn.send(m.auth_challenge_message(conn.challenge.hex()))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await self._on_text(conn, msg.data)
                elif msg.type == WSMsgType.BINARY:
                    conn.send(m.notice_message("invalid: binary messages are not supported"))
                else:
                    break
        finally:
            conn.closed = True
            self.connections.discard(conn)
            for sub in conn.subscriptions():
                self.index.remove(sub)
            conn.subs = None
            self.per_ip[ip] -= 1
            if self.per_ip[ip] <= 0:
                del self.per_ip[ip]
                self.ip_buckets.pop(ip, None)
        return ws

    async def _on_text(self, conn: Connection, data: str) -> None:
        try:
            message = m.parse_client_message(data, self.message_limits)
        except m.MessageError as exc:
            self._answer_error(conn, exc)
            return
        if conn.auth is not None and type(message) is not m.ClientAuth:
            await conn.auth.settled()  # what follows an AUTH sees its outcome
        try:
            await self._handlers[type(message)](conn, message)
        except XChatError as exc:  # pragma: no cover - handlers answer their own errors
            conn.send(m.notice_message(f"error: {exc}"))

    @staticmethod
    def _answer_error(conn: Connection, exc: m.MessageError) -> None:
        conn.send(exc.reply())

    # -- rate limits ------------------------------------------------------------

    def _rate_limited(self, conn: Connection) -> bool:
        limits = self.config.limits
        bucket = self.ip_buckets.get(conn.ip)
        if bucket is None:
            bucket = TokenBucket(limits.ip_events_per_second, limits.ip_events_burst)
            self.ip_buckets[conn.ip] = bucket
        return not (conn.take_token() and bucket.take())

    # -- EVENT --------------------------------------------------------------------

    async def _on_event(self, conn: Connection, message: m.ClientEvent) -> None:
        event = message.event
        if self._rate_limited(conn):
            conn.send(m.ok_message(event.id, False, "rate-limited: slow down"))
            return
        refusal = event_refusal(self.config.limits, conn.authed, event, int(time.time()))
        if refusal is not None:
            conn.send(m.ok_message(event.id, False, refusal))
            return
        if not await self.ingest.admit(self.config.limits.ingest_wait):
            conn.send(m.ok_message(event.id, False, "rate-limited: the relay is busy; retry"))
            return
        future = self.ingest.submit(StoredEvent(event, message.json))
        future.add_done_callback(lambda f: conn.send(ok_for(event.id, f.result())))

    def _fan_out(self, stored: StoredEvent) -> None:
        event = stored.event
        protect = self.config.protect_gift_wraps
        for sub in self.index.matching(event):
            conn: Connection = sub.owner
            if conn.can_see(event, protect):
                conn.send(m.event_message(sub.sub_id, stored.json))

    # -- REQ / COUNT / CLOSE ----------------------------------------------------

    async def _on_req(self, conn: Connection, message: m.ClientReq) -> None:
        sub_id = message.sub_id
        if self._rate_limited(conn):
            conn.send(m.closed_message(sub_id, "rate-limited: slow down"))
            return
        refusal = rq.gift_wrap_refusal(self.config, conn.authed, message.filters)
        if refusal is not None:
            conn.send(m.closed_message(sub_id, refusal))
            return
        if (
            conn.subscription(sub_id) is None
            and len(conn.subscriptions()) >= self.config.limits.max_subscriptions
        ):
            conn.send(
                m.closed_message(
                    sub_id,
                    f"blocked: at most {self.config.limits.max_subscriptions} subscriptions "
                    "per connection; close one first",
                )
            )
            return
        self._drop_subscription(conn.remove_subscription(sub_id))
        sub = Subscription(conn, sub_id, message.filters)
        # Live events from now on reach the subscription; stored ones follow from the
        # query. An event committed in between may arrive twice; clients de-duplicate by id.
        conn.add_subscription(sub)
        self.index.add(sub)
        # Streamed in a task, so the connection keeps reading (CLOSE, EVENT) meanwhile.
        sub.stream = self.keep(asyncio.get_running_loop().create_task(self._serve_req(conn, sub)))

    def keep(self, task: asyncio.Task[T]) -> asyncio.Task[T]:
        """Hold a reference to ``task`` until it ends; shutdown cancels what is left."""
        self._streams.add(task)
        task.add_done_callback(self._streams.discard)
        return task

    def _drop_subscription(self, sub: Subscription | None) -> None:
        """Stop a closed or replaced subscription: live events and its stored results."""
        if sub is not None:
            self.index.remove(sub)
            if sub.stream is not None:
                sub.stream.cancel()

    def _recipients(self, conn: Connection) -> frozenset[str] | None:
        """Whose gift wraps a query may see: the keys ``conn`` authenticated as."""
        return frozenset(conn.authed) if self.config.protect_gift_wraps else None

    async def _serve_req(self, conn: Connection, sub: Subscription) -> None:
        """Stored results, then EOSE, at most ``max_queries_per_connection`` at a time."""
        sub_id = sub.sub_id
        limits = self.config.limits
        try:
            async with rq.query_turn(conn, limits.max_queries_per_connection):
                if conn.closed or conn.subscription(sub_id) is not sub:
                    return  # closed or replaced while it waited its turn
                batches = rq.stored_results(
                    self.store,
                    rq.with_limits(sub.query, limits.default_limit, limits.max_limit),
                    int(time.time()),
                    recipients=self._recipients(conn),
                    limits=limits,
                    gate=self.query_gate,
                )
                await rq.serve_stored(
                    conn, sub_id, sub, conn.subscription, batches, limits.query_window_bytes
                )
        except Exception:
            log.exception("query failed")
            if conn.subscription(sub_id) is sub:
                conn.remove_subscription(sub_id)
                self.index.remove(sub)
                conn.send(m.closed_message(sub_id, "error: the query failed"))
        finally:
            sub.query, sub.stream = (), None  # only live matching is left to do

    async def _on_count(self, conn: Connection, message: m.ClientCount) -> None:
        sub_id = message.sub_id
        if self._rate_limited(conn):
            conn.send(m.closed_message(sub_id, "rate-limited: slow down"))
            return
        filters = message.filters
        refusal = rq.gift_wrap_refusal(self.config, conn.authed, filters, counting=True)
        if refusal is not None:
            conn.send(m.closed_message(sub_id, refusal))
            return
        try:
            async with self.query_gate:
                count = await self.store.count(filters, int(time.time()), self._recipients(conn))
        except Exception:
            log.exception("count failed")
            conn.send(m.closed_message(sub_id, "error: the count failed"))
            return
        conn.send(m.count_message(sub_id, count))

    async def _on_close(self, conn: Connection, message: m.ClientClose) -> None:
        self._drop_subscription(conn.remove_subscription(message.sub_id))

    # -- AUTH -------------------------------------------------------------------

    async def _on_auth(self, conn: Connection, message: m.ClientAuth) -> None:
        # Pipelined; signatures are checked in the AUTH thread (relay/auth.py).
        await self.nip42.on_auth(conn, message.event, int(time.time()))


def _tune_garbage_collector() -> None:
    """Keep full collections off the hot path.

    A relay makes many short-lived objects (messages, events) and holds many long-lived
    ones (connections, subscriptions). Freezing what start-up built and collecting
    less often removed 70-90 ms pauses (the p99 fan-out latency) and raised ingest by a
    quarter (docs/benchmarks.md). Reference counting still frees almost everything.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 50)


async def run_relay(config: RelayConfig, *, ready: Callable[[str], None] | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully."""
    if not config.db.startswith(("postgresql://", "postgres://")):
        os.makedirs(os.path.dirname(os.path.abspath(config.db)), mode=0o700, exist_ok=True)
    relay = Relay(config, open_store(config.db))
    open_files, open_files_line = raise_open_file_limit()
    relay.admission.fit_to_open_files(open_files)
    runner = web.AppRunner(relay.app, handle_signals=False, access_log=None)
    await runner.setup()
    site = GuardedSite(runner, relay.admission, config.host, config.port, reuse_address=True)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sockets = site.sockets
    relay.nip42.addresses.listening(sockets)
    host, port = sockets[0]
    address = f"ws://[{host}]:{port}" if ":" in host else f"ws://{host}:{port}"
    log.info("relay listening on %s", address)
    if relay.nip42.addresses.wildcard:
        log.warning(
            "no public_url: NIP-42 accepts only ws://ADDRESS:%d for the local address a "
            "client connected to; set public_url if clients use a name",
            port,
        )
    _tune_garbage_collector()
    if ready is not None:
        ready(address)
    log.info("%s; at most %d connections", open_files_line, relay.admission.max_connections)
    await stop.wait()
    log.info("relay shutting down")
    await runner.cleanup()
