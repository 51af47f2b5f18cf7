"""Receiving: relay events -> the channel -> the conversation rules -> one commit.

Theory of operation. Events from the pool go through a queue; a worker takes them in
batches (up to :data:`INBOX_BATCH`), drops those already seen, and opens the rest with
:meth:`~xchat.core.channel.Channel.open_batch` on the loop thread (vodozemac objects are
thread-bound: sessions are pickled here too). Then one commit, on the store thread,
writes the sessions, the device, the envelopes held back and chain progress, and runs
:meth:`~xchat.core.conversation.ConversationRules.apply`, which stores the messages and
their effects and marks the event ids seen: one trip down, typed events back up. The
events go to the stream; delivery receipts are queued (to accepted contacts only).
Nothing a peer or relay sends can stop the worker: every documented error is counted
and dropped.

Envelopes the channel holds back (far ahead in their Olm chain, see
``xchat.core.holdback``) are written to the ``held`` table in the same transaction, not
marked seen, and given back to the channel at the next start. A held envelope opens
when its gap fills, or on evidence that it never will: every inbox relay has completed
a catch-up since it was held, the inbox queue is empty, and ``gap_grace`` seconds have
passed. Envelopes for which the channel had no room are neither held nor seen: the pool
forgets their ids, so the next re-read fetches them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Final

import orjson

from xchat.core.channel import Incoming
from xchat.core.conversation import Applied, ConversationRules
from xchat.core.holdback import ChainState
from xchat.core.node_events import ContactChanged, DeviceAdded
from xchat.errors import DecodeError, ReplayError
from xchat.model import SessionRecord
from xchat.node.contacts import Contacts
from xchat.node.context import Context
from xchat.store.node import NodeStore
from xchat.wire.event import Event, parse_event

__all__ = ["INBOX_BATCH", "Inbox"]

log = logging.getLogger("xchat.node")

INBOX_BATCH: Final = 500
#: How often envelopes held back (out of chain order) are looked at again, to give up
#: on a gap once there is evidence (seconds).
_HOLD_TICK: Final = 1.0


class Inbox:
    def __init__(
        self,
        ctx: Context,
        contacts: Contacts,
        on_receipts: Callable[[str, list[str]], None],
        on_keys_used: Callable[[int], None],
    ) -> None:
        self.ctx = ctx
        self.contacts = contacts
        self._on_receipts = on_receipts
        self._on_keys_used = on_keys_used
        self._queue: asyncio.Queue[tuple[str, Event]] = asyncio.Queue()
        self.rules = ConversationRules(ctx.me)

    async def on_event(self, url: str, event: Event) -> None:
        await self._queue.put((url, event))

    async def restore_held(self) -> None:
        """Chain progress and the envelopes held back when the node last ran."""
        ctx = self.ctx
        store = ctx.committer.store
        chains = {}
        for ratchet, text in await ctx.committer.run(store.chains):
            with contextlib.suppress(DecodeError):
                chains[ratchet] = ChainState.from_json(text)
        ctx.channel.restore_chains(chains, await ctx.committer.run(store.untracked))
        held: list[tuple[Event, int]] = []
        gone: list[str] = []
        for event_id, text, since in await ctx.committer.run(store.held):
            try:
                held.append((parse_event(orjson.loads(text)), since))
            except (orjson.JSONDecodeError, DecodeError):
                gone.append(event_id)  # a damaged row: it can never be opened
        gone += ctx.channel.restore_held(held, ctx.now())
        if gone:
            # their key is gone (or the row is damaged): they can never be opened
            ctx.stats.rejected += len(gone)
            now = ctx.now()

            def drop(store: NodeStore) -> None:
                store.release(gone)
                for event_id in gone:
                    store.mark_seen(event_id, now)

            ctx.committer.commit(drop)
        if held:
            log.info("%d envelopes held back since the last run", ctx.channel.holding)

    def _give_up_before(self, now: int) -> int | None:
        """Held envelopes held before this time may be opened despite their gap: every
        inbox relay completed a catch-up since (so the missing envelopes are on none of
        them), everything it delivered was taken from the queue, and ``gap_grace``
        passed. None: no such evidence yet."""
        if not self._queue.empty():
            return None
        grace = self.ctx.config.gap_grace
        since = self.ctx.pool.complete_since(down_for=grace)
        if since is None:
            return None
        return min(since, int(now - grace))

    async def worker(self) -> None:
        channel = self.ctx.channel
        while True:
            batch = []
            # envelopes held back for earlier ones of their chain: look again soon
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_HOLD_TICK if channel.holding else None):
                    batch.append(await self._queue.get())
            while len(batch) < INBOX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            if not batch:
                oldest = channel.oldest_held_since()
                give_up = self._give_up_before(self.ctx.now())
                if oldest is None or give_up is None or oldest >= give_up:
                    continue  # nothing to give up on yet
            try:
                await self.receive_batch([event for _, event in batch])
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("receiving a batch failed")

    async def _open(self, events: list[Event], now: int) -> tuple[list[Incoming], list[str]]:
        """Open what was not seen before: the messages, and the ids of envelopes that
        are duplicates or bad (to be marked seen; they are never opened again)."""
        ctx = self.ctx
        store = ctx.committer.store
        ids = [e.id for e in events]
        already = (
            await ctx.committer.run(lambda: {i for i in ids if store.seen(i)}) if ids else set()
        )
        opened: list[Incoming] = []
        seen_only: list[str] = []
        fresh = []
        for event in events:
            if event.id in already:
                ctx.stats.duplicates += 1
            else:
                fresh.append(event)
        give_up = self._give_up_before(now)
        for event, result in ctx.channel.open_batch(fresh, now, ctx.rng, give_up):
            if isinstance(result, Incoming):
                opened.append(result)
                continue
            seen_only.append(event.id)
            if isinstance(result, ReplayError):
                ctx.stats.duplicates += 1
            else:
                ctx.stats.reject(result)
        return opened, seen_only

    async def receive_batch(self, events: list[Event]) -> None:
        ctx = self.ctx
        channel = ctx.channel
        now = ctx.now()
        now_ms = ctx.now_ms()
        keys_before = len(channel.sessions())
        opened, seen_only = await self._open(events, now)
        held, released = channel.take_held_changes()
        chains = channel.take_chain_changes()
        tracked = channel.take_tracked()
        for event in channel.take_deferred():
            ctx.pool.forget(event.id)  # no room to hold it: the next re-read brings it
        if not opened and not seen_only and not held and not released:
            return
        held_rows = [(e.id, e.to_json().decode(), since) for e, since in held]
        chain_rows = [(ratchet, state.to_json().decode()) for ratchet, state in chains.items()]
        sessions: dict[str, SessionRecord] = {}
        for incoming in opened:
            if incoming.session is not None:
                session = incoming.session
                sessions[session.session_id] = SessionRecord(
                    session.session_id,
                    session.peer.identity.hex,
                    session.peer.curve25519,
                    session.to_record(ctx.storage_key, ctx.rng),
                    now,
                )
        device_write = ctx.device_write() if any(i.new_session for i in opened) else None
        rules, rng = self.rules, ctx.rng

        def apply(store: NodeStore) -> Applied:
            for record in sessions.values():
                store.save_session(record)
            if device_write is not None:
                device_write(store)
            for event_id, text, since in held_rows:
                store.hold(event_id, text, len(text), since)
            store.release(released)
            for ratchet, state in chain_rows:
                store.save_chain(ratchet, state, now)
            store.set_tracked(tracked)
            return rules.apply(store, opened, seen_only, now, now_ms, rng)

        applied = await ctx.committer.commit(apply)
        ctx.stats.received += applied.received
        ctx.stats.lost += applied.lost
        for event in applied.events:
            ctx.emit(event)
            if isinstance(event, DeviceAdded):  # their marks changed: the new contact
                contact = await self.contacts.get(event.pubkey)
                if contact is not None:
                    ctx.emit(ContactChanged(contact))
        if len(channel.sessions()) != keys_before:
            self._on_keys_used(len(channel.sessions()) - keys_before)
            ctx.pool.keys_changed()
        for pubkey, targets in applied.receipts.items():
            self._on_receipts(pubkey, targets)
