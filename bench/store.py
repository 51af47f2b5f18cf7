"""Event store throughput: save_batch events/s and a typical gift wrap query's queries/s.

Run from the repository root::

    .venv/bin/python bench/store.py [--events N] [--seconds S] [--backend sqlite|postgres]
        [--dsn postgresql://...]

For each backend (SQLite in a temporary folder, with ``synchronous=FULL``; PostgreSQL on
a throwaway server started like the tests' one, ``fsync`` and ``synchronous_commit``
on, unless ``--dsn`` names a database to use, whose tables it fills):

* **save_batch**: ``--events`` gift-wrap-like events (kind 1059, a fresh author each,
  ``created_at`` randomized over two days as NIP-59 asks, three tags ``p``, ``e`` and
  ``t``, 600 characters of content) saved in batches of 100, then of 500, into a fresh
  database; events/s over the whole run, every batch a durable commit; the best of
  ``--runs`` runs, each on a fresh database (the machine may be shared).
* **query**: ``{"kinds": [1059], "#p": [x], "limit": 100}`` for random recipients ``x``
  among 200 (each with about 200 events) on the database of the last run: queries/s
  one at a time, then four at a time from one event loop.

Events are built before the clock starts; the figures include the asyncio hand-off.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import platform
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.pg_server import PostgresServer, find_bindir

from xchat.store.events import EventStore, StoredEvent
from xchat.store.postgres import PostgresEventStore
from xchat.store.sqlite import SqliteEventStore
from xchat.wire.event import Event, compute_id
from xchat.wire.filter import parse_filter

NOW = 1_760_000_000
RECIPIENTS = [os.urandom(32).hex() for _ in range(200)]


def gift_wraps(n: int) -> list[StoredEvent]:
    out = []
    for i in range(n):
        author = os.urandom(32).hex()
        tags = [["p", RECIPIENTS[i % len(RECIPIENTS)]], ["e", os.urandom(32).hex()], ["t", "x"]]
        content = base64.b64encode(os.urandom(450)).decode()
        created_at = NOW - random.randrange(2 * 86_400)  # NIP-59: randomized into the past
        event_id = compute_id(author, created_at, 1059, tags, content).hex()
        event = Event(event_id, author, created_at, 1059, tags, content, "00" * 64)
        out.append(StoredEvent(event, event.to_json().decode()))
    return out


async def bench_save(store: EventStore, events: list[StoredEvent], size: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(events), size):
        await store.save_batch(events[i : i + size], NOW)
    return len(events) / (time.perf_counter() - start)


async def bench_query(store: EventStore, seconds: float, parallel: int) -> tuple[float, float]:
    filters = [parse_filter({"kinds": [1059], "#p": [x], "limit": 100}) for x in RECIPIENTS]
    done = 0
    returned = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done, returned
        while time.perf_counter() < deadline:
            found = await store.query([random.choice(filters)], NOW, 500)
            done += 1
            returned += len(found)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(parallel)))
    return done / (time.perf_counter() - start), returned / max(done, 1)


async def run_backend(
    name: str, make: Callable[[str], Awaitable[EventStore]], args: argparse.Namespace
) -> None:
    store = None
    for size in (100, 500):
        rates = []
        for run in range(args.runs):  # each on a fresh database
            if store is not None:
                await store.close()
            store = await make(f"{size}-{run}")
            await store.open()
            events = gift_wraps(args.events)
            rates.append(await bench_save(store, events, size))
        best = max(rates)
        print(f"{name:8} save_batch  batch={size:<4} {best:10,.0f} events/s (best of {args.runs})")
    assert store is not None
    try:
        for parallel in (1, 4):
            qps, per = await bench_query(store, args.seconds, parallel)
            print(
                f"{name:8} query       parallel={parallel}  {qps:10,.0f} queries/s"
                f"  ({per:.0f} events each)"
            )
    finally:
        await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], action="append")
    parser.add_argument("--dsn", help="an existing PostgreSQL database (its tables are filled)")
    args = parser.parse_args()
    backends = args.backend or ["sqlite", "postgres"]
    print(
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs, {args.events} events per run"
    )
    if "sqlite" in backends:
        with tempfile.TemporaryDirectory() as tmp:

            async def sqlite_store(tag: str) -> EventStore:
                return SqliteEventStore(Path(tmp) / f"{tag}.sqlite3")

            await run_backend("sqlite", sqlite_store, args)
    if "postgres" not in backends:
        return
    if args.dsn:

        async def given_store(tag: str) -> EventStore:
            return PostgresEventStore(args.dsn)

        await run_backend("postgres", given_store, args)
        return
    bindir = find_bindir()
    if bindir is None:
        print("postgres: skipped, no /usr/lib/postgresql/*/bin (apt-get install postgresql)")
        return
    server = PostgresServer.start(bindir)
    try:
        print(f"PostgreSQL {bindir.parent.name}, fsync on, synchronous_commit on")

        async def postgres_store(tag: str) -> EventStore:
            return PostgresEventStore(await server.create_database())

        await run_backend("postgres", postgres_store, args)
    finally:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
