"""The pool's publishing connections: opened on demand, shared, closed when idle.

Gift wraps go to any relay (ours, or a contact's inbox relays) over connections of their
own, never authenticated: the reader's connection is authenticated as our identity, and
on it a relay would see who sends each gift wrap. :class:`Writers` keeps one such
connection per relay, opens it on first use (one opener at a time per relay), and closes
it after :data:`IDLE_CLOSE` seconds unused (by the ``monotonic`` clock it is given).
They carry gift wraps only: identity-signed events and lookups go over one-shot
connections (``xchat.node.oneshot``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final

from xchat.node.health import RelayHealth
from xchat.node.relay_client import RelayConnection, RelayError

__all__ = ["CONNECT_TIMEOUT", "IDLE_CLOSE", "Writers"]

#: Seconds a publishing connection may stay unused before it is closed.
IDLE_CLOSE: Final = 60.0
#: Connecting (TCP and WebSocket handshake) a publishing connection.
CONNECT_TIMEOUT: Final = 10.0


class Writers:
    """One publishing connection per relay (see the module docstring)."""

    def __init__(
        self,
        connect: Callable[[str, float], Awaitable[RelayConnection]],
        health: dict[str, RelayHealth],
        monotonic: Callable[[], float],
    ) -> None:
        self._connect = connect
        self._health = health  # the pool's: a relay only written to gets an entry here
        self._monotonic = monotonic
        self._conns: dict[str, tuple[RelayConnection, float]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.closed = False

    async def get(self, url: str) -> RelayConnection:
        """The open publishing connection to ``url``, opened now if there is none."""
        lock = self._locks.setdefault(url, asyncio.Lock())
        async with lock:
            cached = self._conns.get(url)
            if cached is not None and not cached[0].closed:
                self._conns[url] = (cached[0], self._monotonic())
                return cached[0]
            if self.closed:
                raise RelayError("the relay pool is closed")
            conn = await self._connect(url, CONNECT_TIMEOUT)
            self._conns[url] = (conn, self._monotonic())
            if url not in self._health:
                self._health[url] = RelayHealth(url, reading=False, state="connected")
            return conn

    async def close_idle(self) -> None:
        """Close the connections unused for :data:`IDLE_CLOSE` seconds, or closed."""
        cutoff = self._monotonic() - IDLE_CLOSE
        for url, (conn, used) in list(self._conns.items()):
            if used < cutoff or conn.closed:
                del self._conns[url]
                await conn.close()
                health = self._health.get(url)
                if health is not None and not health.reading:
                    del self._health[url]

    async def run_janitor(self) -> None:
        """Close idle connections, every half :data:`IDLE_CLOSE`, until cancelled."""
        while True:
            await asyncio.sleep(IDLE_CLOSE / 2)
            await self.close_idle()

    async def close(self) -> None:
        self.closed = True
        for conn, _ in self._conns.values():
            await conn.close()
        self._conns.clear()
