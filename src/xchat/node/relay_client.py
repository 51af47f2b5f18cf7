"""A client connection to one Nostr relay (ours or anyone's), over aiohttp WebSockets.

A thin driver of :class:`xchat.wire.client.ClientProtocol`, which holds the NIP-01 state
(pending OKs, subscriptions, EOSE/CLOSED, COUNT, the NIP-42 challenge) and decides what
every message from the relay means. This module only moves text: one reader task feeds
each text frame to :meth:`~xchat.wire.client.ClientProtocol.receive_text` and turns the
events it returns into results for the coroutines waiting on them (``OK`` to the
publish's future, ``EVENT``/``EOSE``/``CLOSED`` to the :class:`Subscription`, ``AUTH``
challenges to :meth:`RelayConnection.challenge`); requests send the text the protocol
returns. When the connection ends, the protocol's
:meth:`~xchat.wire.client.ClientProtocol.connection_lost` ends whatever still waits.

Everything a relay sends is untrusted: malformed messages are counted and dropped (binary
frames too), events are returned as parsed (signature checks are the caller's, who knows
what it expects). The one clock read, an AUTH event's ``created_at``, comes from the
``clock`` given to :meth:`RelayConnection.connect`.

Specs: NIP-01, NIP-42, NIP-45.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from xchat.aio import reap
from xchat.core.events import sign_event
from xchat.crypto.keys import Rng, SecretKey
from xchat.errors import RemoteProtocolError
from xchat.wire import client as c
from xchat.wire.event import Event
from xchat.wire.filter import Filter

__all__ = ["PublishResult", "RelayConnection", "RelayError", "Subscription", "reap"]


class RelayError(RemoteProtocolError):
    """The relay closed, timed out, or refused a request."""


@dataclass(frozen=True, slots=True)
class PublishResult:
    accepted: bool
    message: str


@dataclass
class Subscription:
    """Events of one REQ as they arrive; ``eose`` is set at the end of stored events.

    ``eose`` is also set when the subscription ends before its EOSE (``closed`` then says
    why); ``complete`` tells the two apart: it is true once a real EOSE arrived.
    """

    sub_id: str
    events: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    eose: asyncio.Event = field(default_factory=asyncio.Event)
    closed: str | None = None  # the relay's CLOSED reason
    complete: bool = False  # a real EOSE arrived: every stored event was sent


class RelayConnection:
    """One WebSocket to one relay. Use ``async with await RelayConnection.connect(url)``."""

    def __init__(
        self,
        url: str,
        ws: aiohttp.ClientWebSocketResponse,
        session: aiohttp.ClientSession,
        owns_session: bool,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self._ws = ws
        self._session = session
        self._owns_session = owns_session
        self._clock = clock
        self._protocol = c.ClientProtocol(url)
        self._oks: dict[str, asyncio.Future[PublishResult]] = {}
        self._subs: dict[str, Subscription] = {}
        self._counts: dict[str, asyncio.Future[int]] = {}
        self._challenge: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._ids = itertools.count(1)
        self._handlers: dict[type[Any], Callable[[Any], None]] = {
            c.EventReceived: self._on_event,
            c.PublishAnswered: self._on_ok,
            c.AuthAnswered: self._on_ok,
            c.EndOfStored: self._on_eose,
            c.SubscriptionClosed: self._on_closed,
            c.CountReceived: self._on_count,
            c.CountRefused: self._on_count_refused,
            c.PublishFailed: self._on_publish_failed,
            c.CountFailed: self._on_count_failed,
            c.AuthChallenge: self._on_challenge,
        }
        self._reader = asyncio.create_task(self._read(), name=f"relay-reader {url}")

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> RelayConnection:
        """Open a connection; ``clock`` (Unix seconds) dates the AUTH events it sends."""
        owns = session is None
        session = session or aiohttp.ClientSession()
        try:
            ws = await session.ws_connect(
                url,
                timeout=aiohttp.ClientWSTimeout(ws_close=timeout),
                max_msg_size=4 * 1024 * 1024,
                autoping=True,
                heartbeat=None,
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            if owns:
                await session.close()
            raise RelayError(f"cannot connect to {url}: {type(exc).__name__}") from None
        return cls(url, ws, session, owns, clock)

    async def __aenter__(self) -> RelayConnection:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        return self._reader.done()

    @property
    def notices(self) -> list[str]:
        """The relay's latest NOTICE texts (see :data:`xchat.wire.client.MAX_NOTICES`)."""
        return self._protocol.notices

    @property
    def malformed(self) -> int:
        """Messages from the relay that were not NIP-01 (binary frames included)."""
        return self._protocol.malformed

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._ws.close()
        await reap(self._reader)
        if self._owns_session:
            await self._session.close()

    # -- reading ------------------------------------------------------------------

    async def _read(self) -> None:
        try:
            async for msg in self._ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    for event in self._protocol.receive_text(msg.data):
                        self._handle(event)
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    self._protocol.malformed += 1  # NIP-01 is text frames only
        finally:
            for event in self._protocol.connection_lost():
                self._handle(event)
            for sub in self._subs.values():  # e.g. subscribed after the protocol's end
                sub.closed = sub.closed or c.LOST
                sub.eose.set()

    def _handle(self, event: c.ClientEvent) -> None:
        handler = self._handlers.get(type(event))
        if handler is not None:  # NOTICE, malformed, unexpected: the protocol counts them
            handler(event)

    def _on_event(self, event: c.EventReceived) -> None:
        sub = self._subs.get(event.sub_id)
        if sub is not None:
            sub.events.put_nowait(event.event)

    def _on_ok(self, event: c.PublishAnswered | c.AuthAnswered) -> None:
        future = self._oks.pop(event.event_id, None)
        if future is not None and not future.done():
            future.set_result(PublishResult(event.accepted, event.message))

    def _on_eose(self, event: c.EndOfStored) -> None:
        sub = self._subs.get(event.sub_id)
        if sub is not None:
            sub.complete = True
            sub.eose.set()

    def _on_closed(self, event: c.SubscriptionClosed) -> None:
        sub = self._subs.pop(event.sub_id, None)
        if sub is not None:
            sub.closed = sub.closed or event.message
            sub.eose.set()

    def _on_count(self, event: c.CountReceived) -> None:
        future = self._counts.pop(event.sub_id, None)
        if future is not None and not future.done():
            future.set_result(event.count)

    def _on_count_refused(self, event: c.CountRefused) -> None:
        self._fail(self._counts.pop(event.sub_id, None), RelayError(event.message))

    def _on_publish_failed(self, event: c.PublishFailed) -> None:
        self._fail(self._oks.pop(event.event_id, None), self._lost())

    def _on_count_failed(self, event: c.CountFailed) -> None:
        self._fail(self._counts.pop(event.sub_id, None), self._lost())

    def _on_challenge(self, event: c.AuthChallenge) -> None:
        if self._challenge.done():
            self._challenge = asyncio.get_running_loop().create_future()
        self._challenge.set_result(event.challenge)

    def _lost(self) -> RelayError:
        return RelayError(f"the connection to {self.url} closed")

    @staticmethod
    def _fail(future: asyncio.Future[Any] | None, error: RelayError) -> None:
        """Whoever waits gets ``error``; a future nobody waits for any more (its caller
        gave up) is marked retrieved, so asyncio does not log it."""
        if future is not None and not future.done():
            future.set_exception(error)
            future.exception()

    # -- requests -------------------------------------------------------------------

    async def _send(self, text: str) -> None:
        if self.closed:
            raise self._lost()
        try:
            await self._ws.send_str(text)
        except (ConnectionError, RuntimeError, aiohttp.ClientError) as exc:
            raise RelayError(f"cannot send to {self.url}: {type(exc).__name__}") from None

    def _ok_future(self, event_id: str) -> asyncio.Future[PublishResult]:
        future = self._oks.get(event_id)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._oks[event_id] = future
        return future

    def _give_up(self, event_id: str) -> None:
        self._oks.pop(event_id, None)
        self._protocol.forget(event_id)

    async def _answer(self, event_id: str, text: str, timeout: float, what: str) -> PublishResult:
        """Send ``text`` (an EVENT or AUTH) and wait for the OK of ``event_id``."""
        future = self._ok_future(event_id)
        try:
            await self._send(text)
            async with asyncio.timeout(timeout):
                return await asyncio.shield(future)
        except TimeoutError:
            self._give_up(event_id)
            raise RelayError(f"{self.url} did not answer {what}within {timeout} s") from None
        except RelayError:
            if not future.done():
                self._give_up(event_id)
            raise

    async def publish(self, event: Event, timeout: float = 10.0) -> PublishResult:
        """Send an event and wait for the relay's OK."""
        return await self._answer(event.id, self._protocol.send_event(event), timeout, "")

    async def publish_many(
        self, events: Sequence[Event], timeout: float = 30.0
    ) -> list[PublishResult]:
        """Pipeline several events: send them all, then wait for every OK."""
        futures = [self._ok_future(event.id) for event in events]
        try:
            for event in events:
                await self._send(self._protocol.send_event(event))
            async with asyncio.timeout(timeout):
                return list(await asyncio.gather(*futures))
        except TimeoutError:
            raise RelayError(f"{self.url} did not answer within {timeout} s") from None
        finally:
            for event, future in zip(events, futures, strict=True):
                if not future.done():
                    self._give_up(event.id)

    def _new_id(self) -> str:
        return f"x{next(self._ids)}"

    async def subscribe(
        self, filters: Sequence[Filter | dict[str, Any]], sub_id: str | None = None
    ) -> Subscription:
        sub = Subscription(sub_id or self._new_id())
        text = self._protocol.subscribe(sub.sub_id, filters)
        self._subs[sub.sub_id] = sub
        try:
            await self._send(text)
        except RelayError:
            self._subs.pop(sub.sub_id, None)
            self._protocol.close(sub.sub_id)
            raise
        return sub

    async def unsubscribe(self, sub: Subscription) -> None:
        if self._subs.pop(sub.sub_id, None) is not None:
            text = self._protocol.close(sub.sub_id)
            if not self.closed:
                with contextlib.suppress(RelayError):
                    await self._send(text)

    async def query(
        self, filters: Sequence[Filter | dict[str, Any]], timeout: float = 10.0
    ) -> list[Event]:
        """Stored events matching ``filters`` (REQ until EOSE, then CLOSE).

        A CLOSED after the EOSE is no refusal: some relays (rust-nostr's) end a REQ they
        have fully answered, e.g. one whose ``ids`` were all found.
        """
        sub = await self.subscribe(filters)
        try:
            async with asyncio.timeout(timeout):
                await sub.eose.wait()
        except TimeoutError:
            raise RelayError(f"{self.url} sent no EOSE within {timeout} s") from None
        finally:
            await self.unsubscribe(sub)
        if sub.closed is not None and not sub.complete:
            raise RelayError(sub.closed)
        events = []
        while not sub.events.empty():
            events.append(sub.events.get_nowait())
        return events

    async def count(self, filters: Sequence[Filter | dict[str, Any]], timeout: float = 10.0) -> int:
        sub_id = self._new_id()
        text = self._protocol.count(sub_id, filters)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._counts[sub_id] = future
        try:
            await self._send(text)
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            raise RelayError(f"{self.url} did not answer COUNT within {timeout} s") from None
        finally:
            if not future.done():
                self._counts.pop(sub_id, None)
                self._protocol.forget_count(sub_id)

    async def challenge(self, timeout: float = 10.0) -> str:
        """The relay's NIP-42 challenge; RelayError if none comes within ``timeout`` or
        the connection closes first."""
        if not self._challenge.done():
            either: set[asyncio.Future[Any]] = {self._challenge, self._reader}
            await asyncio.wait(either, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if self._challenge.done():
            return self._challenge.result()
        if self._reader.done():
            raise self._lost()
        raise RelayError(f"{self.url} sent no AUTH challenge")

    async def authenticate(
        self, key: SecretKey, rng: Rng = os.urandom, timeout: float = 10.0
    ) -> PublishResult:
        """NIP-42: sign the relay's challenge as ``key`` (call once per key)."""
        await self.challenge(timeout)
        template = self._protocol.auth_template(int(self._clock()))
        event = sign_event(
            key,
            kind=template.kind,
            tags=template.tags,
            content=template.content,
            created_at=template.created_at,
            rng=rng,
        )
        return await self.send_auth(event, timeout)

    async def send_auth(self, event: Event, timeout: float = 10.0) -> PublishResult:
        """Send an AUTH event signed already (not checked here: the relay judges it) and
        wait for its OK. :meth:`authenticate` builds and signs the right one."""
        return await self._answer(event.id, self._protocol.auth_event(event), timeout, "AUTH ")
