"""The X Chat node: one identity's device, kept online, sending and receiving.

Theory of operation. The node owns four things and wires them together on one
asyncio loop:

* the :class:`~xchat.core.channel.Channel` (sans-I/O crypto: sessions, mailboxes),
  driven only from the loop thread;
* the :class:`~xchat.store.node.NodeStore` (SQLCipher), driven only from one worker
  thread; every write goes through :meth:`Node._commit`, which groups the writes that
  are waiting into one transaction (group commit: one fsync for many messages);
* the :class:`~xchat.node.pool.RelayPool`, which reads our mail from our inbox relays
  and publishes envelopes anywhere;
* subscribers of :meth:`Node.subscribe` (the local API's WebSocket stream).

Sending (``send_text`` and friends)::

    seal for each peer device (or NIP-17) -> commit message + sessions + outbox rows
        -> return to the caller (the message is durable: a crash now loses nothing)
        -> publish each envelope to the recipient's inbox relays
        -> commit what each relay answered: "sent" once min(2, relays) accepted,
           else retry with backoff; "failed" (with the reason) after MAX_ATTEMPTS.

A session's ratchet is committed before any envelope it produced leaves the machine.
Rows still pending at start-up (the node was killed) are published again; relays
answer a duplicate with ``OK true`` and receivers de-duplicate by event and message id.

Receiving: events from the pool go through a queue; a worker opens a batch with the
channel and commits, in one transaction, the sessions, the device, the contact (an
unknown sender becomes a *message request*), the message or its effect (edit,
reaction, delete, receipt) and the event id as seen. Then subscribers are told and
delivery receipts go out (to accepted contacts only). Nothing a peer or relay sends
can stop the worker: every documented error is counted and dropped. Envelopes the
channel holds back (far ahead in their Olm chain, see ``xchat.core.holdback``) are
written to the ``held`` table in the same transaction, not marked seen, and given back
to the channel at the next start; chain progress goes to the ``chains`` table. A held
envelope opens when its gap fills, or on evidence that it never will: every inbox
relay has completed a catch-up since it was held, the inbox queue is empty, and
``gap_grace`` seconds have passed (then the messages given up become one
"could not be decrypted" item in the conversation). Envelopes for which the channel
had no room are neither held nor seen: the pool forgets their ids, so the next re-read
fetches them again.

Privacy: logs carry counts and error classes only, never keys, contacts or text.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import orjson

from xchat.core.channel import MAX_LOOKBACK, Channel, Incoming
from xchat.core.device import KIND_DEVICE_BUNDLE, DeviceBundle, LocalDevice
from xchat.core.events import verify_event
from xchat.core.holdback import ChainState
from xchat.core.identity import ContactCard
from xchat.core.mailbox import EPOCH_SECONDS, LIVE_LOOKBACK
from xchat.core.message import (
    AppMessage,
    Delete,
    Delivered,
    Edit,
    Reaction,
    Read,
    Reply,
    Text,
    decode_app_message,
    new_message_id,
)
from xchat.core.nip17 import FILE_NOTE
from xchat.core.session import Session
from xchat.crypto.kdf import derive_key
from xchat.crypto.keys import PublicKey, Rng, SecretKey
from xchat.errors import (
    DecodeError,
    InvalidInput,
    LocalProtocolError,
    RemoteProtocolError,
    ReplayError,
    XChatError,
)
from xchat.home import Home, Unlocked
from xchat.node.announce import KIND_INBOX_RELAYS, Announcer
from xchat.node.lookups import LookupSchedule
from xchat.node.oneshot import NIP11_TIMEOUT
from xchat.node.pool import RESYNC_INTERVAL, RelayPool
from xchat.node.relay_client import PublishResult, reap
from xchat.store.node import (
    ContactRow,
    ConversationRow,
    DeviceRow,
    MessageRow,
    NodeStore,
    OutboxRow,
    SessionRow,
)
from xchat.wire.event import Event, is_hex, parse_event
from xchat.wire.relay_url import normalize_relay_url

__all__ = [
    "KIND_INBOX_RELAYS",
    "MAX_ATTEMPTS",
    "Node",
    "NodeConfig",
    "config_from_env",
    "contact_json",
    "message_json",
]

log = logging.getLogger("xchat.node")

T = TypeVar("T")

#: Publishing attempts before an envelope (and its message) is marked failed.
MAX_ATTEMPTS: Final = 12
RETRY_START: Final = 1.0
RETRY_MAX: Final = 60.0
#: Relays that must accept an envelope: two, or all of them if fewer are known.
MIN_ACCEPTS: Final = 2
_MAX_INBOX_RELAYS: Final = 10
_INBOX_BATCH: Final = 500
#: How often envelopes held back (out of chain order) are looked at again, to give up
#: on a gap once there is evidence (seconds).
_HOLD_TICK: Final = 1.0
#: Default of NodeConfig.gap_grace: longer than a sender retries an envelope (12
#: attempts, about six to eight minutes), so a message still in its outbox can come.
GAP_GRACE: Final = 600.0
#: Chain progress not updated for this long is forgotten (longer than relays keep mail).
_CHAIN_KEEP: Final = 45 * 24 * 3600
_COMMIT_BATCH: Final = 1000
_SEEN_KEEP: Final = 45 * 24 * 3600
_TICK: Final = 1.0
_RECEIPT_BATCH: Final = 500
#: Sending to a contact without devices looks them up again if the last lookup is
#: older than this (seconds); otherwise the lookup schedule (``lookups.py``) decides.
_RECHECK_ON_SEND: Final = 60
#: Lookups of contacts' bundles running at once.
_LOOKUPS_AT_ONCE: Final = 4
#: The longest wait for one relay's answer to a lookup (seconds; at most the publish
#: timeout): a relay that does not answer must not hold up adding a contact.
_LOOKUP_TIMEOUT: Final = 5.0
_CURSOR_SAVE_EVERY: Final = 10
#: Early effects kept waiting for their target message.
_EARLY_EFFECTS: Final = 2000
#: Events queued for one stream subscriber before it must resync instead.
_STREAM_BACKLOG: Final = 10_000
#: Delivery receipts wait this long to be sent together (seconds).
_RECEIPT_DELAY: Final = 0.2


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """How to run a node. ``relays`` are added to the stored inbox relays."""

    relays: tuple[str, ...] = ()
    #: Longest wait for one relay's answer to a publish (connecting included).
    publish_timeout: float = 10.0
    #: How often stored mail is re-read from each inbox relay (relays can drop live
    #: events); see :data:`xchat.node.pool.RESYNC_INTERVAL`.
    resync_interval: float = RESYNC_INTERVAL
    #: Publish bundles with up to this many one-time keys (fewer if the inbox relays'
    #: content limits need it); republish when half of them are used.
    one_time_keys: int = 50
    #: How long an envelope far ahead in its chain waits, at least, for the ones before
    #: it once every inbox relay was read back (seconds); see ``xchat.core.holdback``.
    gap_grace: float = GAP_GRACE


def config_from_env() -> NodeConfig:
    """Defaults, with tuning from the environment (tests use short timers):
    ``XCHAT_PUBLISH_TIMEOUT``, ``XCHAT_RESYNC_INTERVAL`` and ``XCHAT_GAP_GRACE``, in
    seconds."""
    values: dict[str, float] = {}
    for name, var in (
        ("publish_timeout", "XCHAT_PUBLISH_TIMEOUT"),
        ("resync_interval", "XCHAT_RESYNC_INTERVAL"),
        ("gap_grace", "XCHAT_GAP_GRACE"),
    ):
        if (text := os.environ.get(var)) is not None:
            try:
                value = float(text)
            except ValueError:
                raise InvalidInput(f"{var} must be a number of seconds") from None
            if not 0.1 <= value <= 86400:
                raise InvalidInput(f"{var} must be between 0.1 and 86400 seconds")
            values[name] = value
    return NodeConfig(**values)  # type: ignore[arg-type]


@dataclass
class _Job:
    """Writes to commit together, and who waits for them."""

    apply: Callable[[NodeStore], Any]
    future: asyncio.Future[Any]


@dataclass
class _Stats:
    received: int = 0
    rejected: int = 0
    lost: int = 0  # messages given up on (a gap in a chain that never filled)
    duplicates: int = 0
    sent: int = 0
    failed: int = 0
    rejected_by_error: dict[str, int] = field(default_factory=dict)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def message_json(row: MessageRow) -> dict[str, Any]:
    """The API's view of a message (docs/api.md)."""
    return {
        "id": row.id,
        "conversation": row.conversation,
        "outgoing": row.outgoing,
        "sender": row.sender,
        "type": row.type,
        "body": row.body,
        "sent_at": row.sent_at,
        "received_at": row.received_at,
        "state": row.state,
        "state_detail": row.state_detail,
        "forward_secret": row.forward_secret,
        "reply_to": row.reply_to,
        "edited_at": row.edited_at,
        "deleted": row.deleted,
        "reactions": row.reactions or {},
        "seq": row.seq,
        # a file from another app: shown as a message that says so
        "note": FILE_NOTE if row.type == "file" else None,
    }


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
        self.config = config or NodeConfig()
        self._unlocked = unlocked
        self._rng = rng
        self._clock = clock
        self.identity = unlocked.identity
        self.pubkey = unlocked.identity.public_key.hex
        self._storage_key = unlocked.storage_key
        self.store = NodeStore(
            home.path / "node.db", derive_key(unlocked.storage_key, "xchat/node-db/v1")
        )
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xchat-store")
        self.channel: Channel  # set by start()
        self.pool: RelayPool  # set by start()
        self._jobs: list[_Job] = []
        self._jobs_ready = asyncio.Event()
        self._inbox: asyncio.Queue[tuple[str, Event]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._in_flight: set[int] = set()
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._wake_outbox = asyncio.Event()
        self._last_sent_at = 0
        self._announcer: Announcer  # set by start()
        #: Contacts without devices, and when to look for their bundles again.
        self._lookups = LookupSchedule()
        self._epoch_keys: frozenset[str] = frozenset()
        self._cursors_saved: dict[str, int] = {}
        #: Reactions, edits and deletions that arrived before their message, by target id
        #: (used only on the store thread, inside commits).
        self._early: OrderedDict[str, list[tuple[str, Reaction | Edit | Delete]]] = OrderedDict()
        #: Delivery receipts waiting to go out together, by contact.
        self._delivered: dict[str, list[str]] = {}
        #: Safety numbers by contact, with the device set they were computed for.
        self._numbers: dict[str, tuple[frozenset[str], str]] = {}
        #: Days of mailbox keys to read: more after the node was off for days.
        self._lookback = LIVE_LOOKBACK
        self.stats = _Stats()
        self.started_at = 0.0
        self.embedded_relay: str | None = None

    # -- lifecycle --------------------------------------------------------------

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a store call on the store thread (reads, and writes outside group commit)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

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
        self.started_at = self._clock()
        await self._db(self.store.open)
        device = await self._db(self._load_device)
        rows = await self._db(self.store.sessions)
        sessions = []
        for row in rows:
            try:
                sessions.append(Session.from_record(row.record, row.session_id, self._storage_key))
            except XChatError:
                log.error("a stored session could not be opened; it is skipped")
        self.channel = Channel(device, sessions)
        last = await self._db(self.store.get_setting, "last_online")
        if last is not None and last.isdigit():
            offline_days = max(0, int(self.started_at) - int(last)) // EPOCH_SECONDS
            self._lookback = min(MAX_LOOKBACK, LIVE_LOOKBACK + offline_days + 1)
        for url in (*self.config.relays, *relays):
            await self._db(self.store.add_relay, normalize_relay_url(url))
        self._tasks.append(asyncio.create_task(self._committer(), name="node-commit"))
        urls = await self._db(self.store.relays)
        if not urls and embedded is not None:
            self.embedded_relay = await embedded()
            urls = [self.embedded_relay]
        self.pool = RelayPool(
            self._receive_keys,
            self._on_event,
            cursor_store=self._store_cursor,
            cursor_load=self._load_cursor,
            resync_interval=self.config.resync_interval,
        )
        self.pool.on_health_change = lambda h: self._emit({"type": "relay", "relay": h.to_json()})
        self._announcer = Announcer(
            self.pool,
            self.identity.secret,
            lambda: self.channel.device,
            self._save_device,
            self.own_relays,
            self._emit,
            publish_timeout=self.config.publish_timeout,
            one_time_keys=self.config.one_time_keys,
            rng=self._rng,
            clock=self._clock,
        )
        self._epoch_keys = frozenset(self._receive_keys())
        await self._restore_held()
        await self.pool.start(urls)
        self._tasks.append(asyncio.create_task(self._inbox_worker(), name="node-inbox"))
        self._tasks.append(asyncio.create_task(self._outbox_worker(), name="node-outbox"))
        self._tasks.append(asyncio.create_task(self._ticker(), name="node-ticker"))
        now = self._clock()
        for contact in await self._db(self.store.contacts):
            if contact.nip17_only and contact.state == "accepted":
                self._lookups.watch(contact.pubkey, contact.created_at, now)
        self._tasks.append(asyncio.create_task(self._lookup_worker(), name="node-lookups"))
        # Contacts find us by our bundle: publish it before saying we are up, but wait
        # only until one relay took each of our lists (a relay that does not answer
        # must not hold the start back), at most the publish timeout.
        self._tasks.append(asyncio.create_task(self._announce(), name="node-announce"))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.publish_timeout + NIP11_TIMEOUT):
                await self._announcer.announced.wait()

    async def close(self) -> None:
        """Stop reading and publishing; commit what is pending; close the store."""
        for pubkey in list(self._delivered):  # receipts still waiting: queue them now
            with contextlib.suppress(XChatError):
                await self._send_receipt(pubkey, Delivered, self._delivered.pop(pubkey))
        if hasattr(self, "pool"):
            await self.pool.close()
        await reap(*self._tasks)  # (a copy: tasks that end remove themselves)
        self._tasks.clear()
        if hasattr(self, "channel"):
            now = str(int(self._clock()))
            self._commit(functools.partial(NodeStore.set_setting, key="last_online", value=now))
        if self._jobs:
            await self._db(self._run_jobs, self._take_jobs())
        await self._db(self.store.close)
        self._executor.shutdown(wait=True)

    async def _restore_held(self) -> None:
        """Chain progress and the envelopes held back when the node last ran."""
        chains = {}
        for ratchet, text in await self._db(self.store.chains):
            with contextlib.suppress(DecodeError):
                chains[ratchet] = ChainState.from_json(text)
        self.channel.restore_chains(chains, await self._db(self.store.untracked))
        held: list[tuple[Event, int]] = []
        gone: list[str] = []
        for event_id, text, since in await self._db(self.store.held):
            try:
                held.append((parse_event(orjson.loads(text)), since))
            except (orjson.JSONDecodeError, DecodeError):
                gone.append(event_id)  # a damaged row: it can never be opened
        gone += self.channel.restore_held(held, int(self._clock()))
        if gone:
            # their key is gone (or the row is damaged): they can never be opened
            self.stats.rejected += len(gone)
            now = int(self._clock())

            def drop(store: NodeStore) -> None:
                store.release(gone)
                for event_id in gone:
                    store.mark_seen(event_id, now)

            self._commit(drop)
        if held:
            log.info("%d envelopes held back since the last run", self.channel.holding)

    def _load_device(self) -> LocalDevice:
        """The device from the node database (authoritative), imported from the home once."""
        stored = self.store.get_setting("device_record")
        if stored is not None:
            return LocalDevice.from_record(self.identity, bytes.fromhex(stored), self._storage_key)
        device = self._unlocked.device
        self.store.set_setting(
            "device_record", device.to_record(self._storage_key, self._rng).hex()
        )
        return device

    async def _save_device(self) -> None:
        await self._commit(self._device_write())

    def _device_write(self) -> Callable[[NodeStore], None]:
        """A write of the device's current state (its one-time keys change)."""
        record = self.channel.device.to_record(self._storage_key, self._rng).hex()
        return lambda store: store.set_setting("device_record", record)

    def _store_cursor(self, url: str, value: int) -> None:
        """Remember how far a relay was read, at most every few seconds (each write is a
        commit). Readers look CURSOR_SLACK behind it anyway, so a stale cursor loses
        nothing: it only re-reads events that de-duplication then drops."""
        if value - self._cursors_saved.get(url, 0) < _CURSOR_SAVE_EVERY:
            return
        self._cursors_saved[url] = value
        self._executor.submit(self.store.set_setting, f"cursor:{url}", str(value))

    def _load_cursor(self, url: str) -> int | None:
        value = self._executor.submit(self.store.get_setting, f"cursor:{url}").result()
        return int(value) if value is not None and value.isdigit() else None

    def _receive_keys(self) -> dict[str, SecretKey]:
        return self.channel.receive_keys(int(self._clock()), self._lookback)

    # -- group commit -------------------------------------------------------------

    def _commit(self, apply: Callable[[NodeStore], T]) -> asyncio.Future[T]:
        """Queue writes for the next transaction; the future resolves once committed."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.append(_Job(apply, future))
        self._jobs_ready.set()
        return future

    def _take_jobs(self) -> list[_Job]:
        jobs, self._jobs = self._jobs[:_COMMIT_BATCH], self._jobs[_COMMIT_BATCH:]
        if not self._jobs:
            self._jobs_ready.clear()
        return jobs

    def _run_jobs(self, jobs: list[_Job]) -> list[tuple[bool, Any]]:
        """On the store thread: every job in one transaction; a failing job is retried
        alone so that one bad write cannot undo the others."""
        results: list[tuple[bool, Any]] = []
        try:
            with self.store.transaction():
                for job in jobs:
                    results.append((True, job.apply(self.store)))
            return results
        except Exception:
            if len(jobs) == 1:
                raise
        results = []
        for job in jobs:
            try:
                with self.store.transaction():
                    results.append((True, job.apply(self.store)))
            except Exception as exc:
                results.append((False, exc))
        return results

    async def _committer(self) -> None:
        while True:
            await self._jobs_ready.wait()
            jobs = self._take_jobs()
            if not jobs:
                continue
            try:
                results = await self._db(self._run_jobs, jobs)
            except Exception as exc:
                log.error("a store write failed: %s", type(exc).__name__)
                results = [(False, exc)] * len(jobs)
            for job, (ok, value) in zip(jobs, results, strict=True):
                if job.future.done():
                    continue
                if ok:
                    job.future.set_result(value)
                else:
                    job.future.set_exception(value)

    # -- events for the API ---------------------------------------------------------

    def _emit(self, event: dict[str, Any]) -> None:
        """Tell every subscriber. One that fell too far behind loses its backlog and gets
        ``{"type": "resync"}`` instead: it must reload what it shows from the API."""
        for queue in list(self._subscribers):
            if queue.qsize() >= _STREAM_BACKLOG:
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait({"type": "resync"})
            queue.put_nowait(event)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        """A queue of every change from now on (messages, states, contacts, relays)."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    # -- our lists on relays ---------------------------------------------------------

    async def own_relays(self) -> list[str]:
        urls = await self._db(self.store.relays)
        if not urls and self.embedded_relay is not None:
            return [self.embedded_relay]
        return urls

    async def _announce(self) -> None:
        await self._announcer.announce()

    def _one_time_keys_used(self, count: int) -> None:
        if self._announcer.keys_used(count):
            self._tasks.append(asyncio.create_task(self._announce()))

    # -- contacts --------------------------------------------------------------------

    async def add_contact(self, address: str, name: str | None = None) -> ContactRow:
        """Add (or accept) a contact from an npub/nprofile and look up their devices."""
        card = ContactCard.parse(address)
        pubkey = card.public_key.hex
        if pubkey == self.pubkey:
            raise InvalidInput("that is your own address")
        if name is not None:
            name = _check_name(name)
        existing = await self._db(self.store.get_contact, pubkey)
        now = int(self._clock())
        if existing is None:
            contact = ContactRow(pubkey, name, "accepted", list(card.relays), now)
        else:
            contact = existing
            contact.state = "accepted"
            if name is not None:
                contact.name = name
            for url in card.relays:
                if url not in contact.relays:
                    contact.relays.append(url)
        await self._commit(lambda store: store.upsert_contact(contact))
        self._lookups.forget(pubkey)  # look now, and from now on as for a new contact
        await self.refresh_contact(pubkey)
        updated = await self._db(self.store.get_contact, pubkey)
        assert updated is not None
        self._emit({"type": "contact", "contact": self.contact_view(updated)})
        if existing is not None and existing.state == "request":
            await self._send_pending_receipts(pubkey)
        return updated

    async def refresh_contact(self, pubkey: str) -> None:
        """Fetch a contact's inbox relays (kind 10050) and device bundles; open sessions
        with devices we have none with. No bundle at all: the contact is NIP-17 only
        for now, and the lookup schedule (``lookups.py``) looks for one again; once one
        is found, ``forward_secrecy`` goes out on the stream."""
        contact = await self._db(self.store.get_contact, pubkey)
        if contact is None:
            return
        was_nip17 = contact.nip17_only
        urls = list(dict.fromkeys([*contact.relays, *await self.own_relays()]))
        events = await self.pool.query(
            [{"kinds": [KIND_INBOX_RELAYS, KIND_DEVICE_BUNDLE], "authors": [pubkey]}],
            urls,
            timeout=min(_LOOKUP_TIMEOUT, self.config.publish_timeout),
        )
        now = int(self._clock())
        relays = _inbox_relays(events, pubkey) or list(contact.relays)
        bundles: dict[str, DeviceBundle] = {}
        for event in events:
            if event.kind != KIND_DEVICE_BUNDLE or event.pubkey != pubkey:
                continue
            try:
                bundle = DeviceBundle.from_event(event)
            except RemoteProtocolError:
                continue
            known = bundles.get(bundle.certificate.device_id)
            if known is None or bundle.published_at > known.published_at:
                bundles[bundle.certificate.device_id] = bundle
        have = self.channel.peer_devices(PublicKey.from_hex(pubkey))
        writes: list[Callable[[NodeStore], Any]] = []
        opened = False
        for device_id, bundle in bundles.items():
            cert = bundle.certificate
            writes.append(
                _device_upsert(
                    DeviceRow(
                        device_id,
                        pubkey,
                        cert.curve25519,
                        orjson.dumps(cert.to_json()).decode(),
                        now,
                    )
                )
            )
            if device_id in have:
                continue
            try:
                session = self.channel.open_session(bundle, now, self._rng)
            except XChatError:
                continue
            writes.append(self._session_write(session))
            opened = True
        contact.relays = relays
        contact.bundle_checked_at = now
        contact.nip17_only = not bundles and not have
        writes.append(lambda store: store.upsert_contact(contact))
        await self._commit(lambda store: [w(store) for w in writes])
        if opened:
            self.pool.keys_changed()
        self._looked_up(contact, was_nip17)

    def _looked_up(self, contact: ContactRow, was_nip17: bool) -> None:
        """After a lookup: stop or go on looking for their bundle; tell of an upgrade."""
        pubkey = contact.pubkey
        if not contact.nip17_only or contact.state != "accepted":
            self._lookups.forget(pubkey)
            if was_nip17 and not contact.nip17_only:
                self._emit_forward_secrecy(contact)
        elif pubkey in self._lookups:
            self._lookups.checked(pubkey, self._clock())
        else:
            self._lookups.watch(pubkey, self._clock(), self._clock())

    def _emit_forward_secrecy(self, contact: ContactRow) -> None:
        """A contact's conversation became forward-secret (a bundle of theirs was found,
        or an Olm message came from them): tell the stream."""
        view = self.contact_view(contact)
        self._emit({"type": "forward_secrecy", "pubkey": contact.pubkey, "contact": view})
        self._emit({"type": "contact", "contact": view})

    async def _lookup_worker(self) -> None:
        """Look for the bundles of contacts who have none, on the lookup schedule."""
        while True:
            await asyncio.sleep(_TICK)
            due = self._lookups.due(self._clock())
            for i in range(0, len(due), _LOOKUPS_AT_ONCE):
                batch = due[i : i + _LOOKUPS_AT_ONCE]
                for pubkey in batch:
                    self._lookups.checked(pubkey, self._clock())  # no second one meanwhile
                results = await asyncio.gather(
                    *(self.refresh_contact(pubkey) for pubkey in batch), return_exceptions=True
                )
                for result in results:
                    if isinstance(result, asyncio.CancelledError):
                        raise result
                    if isinstance(result, Exception):
                        log.warning("looking up a contact failed: %s", type(result).__name__)

    async def set_contact(
        self, pubkey: str, *, name: str | None = None, state: str | None = None
    ) -> ContactRow:
        """Rename, accept or block a contact."""
        contact = await self._db(self.store.get_contact, pubkey)
        if contact is None:
            raise InvalidInput("no such contact")
        previous = contact.state
        if name is not None:
            contact.name = _check_name(name) or None
        if state is not None:
            if state not in ("accepted", "blocked"):
                raise InvalidInput("a contact's state can be set to accepted or blocked")
            contact.state = state
        await self._commit(lambda store: store.upsert_contact(contact))
        self._emit({"type": "contact", "contact": self.contact_view(contact)})
        if previous == "request" and contact.state == "accepted":
            # where do they read their mail? (their relays, not ours, carry the replies)
            await self.refresh_contact(pubkey)
            await self._send_pending_receipts(pubkey)
            refreshed = await self._db(self.store.get_contact, pubkey)
            return refreshed or contact
        return contact

    def contact_view(self, contact: ContactRow) -> dict[str, Any]:
        """:func:`contact_json` with the verified mark checked against today's devices."""
        current = None
        if contact.verified is not None:
            key = PublicKey.from_hex(contact.pubkey)
            devices = frozenset(self.channel.peer_devices(key))
            cached = self._numbers.get(contact.pubkey)
            if cached is None or cached[0] != devices:
                cached = (devices, self.channel.safety_number(key)[0])
                self._numbers[contact.pubkey] = cached
            current = cached[1]
        return contact_json(contact, current, self._lookups.next_at(contact.pubkey))

    async def safety_number(self, pubkey: str) -> dict[str, Any]:
        contact = await self._db(self.store.get_contact, pubkey)
        if contact is None:
            raise InvalidInput("no such contact")
        number, qr = self.channel.safety_number(PublicKey.from_hex(pubkey))
        devices = await self._db(self.store.devices, pubkey)
        return {
            "pubkey": pubkey,
            "safety_number": number,
            "qr_payload": qr.hex(),
            "verified": contact.verified == number,
            "previously_verified": contact.verified is not None and contact.verified != number,
            "devices": [d.device_id for d in devices],
            "forward_secret": not contact.nip17_only,
        }

    async def mark_verified(self, pubkey: str, verified: bool = True) -> dict[str, Any]:
        info = await self.safety_number(pubkey)
        contact = await self._db(self.store.get_contact, pubkey)
        assert contact is not None
        contact.verified = info["safety_number"] if verified else None
        await self._commit(lambda store: store.upsert_contact(contact))
        self._emit({"type": "contact", "contact": self.contact_view(contact)})
        return await self.safety_number(pubkey)

    # -- sending -----------------------------------------------------------------------

    def _next_sent_at(self) -> int:
        """The sender's clock in ms, strictly increasing so that order is never a tie."""
        sent_at = max(_now_ms(), self._last_sent_at + 1)
        self._last_sent_at = sent_at
        return sent_at

    async def send_text(
        self,
        pubkey: str,
        body: str,
        reply_to: str | None = None,
        client_id: str | None = None,
    ) -> MessageRow:
        """Persist, seal and queue a text (or a reply); returns once it is durable.

        ``client_id`` (32 hex digits, chosen by the caller) makes the call idempotent:
        sending again with the same id returns the message already queued, so a client
        can safely resend after losing the answer.
        """
        if client_id is not None:
            if not is_hex(client_id, 32):
                raise InvalidInput("a client message id is 32 lowercase hex digits")
            known = await self._db(self._by_client_id, client_id)
            if known is not None:
                if known.conversation != pubkey:
                    raise InvalidInput("that client message id was used in another conversation")
                return known
        contact = await self._db(self.store.get_contact, pubkey)
        if contact is None:
            raise InvalidInput("that address is not one of your contacts; add it first")
        if contact.state == "blocked":
            raise InvalidInput("this contact is blocked; unblock them to send")
        sent_at = self._next_sent_at()
        message_id = client_id or new_message_id(self._rng)
        try:
            message: AppMessage = (
                Reply(message_id, sent_at, body, reply_to)
                if reply_to is not None
                else Text(message_id, sent_at, body)
            )
        except LocalProtocolError as exc:
            raise InvalidInput(str(exc)) from None
        return await self._send(contact, message, store_row=True, client_id=client_id)

    def _by_client_id(self, client_id: str) -> MessageRow | None:
        row = self.store.get_message(client_id)
        if row is not None and row.outgoing:
            return row
        mapped = self.store.get_setting(f"client-id:{client_id}")  # NIP-17: the rumor id
        return self.store.get_message(mapped) if mapped else None

    async def react(self, message_id: str, emoji: str) -> MessageRow:
        row = await self._message(message_id)
        contact = await self._contact_for(row)
        try:
            reaction = Reaction(new_message_id(self._rng), self._next_sent_at(), row.id, emoji)
        except LocalProtocolError as exc:
            raise InvalidInput(str(exc)) from None
        reactions = dict(row.reactions or {})
        if emoji:
            reactions[self.pubkey] = emoji
        else:
            reactions.pop(self.pubkey, None)
        row.reactions = reactions
        await self._send(contact, reaction, effect=lambda store: store.update_message(row))
        self._emit({"type": "message", "message": message_json(row)})
        return row

    async def edit(self, message_id: str, body: str) -> MessageRow:
        row = await self._message(message_id)
        if not row.outgoing or row.deleted:
            raise InvalidInput("only your own messages can be edited")
        contact = await self._contact_for(row)
        if contact.nip17_only:
            raise InvalidInput("messages to NIP-17 contacts cannot be edited")
        try:
            edit = Edit(new_message_id(self._rng), self._next_sent_at(), row.id, body)
        except LocalProtocolError as exc:
            raise InvalidInput(str(exc)) from None
        row.body, row.edited_at = body, edit.sent_at
        await self._send(contact, edit, effect=lambda store: store.update_message(row))
        self._emit({"type": "message", "message": message_json(row)})
        return row

    async def delete(self, message_id: str) -> MessageRow:
        row = await self._message(message_id)
        if not row.outgoing:
            raise InvalidInput("only your own messages can be deleted for everyone")
        contact = await self._contact_for(row)
        deletion = Delete(new_message_id(self._rng), self._next_sent_at(), row.id)
        row.body, row.deleted = "", True
        await self._send(contact, deletion, effect=lambda store: store.update_message(row))
        self._emit({"type": "message", "message": message_json(row)})
        return row

    async def _message(self, message_id: str) -> MessageRow:
        row = await self._db(self.store.get_message, message_id)
        if row is None:
            raise InvalidInput("no such message")
        return row

    async def _contact_for(self, row: MessageRow) -> ContactRow:
        contact = await self._db(self.store.get_contact, row.conversation)
        if contact is None or contact.state == "blocked":
            raise InvalidInput("that conversation's contact is gone or blocked")
        return contact

    async def _targets(self, contact: ContactRow) -> list[str]:
        """Where a contact reads mail: their inbox relays, else their hints, else ours."""
        return list(contact.relays) or await self.own_relays()

    async def _send(
        self,
        contact: ContactRow,
        message: AppMessage,
        *,
        store_row: bool = False,
        effect: Callable[[NodeStore], Any] | None = None,
        client_id: str | None = None,
    ) -> MessageRow:
        now = int(self._clock())
        targets = await self._targets(contact)
        forward_secret = not contact.nip17_only
        if contact.nip17_only and now - contact.bundle_checked_at > _RECHECK_ON_SEND:
            # they may have started X Chat since: later messages become forward-secret
            contact.bundle_checked_at = now
            self._tasks.append(asyncio.create_task(self.refresh_contact(contact.pubkey)))
        own = await self.own_relays() if contact.nip17_only else []
        row_id, outbox, writes = self._seal(contact, message, targets, now, own=own)
        if not outbox:  # no device known yet: sealed later, once a bundle is found
            unsealed = _outbox_row(row_id, contact.pubkey, None, targets, now)
            unsealed.event = orjson.dumps({"pending": True, "message": _encode(message)}).decode()
            outbox.append(unsealed)
        row = MessageRow(
            id=row_id,
            conversation=contact.pubkey,
            outgoing=True,
            sender=self.pubkey,
            type=message.type,
            body=getattr(message, "body", ""),
            sent_at=message.sent_at,
            received_at=_now_ms(),
            state="queued",
            forward_secret=forward_secret,
            reply_to=getattr(message, "reply_to", None),
        )

        def apply(store: NodeStore) -> None:
            for write in writes:
                write(store)
            if store_row:
                store.insert_message(row)
                if client_id is not None and row.id != client_id:
                    store.set_setting(f"client-id:{client_id}", row.id)
            if effect is not None:
                effect(store)
            for item in outbox:
                store.add_outbox(item)

        await self._commit(apply)
        if store_row:
            self._emit({"type": "message", "message": message_json(row)})
        for item in outbox:
            if item.state == "pending":
                self._spawn_publish(item)
        if any(item.state == "unsealed" for item in outbox):
            self._wake_outbox.set()
        return row

    def _seal(
        self,
        contact: ContactRow,
        message: AppMessage,
        targets: list[str],
        now: int,
        row_id: str | None = None,
        own: list[str] | None = None,
    ) -> tuple[str, list[OutboxRow], list[Callable[[NodeStore], Any]]]:
        """Seal ``message`` for every device of ``contact`` (or as NIP-17): the id its row
        is stored under (``row_id`` if the row exists already; else the message's, or for
        NIP-17 its rumor's), one pending outbox row per envelope, and the session writes
        to commit with them. No rows: no device of the contact is known.

        NIP-17 also wraps a copy to ourselves (NIP-17: so that our other clients see
        what we sent), published to ``own`` (our relays) as an outbox row of its own
        (message id ``<id>:self``), so that the message's state does not wait for it."""
        if contact.nip17_only:
            rumor, to_peer, to_self = self.channel.seal_nip17(
                PublicKey.from_hex(contact.pubkey), message, now, self._rng
            )
            row_id = row_id or rumor.id
            wraps = [_outbox_row(row_id, contact.pubkey, to_peer, targets, now)]
            if own:
                wraps.append(_outbox_row(f"{row_id}:self", self.pubkey, to_self, own, now))
            return row_id, wraps, []
        row_id = row_id or message.id
        rows: list[OutboxRow] = []
        writes: list[Callable[[NodeStore], Any]] = []
        for session in self._sending_sessions(contact.pubkey):
            event = self.channel.seal(session, message, now, self._rng)
            writes.append(self._session_write(session))
            rows.append(_outbox_row(row_id, contact.pubkey, event, targets, now))
        return row_id, rows, writes

    def _sending_sessions(self, pubkey: str) -> list[Session]:
        """One session per peer device: the newest."""
        chosen: dict[str, Session] = {}
        for session in self.channel.sessions_with(PublicKey.from_hex(pubkey)):
            chosen.setdefault(session.peer.curve25519, session)
        return list(chosen.values())

    def _session_write(self, session: Session) -> Callable[[NodeStore], None]:
        row = SessionRow(
            session.session_id,
            session.peer.identity.hex,
            session.peer.curve25519,
            session.to_record(self._storage_key, self._rng),
            int(self._clock()),
        )
        return lambda store: store.save_session(row)

    async def retry(self, message_id: str) -> MessageRow:
        """Send a failed message again."""
        row = await self._message(message_id)
        if row.state != "failed":
            raise InvalidInput("only failed messages can be retried")
        now = int(self._clock())
        rows = await self._db(self.store.outbox_for, message_id)

        def apply(store: NodeStore) -> None:
            for item in rows:
                if item.state == "failed":
                    item.state = "pending" if _is_sealed(item) else "unsealed"
                    item.attempts = 0
                    item.next_attempt_at = now
                    item.last_error = ""
                    store.update_outbox(item)
            store.set_state(message_id, "queued")

        await self._commit(apply)
        row.state, row.state_detail = "queued", ""
        self._emit({"type": "state", "id": message_id, "state": "queued", "detail": ""})
        self._wake_outbox.set()
        return row

    # -- the outbox ----------------------------------------------------------------------

    def _spawn_publish(self, item: OutboxRow) -> None:
        if item.id in self._in_flight:
            return
        self._in_flight.add(item.id)
        task = asyncio.create_task(self._publish(item))
        task.add_done_callback(lambda _: self._in_flight.discard(item.id))

    async def _publish(self, item: OutboxRow) -> None:
        try:
            event = parse_event(orjson.loads(item.event or ""))
        except (orjson.JSONDecodeError, DecodeError):
            item.state, item.last_error = "failed", "the stored envelope is damaged"
            await self._commit(lambda store: store.update_outbox(item))
            return
        remaining = [url for url in item.relays if url not in item.accepted]
        results = await self.pool.publish(event, remaining, self.config.publish_timeout)
        errors = []
        for url, result in results.items():
            if isinstance(result, PublishResult) and result.accepted:
                item.accepted.append(url)
            else:
                reason = result.message if isinstance(result, PublishResult) else result
                errors.append(f"{url}: {reason}"[:200])
        needed = min(MIN_ACCEPTS, len(item.relays))
        item.attempts += 1
        message_state: tuple[str, str] | None = None
        if len(item.accepted) >= needed > 0:
            item.state = "done"
            item.last_error = ""
        elif item.attempts >= MAX_ATTEMPTS or not item.relays:
            item.state = "failed"
            item.last_error = "; ".join(errors) or "no relay to publish to"
            message_state = ("failed", f"not accepted by enough relays: {item.last_error}")
        else:
            delay = min(RETRY_START * 2 ** (item.attempts - 1), RETRY_MAX)
            item.next_attempt_at = int(self._clock() + delay)
            item.last_error = "; ".join(errors)

        def apply(store: NodeStore) -> tuple[str, str, bool] | None:
            """(state, detail, sent) of the message if it changed."""
            store.update_outbox(item)
            if item.state == "done":
                siblings = store.outbox_for(item.message_id)
                if not all(s.state == "done" for s in siblings):
                    return None
                detail = " ".join(sorted({url for s in siblings for url in s.accepted}))
                store.delete_outbox(item.message_id)  # its work is done: keep the table small
                if store.set_state(item.message_id, "sent", detail):
                    return ("sent", detail, True)
                # a receipt came first (it is already delivered): record the relays anyway
                if store.set_detail(item.message_id, detail):
                    row = store.get_message(item.message_id)
                    return (row.state, detail, True) if row is not None else None
                return None
            if message_state is not None and store.set_state(item.message_id, *message_state):
                return (*message_state, False)
            return None

        changed = await self._commit(apply)
        if changed is not None:
            state, detail, sent = changed
            if sent:
                self.stats.sent += 1
            else:
                self.stats.failed += 1
            self._emit({"type": "state", "id": item.message_id, "state": state, "detail": detail})
        if item.state == "pending":
            self._wake_outbox.set()

    async def _outbox_worker(self) -> None:
        """Publish what is due: rows left by a previous run, retries, unsealed messages."""
        while True:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a
            # cancellation that meets a wake-up, and close() then waits for ever
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_TICK):
                    await self._wake_outbox.wait()
            self._wake_outbox.clear()
            try:
                due = await self._db(self.store.due_outbox, int(self._clock()))
                for item in due:
                    if item.id in self._in_flight:
                        continue
                    if item.state == "unsealed":
                        await self._seal_later(item)
                    else:
                        self._spawn_publish(item)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the outbox worker failed; retrying")
                await asyncio.sleep(_TICK)

    async def _seal_later(self, item: OutboxRow) -> None:
        """A message queued before we knew any device of the contact: look again, seal."""
        self._in_flight.add(item.id)
        try:
            await self.refresh_contact(item.recipient)
            contact = await self._db(self.store.get_contact, item.recipient)
            message = decode_app_message(orjson.loads(item.event or "")["message"])
            rows: list[OutboxRow] = []
            writes: list[Callable[[NodeStore], Any]] = []
            failure = None
            if (
                contact is not None
                and contact.nip17_only
                and isinstance(message, Edit | Delivered | Read)
            ):
                failure = "NIP-17 contacts cannot receive this"
            elif contact is not None:
                targets = await self._targets(contact)
                now = int(self._clock())
                own = await self.own_relays()
                _, rows, writes = self._seal(
                    contact, message, targets, now, item.message_id, own=own
                )
            if not rows and failure is None:
                item.attempts += 1
                item.last_error = "no device of this contact found on their relays yet"
                delay = min(RETRY_START * 2 ** (item.attempts - 1), RETRY_MAX)
                item.next_attempt_at = int(self._clock() + delay)
                if item.attempts >= MAX_ATTEMPTS:
                    failure = item.last_error
            if failure is not None:
                item.state, item.last_error = "failed", failure
                await self._commit(_fail_outbox(item, ("failed", failure)))
                self._emit(
                    {"type": "state", "id": item.message_id, "state": "failed", "detail": failure}
                )
                return
            if not rows:
                await self._commit(lambda store: store.update_outbox(item))
                return
            first, rest = rows[0], rows[1:]
            first.id = item.id

            def apply(store: NodeStore) -> None:
                for write in writes:
                    write(store)
                store.update_outbox(first)
                for extra in rest:
                    store.add_outbox(extra)

            await self._commit(apply)
        finally:
            self._in_flight.discard(item.id)
        for row in rows:
            self._spawn_publish(row)

    # -- receiving ----------------------------------------------------------------------

    async def _on_event(self, url: str, event: Event) -> None:
        await self._inbox.put((url, event))

    def _give_up_before(self, now: int) -> int | None:
        """Held envelopes held before this time may be opened despite their gap: every
        inbox relay completed a catch-up since (so the missing envelopes are on none of
        them), everything it delivered was taken from the queue, and ``gap_grace``
        passed. None: no such evidence yet."""
        if not self._inbox.empty():
            return None
        since = self.pool.complete_since(down_for=self.config.gap_grace)
        if since is None:
            return None
        return min(since, int(now - self.config.gap_grace))

    async def _inbox_worker(self) -> None:
        while True:
            batch = []
            # envelopes held back for earlier ones of their chain: look again soon
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_HOLD_TICK if self.channel.holding else None):
                    batch.append(await self._inbox.get())
            while len(batch) < _INBOX_BATCH and not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
            if not batch:
                oldest = self.channel.oldest_held_since()
                give_up = self._give_up_before(int(self._clock()))
                if oldest is None or give_up is None or oldest >= give_up:
                    continue  # nothing to give up on yet
            try:
                await self._receive_batch([event for _, event in batch])
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("receiving a batch failed")

    async def _open_events(self, events: list[Event], now: int) -> tuple[list[Incoming], list[str]]:
        """Open what was not seen before: the messages, and the ids of envelopes that
        are duplicates or bad (to be marked seen; they are never opened again)."""
        ids = [e.id for e in events]
        already = await self._db(lambda: {i for i in ids if self.store.seen(i)}) if ids else set()
        opened: list[Incoming] = []
        seen_only: list[str] = []
        fresh = []
        for event in events:
            if event.id in already:
                self.stats.duplicates += 1
            else:
                fresh.append(event)
        give_up = self._give_up_before(now)
        for event, result in self.channel.open_batch(fresh, now, self._rng, give_up):
            if isinstance(result, Incoming):
                opened.append(result)
                continue
            seen_only.append(event.id)
            if isinstance(result, ReplayError):
                self.stats.duplicates += 1
            else:
                self.stats.rejected += 1
                name = type(result).__name__
                self.stats.rejected_by_error[name] = self.stats.rejected_by_error.get(name, 0) + 1
        return opened, seen_only

    async def _receive_batch(self, events: list[Event]) -> None:
        now = int(self._clock())
        keys_before = len(self.channel.sessions())
        opened, seen_only = await self._open_events(events, now)
        held, released = self.channel.take_held_changes()
        chains = self.channel.take_chain_changes()
        tracked = self.channel.take_tracked()
        for event in self.channel.take_deferred():
            self.pool.forget(event.id)  # no room to hold it: the next re-read brings it
        if not opened and not seen_only and not held and not released:
            return
        held_rows = [(e.id, e.to_json().decode(), since) for e, since in held]
        chain_rows = [(ratchet, state.to_json().decode()) for ratchet, state in chains.items()]
        # Olm state is pickled here, on the loop thread that owns it, never in the store
        # thread: vodozemac objects must not be used from two threads at once.
        sessions: dict[str, SessionRow] = {}
        for incoming in opened:
            if incoming.session is not None:
                session = incoming.session
                sessions[session.session_id] = SessionRow(
                    session.session_id,
                    session.peer.identity.hex,
                    session.peer.curve25519,
                    session.to_record(self._storage_key, self._rng),
                    now,
                )
        device_write = self._device_write() if any(i.new_session for i in opened) else None

        def apply(store: NodeStore) -> list[tuple[str, Any]]:
            for row in sessions.values():
                store.save_session(row)
            if device_write is not None:
                device_write(store)
            for event_id, text, since in held_rows:
                store.hold(event_id, text, len(text), since)
            store.release(released)
            for ratchet, state in chain_rows:
                store.save_chain(ratchet, state, now)
            store.set_tracked(tracked)
            return self._apply_incoming(store, opened, seen_only, now)

        results = await self._commit(apply)
        receipts: dict[str, list[str]] = {}
        for kind, payload in results:
            if kind == "receipt":
                receipts.setdefault(payload[0], []).append(payload[1])
                continue
            self._emit(payload)
            if payload["type"] == "device_added":  # their marks changed: the new contact
                contact = await self._db(self.store.get_contact, payload["pubkey"])
                if contact is not None:
                    self._emit({"type": "contact", "contact": self.contact_view(contact)})
        if len(self.channel.sessions()) != keys_before:
            self._one_time_keys_used(len(self.channel.sessions()) - keys_before)
            self.pool.keys_changed()
        for pubkey, targets in receipts.items():
            self._queue_delivered(pubkey, targets)

    def _queue_delivered(self, pubkey: str, targets: list[str]) -> None:
        """Delivery receipts go out together, a moment later: one envelope for a burst
        of messages instead of one each (the peer sees "delivered" 0.2 s later)."""
        pending = self._delivered.setdefault(pubkey, [])
        first = not pending
        pending.extend(targets)
        if first:
            task = asyncio.create_task(self._flush_delivered(pubkey))
            self._tasks.append(task)
            task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    async def _flush_delivered(self, pubkey: str) -> None:
        await asyncio.sleep(_RECEIPT_DELAY)
        targets = self._delivered.pop(pubkey, [])
        if targets:
            await self._send_receipt(pubkey, Delivered, targets)

    def _apply_incoming(
        self, store: NodeStore, opened: list[Incoming], seen_only: list[str], now: int
    ) -> list[tuple[str, Any]]:
        """On the store thread, in the batch's transaction: contacts, devices, messages,
        their effects and the seen event ids. Touches no Olm object."""
        out: list[tuple[str, Any]] = []
        for event_id in seen_only:
            store.mark_seen(event_id, now)
        for incoming in opened:
            store.mark_seen(incoming.wrap_id, now)
            self.stats.received += 1
            sender = incoming.sender.hex
            if sender == self.pubkey:  # a NIP-17 copy of a message we wrote
                out.extend(self._apply_own_copy(store, incoming, now))
                continue
            contact = store.get_contact(sender)
            if contact is None:
                contact = ContactRow(
                    sender, None, "request", [], now, nip17_only=not incoming.forward_secret
                )
                store.upsert_contact(contact)
                out.append(("event", {"type": "contact", "contact": contact_json(contact)}))
            elif incoming.forward_secret and contact.nip17_only:
                contact.nip17_only = False
                store.upsert_contact(contact)
                view = contact_json(contact)
                out.append(
                    ("event", {"type": "forward_secrecy", "pubkey": sender, "contact": view})
                )
            if incoming.device is not None:
                cert = incoming.device
                new = store.upsert_device(
                    DeviceRow(
                        cert.device_id,
                        sender,
                        cert.curve25519,
                        orjson.dumps(cert.to_json()).decode(),
                        now,
                    )
                )
                if new and len(store.devices(sender)) > 1:
                    out.append(
                        (
                            "event",
                            {"type": "device_added", "pubkey": sender, "device": cert.device_id},
                        )
                    )
            if contact.state == "blocked":
                continue
            if incoming.lost:
                out.extend(self._apply_lost(store, incoming))
            out.extend(self._apply_message(store, contact, incoming))
        return out

    def _apply_own_copy(
        self, store: NodeStore, incoming: Incoming, now: int
    ) -> list[tuple[str, Any]]:
        """A NIP-17 copy of a message we wrote: ours (already stored, by its rumor id)
        or one written with our key in another client, filed as an outgoing message of
        the conversation with its recipient. Only texts and replies: effects of other
        clients on our side are not applied yet (multi-device sync comes later)."""
        message = incoming.message
        peer = incoming.peer
        if not isinstance(message, Text | Reply) or peer in ("", self.pubkey):
            return []
        if store.get_message(message.id) is not None:
            return []  # our own copy
        contact = store.get_contact(peer)
        out: list[tuple[str, Any]] = []
        if contact is None:  # we wrote to them from another app: they are a contact
            contact = ContactRow(peer, None, "accepted", [], now, nip17_only=True)
            store.upsert_contact(contact)
            out.append(("event", {"type": "contact", "contact": contact_json(contact)}))
        row = MessageRow(
            id=message.id,
            conversation=peer,
            outgoing=True,
            sender=self.pubkey,
            type=message.type,
            body=message.body,
            sent_at=message.sent_at,
            received_at=_now_ms(),
            state="sent",
            forward_secret=False,
            reply_to=message.reply_to if isinstance(message, Reply) else None,
        )
        if store.insert_message(row):
            out.append(("event", {"type": "message", "message": message_json(row)}))
        return out

    def _apply_lost(self, store: NodeStore, incoming: Incoming) -> list[tuple[str, Any]]:
        """Messages given up on before ``incoming`` in its chain: one visible item in
        the conversation, just before it (docs/node.md, "Receiving")."""
        self.stats.lost += incoming.lost
        sender = incoming.sender.hex
        count = incoming.lost
        row = MessageRow(
            id=hashlib.sha256(b"xchat-lost/" + incoming.wrap_id.encode()).hexdigest()[:32],
            conversation=sender,
            outgoing=False,
            sender=sender,
            type="undecryptable",
            body=f"{count} message{'s' if count != 1 else ''} from this contact could not be"
            " decrypted",
            sent_at=max(0, incoming.message.sent_at - 1),
            received_at=_now_ms(),
            state="received",
            forward_secret=True,
            state_detail=str(count),
        )
        if not store.insert_message(row):
            return []
        return [("event", {"type": "message", "message": message_json(row)})]

    def _apply_message(
        self, store: NodeStore, contact: ContactRow, incoming: Incoming
    ) -> list[tuple[str, Any]]:
        message = incoming.message
        if isinstance(message, Text | Reply):
            return self._apply_text(store, contact, incoming, message)
        if isinstance(message, Delivered | Read):
            return _apply_receipt(store, incoming.sender.hex, message)
        if store.get_message(message.target) is None:
            # its target has not arrived yet (relays reorder): apply it when it does
            self._early.setdefault(message.target, []).append((incoming.sender.hex, message))
            while len(self._early) > _EARLY_EFFECTS:
                self._early.popitem(last=False)
            return []
        return _apply_effect(store, incoming.sender.hex, message)

    def _apply_text(
        self, store: NodeStore, contact: ContactRow, incoming: Incoming, message: Text | Reply
    ) -> list[tuple[str, Any]]:
        sender = incoming.sender.hex
        row = MessageRow(
            id=message.id,
            conversation=sender,
            outgoing=False,
            sender=sender,
            type=message.type,
            body=message.body,
            sent_at=message.sent_at,
            received_at=_now_ms(),
            state="received",
            forward_secret=incoming.forward_secret,
            reply_to=message.reply_to if isinstance(message, Reply) else None,
        )
        if not store.insert_message(row):
            return []
        out: list[tuple[str, Any]] = [("event", {"type": "message", "message": message_json(row)})]
        if contact.state == "accepted" and incoming.forward_secret:
            out.append(("receipt", (sender, message.id)))
        for effect_sender, effect in self._early.pop(message.id, []):
            out.extend(_apply_effect(store, effect_sender, effect))
        return out

    # -- receipts -------------------------------------------------------------------------

    async def _send_receipt(
        self, pubkey: str, kind: type[Delivered] | type[Read], targets: list[str]
    ) -> None:
        contact = await self._db(self.store.get_contact, pubkey)
        if contact is None or contact.state != "accepted" or contact.nip17_only:
            return
        for i in range(0, len(targets), _RECEIPT_BATCH):
            receipt = kind(
                new_message_id(self._rng),
                self._next_sent_at(),
                tuple(targets[i : i + _RECEIPT_BATCH]),
            )
            try:
                await self._send(contact, receipt)
            except XChatError as exc:
                log.warning("a receipt could not be queued: %s", type(exc).__name__)

    async def _send_pending_receipts(self, pubkey: str) -> None:
        """After accepting a request: delivery receipts for what the stranger sent."""
        rows = await self._db(self.store.messages, pubkey, None, _RECEIPT_BATCH)
        ids = [r.id for r in rows if not r.outgoing and r.forward_secret]
        if ids:
            await self._send_receipt(pubkey, Delivered, ids)
        read = [r.id for r in rows if not r.outgoing and r.forward_secret and r.state == "read"]
        if read and await self.read_receipts_enabled():
            await self._send_receipt(pubkey, Read, read)

    async def mark_read(self, pubkey: str) -> list[str]:
        """Mark a conversation read; sends a read receipt if the user allows them."""
        ids = await self._commit(lambda store: store.mark_read(pubkey))
        if ids and await self.read_receipts_enabled():
            await self._send_receipt(pubkey, Read, ids)
        if ids:
            self._emit({"type": "read", "conversation": pubkey, "ids": ids})
        return ids

    async def read_receipts_enabled(self) -> bool:
        return await self._db(self.store.get_setting, "read_receipts", "on") == "on"

    async def set_read_receipts(self, enabled: bool) -> None:
        value = "on" if enabled else "off"
        await self._commit(lambda store: store.set_setting("read_receipts", value))

    # -- relays -----------------------------------------------------------------------------

    async def add_relay(self, url: str) -> list[str]:
        url = normalize_relay_url(url)
        await self._commit(lambda store: store.add_relay(url))
        if self.embedded_relay is not None and self.embedded_relay in self.pool.reading:
            await self.pool.remove_relay(self.embedded_relay)
        self.pool.add_relay(url)
        self._tasks.append(asyncio.create_task(self._announce()))
        return await self.own_relays()

    async def remove_relay(self, url: str) -> list[str]:
        url = normalize_relay_url(url)
        removed = await self._commit(lambda store: store.remove_relay(url))
        if not removed:
            raise InvalidInput("that relay is not in your list")
        await self.pool.remove_relay(url)
        urls = await self.own_relays()
        for fallback in urls:
            self.pool.add_relay(fallback)
        self._tasks.append(asyncio.create_task(self._announce()))
        return urls

    # -- housekeeping -------------------------------------------------------------------------

    async def _ticker(self) -> None:
        """Every minute: rotate mailboxes, follow the day's epoch, forget old event ids."""
        while True:
            await asyncio.sleep(60)
            now = int(self._clock())
            changed = self.channel.rotate_mailboxes(now, self._rng)
            if changed:
                await self._commit(_run_all([self._session_write(s) for s in changed]))
            keys = frozenset(self._receive_keys())
            if keys != self._epoch_keys:
                self._epoch_keys = keys
                self.pool.keys_changed()
            await self._commit(
                functools.partial(NodeStore.forget_seen, older_than=now - _SEEN_KEEP)
            )
            await self._commit(
                functools.partial(NodeStore.forget_chains, older_than=now - _CHAIN_KEEP)
            )
            await self._commit(
                functools.partial(NodeStore.set_setting, key="last_online", value=str(now))
            )

    async def status(self) -> dict[str, Any]:
        waiting = await self._db(self.store.outbox_waiting)
        return {
            "npub": self.identity.npub,
            "pubkey": self.pubkey,
            "device": self.channel.device.certificate.device_id,
            "uptime": round(self._clock() - self.started_at, 1),
            "relays": [h.to_json() for h in self.pool.health()],
            "warnings": [f"{h.url} {h.warning}" for h in self.pool.health() if h.warning],
            "embedded_relay": self.embedded_relay,
            "outbox_pending": waiting,
            "sessions": len(self.channel.sessions()),
            "received": self.stats.received,
            "rejected": self.stats.rejected,
            "rejected_by_reason": dict(sorted(self.stats.rejected_by_error.items())),
            "lost": self.stats.lost,
            "held": self.channel.holding,
            "duplicates": self.stats.duplicates,
            "sent": self.stats.sent,
            "failed": self.stats.failed,
        }

    async def conversations(self) -> list[ConversationRow]:
        return await self._db(self.store.conversations)

    async def messages(
        self, pubkey: str, before: tuple[int, int] | None = None, limit: int = 50
    ) -> list[MessageRow]:
        return await self._db(self.store.messages, pubkey, before, limit)


