"""The faulty relay really drops, duplicates, reorders and swallows: it must not become a
no-op that lets the tests built on it pass for nothing."""

from __future__ import annotations

import asyncio
import itertools
import socket
import time

import pytest

from tests.node.conftest import StartFaulty, StartRelay
from tests.relay.conftest import make_event, new_key
from xchat.node.relay_client import PublishResult, RelayConnection, RelayError


def run(coro: object, timeout: float = 60) -> object:
    return asyncio.run(asyncio.wait_for(coro, timeout))  # type: ignore[arg-type]


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"ws://127.0.0.1:{port}"


@pytest.mark.timeout(90)
def test_live_events_are_dropped_duplicated_and_reordered(
    relays: StartRelay, faulty_relays: StartFaulty
) -> None:
    relay = relays()
    faults = {"drop": 0.2, "dup": 0.2, "reorder": 0.3}
    proxies = [faulty_relays(relay.url, seed=seed, **faults) for seed in (7, 7, 8)]
    key = new_key()
    events = [make_event(key, content=f"event {i}") for i in range(200)]
    index = {e.id: i for i, e in enumerate(events)}

    async def scenario() -> tuple[list[list[int]], list[dict[str, int]]]:
        conns = [await RelayConnection.connect(p.url) for p in proxies]
        try:
            subs = [await c.subscribe([{"authors": [key.public_key.hex]}]) for c in conns]
            for sub in subs:
                await asyncio.wait_for(sub.eose.wait(), 10)
            async with await RelayConnection.connect(relay.url) as direct:
                for event in events:  # one by one: the relay sends them on in this order
                    assert (await direct.publish(event)).accepted
            received: list[list[int]] = [[] for _ in subs]
            deadline = time.monotonic() + 30
            while True:
                for got, sub in zip(received, subs, strict=True):
                    while not sub.events.empty():
                        got.append(index[sub.events.get_nowait().id])
                stats = [await asyncio.to_thread(p.stats) for p in proxies]
                if all(
                    s.get("live_events") == len(events)
                    and s.get("held_now") == 0
                    and s.get("events_to_clients") == len(got)
                    for s, got in zip(stats, received, strict=True)
                ):
                    return received, stats
                assert time.monotonic() < deadline, f"the proxies did not settle: {stats}"
                await asyncio.sleep(0.05)
        finally:
            for conn in conns:
                await conn.close()

    received, stats = run(scenario())  # type: ignore[misc]
    dropped_sets = []
    for got, s in zip(received, stats, strict=True):
        unique = set(got)
        assert s["dropped"] > 0
        assert len(unique) == len(events) - s["dropped"]
        assert s["duplicated"] > 0
        assert len(got) - len(unique) == s["duplicated"]
        assert s["held"] > 0
        firsts = list(dict.fromkeys(got))  # first arrival of each
        inversions = sum(1 for a, b in itertools.pairwise(firsts) if a > b)
        assert inversions > 0, "nothing arrived out of order"
        dropped_sets.append(set(range(len(events))) - unique)
    # The faults follow the seed: the same seed drops the same events, another does not.
    assert dropped_sets[0] == dropped_sets[1]
    assert dropped_sets[0] != dropped_sets[2]


@pytest.mark.timeout(60)
def test_publishes_are_swallowed_without_an_answer(
    relays: StartRelay, faulty_relays: StartFaulty
) -> None:
    relay = relays()
    proxy = faulty_relays(relay.url, drop_publish=0.5, seed=3)
    key = new_key()
    events = [make_event(key, content=f"publish {i}") for i in range(40)]

    async def scenario() -> tuple[set[str], set[str], set[str]]:
        async with await RelayConnection.connect(proxy.url) as conn:
            results = await asyncio.gather(
                *(conn.publish(e, timeout=2.0) for e in events), return_exceptions=True
            )
        accepted = {
            e.id
            for e, r in zip(events, results, strict=True)
            if isinstance(r, PublishResult) and r.accepted
        }
        unanswered = {
            e.id for e, r in zip(events, results, strict=True) if isinstance(r, RelayError)
        }
        async with await RelayConnection.connect(relay.url) as direct:
            stored = {e.id for e in await direct.query([{"authors": [key.public_key.hex]}])}
        return accepted, unanswered, stored

    accepted, unanswered, stored = run(scenario())  # type: ignore[misc]
    assert accepted
    assert unanswered
    assert accepted | unanswered == {e.id for e in events}
    assert stored == accepted  # what timed out never reached the relay
    assert proxy.stats()["publishes_dropped"] == len(unanswered)


