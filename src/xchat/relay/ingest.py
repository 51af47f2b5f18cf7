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
        self._arrived.set()
        return future

    @property
    def backlog(self) -> int:
        return len(self._queue)

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
                    _resolve(future, Rejected("invalid: signature does not verify"))
                elif is_ephemeral(stored.event.kind):
                    _resolve(future, SaveOutcome(SaveStatus.STORED))
                    self._fan_out(stored)
                else:
                    keep.append(item)
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
                for _, future in batch:
                    _resolve(future, Rejected("error: the relay could not store the event"))
                continue
            self.committed_batches += 1
            for (stored, future), outcome in zip(batch, outcomes, strict=True):
                _resolve(future, outcome)
                if outcome.is_new:
                    self._fan_out(stored)

    def _fan_out(self, stored: StoredEvent) -> None:
        try:
            self._on_new(stored)
        except Exception:  # pragma: no cover - a fan-out bug must not stop ingest
            log.exception("fan-out failed")

    async def close(self) -> None:
        """Refuse new events, commit everything queued, then stop."""
        self._closing = True
        self._arrived.set()
        if self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*self._tasks)
        self._verifier.shutdown(wait=True)


def _resolve(future: asyncio.Future[Result], result: Result) -> None:
    if not future.done():
        future.set_result(result)
