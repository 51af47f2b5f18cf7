"""Messages: stored once, states moved forward only, paging, search, read marks."""

# Every SQL text in this module is assembled from this package's constants (column lists,
# placeholders); values are always bound, never formatted in.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from xchat.errors import InvalidInput
from xchat.model import (
    MESSAGE_MOVES,
    Message,
    MessageState,
)
from xchat.store.node.db import _GUARD, Database
from xchat.store.node.values import (
    _check_choice,
    _check_limit,
    _dump_reactions,
    _enum,
    _load_reactions,
)

MESSAGE_STATES: Final = ("queued", "sent", "delivered", "read", "failed")

#: Order of the forward-only states (failed is outside it).
STATE_RANK: Final = {"queued": 0, "sent": 1, "delivered": 2, "read": 3}

#: How incoming messages are stored: unread, or read by us.
_INCOMING_STATES: Final = ("received", "read")

#: For each state set_state moves to, the states it may move from: the transition
#: table of :mod:`xchat.model`, read backwards (outgoing messages only).
_MOVES_FROM: Final[dict[str, tuple[MessageState, ...]]] = {
    to: tuple(sorted(frm for frm, moves in MESSAGE_MOVES.items() if to in moves))
    for to in MessageState
    if to is not MessageState.RECEIVED
}

_MESSAGE_COLUMNS: Final = (
    "id, conversation, outgoing, sender, type, body, sent_at, received_at, state,"
    " forward_secret, reply_to, state_detail, edited_at, deleted, reactions"
)

_SELECT_MESSAGES: Final = f"SELECT {_MESSAGE_COLUMNS}, seq FROM messages"

_NEWEST_FIRST: Final = " ORDER BY sent_at DESC, seq DESC LIMIT ?"

_UNREAD: Final = "conversation = ? AND outgoing = 0 AND state = 'received'"