@pytest.mark.timeout(60)
def test_auth_refused_or_never_offered_and_a_dead_upstream(
    relays: StartRelay, faulty_relays: StartFaulty
) -> None:
    relay = relays()
    refusing = faulty_relays(relay.url, refuse_auth=True)
    silent = faulty_relays(relay.url, no_auth=True)
    on_demand = faulty_relays(relay.url, challenge_on_refusal=True)
    broken = faulty_relays(closed_port_url())
    key = new_key()

    async def scenario() -> None:
        async with await RelayConnection.connect(refusing.url) as conn:
            result = await conn.authenticate(key)
            assert not result.accepted
            assert result.message.startswith("restricted:")
        async with await RelayConnection.connect(silent.url) as conn:
            with pytest.raises(RelayError, match="no AUTH challenge"):
                await conn.challenge(0.5)
            event = make_event(key)  # everything else still goes through
            assert (await conn.publish(event)).accepted
        async with await RelayConnection.connect(on_demand.url) as conn:
            with pytest.raises(RelayError, match="no AUTH challenge"):
                await conn.challenge(0.5)
            wanted = [{"kinds": [1059], "#p": [key.public_key.hex]}]
            with pytest.raises(RelayError, match="auth-required"):
                await conn.query(wanted)
            assert (await conn.authenticate(key, timeout=5)).accepted  # challenged now
            assert await conn.query(wanted) == []
        async with await RelayConnection.connect(broken.url) as conn:
            # Accepted, then closed: the challenge wait ends with the connection.
            with pytest.raises(RelayError, match="closed"):
                await conn.challenge(20)
            assert conn.closed

    run(scenario())
    assert refusing.stats()["auth_refused"] == 1
    assert silent.stats()["challenges_swallowed"] >= 1
    assert on_demand.stats()["challenges_on_refusal"] == 1
    assert broken.stats()["upstream_failures"] == 1


@pytest.mark.timeout(90)
def test_stored_events_come_in_small_shuffled_pages_and_a_large_page_drops(
    relays: StartRelay, faulty_relays: StartFaulty
) -> None:
    relay = relays()
    small = faulty_relays(relay.url, page_limit=7, shuffle_stored=True, seed=3)
    dropping = faulty_relays(relay.url, drop_page_bytes=3000)
    key = new_key()
    events = [make_event(key, content=f"event {i:02d} " + "x" * 200) for i in range(30)]

    async def scenario() -> tuple[list[str], list[str], bool]:
        async with await RelayConnection.connect(relay.url) as direct:
            for event in events:
                assert (await direct.publish(event)).accepted
        async with await RelayConnection.connect(small.url) as conn:
            got = [e.id for e in await conn.query([{"authors": [key.public_key.hex]}])]
            again = [e.id for e in await conn.query([{"authors": [key.public_key.hex]}])]
        async with await RelayConnection.connect(dropping.url) as conn:
            with pytest.raises(RelayError):
                await conn.query([{"authors": [key.public_key.hex]}])
            closed = conn.closed
        return got, again, closed

    got, again, closed = run(scenario())  # type: ignore[misc]
    newest = [e.id for e in sorted(events, key=lambda e: (-e.created_at, e.id))][:7]
    assert len(got) == 7
    assert set(got) == set(again)  # the same page, however it is ordered
    assert got != again or got != newest  # shuffled (seeded: not in the relay's order)
    assert closed
    assert dropping.stats()["page_drops"] == 1
    assert small.stats()["pages_limited"] == 2
