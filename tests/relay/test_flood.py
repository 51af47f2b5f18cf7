"""A flood of EVENTs faster than the store commits, against a real relay process: the
ingest queue stays within its bounds (the relay's RSS measured from /proc), every EVENT
is answered (``OK true``, or ``OK false "rate-limited: ..."`` after ``ingest_wait``),
nothing answered ``OK true`` is missing, and another client is served meanwhile
(docs/relay.md, "Limits and abuse": ``max_ingest_events``, ``max_ingest_bytes``)."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from typing import Any

import aiohttp
import orjson

from tests.relay.conftest import RelayProcess, make_event, new_key
from tests.relay.test_backlog import NO_RATE_LIMITS, memory_kib, run
from xchat.node.relay_client import RelayConnection
from xchat.wire.event import Event

CLIENTS = 8
PER_CLIENT = 200
CONTENT = 60_000  # characters: 8 x 200 x 60 KB = 96 MB sent as fast as the sockets take it

#: What the flood may add to the relay's peak RSS: SQLite's writer page cache (64 MiB,
#: filled by any 96 MB written), the queue's 2 MiB of JSON (a few times that as Python
#: objects), one waiting event and aiohttp's read buffer per connection, the allocator's
#: slack. Measured: 86 MB; without the bound (the queue reading the flood as fast as it
#: came), 263 MB.
FLOOD_GROWTH_KIB = 120 * 1024


def flood_config(ingest_wait: float, batch_delay: float) -> str:
    # a long batch delay is a slow disk: each commit waits that long for its batch
    return (
        f"[relay]\nbatch_max_delay = {batch_delay}\n"
        "[limits]\n" + NO_RATE_LIMITS + "max_ingest_events = 64\n"
        f"max_ingest_bytes = {2 * 1024 * 1024}\ningest_wait = {ingest_wait}\n"
    )


def flood_events() -> list[list[Event]]:
    now = int(time.time())
    out = []
    for _ in range(CLIENTS):
        key = new_key()
        out.append(
            [
                make_event(
                    key,
                    content=base64.b64encode(os.urandom(CONTENT * 3 // 4)).decode(),
                    created_at=now - i,
                )
                for i in range(PER_CLIENT)
            ]
        )
    return out


async def flood(relay: RelayProcess, events: list[Event]) -> dict[str, tuple[bool, str]]:
    """Send every event without waiting; the answers, by event id."""
    answers: dict[str, tuple[bool, str]] = {}
    async with aiohttp.ClientSession() as session, session.ws_connect(relay.url) as ws:

        async def send() -> None:
            for event in events:  # send_str waits while the relay reads nothing
                await ws.send_str(orjson.dumps(["EVENT", event.to_dict()]).decode())

        sender = asyncio.create_task(send())
        while len(answers) < len(events):
            msg = await ws.receive(120)
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            reply = orjson.loads(msg.data)
            if reply[0] == "OK":
                assert reply[1] not in answers, reply
                answers[reply[1]] = (reply[2], reply[3])
            else:
                assert reply[0] == "AUTH", reply
        await sender
    return answers


async def bystander(relay: RelayProcess, done: asyncio.Event) -> int:
    """Another client during the flood: its event is answered like any other, and its
    queries are answered; how many while the flood lasted."""
    key = new_key()
    served = 0
    async with await RelayConnection.connect(relay.url) as conn:
        [result] = await conn.publish_many([make_event(key, content="me too")], timeout=120)
        assert result.accepted or result.message.startswith("rate-limited: "), result
        while not done.is_set():
            got = await conn.query([{"authors": [key.public_key.hex]}], timeout=60)
            assert len(got) == int(result.accepted)
            served += not done.is_set()
            await asyncio.sleep(0.05)
    return served


async def flood_and_measure(relay: RelayProcess) -> tuple[int, int, list[Any], int]:
    events = flood_events()
    pid = relay.process.pid
    async with await RelayConnection.connect(relay.url) as warm:  # the store is open
        await warm.query([{"limit": 1}], timeout=30)
    before = memory_kib(pid, "VmRSS")
    with open(f"/proc/{pid}/clear_refs", "w") as refs:
        refs.write("5")  # VmHWM := VmRSS: the peak from here on
    done = asyncio.Event()
    other = asyncio.create_task(bystander(relay, done))
    answers = await asyncio.gather(*(flood(relay, batch) for batch in events))
    done.set()
    served = await other
    peak = memory_kib(pid, "VmHWM")
    return before, peak, list(zip(events, answers, strict=True)), served


async def stored_count(relay: RelayProcess, authors: list[str]) -> int:
    async with await RelayConnection.connect(relay.url) as conn:
        return await conn.count([{"authors": authors}])


def test_a_flood_faster_than_the_store_is_held_back_in_bounded_memory(
    relay_factory: Any,
) -> None:
    relay = relay_factory(flood_config(ingest_wait=120.0, batch_delay=0.2))

    async def scenario() -> tuple[int, int, list[Any], int, int, bool]:
        # follow the log from the start: the queue must actually have been full
        full = relay.follow_log("the ingest queue is full")
        before, peak, results, served = await flood_and_measure(relay)
        authors = [events[0].pubkey for events, _ in results]
        count = await stored_count(relay, authors)
        return before, peak, results, served, count, full.wait(5)  # logged by now, if ever

    before, peak, results, served, stored, was_full = run(scenario())
    print(f"relay RSS before {before} KiB, peak {peak} KiB, growth {peak - before} KiB")
    assert was_full  # the flood did outrun the store: the bound was what held it
    for events, answers in results:
        assert set(answers) == {e.id for e in events}  # every EVENT answered, once
        assert all(ok for ok, _ in answers.values()), answers  # none waited 120 s
    assert stored == CLIENTS * PER_CLIENT
    assert served >= 1
    assert peak - before < FLOOD_GROWTH_KIB, (before, peak)


def test_an_event_that_waits_too_long_is_refused_and_none_is_lost(relay_factory: Any) -> None:
    # commits a second apart, 0.2 s of patience: most waiting EVENTs are refused
    relay = relay_factory(flood_config(ingest_wait=0.2, batch_delay=1.0))

    async def scenario() -> tuple[list[Any], int]:
        headers = {"Accept": "application/nostr+json"}
        async with (
            aiohttp.ClientSession() as session,
            session.get(relay.http_url, headers=headers) as response,
        ):
            published = (await response.json(content_type=None))["xchat_limits"]
        assert published["max_ingest_events"] == 64  # NIP-11 lists the bounds in force
        assert published["max_ingest_bytes"] == 2 * 1024 * 1024
        assert published["ingest_wait"] == 0.2
        _, _, results, _ = await flood_and_measure(relay)
        authors = [events[0].pubkey for events, _ in results]
        return results, await stored_count(relay, authors)

    results, stored = run(scenario())
    accepted = 0
    refused = 0
    for events, answers in results:
        assert set(answers) == {e.id for e in events}
        for ok, reason in answers.values():
            if ok:
                accepted += 1
            else:
                assert reason == "rate-limited: the relay is busy; retry", reason
                refused += 1
    assert refused > 0
    assert stored == accepted  # what was acknowledged is there, and nothing else
