"""The outbox machine: jobs that must leave this machine, tried until done or given up.

Sans-I/O: these functions move :class:`~xchat.model.OutboxEntry` objects along
:data:`xchat.model.OUTBOX_MOVES` and write the outcome through an
:class:`~xchat.core.stores.OutboxStore` and :class:`~xchat.core.stores.MessageStore`.
The node's driver does the I/O (sealing with the channel, publishing with the pool) and
passes the time in. A move the table does not allow raises
:class:`~xchat.errors.LocalProtocolError` (a bug in the caller, never a peer's doing).

Theory of operation. A message is durable before anything is sent: it is committed with
one job per envelope (kind ``envelope``: a sealed gift wrap and the relays to publish it
to) or, when no device of the recipient is known yet, one ``seal_later`` job holding the
encoded message. A job is ``pending`` until it is ``done`` or ``failed``::

    pending --publish: quorum accepted--> done
    pending --publish: short, attempts left--> pending (next_attempt_at = now + backoff)
    pending --publish: short, MAX_ATTEMPTS reached, or no relay--> failed
    pending --seal_later: no device yet--> pending (backoff), failed after MAX_ATTEMPTS
    pending --seal_later: sealed--> the job becomes its envelope jobs (the first keeps
                                    its id: sealed())
    failed --the user retries--> pending (attempts 0, due now)

*Quorum*: an envelope is done once :func:`quorum` relays accepted it (``OK true``): two,
or every relay if fewer are named. An attempt publishes only to the relays that have
not accepted yet. *Backoff* (:func:`backoff`): 1 s after the first attempt, doubling, at
most 60 s; with :data:`MAX_ATTEMPTS` = 12 a job is given up after about six to eight
minutes.

*Settling* (:func:`settle`, on the store thread, in one transaction): the job is
written; when every job of its message is done, the rows are deleted (the work is done:
the table stays small) and the message becomes ``sent`` with the sorted accepted relays
as its detail, or keeps a later state a receipt already gave it (``delivered``,
``read``) and gets the relays as detail. A failed job makes its message ``failed`` with
the reason. Jobs of a message id without a message row (the NIP-17 copy to ourselves,
``<id>:self``) settle without a state change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any, Final, Protocol

from xchat.core.message import AppMessage, Delivered, Edit, Read
from xchat.core.node_events import StateChanged
from xchat.core.stores import MessageStore, OutboxStore
from xchat.errors import InvalidInput, LocalProtocolError
from xchat.model import (
    OUTBOX_MOVES,
    JobKind,
    Message,
    MessageState,
    OutboxEntry,
    OutboxState,
    may_move,
)
from xchat.wire.event import Event

__all__ = [
    "DAMAGED",
    "MAX_ATTEMPTS",
    "MIN_ACCEPTS",
    "NO_DEVICE",
    "RETRY_MAX",
    "RETRY_START",
    "OutboxMessageStore",
    "Outcome",
    "backoff",
    "cannot_seal",
    "check_retry",
    "damaged",
    "envelope_job",
    "fail",
    "failure_detail",
    "next_due",
    "publish_error",
    "quorum",
    "record_no_device",
    "record_publish",
    "remaining",
    "retry",
    "retry_message",
    "seal_later_job",
    "sealed",
    "settle",
]

#: Publishing attempts before a job (and its message) is given up.
MAX_ATTEMPTS: Final = 12
#: The wait after the first failed attempt (seconds); it doubles after each one...
RETRY_START: Final = 1.0
#: ...up to this (seconds).
RETRY_MAX: Final = 60.0
#: Relays that must accept an envelope: two, or all of them if fewer are named.
MIN_ACCEPTS: Final = 2
#: One relay's error, as kept in ``last_error``, is cut to this many characters.
_ERROR_CHARS: Final = 200

NO_DEVICE: Final = "no device of this contact found on their relays yet"
DAMAGED: Final = "the stored envelope is damaged"


class Outcome(StrEnum):
    DONE = "done"  # the job's work is done
    RETRY = "retry"  # still pending: try again at next_attempt_at
    FAILED = "failed"  # given up until the user retries


def backoff(attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th attempt failed (1, 2, 4, ... 60)."""
    return min(RETRY_START * 2.0 ** min(max(attempts - 1, 0), 64), RETRY_MAX)


