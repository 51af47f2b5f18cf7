"""The outbox: jobs (publish an envelope, seal a message later) and their progress."""

# Every SQL text in this module is assembled from this package's constants (column lists,
# placeholders); values are always bound, never formatted in.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import orjson

from xchat.errors import DecodeError, InvalidInput, KeystoreCorrupt, KeystoreError
from xchat.model import (
    JobKind,
    OutboxEntry,
    OutboxState,
)
from xchat.store.node.db import _GUARD, Database
from xchat.store.node.values import (
    _check_choice,
    _check_limit,
    _dump_strings,
    _enum,
    _load_json,
    _load_strings,
)
from xchat.wire.event import parse_event

_OUTBOX_STATES: Final = tuple(OutboxState)

_OUTBOX_COLUMNS: Final = (
    "message_id, recipient, event, relays, accepted, state, attempts, next_attempt_at,"
    " last_error, created_at, kind"
)

_SELECT_OUTBOX: Final = f"SELECT id, {_OUTBOX_COLUMNS} FROM outbox"


#: The payload of a seal_later job (in the ``event`` column): version 1 of the outbox
#: payload, ``{"pending": true, "message": <application message>}``, unchanged since
#: schema v1 (see docs/protocol.md, "Local storage formats").
_PENDING_KEY: Final = "pending"


class Outbox(Database):
    """The outbox (:class:`xchat.core.stores.OutboxStore`)."""

    def add_outbox(self, entry: OutboxEntry) -> int:
        """Store a new outbox row (its ``id`` is ignored); return and set its new id."""
        values = _outbox_values(entry)
        with _GUARD:
            cursor = self._db().execute(
                f"INSERT INTO outbox ({_OUTBOX_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )
            new_id = cursor.lastrowid
        if new_id is None:  # pragma: no cover - SQLite always reports the new rowid
            raise KeystoreError("the node database did not report the new outbox row's id")
        entry.id = int(new_id)
        return entry.id

    def update_outbox(self, entry: OutboxEntry) -> None:
        """Write back every field of a stored row; InvalidInput if there is no such id.

        A failed job whose payload could not be read back (``event`` or ``message`` is
        None: the stored text was damaged) keeps that text; only its state is written."""
        values = _outbox_values(entry, updating=True)
        with _GUARD:
            cursor = self._db().execute(
                "UPDATE outbox SET message_id = ?, recipient = ?, event = coalesce(?, event),"
                " relays = ?,"
                " accepted = ?, state = ?, attempts = ?, next_attempt_at = ?, last_error = ?,"
                " created_at = ?, kind = ? WHERE id = ?",
                (*values, entry.id),
            )
        if cursor.rowcount == 0:
            raise InvalidInput("there is no outbox row with that id")

    def due_outbox(self, now: int, limit: int = 500) -> list[OutboxEntry]:
        """Rows in state pending whose next attempt is due, the longest due
        first (ordered so that SQLite walks the partial index ``outbox_due``, never the
        whole table)."""
        _check_limit(limit)
        with _GUARD:
            rows = (
                self._db()
                .execute(
                    f"{_SELECT_OUTBOX} WHERE state = 'pending'"
                    " AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?",
                    (now, limit),
                )
                .fetchall()
            )
            return [_outbox(row) for row in rows]

    def outbox_waiting(self) -> int:
        """How many rows are pending (due or not)."""
        with _GUARD:
            row = (
                self._db().execute("SELECT count(*) FROM outbox WHERE state = 'pending'").fetchone()
            )
        return int(row[0])

    def delete_outbox(self, message_id: str) -> int:
        """Forget a message's outbox rows (once every one is done); the number deleted."""
        with _GUARD:
            cursor = self._db().execute("DELETE FROM outbox WHERE message_id = ?", (message_id,))
        return int(cursor.rowcount)

    def outbox_for(self, message_id: str) -> list[OutboxEntry]:
        """Every outbox row of a message, in any state, oldest first."""
        with _GUARD:
            rows = (
                self._db()
                .execute(f"{_SELECT_OUTBOX} WHERE message_id = ? ORDER BY id", (message_id,))
                .fetchall()
            )
            return [_outbox(row) for row in rows]


def _outbox_values(row: OutboxEntry, *, updating: bool = False) -> tuple[object, ...]:
    _check_choice(row.state, _OUTBOX_STATES, "an outbox row's state")
    _check_choice(row.kind, tuple(JobKind), "an outbox row's kind")
    payload: str | None
    if updating and row.state is OutboxState.FAILED and row.event is None and row.message is None:
        payload = None  # a damaged payload, given up: the stored text stays
    elif row.kind is JobKind.ENVELOPE:
        if row.event is None:
            raise InvalidInput("an envelope job needs its sealed event")
        payload = row.event.to_json().decode()
    elif row.message is None:
        raise InvalidInput("a seal-later job needs its message")
    else:
        try:
            payload = orjson.dumps({_PENDING_KEY: True, "message": row.message}).decode()
        except TypeError:
            raise InvalidInput("a seal-later job's message must be JSON") from None
    return (
        row.message_id,
        row.recipient,
        payload,
        _dump_strings(row.relays, "an outbox row's relays"),
        _dump_strings(row.accepted, "an outbox row's accepted relays"),
        row.state,
        row.attempts,
        row.next_attempt_at,
        row.last_error,
        row.created_at,
        row.kind,
    )


def _outbox(r: Sequence[Any]) -> OutboxEntry:
    kind = _enum(JobKind, r[11])
    event = None
    message = None
    if kind is JobKind.ENVELOPE:
        try:
            event = parse_event(_load_json(r[3] or ""))
        except (DecodeError, KeystoreCorrupt):
            event = None  # damaged: the outbox fails this job (it cannot be published)
    else:
        message = _seal_later_message(r[3])
    return OutboxEntry(
        id=r[0],
        message_id=r[1],
        recipient=r[2],
        kind=kind,
        event=event,
        message=message,
        relays=_load_strings(r[4]),
        accepted=_load_strings(r[5]),
        state=_enum(OutboxState, r[6]),
        attempts=r[7],
        next_attempt_at=r[8],
        last_error=r[9],
        created_at=r[10],
    )


def _seal_later_message(payload: str | None) -> dict[str, Any] | None:
    """The application message of a seal_later payload, or None if the payload is
    damaged or of a version this code does not know: like a damaged envelope, the
    outbox then fails the job (its message shows as failed) instead of stopping.

    Version 1 (the only one): ``{"pending": true, "message": {...}}``, with no ``v``;
    a later version adds ``"v": n`` and a branch here.
    """
    try:
        value = _load_json(payload or "")
    except KeystoreCorrupt:
        return None
    if not isinstance(value, dict) or value.get("v", 1) != 1 or value.get(_PENDING_KEY) is not True:
        return None
    message = value.get("message")
    return message if isinstance(message, dict) else None
