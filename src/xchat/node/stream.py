"""The node's change stream: every subscriber gets every change, or a resync.

Subscribers (the local API's WebSocket stream) each get a queue of typed events
(:mod:`xchat.core.node_events`). A subscriber that fell :data:`STREAM_BACKLOG` events
behind loses its backlog and gets :class:`Resync` instead: it must reload what it shows
from the API. A slow browser can thus never make the node hold an unbounded backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

from xchat.core.node_events import NodeEvent

__all__ = ["STREAM_BACKLOG", "Broadcaster", "Resync", "StreamItem"]

#: Events queued for one subscriber before it must resync instead.
STREAM_BACKLOG: Final = 10_000


@dataclass(frozen=True, slots=True)
class Resync:
    """Events were dropped for this subscriber: reload everything."""


StreamItem = NodeEvent | Resync


class Broadcaster:
    def __init__(self, backlog: int = STREAM_BACKLOG) -> None:
        self._backlog = backlog
        self._subscribers: set[asyncio.Queue[StreamItem]] = set()

    def emit(self, event: NodeEvent) -> None:
        """Tell every subscriber."""
        for queue in list(self._subscribers):
            if queue.qsize() >= self._backlog:
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(Resync())
            queue.put_nowait(event)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[StreamItem]]:
        """A queue of every change from now on (messages, states, contacts, relays)."""
        queue: asyncio.Queue[StreamItem] = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)
