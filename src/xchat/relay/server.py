"""The relay server: NIP-01 over WebSocket and NIP-11 over HTTP, on one port (aiohttp).

Per connection the relay keeps its subscriptions, the keys it authenticated as (NIP-42,
several allowed), two token buckets and a bounded queue of outgoing messages drained by
a writer task that exists only while there is something to send (an idle connection
costs little). Bad input never ends the process: it is answered with ``OK false``,
``CLOSED`` or ``NOTICE`` and the connection stays usable, except for messages so large
that WebSocket itself says to close (1009), and clients too slow to read what they
asked for, which are disconnected rather than buffered without bound.

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
from typing import Any, Final

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from xchat import __version__
from xchat.errors import XChatError
from xchat.relay.admission import Admission, GuardedSite, raise_open_file_limit
from xchat.relay.auth import KIND_AUTH, AuthState, Nip42, RelayAddresses
from xchat.relay.config import RelayConfig
from xchat.relay.ingest import Ingestor, Rejected, Result
from xchat.relay.ratelimit import TokenBucket
from xchat.relay.subscriptions import Subscription, SubscriptionIndex
from xchat.store.events import (
    KIND_GIFT_WRAP,
    EventStore,
    SaveStatus,
    StoredEvent,
    expiration_of,
)
from xchat.wire import messages as m
from xchat.wire.event import Event, EventLimits
from xchat.wire.filter import Filter, FilterLimits

__all__ = ["Relay", "open_store", "run_relay"]

log = logging.getLogger("xchat.relay")

SUPPORTED_NIPS: Final = [1, 9, 11, 13, 40, 42, 45, 59, 70]


def open_store(db: str) -> EventStore:
    """SQLite for a path, PostgreSQL for a ``postgresql://`` URL."""
    if db.startswith(("postgresql://", "postgres://")):
        from xchat.store.postgres import PostgresEventStore

        return PostgresEventStore(db)
    from xchat.store.sqlite import SqliteEventStore

    return SqliteEventStore(db)


