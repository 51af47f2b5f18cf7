"""The node's domain vocabulary: conversations, contacts, messages, outbox entries.

Plain data and the rules of their states, shared by the two floors that speak about
them: ``xchat.core`` (the sans-I/O rules, over the store Protocols of
:mod:`xchat.core.stores`) and ``xchat.store`` (the SQLCipher implementation). It sits
below both because ARCHITECTURE.md forbids the store to import the core; it imports only
the wire format (an outbox entry holds a sealed :class:`~xchat.wire.event.Event`).

Theory of operation. Every state is a :class:`enum.StrEnum` whose values are the strings
stored in ``node.db`` since schema v1 (stored bytes never change). Each state machine
has one transition table, h11-style: ``MOVES[from_state]`` is the set of states it may
move to, and :func:`may_move` is the only check. Nothing here reads a clock or draws
randomness; callers pass ``now`` in.

Message states (outgoing; a move not in the table is ignored, never an error: receipts
and relays' answers arrive in any order)::

    queued -> sent -> delivered -> read        (forward only, steps may be skipped)
    queued | sent -> failed -> queued          (a retry)
    failed -> sent | delivered | read          (a late answer proves it left)

Incoming messages are ``received`` until the user reads them (``read``).

Contact states::

    request -> accepted | blocked;  accepted -> blocked;  blocked -> accepted

Outbox entries (one per job; :class:`JobKind` says what the job does)::

    pending -> done | failed;  pending -> pending (attempted, retried later)
    failed -> pending (the user retries)

A ``seal_later`` job (a message queued before any device of the contact was known)
becomes ``envelope`` jobs when it is sealed: the first keeps the entry's id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, TypeVar

from xchat.wire.event import Event

__all__ = [
    "CONTACT_MOVES",
    "MESSAGE_MOVES",
    "OUTBOX_MOVES",
    "STATE_RANK",
    "Contact",
    "ContactState",
    "Conversation",
    "ConversationKind",
    "ConversationSummary",
    "Device",
    "JobKind",
    "Message",
    "MessageState",
    "OutboxEntry",
    "OutboxState",
    "SessionRecord",
    "may_move",
]


class ConversationKind(StrEnum):
    DIRECT = "direct"  # two people: us and one peer
    GROUP = "group"  # later (issue 13)
    SELF = "self"  # later (issue 12): notes to our own devices


class ContactState(StrEnum):
    ACCEPTED = "accepted"  # a person we talk to
    REQUEST = "request"  # a stranger wrote first: a message request
    BLOCKED = "blocked"


class MessageState(StrEnum):
    QUEUED = "queued"  # outgoing: stored, not yet accepted by enough relays
    SENT = "sent"  # outgoing: accepted by the quorum of relays
    DELIVERED = "delivered"  # outgoing: a device of the peer received it
    READ = "read"  # outgoing: the peer read it; incoming: we read it
    FAILED = "failed"  # outgoing: not accepted by enough relays, given up
    RECEIVED = "received"  # incoming: not read yet


class JobKind(StrEnum):
    ENVELOPE = "envelope"  # publish one sealed gift wrap to relays
    SEAL_LATER = "seal_later"  # seal a message once a device of the recipient is known
    # later: UPLOAD = "upload" (a blob, then send), DISTRIBUTE_KEY = "distribute_key"
    # (a group's room key over Olm, then send), MINT_SWAP = "mint_swap" (Cashu)


class OutboxState(StrEnum):
    PENDING = "pending"  # to do (now or at next_attempt_at)
    DONE = "done"
    FAILED = "failed"  # given up: its message is failed until the user retries


#: Order of the forward-only outgoing states (failed is outside it).
STATE_RANK: Final[Mapping[MessageState, int]] = {
    MessageState.QUEUED: 0,
    MessageState.SENT: 1,
    MessageState.DELIVERED: 2,
    MessageState.READ: 3,
}

_Q, _S, _D, _R, _F, _IN = (
    MessageState.QUEUED,
    MessageState.SENT,
    MessageState.DELIVERED,
    MessageState.READ,
    MessageState.FAILED,
    MessageState.RECEIVED,
)

#: Message state moves: ``MESSAGE_MOVES[from]`` is where a message may go from there.
MESSAGE_MOVES: Final[Mapping[MessageState, frozenset[MessageState]]] = {
    _Q: frozenset({_S, _D, _R, _F}),
    _S: frozenset({_D, _R, _F}),
    _D: frozenset({_R}),
    _R: frozenset(),
    _F: frozenset({_Q, _S, _D, _R}),
    _IN: frozenset({_R}),
}

#: Contact state moves.
CONTACT_MOVES: Final[Mapping[ContactState, frozenset[ContactState]]] = {
    ContactState.REQUEST: frozenset({ContactState.ACCEPTED, ContactState.BLOCKED}),
    ContactState.ACCEPTED: frozenset({ContactState.BLOCKED}),
    ContactState.BLOCKED: frozenset({ContactState.ACCEPTED}),
}

#: Outbox entry state moves.
OUTBOX_MOVES: Final[Mapping[OutboxState, frozenset[OutboxState]]] = {
    OutboxState.PENDING: frozenset({OutboxState.PENDING, OutboxState.DONE, OutboxState.FAILED}),
    OutboxState.DONE: frozenset(),
    OutboxState.FAILED: frozenset({OutboxState.PENDING}),
}


S = TypeVar("S", bound=StrEnum)


def may_move(table: Mapping[S, frozenset[S]], frm: S, to: S) -> bool:
    """Whether the machine of ``table`` may go from ``frm`` to ``to``."""
    return to in table.get(frm, frozenset())


@dataclass(frozen=True, slots=True)
class Conversation:
    """A conversation: its id (32 hex digits, random), its kind and who is in it.
    Frozen: its row never changes once written, so the store may hand out one object.

    ``members`` are the *other* participants (we are a member of every conversation we
    have); a direct conversation has exactly one, its ``peer``."""

    id: str
    kind: ConversationKind
    peer: str | None  # direct: the peer's identity key (hex); None for other kinds
    members: tuple[str, ...]
    created_at: int  # unix seconds

    def has_member(self, pubkey: str) -> bool:
        return pubkey in self.members


@dataclass(slots=True)
class Contact:
    pubkey: str  # identity key, hex
    name: str | None
    state: ContactState
    relays: list[str]  # relay hints from their card or their kind 10050 list
    created_at: int
    nip17_only: bool = False  # no X Chat device bundle found: NIP-17, not forward-secret
    verified: str | None = None  # the safety number the user verified, if any
    bundle_checked_at: int = 0  # when we last looked for their device bundles
    #: The id of the direct conversation with them (filled by the store on reads;
    #: "" until it exists). Not a column of the contact: writing a contact ignores it.
    conversation: str = ""


@dataclass(slots=True)
class Device:
    device_id: str  # Ed25519 key, b64
    pubkey: str  # identity, hex
    curve25519: str
    certificate: str  # the certificate JSON
    first_seen: int
    bundle: str | None = None  # the latest bundle event JSON, to open sessions from


@dataclass(slots=True)
class SessionRecord:
    session_id: str
    pubkey: str
    device_curve: str
    record: bytes = field(repr=False)  # Session.to_record(...): sealed
    updated_at: int = 0


@dataclass(slots=True)
class Message:
    id: str
    conversation: str  # the conversation's id
    outgoing: bool
    sender: str  # pubkey
    type: str  # "text", "reply" or "undecryptable" (other app messages update rows)
    body: str = field(repr=False)  # plaintext: kept out of reprs, logs and tracebacks
    sent_at: int  # sender's clock, ms
    received_at: int  # our clock, ms (for outgoing: when queued)
    state: MessageState
    forward_secret: bool = True
    reply_to: str | None = None
    state_detail: str = ""  # e.g. the failure reason, or the relays that accepted
    edited_at: int | None = None
    deleted: bool = False
    reactions: dict[str, str] | None = None  # reactor pubkey -> emoji
    seq: int = 0  # insertion order: the stable tie-break; set by the store


@dataclass(slots=True)
class ConversationSummary:
    """One line of the conversation list."""

    conversation: Conversation
    name: str | None  # direct: the contact's name
    state: ContactState | None  # direct: the contact's state
    last_activity: int  # ms
    last_message: Message | None
    unread: int
    forward_secret: bool


@dataclass(slots=True)
class OutboxEntry:
    """One job of the outbox (see the module docstring for its states).

    ``event`` is the sealed gift wrap of an ``envelope`` job: kept as the object it was
    sealed as, never serialised and parsed again in memory (the store serialises it).
    ``message`` is the encoded app message (``encode_app_message``) a ``seal_later``
    job will seal."""

    id: int  # set by the store
    message_id: str
    recipient: str  # pubkey
    kind: JobKind
    event: Event | None
    message: Mapping[str, Any] | None
    relays: list[str]  # where to publish
    accepted: list[str]  # relays that answered OK true
    state: OutboxState
    attempts: int
    next_attempt_at: int  # unix seconds
    last_error: str
    created_at: int