def quorum(relays: Sequence[str]) -> int:
    """How many of ``relays`` must accept an envelope (0: none named, it cannot)."""
    return min(MIN_ACCEPTS, len(relays))


def _new(
    message_id: str,
    recipient: str,
    kind: JobKind,
    event: Event | None,
    message: Mapping[str, Any] | None,
    relays: Sequence[str],
    now: int,
) -> OutboxEntry:
    return OutboxEntry(
        id=0,
        message_id=message_id,
        recipient=recipient,
        kind=kind,
        event=event,
        message=message,
        relays=list(relays),
        accepted=[],
        state=OutboxState.PENDING,
        attempts=0,
        next_attempt_at=now,
        last_error="",
        created_at=now,
    )


def envelope_job(
    message_id: str, recipient: str, event: Event, relays: Sequence[str], now: int
) -> OutboxEntry:
    """A job publishing the sealed ``event`` (kept as the object: never re-parsed)."""
    return _new(message_id, recipient, JobKind.ENVELOPE, event, None, relays, now)


def seal_later_job(
    message_id: str, recipient: str, message: Mapping[str, Any], relays: Sequence[str], now: int
) -> OutboxEntry:
    """A job sealing ``message`` (``encode_app_message``) once a device is known."""
    return _new(message_id, recipient, JobKind.SEAL_LATER, None, dict(message), relays, now)


def _move(entry: OutboxEntry, to: OutboxState) -> None:
    if not may_move(OUTBOX_MOVES, entry.state, to):
        raise LocalProtocolError(f"an outbox job cannot go from {entry.state} to {to}")
    entry.state = to


def remaining(entry: OutboxEntry) -> list[str]:
    """The relays an attempt publishes to: those that have not accepted yet."""
    return [url for url in entry.relays if url not in entry.accepted]


def publish_error(url: str, reason: str) -> str:
    """One relay's failure as :func:`record_publish` wants it."""
    return f"{url}: {reason}"[:_ERROR_CHARS]


def record_publish(
    entry: OutboxEntry, accepted: Sequence[str], errors: Sequence[str], now: float
) -> Outcome:
    """Record one publishing attempt of an envelope job: ``accepted`` are the relays
    that answered ``OK true``, ``errors`` the others' failures (:func:`publish_error`)."""
    if entry.kind is not JobKind.ENVELOPE:
        raise LocalProtocolError("only an envelope job is published")
    if entry.state is not OutboxState.PENDING:
        raise LocalProtocolError(f"an outbox job cannot go from {entry.state} to done")
    for url in accepted:
        if url not in entry.accepted:
            entry.accepted.append(url)
    entry.attempts += 1
    if len(entry.accepted) >= quorum(entry.relays) > 0:
        _move(entry, OutboxState.DONE)
        entry.last_error = ""
        return Outcome.DONE
    if entry.attempts >= MAX_ATTEMPTS or not entry.relays:
        fail(entry, "; ".join(errors) or "no relay to publish to")
        return Outcome.FAILED
    _move(entry, OutboxState.PENDING)
    entry.next_attempt_at = int(now + backoff(entry.attempts))
    entry.last_error = "; ".join(errors)
    return Outcome.RETRY


def record_no_device(entry: OutboxEntry, now: float) -> Outcome:
    """A seal_later job found no device of the recipient yet: try again later, or give
    up after :data:`MAX_ATTEMPTS`."""
    if entry.kind is not JobKind.SEAL_LATER or entry.state is not OutboxState.PENDING:
        raise LocalProtocolError("only a pending seal-later job waits for a device")
    entry.attempts += 1
    entry.last_error = NO_DEVICE
    entry.next_attempt_at = int(now + backoff(entry.attempts))
    if entry.attempts >= MAX_ATTEMPTS:
        fail(entry, NO_DEVICE)
        return Outcome.FAILED
    _move(entry, OutboxState.PENDING)
    return Outcome.RETRY