def pow_difficulty(event_id: str) -> int:
    """NIP-13: leading zero bits of the event id."""
    value = int(event_id, 16)
    return 256 - value.bit_length()


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
            asyncio.get_running_loop().create_task(
                self.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"too slow to read")
            )
            return
        if self.writer is None:
            self.writer = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        """Drain the queue, many WebSocket frames per socket write.

        Frames are built here (server frames are unmasked and we never compress) and
        written straight to the transport: one system call for everything queued rather
        than one per message, which halves the cost of a delivery. Flow control is the
        transport's own buffer size.
        """
        queue = self.queue
        transport = self.transport
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
                while transport.get_write_buffer_size() > _WRITE_HIGH_WATER:
                    if transport.is_closing():
                        raise ConnectionError
                    await asyncio.sleep(0.005)  # a slow reader: let the kernel drain it
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
        event_limits = EventLimits(
            max_content_bytes=limits.max_content_bytes, max_tags=limits.max_event_tags
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
        self.admission = Admission(limits)
        self.nip42 = Nip42(RelayAddresses(config.public_url), limits)
        self.ingest = Ingestor(
            store,
            self._fan_out,
            max_batch=config.batch_max_events,
            max_delay=config.batch_max_delay,
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
                "max_content_length": limits.max_content_bytes,
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

    def _refusal(self, conn: Connection, event: Event, now: int) -> str | None:
        limits = self.config.limits
        if event.created_at > now + limits.max_future_seconds:
            return "invalid: created_at is too far in the future"
        expiration = expiration_of(event)
        if expiration is not None and expiration <= now:
            return "invalid: this event has expired"
        if event.kind == KIND_AUTH:
            return "invalid: authentication events are sent with AUTH, not EVENT"
        if limits.min_pow_difficulty and pow_difficulty(event.id) < limits.min_pow_difficulty:
            return (
                f"pow: difficulty {pow_difficulty(event.id)} is less than "
                f"{limits.min_pow_difficulty}"
            )
        if any(len(t) == 1 and t[0] == "-" for t in event.tags) and event.pubkey not in conn.authed:
            return "auth-required: this event is protected; only its author may publish it"
        return None

    async def _on_event(self, conn: Connection, message: m.ClientEvent) -> None:
        event = message.event
        if self._rate_limited(conn):
            conn.send(m.ok_message(event.id, False, "rate-limited: slow down"))
            return
        refusal = self._refusal(conn, event, int(time.time()))
        if refusal is not None:
            conn.send(m.ok_message(event.id, False, refusal))
            return
        future = self.ingest.submit(StoredEvent(event, message.json))
        future.add_done_callback(lambda f: _acknowledge(conn, event.id, f.result()))

    def _fan_out(self, stored: StoredEvent) -> None:
        event = stored.event
        protect = self.config.protect_gift_wraps
        for sub in self.index.matching(event):
            conn: Connection = sub.owner
            if conn.can_see(event, protect):
                conn.send(m.event_message(sub.sub_id, stored.json))

    # -- REQ / COUNT / CLOSE ----------------------------------------------------

    def _gift_wrap_refusal(
        self, conn: Connection, filters: tuple[Filter, ...], *, counting: bool = False
    ) -> str | None:
        """A filter that asks for gift wraps must name only recipients we authenticated.

        A REQ without ``kinds`` simply never returns others' gift wraps; a COUNT cannot
        leave them out, so one that could count gift wraps to a ``#p`` not authenticated
        is refused too (it would tell how much mail someone gets).
        """
        if not self.config.protect_gift_wraps:
            return None
        for f in filters:
            recipients = f.tags.get("p")
            explicit = f.kinds is not None and KIND_GIFT_WRAP in f.kinds
            implicit = counting and f.kinds is None and recipients is not None
            if not (explicit or implicit):
                continue
            if recipients is None or not recipients <= conn.authed:
                return (
                    "auth-required: gift wraps are served only to their recipient; "
                    "authenticate (NIP-42) as each key in #p"
                )
        return None

    def _with_limits(self, filters: tuple[Filter, ...]) -> tuple[Filter, ...]:
        limits = self.config.limits
        out = []
        for f in filters:
            wanted = limits.default_limit if f.limit is None else min(f.limit, limits.max_limit)
            out.append(Filter(f.ids, f.authors, f.kinds, f.tags, f.since, f.until, wanted))
        return tuple(out)

    async def _on_req(self, conn: Connection, message: m.ClientReq) -> None:
        sub_id = message.sub_id
        if self._rate_limited(conn):
            conn.send(m.closed_message(sub_id, "rate-limited: slow down"))
            return
        refusal = self._gift_wrap_refusal(conn, message.filters)
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
        old = conn.remove_subscription(sub_id)
        if old is not None:
            self.index.remove(old)
        sub = Subscription(conn, sub_id, message.filters)
        # Live events from now on reach the subscription; stored ones follow from the
        # query. An event committed in between may arrive twice; clients de-duplicate by id.
        conn.add_subscription(sub)
        self.index.add(sub)
        try:
            stored = await self.store.query(
                self._with_limits(message.filters), int(time.time()), self.config.limits.max_limit
            )
        except Exception:
            log.exception("query failed")
            conn.remove_subscription(sub_id)
            self.index.remove(sub)
            conn.send(m.closed_message(sub_id, "error: the query failed"))
            return
        if conn.subscription(sub_id) is not sub:
            return  # closed or replaced while the query ran
        protect = self.config.protect_gift_wraps
        for item in stored:
            if conn.can_see(item.event, protect):
                conn.send(m.event_message(sub_id, item.json))
        conn.send(m.eose_message(sub_id))

    async def _on_count(self, conn: Connection, message: m.ClientCount) -> None:
        sub_id = message.sub_id
        if self._rate_limited(conn):
            conn.send(m.closed_message(sub_id, "rate-limited: slow down"))
            return
        filters = message.filters
        refusal = self._gift_wrap_refusal(conn, filters, counting=True)
        if refusal is not None:
            conn.send(m.closed_message(sub_id, refusal))
            return
        count = await self.store.count(filters, int(time.time()))
        conn.send(m.count_message(sub_id, count))

    async def _on_close(self, conn: Connection, message: m.ClientClose) -> None:
        sub = conn.remove_subscription(message.sub_id)
        if sub is not None:
            self.index.remove(sub)

    # -- AUTH -------------------------------------------------------------------

    async def _on_auth(self, conn: Connection, message: m.ClientAuth) -> None:
        # Pipelined; signatures are checked in the AUTH thread (relay/auth.py).
        await self.nip42.on_auth(conn, message.event, int(time.time()))


def _acknowledge(conn: Connection, event_id: str, result: Result) -> None:
    if isinstance(result, Rejected):
        conn.send(m.ok_message(event_id, False, result.message))
        return
    status = result.status
    if status is SaveStatus.DUPLICATE:
        conn.send(m.ok_message(event_id, True, "duplicate: already have this event"))
    elif status is SaveStatus.DELETED:
        conn.send(m.ok_message(event_id, False, "blocked: this event was deleted by its author"))
    elif status is SaveStatus.OBSOLETE:
        conn.send(m.ok_message(event_id, True, "duplicate: a newer version is stored"))
    else:
        conn.send(m.ok_message(event_id, True, ""))


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
