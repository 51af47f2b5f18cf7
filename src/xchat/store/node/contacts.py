"""Contacts: the people we talk to, message requests, blocked people."""

# Every SQL text in this module is assembled from this package's constants (column lists,
# placeholders); values are always bound, never formatted in.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from xchat.model import (
    Contact,
    ContactState,
)
from xchat.store.node.db import _GUARD, Database
from xchat.store.node.values import (
    _check_choice,
    _dump_strings,
    _enum,
    _load_strings,
)

#: Contact states: a person we talk to, a stranger's first messages, or blocked.
CONTACT_STATES: Final = ("accepted", "request", "blocked")

_CONTACT_COLUMNS: Final = (
    "pubkey, name, state, relays, created_at, nip17_only, verified, bundle_checked_at"
)

#: A contact with the id of its direct conversation ("" if none yet).
_SELECT_CONTACTS: Final = (
    "SELECT "
    + ", ".join(f"k.{column.strip()}" for column in _CONTACT_COLUMNS.split(","))
    + ", coalesce(c.id, '') FROM contacts k LEFT JOIN conversations c ON c.peer = k.pubkey"
)


class Contacts(Database):
    """Contacts (:class:`xchat.core.stores.ContactStore`, with devices in :mod:`.sessions`)."""

    def upsert_contact(self, contact: Contact) -> None:
        """Store a contact, replacing every field of a stored one with the same pubkey."""
        _check_choice(contact.state, CONTACT_STATES, "a contact's state")
        relays = _dump_strings(contact.relays, "a contact's relays")
        with _GUARD:
            self._db().execute(
                f"INSERT INTO contacts ({_CONTACT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (pubkey) DO UPDATE SET name = excluded.name,"
                " state = excluded.state, relays = excluded.relays,"
                " created_at = excluded.created_at, nip17_only = excluded.nip17_only,"
                " verified = excluded.verified, bundle_checked_at = excluded.bundle_checked_at",
                (
                    contact.pubkey,
                    contact.name,
                    contact.state,
                    relays,
                    contact.created_at,
                    int(contact.nip17_only),
                    contact.verified,
                    contact.bundle_checked_at,
                ),
            )

    def get_contact(self, pubkey: str) -> Contact | None:
        with _GUARD:
            row = self._db().execute(f"{_SELECT_CONTACTS} WHERE k.pubkey = ?", (pubkey,)).fetchone()
            return None if row is None else _contact(row)

    def contacts(self, states: Sequence[str] = CONTACT_STATES) -> list[Contact]:
        """The contacts in these states, oldest first (by created_at, then pubkey)."""
        for state in states:
            _check_choice(state, CONTACT_STATES, "a contact's state")
        if not states:
            return []
        marks = ", ".join("?" * len(states))
        with _GUARD:
            rows = (
                self._db()
                .execute(
                    f"{_SELECT_CONTACTS} WHERE k.state IN ({marks})"
                    " ORDER BY k.created_at, k.pubkey",
                    tuple(states),
                )
                .fetchall()
            )
            return [_contact(row) for row in rows]


def _contact(r: Sequence[Any]) -> Contact:
    return Contact(
        pubkey=r[0],
        name=r[1],
        state=_enum(ContactState, r[2]),
        relays=_load_strings(r[3]),
        created_at=r[4],
        nip17_only=bool(r[5]),
        verified=r[6],
        bundle_checked_at=r[7],
        conversation=r[8] if len(r) > 8 else "",
    )
