"""An acknowledged event is never lost; a slow reader cannot make the relay buffer forever."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import aiohttp
import orjson

from tests.relay.conftest import RelayProcess, make_event, new_key, start_relay
from tests.relay.test_protocol import run
from xchat.node.relay_client import RelayConnection, RelayError
from xchat.wire import messages as m


def test_sigkill_during_a_burst_loses_no_acknowledged_event(tmp_path: Any) -> None:
    db = str(tmp_path / "crash.sqlite3")
    relay = start_relay(
        db,
        "[limits]\nevents_per_second = 100000.0\nevents_burst = 100000\n"
        "ip_events_per_second = 100000.0\nip_events_burst = 100000\n",
        tmp_path,
    )
    key = new_key()
    events = [make_event(key, content=f"burst {i}") for i in range(3000)]
    acknowledged: set[str] = set()

    async def burst() -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(relay.url) as ws:
            for event in events:
                await ws.send_str(m.publish_message(event))
            killed = False
            while True:
                try:
                    msg = await ws.receive(10)
                except TimeoutError:
                    break
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                reply = orjson.loads(msg.data)
                if reply[0] == "OK" and reply[2] is True:
                    acknowledged.add(reply[1])
                if len(acknowledged) >= 500 and not killed:
                    relay.process.send_signal(signal.SIGKILL)  # mid-burst, no warning
                    killed = True

    run(burst())
    relay.stop(timeout=10)
    assert 500 <= len(acknowledged) < len(events), "the kill should land mid-burst"

    restarted = start_relay(db, tmp=tmp_path)
    try:

        async def check() -> set[str]:
            async with await RelayConnection.connect(restarted.url) as conn:
                found: set[str] = set()
                ids = sorted(acknowledged)
                for i in range(0, len(ids), 500):
                    batch = await conn.query([{"ids": ids[i : i + 500]}])
                    found.update(e.id for e in batch)
                return found

        assert run(check()) == acknowledged
    finally:
        restarted.stop()


def test_sigterm_commits_and_acknowledges_what_was_queued(relay: RelayProcess) -> None:
    key = new_key()
    events = [make_event(key, content=f"last words {i}") for i in range(200)]
    acknowledged: set[str] = set()

    async def publish_then_stop() -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(relay.url) as ws:
            for event in events:
                await ws.send_str(m.publish_message(event))
            relay.process.send_signal(signal.SIGTERM)
            while True:
                try:
                    msg = await ws.receive(10)
                except TimeoutError:
                    break
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                reply = orjson.loads(msg.data)
                if reply[0] == "OK" and reply[2] is True:
                    acknowledged.add(reply[1])

    run(publish_then_stop())
    assert relay.process.wait(20) == 0
    restarted = start_relay(relay.db)
    try:

        async def check() -> list[str]:
            async with await RelayConnection.connect(restarted.url) as conn:
                return [e.id for e in await conn.query([{"authors": [key.public_key.hex]}])]

        assert set(run(check())) >= acknowledged
    finally:
        restarted.stop()


async def _raw_websocket(url: str, first_message: str) -> tuple[Any, Any]:
    """A WebSocket client by hand on a socket with a tiny receive buffer, so that a
    client that stops reading quickly stops accepting data."""
    import base64
    import os
    import socket

    host, port = url.removeprefix("ws://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    reader, writer = await asyncio.open_connection(sock=sock)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    payload = first_message.encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    writer.write(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
    await writer.drain()
    return reader, writer


def test_a_slow_reader_is_disconnected_and_others_carry_on(relay_factory: Any) -> None:
    relay = relay_factory(
        "[limits]\nmax_send_queue_bytes = 2000000\nevents_per_second = 100000.0\n"
        "events_burst = 100000\nip_events_per_second = 100000.0\nip_events_burst = 100000\n"
    )
    key = new_key()
    # 12 MB in all, in bursts of 800 KB: a reader that keeps up never has more than a
    # burst queued; one that stops fills the kernel's buffers, then its 2 MB queue.
    events = [make_event(key, content=f"{i} " + "y" * 4000) for i in range(3000)]

    async def scenario() -> None:
        # The slow reader subscribes to everything this key publishes, then stops reading.
        reader, writer = await _raw_websocket(
            relay.url, m.req_message("firehose", [{"authors": [key.public_key.hex]}])
        )
        await asyncio.sleep(0.2)
        async with (
            await RelayConnection.connect(relay.url) as publisher,
            await RelayConnection.connect(relay.url) as healthy,
        ):
            sub = await healthy.subscribe([{"authors": [key.public_key.hex]}])
            for start in range(0, len(events), 200):
                results = await publisher.publish_many(events[start : start + 200], timeout=60)
                assert all(r.accepted for r in results)
                for _ in range(200):  # the healthy reader gets everything
                    await asyncio.wait_for(sub.events.get(), 10)
        # Now read what the slow one was sent: far less than everything, then the end.
        received = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            chunk = await asyncio.wait_for(reader.read(1 << 20), 30)
            if not chunk:
                break
            received += len(chunk)
        else:
            raise AssertionError("the relay kept the slow reader's connection open")
        assert received < sum(len(e.content) for e in events) // 2
        writer.close()

    run(scenario())

    async def still_up() -> bool:
        try:
            async with await RelayConnection.connect(relay.url) as conn:
                return (await conn.publish(make_event(new_key()))).accepted
        except RelayError:
            return False

    assert run(still_up())
