"""Conversations with ids, their members, and the conversation list."""

# Every SQL text in this module is assembled from this package's constants (column lists,
# placeholders); values are always bound, never formatted in.
# ruff: noqa: S608

from __future__ import annotations

from typing import Final

from xchat.model import (
    ContactState,
    Conversation,
    ConversationKind,
    ConversationSummary,
)
from xchat.store.node.db import _GUARD, Database
from xchat.store.node.messages import _MESSAGE_COLUMNS, _message
from xchat.store.node.values import (
    _check_choice,
    _enum,
)

# One row per conversation, blocked contacts left out. The unread count walks the
# partial index.
_CONVERSATIONS: Final = f"""
SELECT v.id, v.kind, v.peer, v.created_at, k.name, k.state, k.nip17_only,
    (SELECT group_concat(b.pubkey, ' ') FROM members b WHERE b.conversation = v.id),
    (SELECT count(*) FROM messages u
        WHERE u.conversation = v.id AND u.outgoing = 0 AND u.state = 'received'),
    {", ".join(f"m.{column.strip()}" for column in _MESSAGE_COLUMNS.split(","))}, m.seq,
    k.created_at
FROM conversations v
LEFT JOIN contacts k ON k.pubkey = v.peer
LEFT JOIN messages m ON m.seq = (
    SELECT l.seq FROM messages l WHERE l.conversation = v.id
    ORDER BY l.sent_at DESC, l.seq DESC LIMIT 1)
WHERE k.state IS NULL OR k.state <> 'blocked'
"""


class Conversations(Database):
    """Conversations (:class:`xchat.core.stores.ConversationStore`)."""

    def add_conversation(self, conversation: Conversation) -> None:
        """Store a new conversation and its members; InvalidInput if its id (or, for a
        direct one, its peer) is taken."""
        _check_choice(conversation.kind, tuple(ConversationKind), "a conversation's kind")
        self._conversations.clear()
        with self.transaction(), _GUARD:
            conn = self._db()
            conn.execute(
                "INSERT INTO conversations (id, kind, peer, created_at) VALUES (?, ?, ?, ?)",
                (conversation.id, conversation.kind, conversation.peer, conversation.created_at),
            )
            conn.executemany(
                "INSERT INTO members (conversation, pubkey) VALUES (?, ?)",
                [(conversation.id, member) for member in conversation.members],
            )

    def get_conversation(self, conversation_id: str) -> Conversation | None:
        return self._conversation("id", conversation_id)

    def direct_conversation(self, peer: str) -> Conversation | None:
        """The direct conversation with ``peer``, if there is one."""
        return self._conversation("peer", peer)

    def _conversation(self, column: str, value: str) -> Conversation | None:
        cached: Conversation | None = self._conversations.get((column, value))
        if cached is not None:
            return cached
        with _GUARD:
            conn = self._db()
            row = conn.execute(
                f"SELECT id, kind, peer, created_at FROM conversations WHERE {column} = ?",
                (value,),
            ).fetchone()
            if row is None:
                return None
            members = conn.execute(
                "SELECT pubkey FROM members WHERE conversation = ? ORDER BY pubkey", (row[0],)
            ).fetchall()
        found = Conversation(
            id=row[0],
            kind=_enum(ConversationKind, row[1]),
            peer=row[2],
            members=tuple(str(m[0]) for m in members),
            created_at=row[3],
        )
        if not conn.in_transaction:  # committed: a rollback cannot take it back
            self._conversations[(column, value)] = found
        return found

    def conversations(self) -> list[ConversationSummary]:
        """Every conversation, by activity, blocked contacts' left out.

        ``last_activity`` is the latest of the last message's sent_at, the
        conversation's creation and (direct) the contact's created_at (in ms), so a
        request just accepted comes up as before conversations had ids; newest first,
        ties by id. Unread counts
        incoming messages still "received". A direct conversation without a contact row
        reports the state "request".
        """
        with _GUARD:
            rows = self._db().execute(_CONVERSATIONS).fetchall()
            out = []
            for row in rows:
                last = None if row[9] is None else _message(row[9:])
                created_ms = max(int(row[3]), int(row[-1] or 0)) * 1000
                out.append(
                    ConversationSummary(
                        conversation=Conversation(
                            id=row[0],
                            kind=_enum(ConversationKind, row[1]),
                            peer=row[2],
                            members=tuple(sorted((row[7] or "").split())),
                            created_at=row[3],
                        ),
                        name=row[4],
                        state=ContactState.REQUEST
                        if row[5] is None
                        else _enum(ContactState, row[5]),
                        last_activity=max(created_ms, last.sent_at if last else 0),
                        last_message=last,
                        unread=int(row[8]),
                        forward_secret=not row[6],
                    )
                )
        out.sort(key=lambda c: (-c.last_activity, c.conversation.id))
        return out
