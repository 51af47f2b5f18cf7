"""Settings (key, value) and our own inbox relays, in order."""

# Every SQL text in this module is assembled from this package's constants (column lists,
# placeholders); values are always bound, never formatted in.

from __future__ import annotations

from xchat.errors import InvalidInput
from xchat.store.node.db import _GUARD, Database


class Settings(Database):
    """Settings and our relays (:class:`xchat.core.stores.SettingsStore`)."""

    def get_setting(self, key: str, default: str | None = None) -> str | None:
        with _GUARD:
            row = self._db().execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return default if row is None else str(row[0])

    def set_setting(self, key: str, value: str) -> None:
        with _GUARD:
            self._db().execute(
                "INSERT INTO settings (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def relays(self) -> list[str]:
        """Our relays in the order they were added."""
        with _GUARD:
            rows = self._db().execute("SELECT url FROM relays ORDER BY pos").fetchall()
        return [str(row[0]) for row in rows]

    def add_relay(self, url: str) -> None:
        """Add a relay at the end of the list; a relay already there keeps its place."""
        if not url:
            raise InvalidInput("a relay URL cannot be empty")
        with _GUARD:
            self._db().execute(
                "INSERT INTO relays (url) VALUES (?) ON CONFLICT (url) DO NOTHING", (url,)
            )

    def remove_relay(self, url: str) -> bool:
        """Remove a relay; False if it was not in the list."""
        with _GUARD:
            cursor = self._db().execute("DELETE FROM relays WHERE url = ?", (url,))
        return cursor.rowcount > 0