def _apply_receipt(
    store: NodeStore, sender: str, message: Delivered | Read
) -> list[tuple[str, Any]]:
    """Our messages that the peer's device received or read move forward."""
    state = "delivered" if isinstance(message, Delivered) else "read"
    out: list[tuple[str, Any]] = []
    for target in message.targets:
        row = store.get_message(target)
        if row is None or not row.outgoing or row.conversation != sender:
            continue
        if store.set_state(target, state, row.state_detail):
            event = {"type": "state", "id": target, "state": state, "detail": row.state_detail}
            out.append(("event", event))
    return out


def _apply_effect(
    store: NodeStore, sender: str, message: Reaction | Edit | Delete
) -> list[tuple[str, Any]]:
    """A reaction, edit or deletion of a message of this conversation."""
    row = store.get_message(message.target)
    if row is None or row.conversation != sender:
        return []  # its target is unknown (or in another conversation): ignored
    if isinstance(message, Reaction):
        reactions = dict(row.reactions or {})
        if message.emoji:
            reactions[sender] = message.emoji
        else:
            reactions.pop(sender, None)
        row.reactions = reactions
    elif row.outgoing or row.deleted:
        return []  # only the author edits or deletes a message
    elif isinstance(message, Edit):
        row.body, row.edited_at = message.body, message.sent_at
    else:
        row.body, row.deleted = "", True
    store.update_message(row)
    return [("event", {"type": "message", "message": message_json(row)})]


