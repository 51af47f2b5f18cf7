"""The whole relay on PostgreSQL: the same protocol, and durability across a SIGKILL."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from tests.pg_server import PostgresServer
from tests.relay.conftest import make_event, new_key, start_relay
from tests.relay.test_protocol import run
from xchat.node.relay_client import RelayConnection


def test_relay_on_postgresql(postgres_server: PostgresServer, tmp_path: Any) -> None:
    dsn = asyncio.run(postgres_server.create_database())
    relay = start_relay(dsn, tmp=tmp_path)
    key, recipient = new_key(), new_key()
    note = make_event(key, content="stored in PostgreSQL", tags=[["t", "pg"]])
    wrap = make_event(new_key(), kind=1059, content="x", tags=[["p", recipient.public_key.hex]])

    async def publish() -> None:
        async with await RelayConnection.connect(relay.url) as conn:
            assert (await conn.publish(note)).accepted
            assert (await conn.publish(wrap)).accepted
            assert await conn.query([{"#t": ["pg"]}]) == [note]

    try:
        run(publish())
    finally:
        relay.stop(signal.SIGKILL)
    restarted = start_relay(dsn, tmp=tmp_path)

    async def check() -> None:
        async with await RelayConnection.connect(restarted.url) as conn:
            assert await conn.query([{"authors": [key.public_key.hex]}]) == [note]
            assert await conn.count([{"authors": [key.public_key.hex]}]) == 1
            assert (await conn.authenticate(recipient)).accepted
            assert await conn.query([{"kinds": [1059], "#p": [recipient.public_key.hex]}]) == [wrap]

    try:
        run(check())
    finally:
        restarted.stop()


def test_a_large_backlog_streams_from_postgresql(
    postgres_server: PostgresServer, relay_factory: Any
) -> None:
    """Keyset pages and byte-bounded loads on PostgreSQL: 14 MB of gift wraps, more than
    the 8 MiB send queue, read whole over one REQ, newest first."""
    from tests.relay.test_backlog import NO_RATE_LIMITS, gift_wraps, publish_all

    dsn = asyncio.run(postgres_server.create_database())
    relay = relay_factory("[limits]\n" + NO_RATE_LIMITS, db=dsn)
    recipient = new_key()
    wraps = gift_wraps(recipient, 120)

    async def scenario() -> None:
        await publish_all(relay, wraps)
        async with await RelayConnection.connect(relay.url) as conn:
            assert (await conn.authenticate(recipient)).accepted
            got = await conn.query([{"#p": [recipient.public_key.hex]}], timeout=120)
            expected = sorted(wraps, key=lambda e: (-e.created_at, e.id))
            assert [e.id for e in got] == [e.id for e in expected]

    asyncio.run(asyncio.wait_for(scenario(), 300))
