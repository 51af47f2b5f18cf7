"""Connection admission against a real relay: limits at accept, header, handshake and
idle timeouts, and service to others meanwhile (relay/admission.py, docs/relay.md)."""

from __future__ import annotations

import asyncio
import resource
import signal
import time
from typing import Any

import aiohttp
import orjson

from tests.relay.conftest import RelayProcess
from tests.relay.test_durability import _raw_websocket
from xchat.wire import messages as m

HALF_OPEN = 300


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 120))


def _ensure_open_files(needed: int) -> None:
    """This test process needs a socket per half-open connection."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


def _host_port(relay: RelayProcess) -> tuple[str, int]:
    host, port = relay.url.removeprefix("ws://").split(":")
    return host, int(port)


async def _served(relay: RelayProcess, source: str) -> bool:
    """A client from ``source`` (a loopback address) connects, sends a REQ, gets EOSE."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.ws_connect(relay.url) as ws,
    ):
        await ws.send_str(m.req_message("probe", [{"kinds": [1], "limit": 1}]))
        while True:
            msg = await ws.receive(10)
            if msg.type != aiohttp.WSMsgType.TEXT:
                return False
            if orjson.loads(msg.data)[:2] == ["EOSE", "probe"]:
                return True


async def _closed_by_relay(reader: asyncio.StreamReader, within: float) -> bool:
    """Whether the relay ends the connection (EOF or reset) within ``within`` seconds."""
    try:
        async with asyncio.timeout(within):
            while await reader.read(4096):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


def _relay_log(relay: RelayProcess) -> str:
    """Everything the relay logged, after stopping it."""
    assert relay.process.stdout is not None
    relay.process.send_signal(signal.SIGTERM)
    return relay.process.stdout.read()


def test_half_open_connections_time_out_and_others_are_served(relay_factory: Any) -> None:
    _ensure_open_files(HALF_OPEN + 200)
    relay = relay_factory(
        "[limits]\nheader_timeout = 1.5\nhandshake_timeout = 2.5\n"
        f"max_connections_per_ip = {HALF_OPEN + 50}\n"
    )
    host, port = _host_port(relay)

    async def scenario() -> None:
        conns = [await asyncio.open_connection(host, port) for _ in range(HALF_OPEN)]
        for _, writer in conns:
            writer.write(b"GET / HTT")  # half a request line, then nothing
        await asyncio.gather(*(w.drain() for _, w in conns))
        # Meanwhile others are served, from another address and from the same one.
        assert await _served(relay, "127.0.0.2")
        assert await _served(relay, "127.0.0.1")
        closed = await asyncio.gather(*(_closed_by_relay(r, 60) for r, _ in conns))
        assert all(closed)
        for _, writer in conns:
            writer.close()
        assert await _served(relay, "127.0.0.2")

    run(scenario())
    log = _relay_log(relay)
    assert "did not send their request headers within 1.5 s" in log
    assert "127.0.0.1:" not in log.replace(relay.url, "")  # no client address logged


def test_a_handshake_that_never_finishes_is_closed(relay_factory: Any) -> None:
    relay = relay_factory("[limits]\nheader_timeout = 1.0\nhandshake_timeout = 2.0\n")
    host, port = _host_port(relay)

    async def scenario() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n".encode())
        # A header line every 0.2 s: busy, but the handshake never completes.
        started = time.monotonic()
        ended = False
        for i in range(300):
            try:
                writer.write(f"X-Slow-{i}: 1\r\n".encode())
                await writer.drain()
            except ConnectionError:
                ended = True
                break
            if await _closed_by_relay(reader, 0.2):
                ended = True
                break
        assert ended, f"still open after {time.monotonic() - started:.0f} s"
        writer.close()
        assert await _served(relay, "127.0.0.1")

    run(scenario())
    assert "did not send their request headers within 1 s" in _relay_log(relay)


def test_a_refused_handshake_is_closed_at_the_handshake_deadline(relay_factory: Any) -> None:
    relay = relay_factory("[limits]\nheader_timeout = 1.0\nhandshake_timeout = 2.0\n")
    host, port = _host_port(relay)

    async def scenario() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        # Complete headers, but no Sec-WebSocket-Key: aiohttp answers 400 and would keep
        # the connection alive for the next request; the handshake deadline ends it.
        writer.write(
            f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\n\r\n".encode()
        )
        assert (await reader.readline()).startswith(b"HTTP/1.1 400")
        assert await _closed_by_relay(reader, 60)
        writer.close()

    run(scenario())
    assert "did not finish the handshake within 2 s" in _relay_log(relay)


def test_limits_per_address_and_in_total_are_applied_at_accept(relay_factory: Any) -> None:
    relay = relay_factory("[limits]\nmax_connections_per_ip = 5\nmax_connections = 8\n")
    host, port = _host_port(relay)

    async def status_line(source: str) -> bytes:
        reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
        try:  # refused before the request is read: nothing needs to be sent
            return await asyncio.wait_for(reader.readline(), 10)
        finally:
            writer.close()

    async def scenario() -> None:
        idle = [await asyncio.open_connection(host, port) for _ in range(5)]  # never upgraded
        assert (await status_line("127.0.0.1")).startswith(b"HTTP/1.1 429")
        assert await _served(relay, "127.0.0.2")  # another address still gets in
        more = [
            await asyncio.open_connection(host, port, local_addr=("127.0.0.3", 0)) for _ in range(3)
        ]
        assert (await status_line("127.0.0.4")).startswith(b"HTTP/1.1 503")
        for _, writer in idle + more:
            writer.close()
        for _ in range(100):  # the relay notices the closes
            await asyncio.sleep(0.1)
            try:
                if await _served(relay, "127.0.0.1"):
                    break
            except aiohttp.WSServerHandshakeError:
                continue
        else:
            raise AssertionError("the address was not admitted again")

    run(scenario())
    log = _relay_log(relay)
    assert "at most 5 per address" in log
    assert "its maximum of 8 open" in log
    assert "open-file limit" in log
    assert "127.0.0.2" not in log
    assert "127.0.0.3" not in log


def test_a_silent_websocket_is_pinged_then_closed(relay_factory: Any) -> None:
    relay = relay_factory("[limits]\nidle_timeout = 1.0\n")

    async def scenario() -> None:
        # A raw client that never answers pings: closed once the pong is overdue.
        reader, writer = await _raw_websocket(relay.url, m.close_message("none"))
        seen = b""
        try:
            async with asyncio.timeout(30):
                while chunk := await reader.read(4096):
                    seen += chunk
        except ConnectionError:
            pass
        writer.close()
        assert b"\x89" in seen  # a ping frame came before the end
        # A quiet client that answers pings (aiohttp does) keeps its connection.
        async with aiohttp.ClientSession() as session, session.ws_connect(relay.url) as ws:
            assert (await ws.receive(5)).type == aiohttp.WSMsgType.TEXT  # the challenge
            try:  # reading (so that pings are answered) but sending nothing for 3.5 s
                async with asyncio.timeout(3.5):
                    msg = await ws.receive()
                raise AssertionError(f"the quiet connection got {msg}")
            except TimeoutError:
                pass
            await ws.send_str(m.req_message("late", [{"kinds": [1], "limit": 1}]))
            while True:
                msg = await ws.receive(10)
                assert msg.type == aiohttp.WSMsgType.TEXT
                if orjson.loads(msg.data)[:2] == ["EOSE", "late"]:
                    break

    run(scenario())
