"""Sending: a message is stored, sealed and queued in one commit, then published.

Theory of operation::

    seal for each peer device (or NIP-17) -> commit message + sessions + outbox jobs
        -> return to the caller (the message is durable: a crash now loses nothing)
        -> the outbox (xchat.node.outbox) publishes each envelope to the recipient's
           inbox relays and moves the message to "sent" once a quorum accepted.

A session's ratchet is committed before any envelope it produced leaves the machine. A
message to a contact of whom no device is known yet is queued as a ``seal_later`` job.
Edits, deletions and reactions are app messages of their own that change a stored row;
delivery and read receipts go out in batches (``Delivered`` 0.2 s after the burst of
messages they acknowledge, ``Read`` when the user reads).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any, Final

from xchat.core import outbox as jobs
from xchat.core.conversation import (
    apply_delete,
    apply_edit,
    apply_reaction,
    check_contact,
    check_delete,
    check_edit,
)
from xchat.core.message import (
    MAX_TEXT_BYTES,
    AppMessage,
    Delete,
    Delivered,
    Edit,
    Reaction,
    Read,
    Reply,
    Text,
    encode_app_message,
    new_message_id,
)
from xchat.core.node_events import MessageChanged, ReadMarked
from xchat.core.session import Session
from xchat.crypto.keys import PublicKey
from xchat.errors import InvalidInput, LocalProtocolError, XChatError
from xchat.model import (
    Contact,
    ContactState,
    Conversation,
    Message,
    MessageState,
    OutboxEntry,
)
from xchat.node.contacts import Contacts
from xchat.node.context import Context
from xchat.node.outbox import Outbox
from xchat.store.node import NodeStore
from xchat.wire.event import is_hex

__all__ = ["Sender", "text_too_long"]

log = logging.getLogger("xchat.node")

#: Sending to a contact without devices looks them up again if the last lookup is
#: older than this (seconds); otherwise the lookup schedule (``lookups.py``) decides.
_RECHECK_ON_SEND: Final = 60
_RECEIPT_BATCH: Final = 500
#: Delivery receipts wait this long to be sent together (seconds).
_RECEIPT_DELAY: Final = 0.2


def text_too_long(body: str) -> str | None:
    """Why a text cannot be sent for its size, or None."""
    size = len(body.encode())
    if size <= MAX_TEXT_BYTES:
        return None
    return (
        f"A message can be at most {MAX_TEXT_BYTES // 1024} KiB ({MAX_TEXT_BYTES:,} bytes)"
        f" of text; this one is {size:,} bytes, longer than that."
    )


def resolve_conversation(store: NodeStore, ref: str) -> Conversation:
    """A conversation by its id, or (an alias for scripts) the direct conversation with
    a contact named by their 64-hex key; InvalidInput if there is none. Store thread."""
    if is_hex(ref, 32):
        found = store.get_conversation(ref)
        if found is None:
            raise InvalidInput("There is no such conversation.")
        return found
    if is_hex(ref, 64):
        found = store.direct_conversation(ref)
        if found is None:
            raise InvalidInput("That address is not one of your contacts; add it first.")
        return found
    raise InvalidInput("A conversation id is 32 hex digits (or a contact's 64-hex key).")


def _writable_peer(conversation: Conversation, contact: Contact | None) -> Contact:
    """The contact a message to ``conversation`` goes to; InvalidInput if none may."""
    if conversation.peer is None:
        raise InvalidInput("Only direct conversations can be written to yet.")
    if contact is None:
        raise InvalidInput("That address is not one of your contacts; add it first.")
    if contact.state == ContactState.BLOCKED:
        raise InvalidInput("This contact is blocked; unblock them to send.")
    return contact


class Sender:
    def __init__(self, ctx: Context, contacts: Contacts, outbox: Outbox) -> None:
        self.ctx = ctx
        self.contacts = contacts
        self.outbox = outbox
        self._last_sent_at = 0
        #: Delivery receipts waiting to go out together, by contact.
        self._delivered: dict[str, list[str]] = {}

    def _next_sent_at(self) -> int:
        """The sender's clock in ms, strictly increasing so that order is never a tie."""
        sent_at = max(self.ctx.now_ms(), self._last_sent_at + 1)
        self._last_sent_at = sent_at
        return sent_at

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await self.ctx.committer.run(fn, *args)

    async def conversation(self, conversation_id: str) -> Conversation:
        store = self.ctx.committer.store
        found = await self._run(store.get_conversation, conversation_id)
        if found is None:
            raise InvalidInput("There is no such conversation.")
        return found  # type: ignore[no-any-return]

    async def _peer_of(self, conversation: Conversation) -> Contact:
        return _writable_peer(conversation, await self.contacts.get(conversation.peer or ""))

    def _send_lookup(
        self, ref: str, client_id: str | None
    ) -> tuple[Conversation, Contact | None, Message | None]:
        """On the store thread, in one call (a send is one hop, not four): the
        conversation ``ref`` names, its peer's contact row, and the message already
        queued under ``client_id``."""
        store = self.ctx.committer.store
        conversation = resolve_conversation(store, ref)
        contact = store.get_contact(conversation.peer) if conversation.peer else None
        known = self._by_client_id(client_id) if client_id is not None else None
        return conversation, contact, known

    async def send_text(
        self,
        conversation_id: str,
        body: str,
        reply_to: str | None = None,
        client_id: str | None = None,
    ) -> Message:
        """Persist, seal and queue a text (or a reply); returns once it is durable.

        ``client_id`` (32 hex digits, chosen by the caller) makes the call idempotent:
        sending again with the same id returns the message already queued, so a client
        can safely resend after losing the answer.
        """
        if not body.strip():
            raise InvalidInput("A message needs some text; this one is empty.")
        if (too_long := text_too_long(body)) is not None:
            raise InvalidInput(too_long)
        if client_id is not None and not is_hex(client_id, 32):
            raise InvalidInput("A client message id is 32 lowercase hex digits.")
        conversation, found, known = await self._run(self._send_lookup, conversation_id, client_id)
        if known is not None:
            if known.conversation != conversation.id:
                raise InvalidInput("That client message id was used in another conversation.")
            return known  # type: ignore[no-any-return]
        contact = _writable_peer(conversation, found)
        sent_at = self._next_sent_at()
        message_id = client_id or new_message_id(self.ctx.rng)
        try:
            message: AppMessage = (
                Reply(message_id, sent_at, body, reply_to)
                if reply_to is not None
                else Text(message_id, sent_at, body)
            )
        except LocalProtocolError as exc:
            raise InvalidInput(str(exc)) from None
        return await self._send(contact, conversation, message, store_row=True, client_id=client_id)

    def _by_client_id(self, client_id: str) -> Message | None:
        store = self.ctx.committer.store
        row = store.get_message(client_id)
        if row is not None and row.outgoing:
            return row
        mapped = store.get_setting(f"client-id:{client_id}")  # NIP-17: the rumor id
        return store.get_message(mapped) if mapped else None

    async def message(self, message_id: str) -> Message:
        row = await self._run(self.ctx.committer.store.get_message, message_id)
        if row is None:
            raise InvalidInput("There is no such message.")
        return row  # type: ignore[no-any-return]

    async def _target(self, message_id: str) -> tuple[Message, Conversation, Contact]:
        row = await self.message(message_id)
        conversation = await self._run(self.ctx.committer.store.get_conversation, row.conversation)
        if conversation is None:
            raise InvalidInput("That message's conversation is gone.")
        try:
            contact = await self._peer_of(conversation)
        except InvalidInput:
            raise InvalidInput("That conversation's contact is gone or blocked.") from None
        return row, conversation, contact

    async def react(self, message_id: str, emoji: str) -> Message:
        row, conversation, contact = await self._target(message_id)
        try:
            reaction = Reaction(new_message_id(self.ctx.rng), self._next_sent_at(), row.id, emoji)
        except LocalProtocolError as exc:
            raise InvalidInput(str(exc)) from None
        apply_reaction(row, self.ctx.me, emoji)
        await self._send(
            contact, conversation, reaction, effect=lambda store: store.update_message(row)
        )
        self.ctx.emit(MessageChanged(row))
        return row

    async def edit(self, message_id: str, body: str) -> Message:
        row, conversation, contact = await self._target(message_id)
        check_edit(row, self.ctx.me)
        check_contact(contact, editing=True)
        if (too_long := text_too_long(body)) is not None:
            raise InvalidInput(too_long)
        try:
            edit = Edit(new_message_id(self.ctx.rng), self._next_sent_at(), row.id, body)
        except LocalProtocolError as exc:
            raise InvalidInput(str(exc)) from None
        apply_edit(row, body, edit.sent_at)
        await self._send(contact, conversation, edit, effect=lambda s: s.update_message(row))
        self.ctx.emit(MessageChanged(row))
        return row

    async def delete(self, message_id: str) -> Message:
        row, conversation, contact = await self._target(message_id)
        check_delete(row, self.ctx.me)
        deletion = Delete(new_message_id(self.ctx.rng), self._next_sent_at(), row.id)
        apply_delete(row)
        await self._send(contact, conversation, deletion, effect=lambda s: s.update_message(row))
        self.ctx.emit(MessageChanged(row))
        return row

    async def retry(self, message_id: str) -> Message:
        """Send a failed message again."""
        row = await self.message(message_id)
        jobs.check_retry(row)
        now = self.ctx.now()
        changed = await self.ctx.committer.commit(
            lambda store: jobs.retry_message(store, message_id, now)
        )
        row.state, row.state_detail = MessageState.QUEUED, ""
        if changed is not None:
            self.ctx.emit(changed)
        self.outbox.wake()
        return row

    async def _targets(self, contact: Contact) -> list[str]:
        """Where a contact reads mail: their inbox relays, else their hints, else ours."""
        return list(contact.relays) or await self.ctx.own_relays()

    async def _send(
        self,
        contact: Contact,
        conversation: Conversation,
        message: AppMessage,
        *,
        store_row: bool = False,
        effect: Callable[[NodeStore], Any] | None = None,
        client_id: str | None = None,
    ) -> Message:
        ctx = self.ctx
        now = ctx.now()
        targets = await self._targets(contact)
        if contact.nip17_only and now - contact.bundle_checked_at > _RECHECK_ON_SEND:
            # they may have started X Chat since: later messages become forward-secret
            contact.bundle_checked_at = now
            ctx.spawn(self.contacts.refresh(contact.pubkey))
        own = await ctx.own_relays() if contact.nip17_only else []
        row_id, entries, writes = self.seal(contact, message, targets, now, own=own)
        if not entries:  # no device known yet: sealed later, once a bundle is found
            entries.append(
                jobs.seal_later_job(
                    row_id, contact.pubkey, encode_app_message(message), targets, now
                )
            )
        row = Message(
            id=row_id,
            conversation=conversation.id,
            outgoing=True,
            sender=ctx.me,
            type=message.type,
            body=getattr(message, "body", ""),
            sent_at=message.sent_at,
            received_at=ctx.now_ms(),
            state=MessageState.QUEUED,
            forward_secret=not contact.nip17_only,
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
            for entry in entries:
                store.add_outbox(entry)

        await ctx.committer.commit(apply)
        if store_row:
            ctx.emit(MessageChanged(row))
        self.outbox.queued(entries)
        return row

    def seal(
        self,
        contact: Contact,
        message: AppMessage,
        targets: list[str],
        now: int,
        row_id: str | None = None,
        own: Sequence[str] = (),
    ) -> tuple[str, list[OutboxEntry], list[Callable[[NodeStore], Any]]]:
        """Seal ``message`` for every device of ``contact`` (or as NIP-17): the id its row
        is stored under (``row_id`` if the row exists already; else the message's, or for
        NIP-17 its rumor's), one envelope job per envelope, and the session writes to
        commit with them. No jobs: no device of the contact is known.

        NIP-17 also wraps a copy to ourselves (NIP-17: so that our other clients see
        what we sent), published to ``own`` (our relays) as a job of its own (message
        id ``<id>:self``), so that the message's state does not wait for it."""
        ctx = self.ctx
        if contact.nip17_only:
            rumor, to_peer, to_self = ctx.channel.seal_nip17(
                PublicKey.from_hex(contact.pubkey), message, now, ctx.rng
            )
            row_id = row_id or rumor.id
            wraps = [jobs.envelope_job(row_id, contact.pubkey, to_peer, targets, now)]
            if own:
                wraps.append(jobs.envelope_job(f"{row_id}:self", ctx.me, to_self, own, now))
            return row_id, wraps, []
        row_id = row_id or message.id
        entries: list[OutboxEntry] = []
        writes: list[Callable[[NodeStore], Any]] = []
        for session in self._sending_sessions(contact.pubkey):
            event = ctx.channel.seal(session, message, now, ctx.rng)
            writes.append(ctx.session_write(session))
            entries.append(jobs.envelope_job(row_id, contact.pubkey, event, targets, now))
        return row_id, entries, writes

    def _sending_sessions(self, pubkey: str) -> list[Session]:
        """One session per peer device: the newest."""
        chosen: dict[str, Session] = {}
        for session in self.ctx.channel.sessions_with(PublicKey.from_hex(pubkey)):
            chosen.setdefault(session.peer.curve25519, session)
        return list(chosen.values())

    # -- receipts -------------------------------------------------------------------

    def queue_delivered(self, pubkey: str, targets: list[str]) -> None:
        """Delivery receipts go out together, a moment later: one envelope for a burst
        of messages instead of one each (the peer sees "delivered" 0.2 s later)."""
        pending = self._delivered.setdefault(pubkey, [])
        first = not pending
        pending.extend(targets)
        if first:
            self.ctx.spawn(self._flush_delivered(pubkey))

    async def _flush_delivered(self, pubkey: str) -> None:
        await asyncio.sleep(_RECEIPT_DELAY)
        targets = self._delivered.pop(pubkey, [])
        if targets:
            await self._send_receipt(pubkey, Delivered, targets)

    async def flush_receipts(self) -> None:
        """At close: queue the delivery receipts still waiting."""
        for pubkey in list(self._delivered):
            with contextlib.suppress(XChatError):
                await self._send_receipt(pubkey, Delivered, self._delivered.pop(pubkey))

    async def _send_receipt(
        self, pubkey: str, kind: type[Delivered] | type[Read], targets: list[str]
    ) -> None:
        contact = await self.contacts.get(pubkey)
        if contact is None or contact.state != ContactState.ACCEPTED or contact.nip17_only:
            return
        store = self.ctx.committer.store
        conversation = await self._run(store.direct_conversation, pubkey)
        if conversation is None:
            return
        for i in range(0, len(targets), _RECEIPT_BATCH):
            receipt = kind(
                new_message_id(self.ctx.rng),
                self._next_sent_at(),
                tuple(targets[i : i + _RECEIPT_BATCH]),
            )
            try:
                await self._send(contact, conversation, receipt)
            except XChatError as exc:
                log.warning("a receipt could not be queued: %s", type(exc).__name__)

    async def send_pending_receipts(self, pubkey: str) -> None:
        """After accepting a request: delivery receipts for what the stranger sent."""
        store = self.ctx.committer.store
        conversation = await self._run(store.direct_conversation, pubkey)
        if conversation is None:
            return
        rows = await self._run(store.messages, conversation.id, None, _RECEIPT_BATCH)
        ids = [r.id for r in rows if not r.outgoing and r.forward_secret]
        if ids:
            await self._send_receipt(pubkey, Delivered, ids)
        read = [
            r.id
            for r in rows
            if not r.outgoing and r.forward_secret and r.state == MessageState.READ
        ]
        if read and await self.read_receipts_enabled():
            await self._send_receipt(pubkey, Read, read)

    async def mark_read(self, conversation_id: str) -> list[str]:
        """Mark a conversation read; sends a read receipt if the user allows them."""
        conversation = await self.conversation(conversation_id)
        ids: list[str] = await self.ctx.committer.commit(
            lambda store: store.mark_read(conversation.id)
        )
        if ids and conversation.peer is not None and await self.read_receipts_enabled():
            await self._send_receipt(conversation.peer, Read, ids)
        if ids:
            self.ctx.emit(ReadMarked(conversation.id, tuple(ids)))
        return ids

    async def read_receipts_enabled(self) -> bool:
        store = self.ctx.committer.store
        value = await self.ctx.committer.run(store.get_setting, "read_receipts", "on")
        return value == "on"

    async def set_read_receipts(self, enabled: bool) -> None:
        value = "on" if enabled else "off"
        await self.ctx.committer.commit(lambda store: store.set_setting("read_receipts", value))
