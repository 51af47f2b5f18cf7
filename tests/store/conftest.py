"""Store fixtures: each test runs against a fresh SQLite file and a fresh PostgreSQL
database on a throwaway server started once per session (see ``pg_server.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.pg_server import PostgresServer
from xchat.store.events import EventStore
from xchat.store.postgres import PostgresEventStore
from xchat.store.sqlite import SqliteEventStore

T = TypeVar("T")

BACKENDS = ["sqlite", "postgres"]


@dataclass
class Backend:
    """One backend under test: an event loop, a way to make stores, the open store."""

    name: str
    loop: asyncio.AbstractEventLoop
    make: Callable[[], EventStore]
    location: str  # the SQLite file or the PostgreSQL DSN
    opened: list[EventStore] = field(default_factory=list)
    scratch: dict[str, Any] = field(default_factory=dict)  # state kept across examples

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def open_store(self) -> EventStore:
        """A new store object on the same database, opened (and closed at teardown)."""
        store = self.make()
        self.run(store.open())
        self.opened.append(store)
        return store

    def close(self, store: EventStore) -> None:
        self.opened.remove(store)
        self.run(store.close())


def make_backend(
    request: pytest.FixtureRequest, name: str, path: Path, loop: asyncio.AbstractEventLoop
) -> Backend:
    if name == "sqlite":
        location = str(path / "relay.sqlite3")
        return Backend(name, loop, lambda: SqliteEventStore(location), location)
    server: PostgresServer = request.getfixturevalue("postgres_server")
    dsn = loop.run_until_complete(server.create_database())
    return Backend(name, loop, lambda: PostgresEventStore(dsn), dsn)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A backend with nothing opened yet."""
    loop = asyncio.new_event_loop()
    try:
        b = make_backend(request, request.param, tmp_path, loop)
        yield b
        for store in reversed(b.opened):
            b.run(store.close())
    finally:
        loop.close()