def _inbox_relays(events: list[Event], pubkey: str) -> list[str]:
    """The relays of ``pubkey``'s newest validly signed inbox relay list (kind 10050)."""
    valid = []
    for event in events:
        if event.kind != KIND_INBOX_RELAYS or event.pubkey != pubkey:
            continue
        try:
            verify_event(event)
        except RemoteProtocolError:
            continue  # a forged list must not hide the real one
        valid.append(event)
    if not valid:
        return []
    newest = max(valid, key=lambda e: (e.created_at, e.id))
    listed: list[str] = []
    for value in newest.tag_values("relay"):
        with contextlib.suppress(InvalidInput):
            url = normalize_relay_url(value)
            if url not in listed:
                listed.append(url)
    return listed[:_MAX_INBOX_RELAYS]


def _check_name(name: str) -> str:
    name = name.strip()
    if len(name) > 64 or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidInput("a contact name has at most 64 printable characters")
    return name


def _is_sealed(item: OutboxRow) -> bool:
    return item.event is not None and not item.event.startswith('{"pending"')


def _encode(message: AppMessage) -> dict[str, Any]:
    from xchat.core.message import encode_app_message

    return encode_app_message(message)


def _outbox_row(
    message_id: str, recipient: str, event: Event | None, relays: list[str], now: int
) -> OutboxRow:
    return OutboxRow(
        id=0,
        message_id=message_id,
        recipient=recipient,
        event=event.to_json().decode() if event is not None else None,
        relays=list(relays),
        accepted=[],
        state="pending" if event is not None else "unsealed",
        attempts=0,
        next_attempt_at=now,
        last_error="",
        created_at=now,
    )