class Messages(Database):
    """Messages (:class:`xchat.core.stores.MessageStore`)."""

    def insert_message(self, message: Message) -> bool:
        """Store a message; False (and no change) if its id is already stored.

        Sets ``message.seq`` when stored. The state must be one of MESSAGE_STATES for an
        outgoing message, "received" or "read" for an incoming one.
        """
        allowed = MESSAGE_STATES if message.outgoing else _INCOMING_STATES
        _check_choice(message.state, allowed, "the state of this message")
        reactions = _dump_reactions(message.reactions)
        with _GUARD:
            cursor = self._db().execute(
                f"INSERT INTO messages ({_MESSAGE_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO NOTHING",
                (
                    message.id,
                    message.conversation,
                    int(message.outgoing),
                    message.sender,
                    message.type,
                    message.body,
                    message.sent_at,
                    message.received_at,
                    message.state,
                    int(message.forward_secret),
                    message.reply_to,
                    message.state_detail,
                    message.edited_at,
                    int(message.deleted),
                    reactions,
                ),
            )
            if cursor.rowcount != 1 or cursor.lastrowid is None:
                return False
            message.seq = int(cursor.lastrowid)
        return True

    def get_message(self, message_id: str) -> Message | None:
        with _GUARD:
            row = self._db().execute(f"{_SELECT_MESSAGES} WHERE id = ?", (message_id,)).fetchone()
            return None if row is None else _message(row)

    def update_message(self, message: Message) -> None:
        """Write back a row read with get_message (edits, deletions, reactions).

        Writes type, body, reply_to, forward_secret, edited_at, deleted and reactions.
        The state is left alone (set_state and mark_read move it, never backwards, even
        if this row was read before a receipt arrived), and so are the fields that
        identify the message (conversation, direction, sender, times, seq).
        InvalidInput if no message has that id.
        """
        reactions = _dump_reactions(message.reactions)
        with _GUARD:
            cursor = self._db().execute(
                "UPDATE messages SET type = ?, body = ?, reply_to = ?, forward_secret = ?,"
                " edited_at = ?, deleted = ?, reactions = ? WHERE id = ?",
                (
                    message.type,
                    message.body,
                    message.reply_to,
                    int(message.forward_secret),
                    message.edited_at,
                    int(message.deleted),
                    reactions,
                    message.id,
                ),
            )
        if cursor.rowcount == 0:
            raise InvalidInput("there is no stored message with that id")

    def set_state(self, message_id: str, state: str, detail: str = "") -> bool:
        """Move an outgoing message forward; False if that would move it backwards.

        Forward by STATE_RANK (queued, sent, delivered, read); "failed" only from queued
        or sent; from failed to queued (a retry) or any forward state. Setting the state
        a message already has, or a state of an incoming or unknown message, returns
        False and changes nothing.

        A non-empty ``detail`` replaces state_detail. An empty one keeps it (a delivery
        receipt leaves the list of relays that accepted the message), except when the
        message leaves "failed": the failure reason no longer applies and is cleared.
        """
        sources = _MOVES_FROM.get(state)
        if sources is None:
            raise InvalidInput(f"a message state is one of {', '.join(MESSAGE_STATES)}")
        marks = ", ".join("?" * len(sources))
        with _GUARD:
            cursor = self._db().execute(
                "UPDATE messages SET state = ?, state_detail = CASE WHEN ? <> '' THEN ?"
                " WHEN state = 'failed' THEN '' ELSE state_detail END"  # the old state
                f" WHERE id = ? AND outgoing = 1 AND state IN ({marks})",
                (state, detail, detail, message_id, *sources),
            )
        return cursor.rowcount > 0

    def messages(
        self, conversation: str, before: tuple[int, int] | None = None, limit: int = 50
    ) -> list[Message]:
        """Newest first, ordered by (sent_at, seq); ``before`` = (sent_at, seq) to page."""
        _check_limit(limit)
        with _GUARD:
            conn = self._db()
            if before is None:
                cursor = conn.execute(
                    f"{_SELECT_MESSAGES} WHERE conversation = ?{_NEWEST_FIRST}",
                    (conversation, limit),
                )
            else:
                sent_at, seq = before
                cursor = conn.execute(
                    f"{_SELECT_MESSAGES} WHERE conversation = ? AND (sent_at, seq) < (?, ?)"
                    f"{_NEWEST_FIRST}",
                    (conversation, int(sent_at), int(seq), limit),
                )
            return [_message(row) for row in cursor.fetchall()]

    def search(self, text: str, limit: int = 50) -> list[Message]:
        """Messages whose body contains ``text`` (case-insensitive), newest first.

        Deleted messages are left out. An ASCII ``text`` is matched with LIKE (its ``%``,
        ``_`` and ``\\`` escaped), which folds ASCII letters only; any other text is
        compared case-folded (Unicode) by a function of ours.
        """
        _check_limit(limit)
        if text.isascii():
            where = "body LIKE ? ESCAPE '\\'"
            escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            needle = f"%{escaped}%"
        else:
            where = "xchat_contains(body, ?)"
            needle = text.casefold()
        with _GUARD:
            rows = (
                self._db()
                .execute(
                    f"{_SELECT_MESSAGES} WHERE deleted = 0 AND {where}{_NEWEST_FIRST}",
                    (needle, limit),
                )
                .fetchall()
            )
            return [_message(row) for row in rows]

    def mark_read(self, conversation: str, up_to_sent_at: int | None = None) -> list[str]:
        """Mark incoming messages read; return the ids that were unread.

        Only messages still "received" (with sent_at <= ``up_to_sent_at`` if given), in
        the order (sent_at, seq).
        """
        where, params = _UNREAD, list[object]([conversation])
        if up_to_sent_at is not None:
            where += " AND sent_at <= ?"
            params.append(int(up_to_sent_at))
        with self.transaction(), _GUARD:
            conn = self._db()
            rows = conn.execute(
                f"SELECT id FROM messages INDEXED BY messages_unread WHERE {where}"
                " ORDER BY sent_at, seq",
                params,
            ).fetchall()
            if rows:
                conn.execute(
                    f"UPDATE messages INDEXED BY messages_unread SET state = 'read' WHERE {where}",
                    params,
                )
        return [str(row[0]) for row in rows]

    def set_detail(self, message_id: str, detail: str) -> bool:
        """Replace an outgoing message's state detail without touching its state."""
        with _GUARD:
            cursor = self._db().execute(
                "UPDATE messages SET state_detail = ? WHERE id = ? AND outgoing = 1",
                (detail, message_id),
            )
        return cursor.rowcount > 0


def _message(r: Sequence[Any]) -> Message:
    return Message(
        id=r[0],
        conversation=r[1],
        outgoing=bool(r[2]),
        sender=r[3],
        type=r[4],
        body=r[5],
        sent_at=r[6],
        received_at=r[7],
        state=_enum(MessageState, r[8]),
        forward_secret=bool(r[9]),
        reply_to=r[10],
        state_detail=r[11],
        edited_at=r[12],
        deleted=bool(r[13]),
        reactions=_load_reactions(r[14]),
        seq=r[15],
    )