def fail(entry: OutboxEntry, reason: str) -> None:
    """Give the job up (until the user retries), for ``reason``."""
    _move(entry, OutboxState.FAILED)
    entry.last_error = reason


def damaged(entry: OutboxEntry) -> None:
    """An envelope job whose stored event could not be read back: it cannot be sent."""
    fail(entry, DAMAGED)


def cannot_seal(message: AppMessage, nip17_only: bool) -> str | None:
    """Why a seal_later job's message cannot go to a NIP-17 contact (None: it can)."""
    if nip17_only and isinstance(message, Edit | Delivered | Read):
        return "NIP-17 contacts cannot receive this"
    return None


def failure_detail(entry: OutboxEntry) -> str:
    """The state detail a failed job gives its message."""
    if entry.kind is JobKind.ENVELOPE and entry.last_error != DAMAGED:
        return f"not accepted by enough relays: {entry.last_error}"
    return entry.last_error


def check_retry(message: Message) -> None:
    if message.state is not MessageState.FAILED:
        raise InvalidInput("only failed messages can be retried")


def retry(entry: OutboxEntry, now: int) -> None:
    """A failed job is pending again: attempts from 0, due ``now``."""
    if entry.state is not OutboxState.FAILED:
        raise LocalProtocolError(f"an outbox job in state {entry.state} is not retried")
    _move(entry, OutboxState.PENDING)
    entry.attempts = 0
    entry.next_attempt_at = now
    entry.last_error = ""


class OutboxMessageStore(OutboxStore, MessageStore, Protocol):
    """What settling and retrying write: jobs and their messages' states."""


def retry_message(store: OutboxMessageStore, message_id: str, now: int) -> StateChanged | None:
    """The store part of retrying a failed message: its failed jobs pending again, the
    message queued. None if the message was not failed (nothing changed)."""
    for entry in store.outbox_for(message_id):
        if entry.state is OutboxState.FAILED:
            retry(entry, now)
            store.update_outbox(entry)
    if store.set_state(message_id, MessageState.QUEUED):
        return StateChanged(message_id, MessageState.QUEUED, "")
    return None


def sealed(job: OutboxEntry, envelopes: list[OutboxEntry]) -> list[OutboxEntry]:
    """A seal_later ``job`` sealed into ``envelopes``: the first takes the job's id (the
    caller updates it in place and adds the others). Nothing to seal is an error."""
    if job.kind is not JobKind.SEAL_LATER or job.state is not OutboxState.PENDING:
        raise LocalProtocolError("only a pending seal-later job is sealed")
    if not envelopes or any(e.kind is not JobKind.ENVELOPE for e in envelopes):
        raise LocalProtocolError("a job is sealed into one envelope job or more")
    envelopes[0].id = job.id
    return envelopes


def settle(store: OutboxMessageStore, entry: OutboxEntry) -> StateChanged | None:
    """Write ``entry`` after an attempt, and what it means for its message (see the
    module docstring); the message's new state, if it changed."""
    store.update_outbox(entry)
    message_id = entry.message_id
    if entry.state is OutboxState.DONE:
        siblings = store.outbox_for(message_id)
        if not all(s.state is OutboxState.DONE for s in siblings):
            return None
        detail = " ".join(sorted({url for s in siblings for url in s.accepted}))
        store.delete_outbox(message_id)  # its work is done: keep the table small
        if store.set_state(message_id, MessageState.SENT, detail):
            return StateChanged(message_id, MessageState.SENT, detail)
        # a receipt came first (it is already delivered): record the relays anyway
        if store.set_detail(message_id, detail):
            row = store.get_message(message_id)
            return StateChanged(message_id, row.state, detail) if row is not None else None
        return None
    if entry.state is OutboxState.FAILED:
        detail = failure_detail(entry)
        if store.set_state(message_id, MessageState.FAILED, detail):
            return StateChanged(message_id, MessageState.FAILED, detail)
    return None


def next_due(entries: Iterable[OutboxEntry]) -> int | None:
    """When the earliest pending job of ``entries`` is due (None: none is pending)."""
    return min((e.next_attempt_at for e in entries if e.state is OutboxState.PENDING), default=None)
