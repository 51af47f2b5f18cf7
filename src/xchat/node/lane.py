"""One connection of a relay reader (a *lane*), and the requests made on it.

A reader (``xchat.node.reader``) reads a relay over one lane, or over one lane per key
for relays that authenticate one key per connection. This module holds a lane's state
(:class:`Lane`: the keys authenticated on it, under which challenge, whether it caught
up) and the steps that talk over it: NIP-42 authentication of its keys (pipelined: every
AUTH event sent, then every OK awaited), the gift-wrap filters for a set of keys, waiting
for new subscriptions to be served, closing old ones without losing what they received,
and reading one page of stored events. The policy (what to ask when, retries) is the
reader's.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any, Final

from xchat.crypto.keys import SecretKey
from xchat.node.relay_client import (
    PublishResult,
    RelayConnection,
    RelayError,
    Subscription,
    reap,
)
from xchat.wire.event import Event
from xchat.wire.kinds import KIND_GIFT_WRAP

__all__ = [
    "DRAIN_TIMEOUT",
    "QUERY_TIMEOUT",
    "Lane",
    "Live",
    "authenticate",
    "challenged_anew",
    "gift_wrap_filters",
    "page",
    "split_req",
    "stop_pumps",
    "unsubscribe",
    "until_served",
]

#: One page of stored events while catching up; and a new subscription's EOSE.
QUERY_TIMEOUT: Final = 30.0
#: How long the events already received on a closing subscription may take to hand over.
DRAIN_TIMEOUT: Final = 30.0
#: 250 keys of 67 bytes in a filter, 4 filters in a REQ: ~67 KB, under common relays'
#: message limits (ours: 256 KiB) and filter limits (ours: 1000 values, 10 filters).
KEYS_PER_FILTER: Final = 250
FILTERS_PER_REQ: Final = 4
#: How long a relay has to send its NIP-42 challenge before we subscribe without one.
#: Relays that challenge on connect do so at once; others challenge with a refusal.
CHALLENGE_TIMEOUT: Final = 1.0
#: How long a relay that refused a subscription (``auth-required``) has to challenge.
REFUSAL_CHALLENGE_TIMEOUT: Final = 5.0
#: How long a batch of AUTH events has for its OKs.
AUTH_TIMEOUT: Final = 10.0
#: AUTH events in flight at once on one connection.
AUTH_BATCH: Final = 256


@dataclass(eq=False)
class Lane:
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
class Live:
    """The live subscriptions of one lane, and the tasks handing their events over."""

    subs: list[Subscription] = field(default_factory=list)
    pumps: list[asyncio.Task[None]] = field(default_factory=list)


def gift_wrap_filters(keys: list[str], since: int | None) -> list[list[dict[str, Any]]]:
    """REQs (lists of filters) for gift wraps to ``keys``, within relays' limits."""
    filters: list[dict[str, Any]] = []
    for i in range(0, len(keys), KEYS_PER_FILTER):
        f: dict[str, Any] = {"kinds": [KIND_GIFT_WRAP], "#p": keys[i : i + KEYS_PER_FILTER]}
        if since is not None:
            f["since"] = since
        filters.append(f)
    return split_req(filters)


def split_req(filters: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """``filters`` in REQs of at most :data:`FILTERS_PER_REQ`."""
    return [filters[i : i + FILTERS_PER_REQ] for i in range(0, len(filters), FILTERS_PER_REQ)]


async def until_served(lane: Lane, live: Live) -> None:
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


async def unsubscribe(lane: Lane, live: Live) -> None:
    """Close ``live``'s subscriptions, handing over the events already received."""
    for sub in live.subs:
        await lane.conn.unsubscribe(sub)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DRAIN_TIMEOUT):
            for sub in live.subs:
                await sub.events.join()
    await stop_pumps(live)


async def stop_pumps(live: Live) -> None:
    await reap(*live.pumps)
    live.pumps.clear()


async def page(lane: Lane, filters: list[dict[str, Any]]) -> tuple[list[Event], bool]:
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


async def authenticate(lane: Lane, keys: dict[str, SecretKey]) -> None:
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
    for i in range(0, len(todo), AUTH_BATCH):
        batch = todo[i : i + AUTH_BATCH]
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


async def challenged_anew(lane: Lane) -> bool:
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