def _fail_outbox(item: OutboxRow, state: tuple[str, str]) -> Callable[[NodeStore], None]:
    def apply(store: NodeStore) -> None:
        store.update_outbox(item)
        store.set_state(item.message_id, *state)

    return apply


def _run_all(writes: list[Callable[[NodeStore], Any]]) -> Callable[[NodeStore], None]:
    def apply(store: NodeStore) -> None:
        for write in writes:
            write(store)

    return apply


def _device_upsert(row: DeviceRow) -> Callable[[NodeStore], bool]:
    return lambda store: store.upsert_device(row)


def contact_json(
    contact: ContactRow, current_number: str | None = None, next_lookup: float | None = None
) -> dict[str, Any]:
    """The API's view of a contact (docs/api.md). ``current_number`` is today's safety
    number with them, needed only if they were verified (see Node.contact_view);
    ``next_lookup`` when the node looks for their bundle again, if it does."""
    card = ContactCard.create(PublicKey.from_hex(contact.pubkey), tuple(contact.relays[:3]))
    return {
        "pubkey": contact.pubkey,
        "npub": card.npub,
        "nprofile": card.nprofile,
        "name": contact.name,
        "state": contact.state,
        "relays": contact.relays,
        "forward_secret": not contact.nip17_only,
        # why not: no device bundle (X Chat keys) of theirs found, so far
        "not_forward_secret_reason": "no_keys" if contact.nip17_only else None,
        "keys_checked_at": contact.bundle_checked_at or None,
        "next_keys_check_at": None if next_lookup is None else int(next_lookup),
        "verified": contact.verified is not None and contact.verified == current_number,
        "verification_changed": contact.verified is not None
        and current_number is not None
        and contact.verified != current_number,
        "created_at": contact.created_at,
    }
