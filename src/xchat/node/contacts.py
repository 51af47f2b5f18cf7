"""Contacts: adding, accepting, blocking, and looking up their devices and relays.

The rules (which bundle and which relay list count, what a lookup changes, names and
state moves) are :mod:`xchat.core.directory`'s; this driver queries relays, opens
sessions with the channel and commits. A contact without any device bundle is NIP-17
only for now, and the lookup schedule (:mod:`xchat.node.lookups`) looks for one again;
once one is found, :class:`~xchat.core.node_events.ForwardSecrecyUpgraded` goes out.
Adding a contact creates the direct conversation with them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson

from xchat.core import directory
from xchat.core.conversation import direct_conversation
from xchat.core.device import KIND_DEVICE_BUNDLE
from xchat.core.identity import ContactCard
from xchat.core.node_events import ContactChanged, ForwardSecrecyUpgraded
from xchat.crypto.keys import PublicKey
from xchat.errors import InvalidInput, XChatError
from xchat.model import Contact, ContactState, Device
from xchat.node.context import Context
from xchat.node.lookups import LookupSchedule
from xchat.store.node import NodeStore
from xchat.wire.kinds import KIND_INBOX_RELAYS

__all__ = ["ContactMarks", "Contacts"]

log = logging.getLogger("xchat.node")

#: The longest wait for one relay's answer to a lookup (seconds; at most the publish
#: timeout): a relay that does not answer must not hold up adding a contact.
_LOOKUP_TIMEOUT: Final = 5.0
#: Lookups of contacts' bundles running at once.
_LOOKUPS_AT_ONCE: Final = 4
_TICK: Final = 1.0


@dataclass(frozen=True, slots=True)
class ContactMarks:
    """What the API shows beside a contact: today's safety number (only if they were
    verified: to tell whether it still holds) and when their keys are looked up again."""

    current_number: str | None
    next_lookup: float | None


class Contacts:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        #: Contacts without devices, and when to look for their bundles again.
        self.lookups = LookupSchedule()
        #: Safety numbers by contact, with the device set they were computed for.
        self._numbers: dict[str, tuple[frozenset[str], str]] = {}
        #: Called after a message request was accepted (receipts for what they sent).
        self.on_accepted: Callable[[str], Awaitable[None]] | None = None

    async def get(self, pubkey: str) -> Contact | None:
        return await self.ctx.committer.run(self.ctx.committer.store.get_contact, pubkey)

    async def need(self, pubkey: str) -> Contact:
        contact = await self.get(pubkey)
        if contact is None:
            raise InvalidInput("There is no such contact.")
        return contact

    async def all(self) -> list[Contact]:
        return await self.ctx.committer.run(self.ctx.committer.store.contacts)

    def watch_new(self, contacts: list[Contact]) -> None:
        """At start: look for the bundles of accepted contacts who have none."""
        now = self.ctx.clock()
        for contact in contacts:
            if contact.nip17_only and contact.state == ContactState.ACCEPTED:
                self.lookups.watch(contact.pubkey, contact.created_at, now)

    async def add(self, address: str, name: str | None = None) -> tuple[Contact, bool]:
        """Add (or accept) a contact from an npub/nprofile and look up their devices.

        Returns the contact and whether it was already an accepted contact: then its
        name is left as it is (renaming is :meth:`set`), but it is looked up again."""
        ctx = self.ctx
        card = ContactCard.parse(address)
        pubkey = card.public_key.hex
        if pubkey == ctx.me:
            raise InvalidInput("That is your own address.")
        if name is not None:
            name = directory.check_name(name)
        existing = await self.get(pubkey)
        already = existing is not None and existing.state == ContactState.ACCEPTED
        now = ctx.now()
        if existing is None:
            contact = Contact(pubkey, name or None, ContactState.ACCEPTED, list(card.relays), now)
        else:
            contact = existing
            if not already:
                contact.state = ContactState.ACCEPTED
                if name:
                    contact.name = name
            for url in card.relays:
                if url not in contact.relays:
                    contact.relays.append(url)
        rng = ctx.rng

        def apply(store: NodeStore) -> None:
            store.upsert_contact(contact)
            direct_conversation(store, pubkey, now, rng)

        await ctx.committer.commit(apply)
        self.lookups.forget(pubkey)  # look now, and from now on as for a new contact
        await self.refresh(pubkey)
        updated = await self.need(pubkey)
        ctx.emit(ContactChanged(updated))
        if existing is not None and existing.state == ContactState.REQUEST and self.on_accepted:
            await self.on_accepted(pubkey)
        return updated, already

    async def refresh(self, pubkey: str) -> None:
        """Fetch a contact's inbox relays (kind 10050) and device bundles; open sessions
        with devices we have none with."""
        ctx = self.ctx
        contact = await self.get(pubkey)
        if contact is None:
            return
        was_nip17 = contact.nip17_only
        urls = list(dict.fromkeys([*contact.relays, *await ctx.own_relays()]))
        events = await ctx.pool.query(
            [{"kinds": [KIND_INBOX_RELAYS, KIND_DEVICE_BUNDLE], "authors": [pubkey]}],
            urls,
            timeout=min(_LOOKUP_TIMEOUT, ctx.config.publish_timeout),
        )
        now = ctx.now()
        relays = directory.inbox_relays(events, pubkey)
        bundles = directory.newest_bundles(events, pubkey)
        have = ctx.channel.peer_devices(PublicKey.from_hex(pubkey))
        writes: list[Callable[[NodeStore], Any]] = []
        opened = False
        for device_id, bundle in bundles.items():
            cert = bundle.certificate
            device = Device(
                device_id, pubkey, cert.curve25519, orjson.dumps(cert.to_json()).decode(), now
            )
            writes.append(functools.partial(NodeStore.upsert_device, device=device))
            if device_id in have:
                continue
            try:
                session = ctx.channel.open_session(bundle, now, ctx.rng)
            except XChatError:
                continue
            writes.append(ctx.session_write(session))
            opened = True
        directory.apply_lookup(contact, relays, bool(bundles), bool(have), now)
        writes.append(lambda store: store.upsert_contact(contact))
        await ctx.committer.commit(lambda store: [write(store) for write in writes])
        if opened:
            ctx.pool.keys_changed()
        self._looked_up(contact, was_nip17)

    def _looked_up(self, contact: Contact, was_nip17: bool) -> None:
        """After a lookup: stop or go on looking for their bundle; tell of an upgrade."""
        pubkey = contact.pubkey
        clock = self.ctx.clock
        if not contact.nip17_only or contact.state != ContactState.ACCEPTED:
            self.lookups.forget(pubkey)
            if was_nip17 and not contact.nip17_only:
                self.ctx.emit(ForwardSecrecyUpgraded(contact))
                self.ctx.emit(ContactChanged(contact))
        elif pubkey in self.lookups:
            self.lookups.checked(pubkey, clock())
        else:
            self.lookups.watch(pubkey, clock(), clock())

    async def lookup_worker(self) -> None:
        """Look for the bundles of contacts who have none, on the lookup schedule."""
        clock = self.ctx.clock
        while True:
            await asyncio.sleep(_TICK)
            due = self.lookups.due(clock())
            for i in range(0, len(due), _LOOKUPS_AT_ONCE):
                batch = due[i : i + _LOOKUPS_AT_ONCE]
                for pubkey in batch:
                    self.lookups.checked(pubkey, clock())  # no second one meanwhile
                results = await asyncio.gather(
                    *(self.refresh(pubkey) for pubkey in batch), return_exceptions=True
                )
                for result in results:
                    if isinstance(result, asyncio.CancelledError):
                        raise result
                    if isinstance(result, Exception):
                        log.warning("looking up a contact failed: %s", type(result).__name__)

    async def set(
        self, pubkey: str, *, name: str | None = None, state: str | None = None
    ) -> Contact:
        """Rename, accept or block a contact."""
        contact = await self.need(pubkey)
        previous = contact.state
        if name is not None:
            contact.name = directory.check_name(name) or None
        if state is not None:
            directory.set_state(contact, state)
        await self.ctx.committer.commit(lambda store: store.upsert_contact(contact))
        self.ctx.emit(ContactChanged(contact))
        if previous == ContactState.REQUEST and contact.state == ContactState.ACCEPTED:
            # where do they read their mail? (their relays, not ours, carry the replies)
            await self.refresh(pubkey)
            if self.on_accepted is not None:
                await self.on_accepted(pubkey)
            return await self.get(pubkey) or contact
        return contact

    def marks(self, contact: Contact) -> ContactMarks:
        """The verified mark checked against today's devices, and the next lookup."""
        current = None
        if contact.verified is not None:
            key = PublicKey.from_hex(contact.pubkey)
            devices = frozenset(self.ctx.channel.peer_devices(key))
            cached = self._numbers.get(contact.pubkey)
            if cached is None or cached[0] != devices:
                cached = (devices, self.ctx.channel.safety_number(key)[0])
                self._numbers[contact.pubkey] = cached
            current = cached[1]
        return ContactMarks(current, self.lookups.next_at(contact.pubkey))

    async def safety_number(self, pubkey: str) -> dict[str, Any]:
        contact = await self.need(pubkey)
        number, qr = self.ctx.channel.safety_number(PublicKey.from_hex(pubkey))
        devices = await self.ctx.committer.run(self.ctx.committer.store.devices, pubkey)
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
        contact = await self.need(pubkey)
        contact.verified = info["safety_number"] if verified else None
        await self.ctx.committer.commit(lambda store: store.upsert_contact(contact))
        self.ctx.emit(ContactChanged(contact))
        return await self.safety_number(pubkey)
