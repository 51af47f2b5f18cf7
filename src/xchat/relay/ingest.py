"""The ingest pipeline: verify signatures, commit in batches, then acknowledge.

Theory of operation. A connection hands each well-formed event to :meth:`Ingestor.submit`
and keeps reading; the event waits in a queue. Two stages run concurrently:

    queue --(stage 1: BIP-340 verify, in a thread)--> verified batches
          --(stage 2: one transaction per batch, in the store's writer thread)--> outcomes

While stage 2 commits one batch, stage 1 verifies the next, and the queue fills with the
one after: the busier the relay, the larger the batches, the fewer the fsyncs per event.
libsecp256k1 and SQLite release the GIL while they work. (Verifying in a separate
process was measured too: the hand-over cost more than the GIL waits it saved.) A submitted
event's future resolves only after its batch is committed (``OK true`` means durable);
ephemeral events are verified and relayed without being stored.

Bounded memory. Events submitted and not yet answered (queued, being verified, waiting
for or inside a commit) are counted, by number and by bytes of JSON; once either reaches
its bound (``max_events``, ``max_bytes``; the bytes may be exceeded by less than one
event), :meth:`Ingestor.admit` makes a connection wait before submitting its next event,
so its reading pauses (aiohttp then stops reading its socket, and TCP slows the client)
instead of the queue growing. A connection that waits longer than its timeout gets its
event refused with ``OK false "rate-limited: ..."``. With many connections flooding at
once, each holds at most the one event it waits to submit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from xchat.crypto.keys import verify_schnorr
from xchat.store.events import EventStore, SaveOutcome, SaveStatus, StoredEvent, is_ephemeral

__all__ = ["Ingestor", "Rejected"]

log = logging.getLogger("xchat.relay")


@dataclass(frozen=True, slots=True)
class Rejected:
    """Why an event was refused, as the ``OK false`` message (prefix included)."""

    message: str


Result = SaveOutcome | Rejected


def verify_batch(items: list[tuple[str, str, str]]) -> list[bool]:
    """BIP-340 check of (pubkey, id, sig) hex triples; runs in the verifier thread."""
    fromhex = bytes.fromhex
    return [verify_schnorr(fromhex(p), fromhex(i), fromhex(s)) for p, i, s in items]


class Ingestor:
    """Batches verification and storage; see the module docstring."""

    def __init__(
        self,
        store: EventStore,
        on_new: Callable[[StoredEvent], None],
        *,
        max_batch: int = 512,
        max_delay: float = 0.002,
        max_events: int = 8192,
        max_bytes: int = 16 * 1024 * 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._on_new = on_new
        self._max_batch = max_batch
        self._max_delay = max_delay
        self._clock = clock
        self._queue: deque[tuple[StoredEvent, asyncio.Future[Result]]] = deque()
        self._arrived = asyncio.Event()
        self._verified: asyncio.Queue[list[tuple[StoredEvent, asyncio.Future[Result]]] | None]
        self._verified = asyncio.Queue(maxsize=2)
        self._verifier = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xchat-verify")
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._pending = 0  # events submitted and not answered yet
        self._pending_bytes = 0  # their JSON
        self._room = asyncio.Event()
        self._full_logged = -1e9
        self.committed_batches = 0

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._verify_stage(), name="relay-verify"),
            asyncio.create_task(self._save_stage(), name="relay-save"),
        ]

    def submit(self, stored: StoredEvent) -> asyncio.Future[Result]:
        """Queue an event; the future gives its outcome once committed (or rejected)."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        if self._closing:
            future.set_result(Rejected("error: the relay is shutting down"))
            return future
        self._queue.append((stored, future))
        self._pending += 1
        self._pending_bytes += len(stored.json)
        self._arrived.set()
        return future

    @property
    def backlog(self) -> int:
        return len(self._queue)

    @property
    def pending(self) -> tuple[int, int]:
        """Events submitted and not answered yet, and their bytes of JSON."""
        return self._pending, self._pending_bytes

    def has_room(self) -> bool:
        return self._pending < self._max_events and self._pending_bytes < self._max_bytes

    async def admit(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` seconds) until an event may be submitted.

        True at once while below the bounds, or when closing (:meth:`submit` then
        refuses); False if the bounds were still reached after ``timeout``.
        """
        if self.has_room() or self._closing:
            return True
        now = time.monotonic()
        if now - self._full_logged > 60:  # say so, at most once a minute
            self._full_logged = now
            log.warning(
                "the ingest queue is full (%d events, %d bytes); connections wait to submit",
                self._pending,
                self._pending_bytes,
            )
        try:
            async with asyncio.timeout(timeout):
                while not (self.has_room() or self._closing):
                    self._room.clear()
                    await self._room.wait()
        except TimeoutError:
            return False
        return True

    def _settle(self, stored: StoredEvent, future: asyncio.Future[Result], result: Result) -> None:
        self._pending -= 1
        self._pending_bytes -= len(stored.json)
        _resolve(future, result)

    def _wake(self) -> None:
        if self.has_room() or self._closing:
            self._room.set()

    async def _verify_stage(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closing:
                    await self._verified.put(None)
                    return
                self._arrived.clear()
                await self._arrived.wait()
                continue
            if len(self._queue) < self._max_batch and self._max_delay > 0:
                await asyncio.sleep(self._max_delay)  # let a batch gather
            batch = [self._queue.popleft() for _ in range(min(len(self._queue), self._max_batch))]
            items = [(s.event.pubkey, s.event.id, s.event.sig) for s, _ in batch]
            try:
                valid = await loop.run_in_executor(self._verifier, verify_batch, items)
            except Exception:  # pragma: no cover - verify_schnorr does not raise
                log.exception("signature verification failed")
                valid = [False] * len(batch)
            keep = []
            for ok, item in zip(valid, batch, strict=True):
                stored, future = item
                if not ok:
                    self._settle(stored, future, Rejected("invalid: signature does not verify"))
                elif is_ephemeral(stored.event.kind):
                    self._settle(stored, future, SaveOutcome(SaveStatus.STORED))
                    self._fan_out(stored)
                else:
                    keep.append(item)
            self._wake()
            if keep:
                await self._verified.put(keep)

    async def _save_stage(self) -> None:
        while True:
            batch = await self._verified.get()
            if batch is None:
                return
            try:
                outcomes = await self._store.save_batch(
                    [stored for stored, _ in batch], int(self._clock())
                )
            except Exception:
                log.exception("storing a batch of %d events failed", len(batch))
                for stored, future in batch:
                    refused = Rejected("error: the relay could not store the event")
                    self._settle(stored, future, refused)
                self._wake()
                continue
            self.committed_batches += 1
            for (stored, future), outcome in zip(batch, outcomes, strict=True):
                self._settle(stored, future, outcome)
                if outcome.is_new:
                    self._fan_out(stored)
            self._wake()

    def _fan_out(self, stored: StoredEvent) -> None:
        try:
            self._on_new(stored)
        except Exception:  # pragma: no cover - a fan-out bug must not stop ingest
            log.exception("fan-out failed")

    async def close(self) -> None:
        """Refuse new events, commit everything queued, then stop."""
        self._closing = True
        self._arrived.set()
        self._room.set()  # waiting connections submit, and are refused
        if self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*self._tasks)
        self._verifier.shutdown(wait=True)


def _resolve(future: asyncio.Future[Result], result: Result) -> None:
    if not future.done():
        future.set_result(result)
