"""One-shot relay connections, and what a relay publishes about its limits (NIP-11).

Theory of operation. A relay sees which events travel over one connection. Gift wraps
are signed by one-time keys and name no sender; events signed by our identity (the
device bundle, the inbox relay list) name us. If both went over one connection, the
relay could attribute the gift wraps to us. And a lookup of someone's bundle or relay
list names whom we are about to write to: on the gift-wrap connection it would link
those gift wraps to their recipient's identity, and over time give the relay the
contact list of whoever holds that connection. So every identity-signed publish and
every lookup opens a connection of its own, never authenticated, used for that one
request and closed right after (:func:`publish_once`, :func:`query_once`); gift wraps go
over the pool's publishing connections (``RelayPool.publish``), which carry nothing
else. What the network address and timing still reveal is in docs/threat-model.md.

:func:`fetch_limits` reads a relay's NIP-11 document (``max_content_length``,
``max_message_length``) with a short timeout, so that the device bundle can be sized to
fit every inbox relay; a relay that does not answer is given the default limits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import aiohttp
import orjson

from xchat.node.relay_client import PublishResult, RelayConnection, RelayError
from xchat.wire.event import Event

__all__ = [
    "DEFAULT_MAX_CONTENT",
    "NIP11_TIMEOUT",
    "RelayLimits",
    "fetch_limits",
    "publish_once",
    "query_once",
]

T = TypeVar("T")

#: The content limit assumed for a relay that publishes none (the common 4,096
#: characters of strfry and nostr-rs-relay defaults).
DEFAULT_MAX_CONTENT: Final = 4096
#: The limit on a whole WebSocket message assumed when a relay publishes none.
DEFAULT_MAX_MESSAGE: Final = 65536
#: The longest wait for a relay's NIP-11 document (seconds).
NIP11_TIMEOUT: Final = 3.0
_NIP11_MAX_BYTES: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class RelayLimits:
    """What a relay accepts: characters of event content, bytes of a message."""

    max_content: int = DEFAULT_MAX_CONTENT
    max_message: int = DEFAULT_MAX_MESSAGE
    published: bool = False  # read from the relay's NIP-11 document


def _positive(value: object) -> int | None:
    return value if type(value) is int and value > 0 else None


async def fetch_limits(
    session: aiohttp.ClientSession, url: str, timeout: float = NIP11_TIMEOUT
) -> RelayLimits:
    """The relay's NIP-11 ``limitation``; the defaults if it has none, sends something
    else, or does not answer within ``timeout``."""
    http = "http" + url.removeprefix("ws") if url.startswith("ws") else url
    try:
        async with (
            asyncio.timeout(timeout),
            session.get(http, headers={"Accept": "application/nostr+json"}) as response,
        ):
            if response.status != 200:
                return RelayLimits()
            body = await response.content.read(_NIP11_MAX_BYTES)
        document = orjson.loads(body)
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
        return RelayLimits()
    limitation = document.get("limitation") if isinstance(document, dict) else None
    if not isinstance(limitation, dict):
        return RelayLimits()
    content = _positive(limitation.get("max_content_length"))
    message = _positive(limitation.get("max_message_length"))
    if content is None and message is None:
        return RelayLimits()
    return RelayLimits(
        max_content=content or DEFAULT_MAX_CONTENT,
        max_message=message or DEFAULT_MAX_MESSAGE,
        published=True,
    )


async def _once(
    session: aiohttp.ClientSession,
    url: str,
    timeout: float,
    request: Callable[[RelayConnection], Awaitable[T]],
) -> T:
    """``request`` over a new connection, closed afterwards (RelayError if the relay
    cannot be reached or does not answer within ``timeout``, connecting included)."""
    try:
        async with asyncio.timeout(timeout):
            conn = await RelayConnection.connect(url, session=session, timeout=timeout)
            try:
                return await request(conn)
            finally:
                await conn.close()
    except TimeoutError:
        raise RelayError(f"{url} did not answer within {timeout} s") from None


async def publish_once(
    session: aiohttp.ClientSession, url: str, event: Event, timeout: float
) -> PublishResult:
    """Publish ``event`` over a connection of its own (see :func:`_once`)."""
    return await _once(session, url, timeout, lambda conn: conn.publish(event, timeout))


async def query_once(
    session: aiohttp.ClientSession, url: str, filters: Sequence[dict[str, Any]], timeout: float
) -> list[Event]:
    """Stored events matching ``filters``, over a connection of its own."""
    return await _once(session, url, timeout, lambda conn: conn.query(filters, timeout))
