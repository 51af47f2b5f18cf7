"""The outbox driver: publishes what :mod:`xchat.core.outbox` says is due.

Theory of operation. Every job is a row of the ``outbox`` table, committed with the
message it belongs to. Jobs freshly queued are published at once, keeping the sealed
event they were made with (never serialised and parsed again); jobs left by a previous
run, retries and ``seal_later`` jobs are taken up by the worker when due (it wakes when
told, and every second). For each attempt, the relays' answers go to
:func:`xchat.core.outbox.record_publish` (quorum, backoff, give-up), and the result is
committed with :func:`xchat.core.outbox.settle`, which moves the message's state and
returns the event to tell. Relays answer a duplicate with ``OK true`` and receivers
de-duplicate by event and message id, so publishing a job twice (after a crash) is
harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from xchat.core import outbox as jobs
from xchat.core.message import Delivered, Edit, Read, decode_app_message
from xchat.core.node_events import StateChanged
from xchat.errors import DecodeError
from xchat.model import JobKind, MessageState, OutboxEntry, OutboxState
from xchat.node.contacts import Contacts
from xchat.node.context import Context
from xchat.node.relay_client import PublishResult
from xchat.store.node import NodeStore

if TYPE_CHECKING:
    from xchat.node.sending import Sender

__all__ = ["Outbox"]

log = logging.getLogger("xchat.node")

_TICK: Final = 1.0


class Outbox:
    def __init__(self, ctx: Context, contacts: Contacts) -> None:
        self.ctx = ctx
        self.contacts = contacts
        self.sender: Sender  # set by the node (the sender seals seal_later jobs)
        self._wake = asyncio.Event()
        self._in_flight: set[int] = set()

    def wake(self) -> None:
        self._wake.set()

    def queued(self, entries: Sequence[OutboxEntry]) -> None:
        """Jobs just committed: publish envelopes now; seal_later ones when due."""
        for entry in entries:
            if entry.kind is JobKind.ENVELOPE:
                self._spawn_publish(entry)
            else:
                self._wake.set()

    def _spawn_publish(self, entry: OutboxEntry) -> None:
        if entry.id in self._in_flight:
            return
        self._in_flight.add(entry.id)
        self.ctx.spawn(self._publish(entry))

    async def _publish(self, entry: OutboxEntry) -> None:
        ctx = self.ctx
        try:
            if entry.event is None:  # the stored envelope was damaged
                jobs.fail(entry, "the stored envelope is damaged")
            else:
                remaining = [url for url in entry.relays if url not in entry.accepted]
                results = await ctx.pool.publish(entry.event, remaining, ctx.config.publish_timeout)
                accepted, errors = [], []
                for url, result in results.items():
                    if isinstance(result, PublishResult) and result.accepted:
                        accepted.append(url)
                    else:
                        reason = result.message if isinstance(result, PublishResult) else result
                        errors.append(f"{url}: {reason}"[:200])
                jobs.record_publish(entry, accepted, errors, ctx.clock())
            changed = await ctx.committer.commit(lambda store: jobs.settle(store, entry))
        finally:
            self._in_flight.discard(entry.id)
        self._tell(changed)
        if entry.state is OutboxState.PENDING:
            self._wake.set()

    def _tell(self, changed: StateChanged | None) -> None:
        if changed is None:
            return
        if changed.state is MessageState.FAILED:
            self.ctx.stats.failed += 1
        else:
            self.ctx.stats.sent += 1
        self.ctx.emit(changed)

    async def worker(self) -> None:
        """Publish what is due: rows left by a previous run, retries, unsealed messages."""
        store = self.ctx.committer.store
        while True:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a
            # cancellation that meets a wake-up, and close() then waits for ever
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_TICK):
                    await self._wake.wait()
            self._wake.clear()
            try:
                due = await self.ctx.committer.run(store.due_outbox, self.ctx.now())
                for entry in due:
                    if entry.id in self._in_flight:
                        continue
                    if entry.kind is JobKind.SEAL_LATER:
                        await self._seal_later(entry)
                    else:
                        self._spawn_publish(entry)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the outbox worker failed; retrying")
                await asyncio.sleep(_TICK)

    async def _seal_later(self, job: OutboxEntry) -> None:
        """A message queued before we knew any device of the contact: look again, seal."""
        ctx = self.ctx
        self._in_flight.add(job.id)
        envelopes: list[OutboxEntry] = []
        try:
            await self.contacts.refresh(job.recipient)
            contact = await self.contacts.get(job.recipient)
            writes: list[Callable[[NodeStore], Any]] = []
            try:
                message = decode_app_message(dict(job.message or {}))
            except DecodeError:
                message = None
            if message is None:
                jobs.fail(job, "the stored message is damaged")
            elif contact is None:
                jobs.fail(job, "this contact is gone")
            elif contact.nip17_only and isinstance(message, Edit | Delivered | Read):
                jobs.fail(job, "NIP-17 contacts cannot receive this")
            else:
                targets = list(contact.relays) or await ctx.own_relays()
                _, envelopes, writes = self.sender.seal(
                    contact,
                    message,
                    targets,
                    ctx.now(),
                    job.message_id,
                    own=await ctx.own_relays(),
                )
                if not envelopes:
                    jobs.record_no_device(job, ctx.clock())
            if envelopes:
                envelopes = jobs.sealed(job, envelopes)

                def apply(store: NodeStore) -> None:
                    for write in writes:
                        write(store)
                    store.update_outbox(envelopes[0])
                    for extra in envelopes[1:]:
                        store.add_outbox(extra)

                await ctx.committer.commit(apply)
                changed = None
            else:
                changed = await ctx.committer.commit(lambda store: jobs.settle(store, job))
        finally:
            self._in_flight.discard(job.id)
        self._tell(changed)
        for envelope in envelopes:
            self._spawn_publish(envelope)
