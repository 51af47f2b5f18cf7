"""What the node's parts share: the store thread, the clock, the rng, the stream.

The node's parts (:mod:`~xchat.node.contacts`, :mod:`~xchat.node.sending`,
:mod:`~xchat.node.outbox`, :mod:`~xchat.node.receiving`) are objects handed one
:class:`Context` and each other, never mixins of one class. There is one clock
(``clock``, wall seconds, injected; message times in ms are derived from it) and one
rng (injected), for every part.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from xchat.core.channel import Channel
from xchat.core.identity import Identity
from xchat.core.node_events import NodeEvent
from xchat.core.session import Session
from xchat.crypto.keys import Rng
from xchat.model import SessionRecord
from xchat.node.committer import Committer
from xchat.node.config import NodeConfig
from xchat.node.pool import RelayPool
from xchat.node.stream import Broadcaster
from xchat.store.node import NodeStore

__all__ = ["Context", "Stats"]


@dataclass
class Stats:
    """Counters for ``GET /api/status``; changed on the loop thread only."""

    received: int = 0
    rejected: int = 0
    lost: int = 0  # messages given up on (a gap in a chain that never filled)
    duplicates: int = 0
    sent: int = 0
    failed: int = 0
    rejected_by_error: dict[str, int] = field(default_factory=dict)

    def reject(self, error: BaseException) -> None:
        self.rejected += 1
        name = type(error).__name__
        self.rejected_by_error[name] = self.rejected_by_error.get(name, 0) + 1


@dataclass
class Context:
    me: str  # our identity key, hex
    identity: Identity
    storage_key: bytes
    config: NodeConfig
    committer: Committer
    stream: Broadcaster
    clock: Callable[[], float]
    rng: Rng
    stats: Stats = field(default_factory=Stats)
    #: The embedded relay's URL, used while we have no relay of our own.
    embedded_relay: str | None = None
    channel: Channel = field(init=False)  # set once the node started
    pool: RelayPool = field(init=False)  # set once the node started
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def now(self) -> int:
        return int(self.clock())

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def emit(self, event: NodeEvent) -> None:
        self.stream.emit(event)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> None:
        """Run a background task; the node reaps what is still running when it closes."""
        task = asyncio.create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def own_relays(self) -> list[str]:
        urls = await self.committer.run(self.committer.store.relays)
        if not urls and self.embedded_relay is not None:
            return [self.embedded_relay]
        return urls

    def session_write(self, session: Session) -> Callable[[NodeStore], None]:
        """A write of a session's state (pickled here, on the loop thread that owns it:
        vodozemac objects must not be used from two threads at once)."""
        record = SessionRecord(
            session.session_id,
            session.peer.identity.hex,
            session.peer.curve25519,
            session.to_record(self.storage_key, self.rng),
            self.now(),
        )
        return lambda store: store.save_session(record)

    def device_write(self) -> Callable[[NodeStore], None]:
        """A write of the device's current state (its one-time keys change)."""
        record = self.channel.device.to_record(self.storage_key, self.rng).hex()
        return lambda store: store.set_setting("device_record", record)
