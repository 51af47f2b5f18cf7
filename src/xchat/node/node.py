"""The X Chat node: one identity's device, kept online, sending and receiving.

Theory of operation. :class:`Node` is a facade: it wires the parts and owns their
lifecycle, and it is all the local API talks to. The parts are objects handed a shared
:class:`~xchat.node.context.Context` (the store thread, one injected clock and rng, the
change stream) and each other:

* :class:`~xchat.node.committer.Committer`: the SQLCipher store's thread, group commit;
* :class:`~xchat.node.pool.RelayPool`: reads our mail, publishes anywhere;
* :class:`~xchat.node.contacts.Contacts`: contacts, their devices and relays;
* :class:`~xchat.node.sending.Sender` and :class:`~xchat.node.outbox.Outbox`: messages
  out (docs/node.md, "Sending");
* :class:`~xchat.node.receiving.Inbox`: messages in (docs/node.md, "Receiving");
* :class:`~xchat.node.announce.Announcer`: our device bundle and relay list;
* :class:`~xchat.node.stream.Broadcaster`: typed events to the API's stream.

The rules all these follow (what a message means, who may edit what, the outbox's
states, which bundle counts) are sans-I/O in ``xchat.core``; the parts only drive them.

Privacy: logs carry counts and error classes only, never keys, contacts or text.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

from xchat.core.channel import MAX_LOOKBACK, Channel
from xchat.core.device import LocalDevice
from xchat.core.mailbox import EPOCH_SECONDS, LIVE_LOOKBACK
from xchat.core.node_events import RelayChanged, RelayWarning
from xchat.core.session import Session
from xchat.crypto.kdf import derive_key
from xchat.crypto.keys import Rng, SecretKey
from xchat.errors import InvalidInput, XChatError
from xchat.home import Home, Unlocked
from xchat.model import Contact, Conversation, ConversationSummary, Message
from xchat.node.announce import Announcer
from xchat.node.committer import Committer
from xchat.node.config import NodeConfig
from xchat.node.contacts import ContactMarks, Contacts
from xchat.node.context import Context
from xchat.node.oneshot import NIP11_TIMEOUT
from xchat.node.outbox import Outbox
from xchat.node.pool import RelayPool
from xchat.node.receiving import Inbox
from xchat.node.sending import Sender, resolve_conversation
from xchat.node.stream import Broadcaster, StreamItem
from xchat.store.node import NodeStore
from xchat.wire.relay_url import normalize_relay_url

__all__ = ["Node"]

log = logging.getLogger("xchat.node")

#: Chain progress not updated for this long is forgotten (longer than relays keep mail).
_CHAIN_KEEP: Final = 45 * 24 * 3600
_SEEN_KEEP: Final = 45 * 24 * 3600
_CURSOR_SAVE_EVERY: Final = 10
_HOUSEKEEPING: Final = 60.0


class Node:
    """See the module docstring. Create, :meth:`start`, use, :meth:`close`."""

    def __init__(
        self,
        home: Home,
        unlocked: Unlocked,
        config: NodeConfig | None = None,
        *,
        rng: Rng = os.urandom,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.home = home
        self._unlocked = unlocked
        self.identity = unlocked.identity
        self.pubkey = unlocked.identity.public_key.hex
        store = NodeStore(
            home.path / "node.db", derive_key(unlocked.storage_key, "xchat/node-db/v1")
        )
        self.ctx = ctx = Context(
            me=self.pubkey,
            identity=unlocked.identity,
            storage_key=unlocked.storage_key,
            config=config or NodeConfig(),
            committer=Committer(store),
            stream=Broadcaster(),
            clock=clock,
            rng=rng,
        )
        self.config = ctx.config
        self.contacts = Contacts(ctx)
        self.outbox = Outbox(ctx, self.contacts)
        self.sender = Sender(ctx, self.contacts, self.outbox)
        self.outbox.sender = self.sender
        self.contacts.on_accepted = self.sender.send_pending_receipts
        self.inbox = Inbox(
            ctx, self.contacts, self.sender.queue_delivered, self._one_time_keys_used
        )
        self._announcer: Announcer  # set by start()
        self._workers: list[asyncio.Task[None]] = []
        self._epoch_keys: frozenset[str] = frozenset()
        self._cursors_saved: dict[str, int] = {}
        #: Days of mailbox keys to read: more after the node was off for days.
        self._lookback = LIVE_LOOKBACK
        self.started_at = 0.0
        self._started = False

    # -- lifecycle --------------------------------------------------------------------

    @property
    def stats(self) -> Any:
        return self.ctx.stats

    @property
    def channel(self) -> Channel:
        return self.ctx.channel

    @property
    def pool(self) -> RelayPool:
        return self.ctx.pool

    @property
    def embedded_relay(self) -> str | None:
        return self.ctx.embedded_relay

    async def start(
        self,
        relays: Sequence[str] = (),
        embedded: Callable[[], Awaitable[str]] | None = None,
    ) -> None:
        """Open the store, restore sessions, connect to relays, publish our lists.

        ``relays`` are added to the stored inbox relays. If there are none at all,
        ``embedded()`` starts a local relay and returns its URL, which is then used
        (without being stored: adding a relay later replaces it).
        """
        ctx = self.ctx
        committer, store = ctx.committer, ctx.committer.store
        self.started_at = ctx.clock()
        await committer.run(store.open)
        device = await committer.run(self._load_device)
        sessions = []
        for record in await committer.run(store.sessions):
            try:
                sessions.append(
                    Session.from_record(record.record, record.session_id, ctx.storage_key)
                )
            except XChatError:
                log.error("a stored session could not be opened; it is skipped")
        ctx.channel = Channel(device, sessions)
        last = await committer.run(store.get_setting, "last_online")
        if last is not None and last.isdigit():
            offline_days = max(0, int(self.started_at) - int(last)) // EPOCH_SECONDS
            self._lookback = min(MAX_LOOKBACK, LIVE_LOOKBACK + offline_days + 1)
        for url in (*ctx.config.relays, *relays):
            await committer.run(store.add_relay, normalize_relay_url(url))
        committer.start()
        self._started = True
        urls = await committer.run(store.relays)
        if not urls and embedded is not None:
            ctx.embedded_relay = await embedded()
            urls = [ctx.embedded_relay]
        ctx.pool = RelayPool(
            self._receive_keys,
            self.inbox.on_event,
            cursor_store=self._store_cursor,
            cursor_load=self._load_cursor,
            resync_interval=ctx.config.resync_interval,
        )
        ctx.pool.on_health_change = lambda h: ctx.emit(RelayChanged(h.to_json()))
        self._announcer = Announcer(
            ctx.pool,
            self.identity.secret,
            lambda: ctx.channel.device,
            self._save_device,
            ctx.own_relays,
            lambda relay, warning: ctx.emit(RelayWarning(relay, warning)),
            publish_timeout=ctx.config.publish_timeout,
            one_time_keys=ctx.config.one_time_keys,
            rng=ctx.rng,
            clock=ctx.clock,
        )
        self._epoch_keys = frozenset(self._receive_keys())
        await self.inbox.restore_held()
        await ctx.pool.start(urls)
        self._worker(self.inbox.worker(), "node-inbox")
        self._worker(self.outbox.worker(), "node-outbox")
        self._worker(self._housekeeping(), "node-ticker")
        self.contacts.watch_new(await self.contacts.all())
        self._worker(self.contacts.lookup_worker(), "node-lookups")
        # Contacts find us by our bundle: publish it before saying we are up, but wait
        # only until one relay took each of our lists (a relay that does not answer
        # must not hold the start back), at most the publish timeout.
        ctx.spawn(self._announcer.announce(), "node-announce")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ctx.config.publish_timeout + NIP11_TIMEOUT):
                await self._announcer.announced.wait()

    def _worker(self, coro: Any, name: str) -> None:
        self._workers.append(asyncio.create_task(coro, name=name))

    async def close(self) -> None:
        """Stop reading and publishing; commit what is pending; close the store."""
        from xchat.aio import reap

        ctx = self.ctx
        if self._started:
            await self.sender.flush_receipts()
        if hasattr(ctx, "pool"):
            await ctx.pool.close()
        await reap(*self._workers, *ctx.tasks)
        self._workers.clear()
        if hasattr(ctx, "channel") and self._started:
            now = str(ctx.now())
            ctx.committer.commit(lambda store: store.set_setting("last_online", now))
        await ctx.committer.close()

    def _load_device(self) -> LocalDevice:
        """The device from the node database (authoritative), imported from the home once."""
        store, key = self.ctx.committer.store, self.ctx.storage_key
        stored = store.get_setting("device_record")
        if stored is not None:
            return LocalDevice.from_record(self.identity, bytes.fromhex(stored), key)
        device = self._unlocked.device
        store.set_setting("device_record", device.to_record(key, self.ctx.rng).hex())
        return device

    async def _save_device(self) -> None:
        await self.ctx.committer.commit(self.ctx.device_write())

    def _store_cursor(self, url: str, value: int) -> None:
        """Remember how far a relay was read, at most every few seconds (each write is a
        commit). Readers look CURSOR_SLACK behind it anyway, so a stale cursor loses
        nothing: it only re-reads events that de-duplication then drops."""
        if value - self._cursors_saved.get(url, 0) < _CURSOR_SAVE_EVERY:
            return
        self._cursors_saved[url] = value
        committer = self.ctx.committer
        committer.submit(committer.store.set_setting, f"cursor:{url}", str(value))

    def _load_cursor(self, url: str) -> int | None:
        committer = self.ctx.committer
        value = committer.submit(committer.store.get_setting, f"cursor:{url}").result()
        return int(value) if value is not None and value.isdigit() else None

    def _receive_keys(self) -> dict[str, SecretKey]:
        return self.ctx.channel.receive_keys(self.ctx.now(), self._lookback)

    def _one_time_keys_used(self, count: int) -> None:
        if self._announcer.keys_used(count):
            self.ctx.spawn(self._announcer.announce())

    async def _housekeeping(self) -> None:
        """Every minute: rotate mailboxes, follow the day's epoch, forget old event ids."""
        ctx = self.ctx
        while True:
            await asyncio.sleep(_HOUSEKEEPING)
            now = ctx.now()
            changed = ctx.channel.rotate_mailboxes(now, ctx.rng)
            if changed:
                await ctx.committer.commit(_run_all([ctx.session_write(s) for s in changed]))
            keys = frozenset(self._receive_keys())
            if keys != self._epoch_keys:
                self._epoch_keys = keys
                ctx.pool.keys_changed()
            await ctx.committer.commit(functools.partial(_forget_old, now=now))

    # -- the stream --------------------------------------------------------------------

    def subscribe(self) -> contextlib.AbstractAsyncContextManager[asyncio.Queue[StreamItem]]:
        """A queue of every change from now on (messages, states, contacts, relays)."""
        return self.ctx.stream.subscribe()

    # -- contacts ----------------------------------------------------------------------

    async def contact_list(self) -> list[Contact]:
        return await self.contacts.all()

    async def add_contact(self, address: str, name: str | None = None) -> tuple[Contact, bool]:
        return await self.contacts.add(address, name)

    async def set_contact(
        self, pubkey: str, *, name: str | None = None, state: str | None = None
    ) -> Contact:
        return await self.contacts.set(pubkey, name=name, state=state)

    def contact_marks(self, contact: Contact) -> ContactMarks:
        return self.contacts.marks(contact)

    async def safety_number(self, pubkey: str) -> dict[str, Any]:
        return await self.contacts.safety_number(pubkey)

    async def mark_verified(self, pubkey: str, verified: bool = True) -> dict[str, Any]:
        return await self.contacts.mark_verified(pubkey, verified)

    async def refresh_contact(self, pubkey: str) -> None:
        await self.contacts.refresh(pubkey)

    # -- conversations and messages ----------------------------------------------------

    async def conversation(self, ref: str) -> Conversation:
        """A conversation by its id, or (an alias for scripts) the direct conversation
        with a contact named by their 64-hex key."""
        committer = self.ctx.committer
        return await committer.run(resolve_conversation, committer.store, ref)

    async def direct_conversation(self, peer: str) -> Conversation | None:
        """The direct conversation with ``peer`` (64-hex key), if there is one."""
        committer = self.ctx.committer
        return await committer.run(committer.store.direct_conversation, peer)

    async def conversations(self) -> list[ConversationSummary]:
        committer = self.ctx.committer
        return await committer.run(committer.store.conversations)

    async def messages(
        self, conversation_id: str, before: tuple[int, int] | None = None, limit: int = 50
    ) -> list[Message]:
        committer = self.ctx.committer
        return await committer.run(committer.store.messages, conversation_id, before, limit)

    async def search(self, text: str, limit: int = 100) -> list[Message]:
        committer = self.ctx.committer
        return await committer.run(committer.store.search, text, limit)

    async def message(self, message_id: str) -> Message:
        return await self.sender.message(message_id)

    async def send_text(
        self,
        conversation_id: str,  # or, as in the API's paths, a contact's 64-hex key
        body: str,
        reply_to: str | None = None,
        client_id: str | None = None,
    ) -> Message:
        return await self.sender.send_text(conversation_id, body, reply_to, client_id)

    async def react(self, message_id: str, emoji: str) -> Message:
        return await self.sender.react(message_id, emoji)

    async def edit(self, message_id: str, body: str) -> Message:
        return await self.sender.edit(message_id, body)

    async def delete(self, message_id: str) -> Message:
        return await self.sender.delete(message_id)

    async def retry(self, message_id: str) -> Message:
        return await self.sender.retry(message_id)

    async def mark_read(self, conversation_id: str) -> list[str]:
        return await self.sender.mark_read(conversation_id)

    async def read_receipts_enabled(self) -> bool:
        return await self.sender.read_receipts_enabled()

    async def set_read_receipts(self, enabled: bool) -> None:
        await self.sender.set_read_receipts(enabled)

    # -- relays --------------------------------------------------------------------------

    async def own_relays(self) -> list[str]:
        return await self.ctx.own_relays()

    async def add_relay(self, url: str) -> list[str]:
        ctx = self.ctx
        url = normalize_relay_url(url)
        await ctx.committer.commit(lambda store: store.add_relay(url))
        if ctx.embedded_relay is not None and ctx.embedded_relay in ctx.pool.reading:
            await ctx.pool.remove_relay(ctx.embedded_relay)
        ctx.pool.add_relay(url)
        ctx.spawn(self._announcer.announce())
        return await self.own_relays()

    async def remove_relay(self, url: str) -> list[str]:
        ctx = self.ctx
        url = normalize_relay_url(url)
        removed = await ctx.committer.commit(lambda store: store.remove_relay(url))
        if not removed:
            raise InvalidInput("That relay is not in your list.")
        await ctx.pool.remove_relay(url)
        urls = await self.own_relays()
        for fallback in urls:
            ctx.pool.add_relay(fallback)
        ctx.spawn(self._announcer.announce())
        return urls

    async def status(self) -> dict[str, Any]:
        ctx = self.ctx
        committer = ctx.committer
        waiting = await committer.run(committer.store.outbox_waiting)
        health = ctx.pool.health()
        stats = ctx.stats
        return {
            "npub": self.identity.npub,
            "pubkey": self.pubkey,
            "device": ctx.channel.device.certificate.device_id,
            "uptime": round(ctx.clock() - self.started_at, 1),
            "relays": [h.to_json() for h in health],
            "warnings": [f"{h.url} {h.warning}" for h in health if h.warning],
            "embedded_relay": ctx.embedded_relay,
            "outbox_pending": waiting,
            "sessions": len(ctx.channel.sessions()),
            "received": stats.received,
            "rejected": stats.rejected,
            "rejected_by_reason": dict(sorted(stats.rejected_by_error.items())),
            "lost": stats.lost,
            "held": ctx.channel.holding,
            "duplicates": stats.duplicates,
            "sent": stats.sent,
            "failed": stats.failed,
        }


def _run_all(writes: list[Callable[[NodeStore], Any]]) -> Callable[[NodeStore], None]:
    def apply(store: NodeStore) -> None:
        for write in writes:
            write(store)

    return apply


def _forget_old(store: NodeStore, *, now: int) -> None:
    """Housekeeping: forget event ids and chain progress too old to matter."""
    store.forget_seen(older_than=now - _SEEN_KEEP)
    store.forget_chains(older_than=now - _CHAIN_KEEP)
    store.set_setting("last_online", str(now))
