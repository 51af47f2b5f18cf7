"""A client connection to one Nostr relay (ours or anyone's), over aiohttp WebSockets.

One reader task dispatches what the relay sends: ``OK`` to the publish waiting for it,
``EVENT``/``EOSE``/``CLOSED`` to their subscription, ``AUTH`` challenges to
:meth:`RelayConnection.authenticate`. Everything a relay sends is untrusted: malformed
messages are counted and dropped, events are returned as parsed (signature checks are
the caller's, who knows what it expects).

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
from xchat.wire import messages as m
from xchat.wire.event import Event
from xchat.wire.filter import Filter
from xchat.wire.kinds import KIND_AUTH

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
    """One WebSocket to one relay. Use ``async with RelayConnection.connect(url)``."""

    def __init__(
        self,
        url: str,
        ws: aiohttp.ClientWebSocketResponse,
        session: aiohttp.ClientSession,
        owns_session: bool,
    ) -> None:
        self.url = url
        self._ws = ws
        self._session = session
        self._owns_session = owns_session
        self._oks: dict[str, asyncio.Future[PublishResult]] = {}
        self._subs: dict[str, Subscription] = {}
        self._counts: dict[str, asyncio.Future[int]] = {}
        self._challenge: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._ids = itertools.count(1)
        self.notices: list[str] = []
        self.malformed = 0
        self._handlers: dict[type[Any], Callable[[Any], None]] = {
            m.RelayEvent: self._on_event,
            m.RelayOk: self._on_ok,
            m.RelayEose: self._on_eose,
            m.RelayClosed: self._on_closed,
            m.RelayCount: self._on_count,
            m.RelayAuth: self._on_auth,
            m.RelayNotice: self._on_notice,
        }
        self._reader = asyncio.create_task(self._read(), name=f"relay-reader {url}")

    @classmethod
    async def connect(
        cls, url: str, *, session: aiohttp.ClientSession | None = None, timeout: float = 10.0
    ) -> RelayConnection:
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
        return cls(url, ws, session, owns)

    async def __aenter__(self) -> RelayConnection:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        return self._reader.done()

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
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    parsed = m.parse_relay_message(msg.data)
                except RemoteProtocolError:
                    self.malformed += 1
                    continue
                self._dispatch(parsed)
        finally:
            error = RelayError(f"the connection to {self.url} closed")
            # whoever still waits gets the error; a future nobody waits for any more
            # (its caller gave up) is marked retrieved, so asyncio does not log it
            futures: list[asyncio.Future[Any]] = [*self._oks.values(), *self._counts.values()]
            for future in futures:
                if not future.done():
                    future.set_exception(error)
                    future.exception()
            for sub in self._subs.values():
                sub.closed = sub.closed or "error: connection closed"
                sub.eose.set()

    def _dispatch(self, message: Any) -> None:
        handler = self._handlers.get(type(message))
        if handler is not None:
            handler(message)

    def _on_event(self, message: m.RelayEvent) -> None:
        sub = self._subs.get(message.sub_id)
        if sub is not None:
            sub.events.put_nowait(message.event)

    def _on_ok(self, message: m.RelayOk) -> None:
        future = self._oks.pop(message.event_id, None)
        if future is not None and not future.done():
            future.set_result(PublishResult(message.accepted, message.message))

    def _on_eose(self, message: m.RelayEose) -> None:
        sub = self._subs.get(message.sub_id)
        if sub is not None:
            sub.complete = True
            sub.eose.set()

    def _on_closed(self, message: m.RelayClosed) -> None:
        sub = self._subs.pop(message.sub_id, None)
        if sub is not None:
            sub.closed = message.message
            sub.eose.set()
        count = self._counts.pop(message.sub_id, None)
        if count is not None and not count.done():
            count.set_exception(RelayError(message.message))

    def _on_count(self, message: m.RelayCount) -> None:
        future = self._counts.pop(message.sub_id, None)
        if future is not None and not future.done():
            future.set_result(message.count)

    def _on_auth(self, message: m.RelayAuth) -> None:
        if self._challenge.done():
            self._challenge = asyncio.get_running_loop().create_future()
        self._challenge.set_result(message.challenge)

    def _on_notice(self, message: m.RelayNotice) -> None:
        self.notices.append(message.message[:500])
        del self.notices[:-100]

    # -- requests -------------------------------------------------------------------

    async def _send(self, text: str) -> None:
        try:
            await self._ws.send_str(text)
        except (ConnectionError, RuntimeError, aiohttp.ClientError) as exc:
            raise RelayError(f"cannot send to {self.url}: {type(exc).__name__}") from None

    async def publish(self, event: Event, timeout: float = 10.0) -> PublishResult:
        """Send an event and wait for the relay's OK."""
        future = self._oks.get(event.id)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._oks[event.id] = future
        await self._send(m.publish_message(event))
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(future)
        except TimeoutError:
            self._oks.pop(event.id, None)
            raise RelayError(f"{self.url} did not answer within {timeout} s") from None

    async def publish_many(
        self, events: Sequence[Event], timeout: float = 30.0
    ) -> list[PublishResult]:
        """Pipeline several events: send them all, then wait for every OK."""
        loop = asyncio.get_running_loop()
        futures = []
        for event in events:
            future = self._oks.setdefault(event.id, loop.create_future())
            futures.append(future)
        for event in events:
            await self._send(m.publish_message(event))
        try:
            async with asyncio.timeout(timeout):
                return list(await asyncio.gather(*futures))
        except TimeoutError:
            raise RelayError(f"{self.url} did not answer within {timeout} s") from None

    def _new_id(self) -> str:
        return f"x{next(self._ids)}"

    async def subscribe(
        self, filters: Sequence[Filter | dict[str, Any]], sub_id: str | None = None
    ) -> Subscription:
        sub = Subscription(sub_id or self._new_id())
        self._subs[sub.sub_id] = sub
        await self._send(m.req_message(sub.sub_id, filters))
        return sub

    async def unsubscribe(self, sub: Subscription) -> None:
        if self._subs.pop(sub.sub_id, None) is not None and not self.closed:
            with contextlib.suppress(RelayError):
                await self._send(m.close_message(sub.sub_id))

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
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._counts[sub_id] = future
        await self._send(m.count_request(sub_id, filters))
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            self._counts.pop(sub_id, None)
            raise RelayError(f"{self.url} did not answer COUNT within {timeout} s") from None

    async def challenge(self, timeout: float = 10.0) -> str:
        """The relay's NIP-42 challenge; RelayError if none comes within ``timeout`` or
        the connection closes first."""
        if not self._challenge.done():
            either: set[asyncio.Future[Any]] = {self._challenge, self._reader}
            await asyncio.wait(either, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if self._challenge.done():
            return self._challenge.result()
        if self._reader.done():
            raise RelayError(f"the connection to {self.url} closed")
        raise RelayError(f"{self.url} sent no AUTH challenge")

    async def authenticate(
        self, key: SecretKey, rng: Rng = os.urandom, timeout: float = 10.0
    ) -> PublishResult:
        """NIP-42: sign the relay's challenge as ``key`` (call once per key)."""
        challenge = await self.challenge(timeout)
        event = sign_event(
            key,
            kind=KIND_AUTH,
            tags=[["relay", self.url], ["challenge", challenge]],
            content="",
            created_at=int(time.time()),
            rng=rng,
        )
        future = self._oks.setdefault(event.id, asyncio.get_running_loop().create_future())
        await self._send(m.auth_message(event))
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(future)
        except TimeoutError:
            raise RelayError(f"{self.url} did not answer AUTH within {timeout} s") from None
