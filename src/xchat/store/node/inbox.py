"""What arrived: event ids already processed, envelopes held back for their chain
order, the progress of each chain, and sessions that predate chain tracking."""

# Every SQL text in this module is assembled from this package's constants (column lists,
# placeholders); values are always bound, never formatted in.

from __future__ import annotations

from collections.abc import Sequence

from xchat.store.node.db import _GUARD, Database


class Inbox(Database):
    """Seen, held, chains, untracked (:class:`xchat.core.stores.InboxStore`)."""

    def seen(self, event_id: str) -> bool:
        with _GUARD:
            row = (
                self._db().execute("SELECT 1 FROM seen WHERE event_id = ?", (event_id,)).fetchone()
            )
        return row is not None

    def mark_seen(self, event_id: str, at: int) -> None:
        """Remember an event id; marking it again keeps the first time."""
        with _GUARD:
            self._db().execute(
                "INSERT INTO seen (event_id, at) VALUES (?, ?) ON CONFLICT (event_id) DO NOTHING",
                (event_id, at),
            )

    def forget_seen(self, older_than: int) -> int:
        """Forget the ids marked before ``older_than``; return how many were forgotten."""
        with _GUARD:
            cursor = self._db().execute("DELETE FROM seen WHERE at < ?", (older_than,))
        return cursor.rowcount

    def hold(self, event_id: str, event: str, size: int, held_at: int) -> None:
        """Keep an envelope not opened yet; holding it again keeps the first time."""
        with _GUARD:
            self._db().execute(
                "INSERT INTO held (event_id, event, size, held_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (event_id) DO NOTHING",
                (event_id, event, int(size), int(held_at)),
            )

    def release(self, event_ids: Sequence[str]) -> None:
        """Forget held envelopes (opened, given up, or dropped)."""
        with _GUARD:
            self._db().executemany("DELETE FROM held WHERE event_id = ?", [(i,) for i in event_ids])

    def held(self) -> list[tuple[str, str, int]]:
        """Every held envelope: its id, JSON and the time it was first held, oldest
        first."""
        with _GUARD:
            rows = (
                self._db()
                .execute("SELECT event_id, event, held_at FROM held ORDER BY held_at, event_id")
                .fetchall()
            )
        return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]

    def save_chain(self, ratchet: bytes, state: str, at: int) -> None:
        with _GUARD:
            self._db().execute(
                "INSERT INTO chains (ratchet, state, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (ratchet) DO UPDATE SET state = excluded.state,"
                " updated_at = excluded.updated_at",
                (bytes(ratchet), state, int(at)),
            )

    def chains(self, limit: int = 4096) -> list[tuple[bytes, str]]:
        """The most recently updated chains' states (at most ``limit``), oldest first."""
        with _GUARD:
            rows = (
                self._db()
                .execute(
                    "SELECT ratchet, state FROM chains ORDER BY updated_at DESC LIMIT ?",
                    (int(limit),),
                )
                .fetchall()
            )
        return [(bytes(r[0]), str(r[1])) for r in reversed(rows)]

    def untracked(self) -> list[str]:
        """Sessions whose chain progress was never kept (they predate it)."""
        with _GUARD:
            rows = self._db().execute("SELECT session_id FROM untracked").fetchall()
        return [str(r[0]) for r in rows]

    def set_tracked(self, session_ids: Sequence[str]) -> None:
        with _GUARD:
            self._db().executemany(
                "DELETE FROM untracked WHERE session_id = ?", [(i,) for i in session_ids]
            )

    def forget_chains(self, older_than: int) -> int:
        with _GUARD:
            cursor = self._db().execute("DELETE FROM chains WHERE updated_at < ?", (older_than,))
        return cursor.rowcount
