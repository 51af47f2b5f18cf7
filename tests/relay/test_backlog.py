"""Large answers from a real relay process: streamed whole to readers that keep reading,
in bounded memory, and a reader that stops reading entirely is dropped after the write
timeout (docs/relay.md, "Large answers")."""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import time
from typing import Any

import orjson

from tests.relay.conftest import RelayProcess, make_event, new_key
from tests.relay.test_durability import _raw_websocket
from xchat.crypto.keys import SecretKey
from xchat.node.relay_client import RelayConnection, RelayError
from xchat.wire import messages as m
from xchat.wire.event import Event

# Near the largest gift wrap a NIP-44 payload allows (~87.5 KiB of base64) and under the
# relay's 128 Ki character content limit: every answer below is tens of MB.
BIG = 120_000
NO_RATE_LIMITS = (
    "events_per_second = 100000.0\nevents_burst = 100000\n"
    "ip_events_per_second = 100000.0\nip_events_burst = 100000\n"
)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 300))


def big_content() -> str:
    return base64.b64encode(os.urandom(BIG * 3 // 4)).decode()


def gift_wraps(recipient: SecretKey, n: int) -> list[Event]:
    now = int(time.time())
    tags = [["p", recipient.public_key.hex]]
    # random created_at within two days, as NIP-59 wraps have
    return [
        make_event(new_key(), kind=1059, content=big_content(), tags=tags, created_at=now - i * 97)
        for i in range(n)
    ]


async def publish_all(relay: RelayProcess, events: list[Event]) -> None:
    async with await RelayConnection.connect(relay.url) as publisher:
        for start in range(0, len(events), 50):
            results = await publisher.publish_many(events[start : start + 50], timeout=120)
            assert all(r.accepted for r in results), results


def test_a_backlog_of_near_maximum_gift_wraps_is_read_whole_over_one_req(
    relay_factory: Any,
) -> None:
    relay = relay_factory("[limits]\n" + NO_RATE_LIMITS)
    recipient = new_key()
    wraps = gift_wraps(recipient, 320)  # ~38 MB, over four times the 8 MiB send queue

    async def scenario() -> None:
        await publish_all(relay, wraps)
        async with await RelayConnection.connect(relay.url) as conn:
            assert (await conn.authenticate(recipient)).accepted
            got = await conn.query(
                [{"kinds": [1059], "#p": [recipient.public_key.hex], "limit": 500}], timeout=240
            )
            expected = sorted(wraps, key=lambda e: (-e.created_at, e.id))
            assert [e.id for e in got] == [e.id for e in expected]  # whole, newest first
            # and the connection is still there for more
            assert await conn.count([{"kinds": [1059], "#p": [recipient.public_key.hex]}]) == 320

    run(scenario())


async def read_frames(reader: asyncio.StreamReader, pause: float) -> Any:
    """Unmasked server frames from a raw socket, read 64 KiB at a time with ``pause``
    seconds between reads: a client that reads slowly but steadily."""
    buffer = bytearray()

    async def need(n: int) -> bytes:
        while len(buffer) < n:
            chunk = await reader.read(65536)
            if not chunk:
                raise EOFError
            buffer.extend(chunk)
            if pause:
                await asyncio.sleep(pause)
        data = bytes(buffer[:n])
        del buffer[:n]
        return data

    while True:
        first, second = await need(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await need(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await need(8))
        payload = await need(length)
        if first & 0x0F == 1:
            yield orjson.loads(payload)
        elif first & 0x0F == 8:
            raise EOFError


def big_notes(n: int) -> tuple[SecretKey, list[Event]]:
    key = new_key()
    now = int(time.time())
    return key, [make_event(key, content=big_content(), created_at=now - i) for i in range(n)]


def test_a_slow_but_steady_reader_gets_everything(relay_factory: Any) -> None:
    # a short write timeout: the reader's pauses are shorter, and it is never dropped
    relay = relay_factory("[limits]\nwrite_timeout = 2.0\n" + NO_RATE_LIMITS)
    key, notes = big_notes(150)  # ~18 MB

    async def scenario() -> None:
        await publish_all(relay, notes)
        req = m.req_message("slow", [{"authors": [key.public_key.hex]}])
        reader, writer = await _raw_websocket(relay.url, req)
        ids = []
        async for message in read_frames(reader, pause=0.01):
            if message[0] == "EVENT":
                ids.append(message[2]["id"])
            elif message[0] == "EOSE":
                break
            else:
                assert message[0] == "AUTH", message
        assert ids == [e.id for e in notes]
        writer.close()

    run(scenario())


def test_a_reader_that_stops_is_dropped_after_the_write_timeout(relay_factory: Any) -> None:
    relay = relay_factory("[limits]\nwrite_timeout = 1.0\n" + NO_RATE_LIMITS)
    key, notes = big_notes(100)  # ~12 MB: more than any buffer on the way

    async def scenario() -> None:
        await publish_all(relay, notes)
        req = m.req_message("stuck", [{"authors": [key.public_key.hex]}])
        reader, writer = await _raw_websocket(relay.url, req)
        dropped = relay.follow_log("dropped a client that read nothing")
        assert await asyncio.to_thread(dropped.wait, 60)
        # what was in flight can still be read, but not the whole answer
        messages = []
        try:
            async for message in read_frames(reader, pause=0):
                messages.append(message[0])
        except (EOFError, ConnectionError, asyncio.IncompleteReadError):
            pass
        assert "EOSE" not in messages
        assert messages.count("EVENT") < len(notes)
        writer.close()
        # the relay carries on
        async with await RelayConnection.connect(relay.url) as conn:
            got = await conn.query([{"authors": [key.public_key.hex], "limit": 3}], timeout=60)
            assert [e.id for e in got] == [e.id for e in notes[:3]]

    run(scenario())


def memory_kib(pid: int, field: str) -> int:
    """VmRSS (now) or VmHWM (peak since the last reset) of a process, in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


#: What several 10-filter REQs over ~36 MB of events may add to the relay's peak RSS.
#: The design bound is a few MB per query (docs/relay.md); 150 MB leaves room for the
#: allocator and SQLite's page caches. Loading whole answers took well over 500 MB.
HEAVY_REQ_GROWTH_KIB = 150 * 1024


def test_heavy_reqs_keep_the_relay_s_memory_bounded(relay_factory: Any) -> None:
    relay = relay_factory("[limits]\n" + NO_RATE_LIMITS)
    key, notes = big_notes(300)  # ~36 MB
    author = key.public_key.hex
    # ten filters, each matching all of them
    filters = [{"authors": [author], "kinds": [1], "since": i} for i in range(10)]
    pid = relay.process.pid

    async def reader() -> int:
        try:
            async with await RelayConnection.connect(relay.url) as conn:
                return len(await conn.query(filters, timeout=240))
        except RelayError:  # dropped: the count check below says so, after the memory's
            return -1

    async def scenario() -> tuple[int, int, list[int]]:
        await publish_all(relay, notes)
        await asyncio.sleep(0.5)  # let the ingest settle
        before = memory_kib(pid, "VmRSS")
        with open(f"/proc/{pid}/clear_refs", "w") as refs:
            refs.write("5")  # VmHWM := VmRSS: the peak from here on
        counts = await asyncio.gather(*(reader() for _ in range(6)))
        return before, memory_kib(pid, "VmHWM"), counts

    before, peak, counts = run(scenario())
    print(f"relay RSS before {before} KiB, peak {peak} KiB, growth {peak - before} KiB")
    assert peak - before < HEAVY_REQ_GROWTH_KIB, (before, peak)
    assert counts == [len(notes)] * 6
