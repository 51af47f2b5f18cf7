"""The relay's event storage: one interface, a SQLite and a PostgreSQL implementation.

The relay calls :meth:`EventStore.save_batch` with events it has already validated and
verified; when the call returns, every outcome marked ``stored`` is durable (committed
with the database's synchronous commit), so the relay may answer ``OK true``. Semantics
follow NIP-01 (regular, replaceable and addressable kinds; ephemeral kinds are never
stored), NIP-09 (deletion requests), NIP-40 (expiration) and NIP-59 (the recipient of a
gift wrap may delete it). Queries return events newest first, ties broken by the lowest
id, and never return expired or deleted events.

Spec: NIP-01, NIP-09, NIP-40, NIP-59.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from xchat.wire.event import Event
from xchat.wire.filter import Filter
from xchat.wire.kinds import KIND_DELETION, KIND_GIFT_WRAP

__all__ = [
    "KIND_DELETION",
    "KIND_GIFT_WRAP",
    "EventStore",
    "Key",
    "SaveOutcome",
    "SaveStatus",
    "StoredEvent",
    "d_tag",
    "expiration_of",
    "is_addressable",
    "is_ephemeral",
    "is_replaceable",
]


#: Where an event sits in query order: ``(created_at, id)``; newest first, then lowest id.
Key = tuple[int, str]


def is_replaceable(kind: int) -> bool:
    """NIP-01: kinds 0, 3 and 10000-19999 keep only the newest event per author and kind."""
    return kind in (0, 3) or 10000 <= kind < 20000


def is_ephemeral(kind: int) -> bool:
    """NIP-01: kinds 20000-29999 are relayed to subscribers and never stored."""
    return 20000 <= kind < 30000


def is_addressable(kind: int) -> bool:
    """NIP-01: kinds 30000-39999 keep only the newest per author, kind and ``d`` tag."""
    return 30000 <= kind < 40000


def d_tag(event: Event) -> str:
    """The ``d`` tag value of an addressable event ("" if absent)."""
    value = event.first_tag("d")
    return value if value is not None else ""


def expiration_of(event: Event) -> int | None:
    """NIP-40: the ``expiration`` tag as a timestamp, or None (also if not a number)."""
    value = event.first_tag("expiration")
    if value is None or not value.isdecimal() or len(value) > 15:
        return None
    return int(value)


class SaveStatus(enum.Enum):
    STORED = "stored"  # new and durable; fan it out
    DUPLICATE = "duplicate"  # already stored: OK true "duplicate: ..."
    DELETED = "deleted"  # a deletion request removed it earlier: OK false "blocked: ..."
    REPLACED = "replaced"  # an older replaceable/addressable event was superseded: stored
    OBSOLETE = "obsolete"  # a newer replaceable/addressable version is stored: OK true


@dataclass(frozen=True, slots=True)
class SaveOutcome:
    status: SaveStatus

    @property
    def accepted(self) -> bool:
        return self.status is not SaveStatus.DELETED

    @property
    def is_new(self) -> bool:
        """True if subscribers should get the event now."""
        return self.status in (SaveStatus.STORED, SaveStatus.REPLACED)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as stored: the parsed event and the exact JSON text it was received as."""

    event: Event
    json: str


class EventStore(Protocol):
    """Durable event storage for the relay. Implementations: SQLite and PostgreSQL."""

    async def open(self) -> None:
        """Connect, and create or migrate the schema to the current version."""

    async def close(self) -> None:
        """Finish pending work and close; no call is made afterwards."""

    async def save_batch(self, events: Sequence[StoredEvent], now: int) -> list[SaveOutcome]:
        """Store events in one transaction, durable on return, one outcome per event.

        Kind 5 events apply NIP-09 in the same transaction: events named by ``e`` tags
        (and ``a`` coordinates ``kind:pubkey:d``) of the same author are deleted and
        remembered so they are refused if sent again; a gift wrap (kind 1059) whose
        ``p`` tag is the deletion's author may be deleted too (NIP-59). Ephemeral kinds
        must not be passed. Events in the batch are processed in order.
        """
        ...

    async def query(self, filters: Sequence[Filter], now: int, max_limit: int) -> list[StoredEvent]:
        """Events matching any filter, newest first (ties: lowest id first), no duplicates.

        Each filter returns at most ``min(filter.limit, max_limit)`` events (``max_limit``
        when it has no limit); expired events (NIP-40, expiration <= now) are left out.
        """
        ...

    async def query_keys(
        self,
        f: Filter,
        now: int,
        *,
        after: Key | None,
        limit: int,
        recipients: frozenset[str] | None = None,
    ) -> list[Key]:
        """One page of the keys of the unexpired events matching ``f``, in query order.

        At most ``limit`` keys, all strictly after ``after`` (a keyset cursor: the last
        key of the previous page, or None for the first). ``f.limit`` is ignored: the
        caller counts. With ``recipients`` (a set of hex keys), a gift wrap matches only
        if one of its ``p`` tags names one of them (NIP-59: served only to its recipient).
        """
        ...

    async def load(self, ids: Sequence[str], now: int, max_bytes: int) -> tuple[int, list[str]]:
        """The stored JSON of the events ``ids``, in that order, up to about ``max_bytes``.

        Returns ``(consumed, texts)``: the first ``consumed`` ids were dealt with (loaded,
        or left out as deleted or expired since their key was read); loading stops after
        the event that brings the total past ``max_bytes``, so at least one id is
        consumed when ``ids`` is not empty and the texts exceed ``max_bytes`` by less
        than one event.
        """
        ...

    async def count(
        self, filters: Sequence[Filter], now: int, recipients: frozenset[str] | None = None
    ) -> int:
        """NIP-45: the number of distinct unexpired events matching any filter.

        ``recipients`` restricts gift wraps as in :meth:`query_keys`.
        """
        ...

    async def purge(self, now: int, gift_wrap_max_age: int) -> int:
        """Delete expired events and gift wraps received more than ``gift_wrap_max_age``
        seconds ago; return how many were deleted."""
        ...

    async def schema_version(self) -> int:
        """The schema version of the open database."""
        ...
