"""RelayPool against real relay processes (and faulty proxies in front of them)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import time
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any

import orjson
import pytest
from aiohttp import web

from tests.node.conftest import StartFaulty, StartRelay
from tests.relay.conftest import make_event, new_key
from xchat.core.envelope import gift_wrap
from xchat.crypto.keys import SecretKey
from xchat.node.pool import BACKOFF_START, RelayHealth, RelayPool
from xchat.node.relay_client import PublishResult, RelayConnection, RelayError, reap
from xchat.wire import messages as m
from xchat.wire.event import Event

OPEN_RELAY = "[relay]\nprotect_gift_wraps = false\n"  # serves gift wraps to anyone


def run(coro: Awaitable[Any], timeout: float = 100) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


async def until(check: Callable[[], object], what: str, timeout: float = 30) -> None:
    """Poll ``check`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def wrap_to(recipient: SecretKey, text: str = "hello") -> Event:
    """A real gift wrap: one-time key, dated up to two days back."""
    return gift_wrap(text.encode(), recipient.public_key, int(time.time()), os.urandom)


async def publish_to(url: str, events: Sequence[Event]) -> None:
    async with await RelayConnection.connect(url) as conn:
        results = await conn.publish_many(events)
    assert all(r.accepted for r in results), results


class Inbox:
    """An ``on_event`` that records what it is given."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Event]] = []

    async def __call__(self, url: str, event: Event) -> None:
        self.calls.append((url, event))

    def ids(self) -> Counter[str]:
        return Counter(event.id for _, event in self.calls)

    def has(self, events: Sequence[Event]) -> bool:
        got = self.ids()
        return all(e.id in got for e in events)


class HealthLog:
    """An ``on_health_change`` that records (state, failures, delay until the retry)."""

    def __init__(self) -> None:
        self.entries: dict[str, list[tuple[str, int, float | None]]] = {}

    def __call__(self, health: RelayHealth) -> None:
        delay = None if health.next_retry_at is None else health.next_retry_at - time.time()
        self.entries.setdefault(health.url, []).append((health.state, health.failures, delay))

    def states(self, url: str) -> list[str]:
        return [state for state, _, _ in self.entries.get(url, [])]


@contextlib.asynccontextmanager
async def running_pool(
    keys: dict[str, SecretKey], urls: Sequence[str], inbox: Inbox | None = None, **kwargs: Any
) -> AsyncIterator[RelayPool]:
    pool = RelayPool(lambda: keys, inbox or Inbox(), **kwargs)
    pool.on_health_change = HealthLog()
    await pool.start(urls)
    try:
        yield pool
    finally:
        await pool.close()


def health_of(pool: RelayPool, url: str) -> RelayHealth:
    return next(h for h in pool.health() if h.url == url)


def log_of(pool: RelayPool) -> HealthLog:
    assert isinstance(pool.on_health_change, HealthLog)
    return pool.on_health_change


def connected(pool: RelayPool, *urls: str) -> Callable[[], bool]:
    return lambda: all(health_of(pool, url).state == "connected" for url in urls)


def keyring(*keys: SecretKey) -> dict[str, SecretKey]:
    return {key.public_key.hex: key for key in keys}


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"ws://127.0.0.1:{port}"


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A port that accepts TCP connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"ws://127.0.0.1:{sock.getsockname()[1]}"


# -- reading --------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_mail_to_identity_and_mailbox_keys_arrives_once_from_two_relays(
    relays: StartRelay,
) -> None:
    a, b = relays(), relays()
    identity, mailbox, stranger = new_key(), new_key(), new_key()
    stored = [wrap_to(identity, "s1"), wrap_to(mailbox, "s2"), wrap_to(identity, "s3")]
    live = [wrap_to(k, f"live {i}") for i, k in enumerate([identity, mailbox] * 4)]
    to_stranger = wrap_to(stranger)
    inbox = Inbox()

    async def scenario() -> None:
        for url in (a.url, b.url):
            await publish_to(url, [*stored, to_stranger])
        async with running_pool(keyring(identity, mailbox), [a.url, b.url], inbox) as pool:
            await until(lambda: inbox.has(stored), "the stored mail")
            await until(connected(pool, a.url, b.url), "both relays caught up")
            for url in (a.url, b.url):
                await publish_to(url, live)
            await until(lambda: inbox.has(live), "the live mail")
            # Both relays have sent everything (each counts what it sent, duplicates too).
            await until(
                lambda: all(h.received >= len(stored) + len(live) for h in pool.health()),
                "every event from both relays",
            )
            everything = [*stored, *live]
            assert inbox.ids() == Counter(e.id for e in everything)  # each exactly once
            assert {e.id: e for _, e in inbox.calls} == {e.id: e for e in everything}
            assert {url for url, _ in inbox.calls} <= {a.url, b.url}
            assert to_stranger.id not in inbox.ids()

    run(scenario())


@pytest.mark.timeout(120)
def test_gift_wraps_need_auth_and_a_relay_refusing_auth_is_still_read(
    relays: StartRelay, faulty_relays: StartFaulty
) -> None:
    protecting, open_relay = relays(), relays(OPEN_RELAY)
    refusing_protecting = faulty_relays(protecting.url, refuse_auth=True)
    refusing_open = faulty_relays(open_relay.url, refuse_auth=True)
    me = new_key()
    on_protecting = [wrap_to(me, "p1"), wrap_to(me, "p2")]
    on_open = [wrap_to(me, "o1"), wrap_to(me, "o2")]
    refused_inbox, direct_inbox = Inbox(), Inbox()

    async def scenario() -> None:
        await publish_to(protecting.url, on_protecting)
        await publish_to(open_relay.url, on_open)
        urls = [refusing_protecting.url, refusing_open.url]
        async with (
            running_pool(keyring(me), urls, refused_inbox) as refused,
            running_pool(keyring(me), [protecting.url], direct_inbox),
        ):
            # Authenticated directly, our relay serves the recipient its gift wraps.
            await until(lambda: direct_inbox.has(on_protecting), "mail after AUTH")
            # AUTH refused: the open relay is read all the same...
            await until(lambda: refused_inbox.has(on_open), "mail without AUTH")
            await until(connected(refused, refusing_open.url), "the open relay read")
            # ...and the protecting relay refuses the subscription: an error, backing off.
            bad = refusing_protecting.url
            await until(lambda: health_of(refused, bad).failures >= 2, "repeated failures")
            health = health_of(refused, bad)
            assert health.state in ("connecting", "disconnected")
            assert "auth-required" in health.last_error
            assert {url for url, _ in refused_inbox.calls} == {refusing_open.url}
            assert refused_inbox.ids() == Counter(e.id for e in on_open)

    run(scenario())
    assert refusing_protecting.stats()["auth_refused"] >= 2
    assert refusing_open.stats()["auth_refused"] >= 1


@pytest.mark.timeout(120)
def test_a_relay_that_challenges_only_with_a_refusal_is_read(
    relays: StartRelay, faulty_relays: StartFaulty
) -> None:
    relay = relays()
    on_demand = faulty_relays(relay.url, challenge_on_refusal=True)
    me = new_key()
    stored = [wrap_to(me, "stored")]
    inbox = Inbox()

    async def scenario() -> None:
        await publish_to(relay.url, stored)
        async with running_pool(keyring(me), [on_demand.url], inbox) as pool:
            await until(lambda: inbox.has(stored), "stored mail after the refusal")
            await until(connected(pool, on_demand.url), "connected")
            live = [wrap_to(me, "live")]
            await publish_to(relay.url, live)
            await until(lambda: inbox.has(live), "live mail")
            assert log_of(pool).states(on_demand.url).count("disconnected") == 0

    run(scenario())
    assert on_demand.stats()["challenges_on_refusal"] >= 1


@pytest.mark.timeout(120)
def test_a_relay_that_takes_one_key_per_connection_gets_a_connection_per_key(
    relays: StartRelay, faulty_relays: StartFaulty
) -> None:
    relay = relays()
    one_key = faulty_relays(relay.url, one_key=True)
    first, second, third = new_key(), new_key(), new_key()
    keys = keyring(first, second)
    stored = [wrap_to(first, "1"), wrap_to(second, "2")]
    inbox = Inbox()

    async def scenario() -> None:
        await publish_to(relay.url, stored)
        async with running_pool(keys, [one_key.url], inbox) as pool:
            await until(lambda: inbox.has(stored), "mail to both keys")
            await until(connected(pool, one_key.url), "connected")
            live = [wrap_to(first, "live 1"), wrap_to(second, "live 2")]
            await publish_to(relay.url, live)
            await until(lambda: inbox.has(live), "live mail to both keys")
            keys.update(keyring(third))
            pool.keys_changed()
            later = [wrap_to(third, "3"), wrap_to(first, "again")]
            await publish_to(relay.url, later)
            await until(lambda: inbox.has(later), "mail to the new key")
            await until(connected(pool, one_key.url), "connected again")
            assert set(inbox.ids().values()) == {1}
            assert health_of(pool, one_key.url).failures == 0
            # Publishing still works, on one of the connections.
            assert (await pool.publish_one(one_key.url, make_event(first))).accepted

    run(scenario())
    assert one_key.stats()["connections"] >= 1 + 2 + 3  # one, then a lane per key


@pytest.mark.timeout(120)
def test_keys_changed_brings_a_new_keys_mail(relays: StartRelay) -> None:
    relay = relays()
    first, second = new_key(), new_key()
    keys = keyring(first)
    early_to_second = wrap_to(second, "before we knew the key")
    inbox = Inbox()

    async def scenario() -> None:
        async with running_pool(keys, [relay.url], inbox) as pool:
            await until(connected(pool, relay.url), "connected")
            to_first = wrap_to(first)
            await publish_to(relay.url, [early_to_second, to_first])
            await until(lambda: inbox.has([to_first]), "the first key's mail")
            assert early_to_second.id not in inbox.ids()  # not subscribed to yet
            keys.update(keyring(second))
            pool.keys_changed()
            await until(lambda: inbox.has([early_to_second]), "the stored mail of the new key")
            later = [wrap_to(second, "live"), wrap_to(first, "still")]
            await publish_to(relay.url, later)
            await until(lambda: inbox.has(later), "live mail to both keys")
            assert set(inbox.ids().values()) == {1}

    run(scenario())


@pytest.mark.timeout(120)
def test_mail_arriving_while_the_keys_change_is_not_lost(
    relays: StartRelay, faulty_relays: StartFaulty
) -> None:
    """A change of keys replaces the live subscription. Mail to a key kept across the
    change must reach us on the old subscription or the new one: the old one may only
    close once the relay serves the new one. (The relay is 100 ms away, so each handover
    has a window; no re-read can hide a loss, it is hours away.)"""
    relay = relays(OPEN_RELAY)
    slow = faulty_relays(relay.url, latency_ms=100)
    kept = new_key()
    keys = keyring(kept)
    inbox = Inbox()
    sent: list[Event] = []

    async def scenario() -> None:
        async with running_pool(keys, [slow.url], inbox, resync_interval=3600) as pool:
            await until(connected(pool, slow.url), "connected")
            async with await RelayConnection.connect(relay.url) as conn:
                for _ in range(8):  # eight handovers, mail flowing through each
                    for _ in range(10):
                        event = wrap_to(kept, "during the handover")
                        sent.append(event)
                        result = await conn.publish(event)
                        assert result.accepted, result
                        await asyncio.sleep(0.02)
                        if len(sent) % 10 == 3:
                            keys.update(keyring(new_key()))
                            pool.keys_changed()
            await until(lambda: inbox.has(sent), "every event sent during the handovers", 20)
            assert set(inbox.ids().values()) == {1}

    run(scenario())


@pytest.mark.timeout(60)
def test_publishing_never_uses_the_authenticated_reading_connection(
    relays: StartRelay, faulty_relays: StartFaulty
) -> None:
    """The reader authenticates as our keys; a gift wrap published over that connection
    would tell the relay who sent it. Publishing and lookups use a connection that never
    authenticated."""
    relay = relays()
    proxy = faulty_relays(relay.url)
    me, peer = new_key(), new_key()

    async def scenario() -> None:
        async with running_pool(keyring(me), [proxy.url]) as pool:
            await until(connected(pool, proxy.url), "connected")
            assert proxy.stats().get("events_from_authenticated", 0) == 0
            results = await pool.publish(wrap_to(peer), [proxy.url])
            assert isinstance(results[proxy.url], PublishResult)
            assert results[proxy.url].accepted
            mine = [{"kinds": [1], "authors": [me.public_key.hex]}]
            assert await pool.query(mine, [proxy.url]) == []

    run(scenario())
    stats = proxy.stats()
    assert stats.get("events_from_authenticated", 0) == 0
    assert stats["connections"] >= 2


@pytest.mark.timeout(60)
def test_a_relay_that_wants_auth_to_publish_gets_the_event_over_the_reading_connection(
    relays: StartRelay, faulty_relays: StartFaulty
) -> None:
    relay = relays()
    proxy = faulty_relays(relay.url, auth_to_publish=True)
    me, peer = new_key(), new_key()

    async def scenario() -> None:
        async with running_pool(keyring(me), [proxy.url]) as pool:
            await until(connected(pool, proxy.url), "connected")
            result = await pool.publish_one(proxy.url, wrap_to(peer))
            assert result.accepted, result

    run(scenario())
    stats = proxy.stats()
    assert stats["events_refused_unauthenticated"] == 1
    assert stats["events_from_authenticated"] == 1


@pytest.mark.timeout(120)
def test_reader_reconnects_after_sigkill_and_restart_on_the_same_port(
    relays: StartRelay,
) -> None:
    a, b = relays(), relays()
    port = int(a.url.rsplit(":", 1)[1])
    me = new_key()
    before = [wrap_to(me, "before")]
    inbox = Inbox()

    async def scenario() -> None:
        nonlocal a
        await publish_to(a.url, before)
        async with running_pool(keyring(me), [a.url, b.url], inbox) as pool:
            log = log_of(pool)
            await until(connected(pool, a.url, b.url), "connected")
            await until(lambda: inbox.has(before), "mail stored before")

            a.stop(signal.SIGKILL)
            await until(lambda: health_of(pool, a.url).state == "disconnected", "disconnected")
            during = [wrap_to(me, "while a was down")]
            await publish_to(b.url, during)
            await until(lambda: inbox.has(during), "mail through the other relay")
            # Let reconnecting fail a few times: the backoff grows.
            await until(lambda: health_of(pool, a.url).failures >= 3, "three failures", 40)
            assert health_of(pool, a.url).state in ("connecting", "disconnected")
            assert "cannot connect" in health_of(pool, a.url).last_error

            a = relays(db=a.db, port=port)
            assert a.url.endswith(f":{port}")
            after_restart = [wrap_to(me, "published as soon as a is back")]
            await publish_to(a.url, after_restart)
            await until(connected(pool, a.url), "reconnected", 40)
            await until(lambda: inbox.has(after_restart), "mail stored while reconnecting")
            health = health_of(pool, a.url)
            assert health.failures == 0
            assert health.last_error == ""
            live = [wrap_to(me, "live after the restart")]
            await publish_to(a.url, live)
            await until(lambda: inbox.has(live), "live mail after the restart")

            states = log.states(a.url)
            first_down = states.index("disconnected")
            assert "connected" in states[:first_down]
            assert "connected" in states[first_down:]
            entries = log.entries[a.url]
            third = next(delay for s, n, delay in entries if s == "disconnected" and n == 3)
            assert third is not None
            assert third >= BACKOFF_START * 4 * 0.5 - 0.1  # 0.5 s doubled twice, -50 %

            # A connection that worked resets the backoff: the next retry comes soon.
            seen = len(entries)
            a.stop(signal.SIGKILL)
            await until(lambda: health_of(pool, a.url).state == "disconnected", "down again")
            _, failures, delay = next(e for e in entries[seen:] if e[0] == "disconnected")
            assert failures == 1
            assert delay is not None
            assert delay <= BACKOFF_START * 1.5
            # Nothing came twice, although the reader caught up again from its cursor.
            assert set(inbox.ids().values()) == {1}

    run(scenario())


@pytest.mark.timeout(120)
def test_backoff_grows_while_a_relay_accepts_connections_and_drops_them(
    faulty_relays: StartFaulty,
) -> None:
    broken = faulty_relays(closed_port_url())  # accepts the WebSocket, then closes it

    async def scenario() -> None:
        async with running_pool(keyring(new_key()), [broken.url]) as pool:
            await until(lambda: health_of(pool, broken.url).failures >= 3, "three failures", 40)
            entries = log_of(pool).entries[broken.url]
            assert "connected" not in [state for state, _, _ in entries]
            delays = {n: d for s, n, d in entries if s == "disconnected" and d is not None}
            # 0.5 s, 1 s, 2 s, each +-50 %: the third wait is at least 1 s.
            assert delays[3] >= 1.0 - 0.1

    run(scenario())
    assert broken.stats()["upstream_failures"] >= 3


@pytest.mark.timeout(120)
def test_catch_up_pages_past_the_relays_limit_with_hundreds_of_keys(
    relays: StartRelay,
) -> None:
    # The relay returns at most 5 stored events per query.
    relay = relays("[limits]\ndefault_limit = 5\nmax_limit = 5\n")
    keys = [new_key() for _ in range(600)]  # 3 filters of 250 keys, 600 AUTHs
    stored = [wrap_to(keys[i], f"stored {i}") for i in (0, 299, 599) for _ in range(8)]
    later = [wrap_to(keys[i], f"later {i}") for i in (1, 300, 598) for _ in range(4)]
    cursors: dict[str, int] = {}
    inbox, second_inbox = Inbox(), Inbox()

    async def scenario() -> None:
        await publish_to(relay.url, stored)
        started = int(time.time())
        async with running_pool(
            keyring(*keys), [relay.url], inbox, cursor_store=cursors.__setitem__
        ) as pool:
            await until(connected(pool, relay.url), "connected")
            await until(lambda: inbox.has(stored), "every stored event, page by page")
            assert inbox.ids() == Counter(e.id for e in stored)
        assert started <= cursors[relay.url] <= time.time()
        # Offline, more mail comes; a new pool starts from the cursor and pages again.
        await publish_to(relay.url, later)
        async with running_pool(
            keyring(*keys), [relay.url], second_inbox, cursor_load=cursors.get
        ) as pool:
            await until(lambda: second_inbox.has(later), "mail that came while offline")
            await until(connected(pool, relay.url), "connected again")

    run(scenario())


@pytest.mark.timeout(120)
def test_every_event_once_through_lossy_duplicating_reordering_relays(
    relays: StartRelay, faulty_relays: StartFaulty
) -> None:
    a, b = relays(), relays()
    lossy = faulty_relays(a.url, drop=0.3, dup=0.3, reorder=0.3, seed=11)
    shuffling = faulty_relays(b.url, dup=0.3, reorder=0.4, hold_seconds=0.3, seed=12)
    me, other = new_key(), new_key()
    events = [wrap_to(k, f"m{i}") for i, k in enumerate([me, other] * 30)]
    inbox = Inbox()

    async def scenario() -> None:
        urls = [lossy.url, shuffling.url]
        async with running_pool(keyring(me, other), urls, inbox) as pool:
            await until(connected(pool, *urls), "connected")
            for url in (a.url, b.url):
                await publish_to(url, events)
            await until(lambda: inbox.has(events), "every event")

            def settled() -> bool:
                for proxy in (lossy, shuffling):
                    stats = proxy.stats()
                    if stats.get("live_events") != len(events) or stats.get("held_now"):
                        return False
                    if health_of(pool, proxy.url).received != stats["events_to_clients"]:
                        return False
                return True

            await until(settled, "both proxies to have sent everything to the pool")
            assert inbox.ids() == Counter(e.id for e in events)

    run(scenario())
    assert lossy.stats()["dropped"] > 0
    assert lossy.stats()["duplicated"] > 0
    assert shuffling.stats()["held"] > 0


# -- writing and querying -----------------------------------------------------------------


@pytest.mark.timeout(60)
def test_publish_answers_for_every_relay_within_the_timeout(
    relays: StartRelay, faulty_relays: StartFaulty, silent_url: str
) -> None:
    ours, theirs = relays(), relays()
    swallowing = faulty_relays(theirs.url, drop_publish=1.0)
    closed = closed_port_url()
    event = make_event(new_key(), content="to everyone")

    async def scenario() -> dict[str, PublishResult | str]:
        async with running_pool(keyring(new_key()), [ours.url]) as pool:
            await until(connected(pool, ours.url), "connected")
            urls = [ours.url, theirs.url, closed, silent_url, swallowing.url]
            results = await pool.publish(event, urls, timeout=1.0)
            assert list(results) == urls
            health = {h.url: h for h in pool.health()}
            assert health[ours.url].reading
            assert health[ours.url].accepted == 1
            assert health[ours.url].latency_ms is not None
            assert not health[theirs.url].reading  # opened for writing only
            assert health[theirs.url].accepted == 1
            assert closed not in health  # never reached: nothing to show
            again = await pool.publish_one(theirs.url, event, timeout=5.0)
            assert again.accepted
            assert again.message.startswith("duplicate:")
            return results

    results = run(scenario())
    assert isinstance(results[ours.url], PublishResult)
    assert results[ours.url].accepted
    assert isinstance(results[theirs.url], PublishResult)
    assert results[theirs.url].accepted
    assert isinstance(results[closed], str)
    assert "cannot connect" in results[closed]
    assert isinstance(results[silent_url], str)
    assert "did not answer" in results[silent_url]
    assert isinstance(results[swallowing.url], str)
    assert "did not answer" in results[swallowing.url]


@pytest.mark.timeout(60)
def test_query_merges_relays_without_duplicates(relays: StartRelay) -> None:
    a, b = relays(), relays()
    author, me = new_key(), new_key()
    e1, e2, e3, e4 = (make_event(author, content=f"note {i}") for i in range(4))
    wraps = [wrap_to(me), wrap_to(me)]

    async def scenario() -> None:
        await publish_to(a.url, [e1, e2, e3, *wraps])
        await publish_to(b.url, [e2, e3, e4, wraps[0]])
        async with running_pool(keyring(me), [a.url]) as pool:
            await until(connected(pool, a.url), "connected")
            urls = [a.url, b.url, closed_port_url()]
            found = await pool.query([{"authors": [author.public_key.hex]}], urls)
            assert sorted(e.id for e in found) == sorted(e.id for e in (e1, e2, e3, e4))
            # Lookups never authenticate (a relay would learn whose bundle we look up),
            # so gift wraps are not served to them, not even by a relay we read: the
            # readers fetch mail.
            mail = [{"kinds": [1059], "#p": [me.public_key.hex]}]
            assert await pool.query(mail, [a.url]) == []
            assert await pool.query(mail, [b.url]) == []

    run(scenario())


# -- health and lifecycle ------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_health_reports_each_relay(relays: StartRelay) -> None:
    good = relays()
    closed = closed_port_url()

    async def scenario() -> None:
        async with running_pool(keyring(new_key()), [good.url, closed]) as pool:
            await until(connected(pool, good.url), "connected")
            await until(lambda: health_of(pool, closed).failures >= 1, "a failure")
            assert sorted(pool.reading) == sorted([good.url, closed])
            assert [h.url for h in pool.health()] == sorted([good.url, closed])
            ok = health_of(pool, good.url).to_json()
            assert ok["url"] == good.url
            assert ok["reading"] is True
            assert ok["state"] == "connected"
            assert ok["failures"] == 0
            assert ok["last_error"] == ""
            assert ok["connected_since"] <= time.time()
            assert ok["next_retry_at"] is None
            bad = health_of(pool, closed).to_json()
            assert bad["state"] in ("connecting", "disconnected")
            assert bad["connected_since"] is None
            assert "cannot connect" in bad["last_error"]
            assert (
                set(ok)
                == set(bad)
                == {
                    "url",
                    "reading",
                    "state",
                    "last_error",
                    "failures",
                    "accepted",
                    "refused",
                    "received",
                    "latency_ms",
                    "connected_since",
                    "next_retry_at",
                    "warning",
                }
            )
            await pool.remove_relay(closed)
            assert pool.reading == [good.url]
            assert [h.url for h in pool.health()] == [good.url]

    run(scenario())


@pytest.mark.timeout(60)
def test_close_leaves_no_task_and_no_connection_behind(
    relays: StartRelay, silent_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    good, other = relays(), relays()
    problems: list[dict[str, Any]] = []

    async def scenario() -> None:
        async with asyncio.timeout(30):
            await body()

    async def body() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: problems.append(ctx))
        me = new_key()
        # A reader connected, one backing off, one stuck in its handshake, and a writer.
        pool = RelayPool(lambda: keyring(me), Inbox())
        await pool.start([good.url, closed_port_url(), silent_url])
        await until(connected(pool, good.url), "connected")
        assert (await pool.publish_one(other.url, make_event(me))).accepted
        await pool.close()
        assert pool.closed
        assert asyncio.all_tasks() == {asyncio.current_task()}
        # Closed is closed: nothing starts again.
        pool.add_relay(other.url)
        assert asyncio.all_tasks() == {asyncio.current_task()}

    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        asyncio.run(scenario())
        gc.collect()
    assert problems == []
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert [r for r in caplog.records if r.name in ("asyncio", "aiohttp.client")] == []


# -- stopping tasks ---------------------------------------------------------------------


def test_reap_ends_every_task_and_keeps_the_callers_own_cancellation() -> None:
    """reap() waits for cancelled, failed and finished tasks alike; a caller that is
    itself cancelled while reaping is cancelled (a worker that swallowed that would
    carry on, and whoever stops it would wait for ever)."""

    async def forever() -> None:
        await asyncio.Event().wait()

    async def fails() -> None:
        raise RuntimeError("its own failure")

    async def stubborn() -> None:  # takes a while to stop
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.2)

    async def scenario() -> None:
        tasks = [asyncio.create_task(forever()), asyncio.create_task(fails())]
        await asyncio.sleep(0)
        await reap(*tasks)
        assert all(t.done() for t in tasks)

        slow = asyncio.create_task(stubborn())
        await asyncio.sleep(0)
        reaper = asyncio.create_task(reap(slow))
        await asyncio.sleep(0.05)
        reaper.cancel()  # the caller is stopped while it waits
        with pytest.raises(asyncio.CancelledError):
            await reaper
        assert slow.done()  # still waited for

    run(scenario())


def test_a_relay_down_for_long_stops_holding_back_the_evidence_of_the_others(
    relays: StartRelay,
) -> None:
    """complete_since(): None while a reading relay is down, unless every connection to
    it has failed for longer than ``down_for``; then the relays that work decide."""
    good = relays()
    me = new_key()

    async def scenario() -> None:
        dead = closed_port_url()
        async with running_pool(keyring(me), [good.url, dead]) as pool:
            await until(connected(pool, good.url), "the working relay caught up")
            await until(lambda: health_of(pool, dead).failures > 0, "the dead relay failed")
            assert pool.complete_since() is None
            assert pool.complete_since(down_for=3600) is None
            await asyncio.sleep(0.3)
            since = pool.complete_since(down_for=0.2)
            assert since is not None
            assert since <= time.time()
        dead = closed_port_url()
        async with running_pool(keyring(me), [dead]) as pool:
            await until(lambda: health_of(pool, dead).failures > 0, "the dead relay failed")
            await asyncio.sleep(0.3)
            assert pool.complete_since(down_for=0.2) is None  # no relay left: no evidence

    run(scenario())


# -- injected time and chance -------------------------------------------------------------


@pytest.mark.timeout(120)
def test_backoff_jitter_and_health_times_come_from_the_injected_rng_and_clock(
    faulty_relays: StartFaulty,
) -> None:
    broken = faulty_relays(closed_port_url())  # accepts the WebSocket, then closes it
    wall = 1_000_000.0  # the injected clock stands still: every time is exact
    retries: list[tuple[int, float | None, float | None]] = []

    def record(health: RelayHealth) -> None:
        if health.state == "disconnected":
            retries.append((health.failures, health.next_retry_at, health.connected_since))

    async def scenario() -> None:
        pool = RelayPool(
            lambda: keyring(new_key()),
            Inbox(),
            clock=lambda: wall,
            rng=bytes,  # jitter factor 0.5: each delay is half the backoff
        )
        pool.on_health_change = record
        await pool.start([broken.url])
        try:
            await until(lambda: len(retries) >= 3, "three failures", 40)
            # nobody reads the mail, so the evidence stays None; the relay is down since `wall`
            assert pool.complete_since(down_for=None) is None
        finally:
            await pool.close()

    run(scenario())
    assert retries[:3] == [
        (1, wall + BACKOFF_START * 0.5, None),
        (2, wall + BACKOFF_START * 2 * 0.5, None),
        (3, wall + BACKOFF_START * 4 * 0.5, None),
    ]


@pytest.mark.timeout(120)
def test_auth_events_are_dated_by_the_injected_clock(relays: StartRelay) -> None:
    """A clock two hours behind dates every AUTH event out of the relay's window: the
    relay refuses them and the gift-wrap subscription with them; the true clock reads
    the same mail."""
    relay = relays()
    me = new_key()
    mail = [wrap_to(me, "m1")]
    late_inbox, inbox = Inbox(), Inbox()

    async def scenario() -> None:
        await publish_to(relay.url, mail)
        async with (
            running_pool(
                keyring(me), [relay.url], late_inbox, clock=lambda: time.time() - 7200
            ) as late,
            running_pool(keyring(me), [relay.url], inbox) as pool,
        ):
            await until(lambda: inbox.has(mail), "the mail, read with the true clock")
            await until(connected(pool, relay.url), "connected with the true clock")
            await until(lambda: health_of(late, relay.url).failures >= 1, "a refusal")
            assert "auth-required" in health_of(late, relay.url).last_error
            assert late_inbox.calls == []

    run(scenario())


# -- the connection driver against a relay that misbehaves --------------------------------


@contextlib.asynccontextmanager
async def scripted_relay(
    script: Callable[[Any, list[Any]], Awaitable[None]],
) -> AsyncIterator[str]:
    """A WebSocket server on 127.0.0.1 that runs ``script(ws, received)`` per connection:
    a relay that says exactly what a test wants, garbage included."""

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await script(ws, [])
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def test_a_connection_survives_garbage_stray_answers_and_a_second_eose() -> None:
    """Garbage, binary frames, OKs for ids never sent, EOSE twice: counted, ignored, and
    the real answers still reach their callers; when the relay hangs up, a publish
    waiting for its OK and every later request fail with RelayError at once (the
    timeouts are ten minutes: waiting for them would fail the test's own timeout)."""
    event = make_event(new_key(), content="kept")
    stranger = make_event(new_key(), content="never sent")

    async def script(ws: Any, _: list[Any]) -> None:
        await ws.send_bytes(b"\x00binary")
        await ws.send_str("not json")
        await ws.send_str(m.ok_message(stranger.id, True, ""))
        await ws.send_str(m.notice_message("hello"))
        await ws.send_str(m.auth_challenge_message("c1"))
        async for msg in ws:
            verb, *rest = orjson.loads(msg.data)
            if verb == "EVENT" and rest[0]["content"] == "kept":
                await ws.send_str('["OK", "short", true, ""]')  # malformed
                await ws.send_str(m.ok_message(event.id, True, "duplicate: have it"))
            elif verb == "REQ":
                await ws.send_str(m.event_message(rest[0], event.to_json().decode()))
                await ws.send_str(m.eose_message(rest[0]))
                await ws.send_str(m.eose_message(rest[0]))  # a second EOSE
                await ws.send_str(m.eose_message("nobody"))
            elif verb == "EVENT":  # the last publish: hang up instead of answering
                await ws.close()
                return

    async def scenario() -> None:
        async with scripted_relay(script) as url, await RelayConnection.connect(url) as conn:
            assert await conn.challenge(600) == "c1"
            assert await conn.publish(event, 600) == PublishResult(True, "duplicate: have it")
            assert await conn.query([{"kinds": [1]}], 600) == [event]
            assert conn.notices == ["hello"]
            assert conn.malformed == 3  # binary, not json, the short OK
            with pytest.raises(RelayError, match="closed"):
                await conn.publish(make_event(new_key(), content="unanswered"), 600)
            await until(lambda: conn.closed, "the reader's end")
            with pytest.raises(RelayError, match="closed"):
                await conn.publish(event, 600)
            with pytest.raises(RelayError, match="closed"):
                await conn.subscribe([{"kinds": [1]}])

    run(scenario(), timeout=60)
