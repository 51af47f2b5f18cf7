"""The relay's event stores: one suite, run against SQLite and against a real PostgreSQL.

Covers NIP-01 storage (regular, replaceable, addressable, duplicates), NIP-09 deletion
(and NIP-59 gift wraps deleted by their recipient), NIP-40 expiration, gift wrap
retention, queries and COUNT against every filter field, durability (SIGKILL for SQLite),
migrations, the released v1 SQLite file, concurrency, and hypothesis tests comparing
queries, replacement and deletion with small in-memory models.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.store.conftest import Backend
from xchat.core.events import verify_event
from xchat.errors import LocalProtocolError
from xchat.relay.config import RelayLimits
from xchat.relay.query import stored_results
from xchat.store.events import EventStore, SaveStatus, StoredEvent, expiration_of
from xchat.store.migrations import SCHEMA_VERSION
from xchat.store.sqlite import SqliteEventStore
from xchat.wire.event import Event, compute_id
from xchat.wire.filter import Filter, parse_filter

STORED = SaveStatus.STORED
DUPLICATE = SaveStatus.DUPLICATE
DELETED = SaveStatus.DELETED
REPLACED = SaveStatus.REPLACED
OBSOLETE = SaveStatus.OBSOLETE

NOW = 1_700_000_000
DAY = 86_400
ALICE = "a1" * 32
BOB = "b0" * 32
CAROL = "c3" * 32
SIG = "00" * 64  # stores do not check signatures: the relay has, before saving
REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "relay-v1.sqlite3"

_counter = iter(range(10**9))


def make(
    author: str = ALICE,
    kind: int = 1,
    created_at: int = NOW,
    tags: Iterable[Iterable[str]] = (),
    content: str | None = None,
) -> StoredEvent:
    """An event with a real id (a fresh content unless given) and its compact JSON."""
    tag_list = [list(t) for t in tags]
    text = f"note {next(_counter)}" if content is None else content
    event_id = compute_id(author, created_at, kind, tag_list, text).hex()
    event = Event(event_id, author, created_at, kind, tag_list, text, SIG)
    return StoredEvent(event, event.to_json().decode())


class Db:
    """An open store with synchronous helpers for the tests."""

    def __init__(self, backend: Backend, store: EventStore | None = None) -> None:
        self.backend = backend
        self.store = store if store is not None else backend.open_store()

    def save(self, *events: StoredEvent, now: int = NOW) -> list[SaveStatus]:
        return [o.status for o in self.backend.run(self.store.save_batch(events, now))]

    def found(
        self, *filters: dict[str, Any] | Filter, now: int = NOW, max_limit: int = 500
    ) -> list[StoredEvent]:
        parsed = [f if isinstance(f, Filter) else parse_filter(f) for f in filters]
        return self.backend.run(self.store.query(parsed, now, max_limit))

    def ids(
        self, *filters: dict[str, Any] | Filter, now: int = NOW, max_limit: int = 500
    ) -> list[str]:
        return [s.event.id for s in self.found(*filters, now=now, max_limit=max_limit)]

    def count(self, *filters: dict[str, Any] | Filter, now: int = NOW) -> int:
        parsed = [f if isinstance(f, Filter) else parse_filter(f) for f in filters]
        return self.backend.run(self.store.count(parsed, now))

    def purge(self, now: int, max_age: int) -> int:
        return self.backend.run(self.store.purge(now, max_age))


@pytest.fixture
def db(backend: Backend) -> Db:
    return Db(backend)


def newest_first(*events: StoredEvent) -> list[str]:
    return [e.event.id for e in sorted(events, key=lambda s: (-s.event.created_at, s.event.id))]


def ordered_pair(**fields: Any) -> tuple[StoredEvent, StoredEvent]:
    """Two events alike but for their content, the one with the lower id first."""
    a, b = make(**fields), make(**fields)
    return (a, b) if a.event.id < b.event.id else (b, a)


# --- storing ------------------------------------------------------------------------------


def test_fresh_store_has_the_current_schema(db: Db) -> None:
    assert db.backend.run(db.store.schema_version()) == SCHEMA_VERSION == 1


def test_queries_return_the_exact_json_received(db: Db) -> None:
    event = make(tags=[["t", "nostr"]], content='héllo \u2603 "quoted" \\ \x00 end').event
    text = json.dumps(event.to_dict(), indent=1, ensure_ascii=True)  # not how we'd write it
    assert db.save(StoredEvent(event, text)) == [STORED]
    [found] = db.found({"ids": [event.id]})
    assert found.json == text
    assert found.event == event


def test_outcomes_come_in_order_and_duplicates_are_reported(db: Db) -> None:
    a, b = make(), make()
    assert db.save(a, b, a) == [STORED, STORED, DUPLICATE]
    assert db.save(b, make()) == [DUPLICATE, STORED]
    assert db.save() == []
    assert db.count({}) == 3


def test_ephemeral_events_are_refused(db: Db) -> None:
    with pytest.raises(LocalProtocolError, match="ephemeral"):
        db.save(make(), make(kind=20001))
    assert db.count({}) == 0


def test_regular_events_from_one_author_all_stay(db: Db) -> None:
    events = [make(created_at=NOW - i) for i in range(5)]
    assert db.save(*events) == [STORED] * 5
    assert db.ids({"authors": [ALICE]}) == newest_first(*events)


# --- replaceable and addressable ----------------------------------------------------------


@pytest.mark.parametrize("kind", [0, 3, 10002, 19999])
def test_a_newer_replaceable_event_replaces_the_older(db: Db, kind: int) -> None:
    old, new = make(kind=kind, created_at=NOW - 10), make(kind=kind, created_at=NOW)
    assert db.save(old) == [STORED]
    assert db.save(new) == [REPLACED]
    assert db.ids({"kinds": [kind]}) == [new.event.id]
    assert db.save(old) == [OBSOLETE]  # superseded, not a duplicate
    assert db.ids({"kinds": [kind]}) == [new.event.id]


def test_an_older_replaceable_event_arriving_later_is_obsolete(db: Db) -> None:
    new, old = make(kind=0, created_at=NOW), make(kind=0, created_at=NOW - 1)
    assert db.save(new) == [STORED]
    assert db.save(old) == [OBSOLETE]
    assert db.ids({"kinds": [0]}) == [new.event.id]
    assert db.count({"ids": [old.event.id]}) == 0


@pytest.mark.parametrize("lower_first", [True, False])
def test_replaceable_ties_keep_the_lowest_id(db: Db, lower_first: bool) -> None:
    low, high = ordered_pair(kind=10000, created_at=NOW)
    if lower_first:
        assert db.save(low, high) == [STORED, OBSOLETE]
    else:
        assert db.save(high) == [STORED]
        assert db.save(low) == [REPLACED]
    assert db.ids({"kinds": [10000]}) == [low.event.id]


def test_replaceable_events_are_per_author_and_kind(db: Db) -> None:
    events = [make(author=a, kind=k) for a in (ALICE, BOB) for k in (0, 3)]
    assert db.save(*events) == [STORED] * 4
    newer = make(author=BOB, kind=3, created_at=NOW + 1)
    assert db.save(newer) == [REPLACED]
    assert set(db.ids({})) == {e.event.id for e in events[:3]} | {newer.event.id}


def test_replacement_within_one_batch(db: Db) -> None:
    v1, v2, v3 = (make(kind=0, created_at=NOW + i) for i in range(3))
    # v2 replaces v1 before either is written; v1 again is now obsolete; v3 replaces v2.
    assert db.save(v1, v2, v1, v3, v2) == [STORED, REPLACED, OBSOLETE, REPLACED, OBSOLETE]
    assert db.ids({"authors": [ALICE]}) == [v3.event.id]
    assert db.save(v3, v1) == [DUPLICATE, OBSOLETE]
    v4 = make(kind=0, created_at=NOW + 5)  # replaces the stored v3, which then comes again
    assert db.save(v4, v3) == [REPLACED, OBSOLETE]
    assert db.ids({"authors": [ALICE]}) == [v4.event.id]


def test_addressable_events_are_per_d_tag(db: Db) -> None:
    a1 = make(kind=30023, created_at=NOW - 5, tags=[["d", "a"]])
    b1 = make(kind=30023, created_at=NOW - 5, tags=[["d", "b"]])
    empty = make(kind=30023, created_at=NOW - 5)  # no d tag: the address ""
    assert db.save(a1, b1, empty) == [STORED, STORED, STORED]
    a2 = make(kind=30023, created_at=NOW, tags=[["d", "a"], ["d", "ignored"]])
    explicit_empty = make(kind=30023, created_at=NOW, tags=[["d", ""]])
    other_kind = make(kind=30024, created_at=NOW - 9, tags=[["d", "a"]])
    other_author = make(author=BOB, kind=30023, created_at=NOW - 9, tags=[["d", "a"]])
    assert db.save(a2, explicit_empty, other_kind, other_author) == [
        REPLACED,
        REPLACED,
        STORED,
        STORED,
    ]
    assert set(db.ids({"kinds": [30023], "authors": [ALICE]})) == {
        a2.event.id,
        b1.event.id,
        explicit_empty.event.id,
    }
    assert db.save(make(kind=30023, created_at=NOW - 1, tags=[["d", "a"]])) == [OBSOLETE]
    assert db.ids({"#d": ["a"]}) == newest_first(a2, other_kind, other_author)


def test_addressable_ties_and_long_d_tags(db: Db) -> None:
    d = "x" * 3000  # longer than a PostgreSQL btree entry may be
    low, high = ordered_pair(kind=30000, created_at=NOW, tags=[["d", d]])
    assert db.save(high, low) == [STORED, REPLACED]
    assert db.ids({"kinds": [30000]}) == [low.event.id]
    assert db.ids(Filter(tags={"d": frozenset([d])})) == [low.event.id]
    assert db.save(make(kind=30000, created_at=NOW, tags=[["d", d + "y"]])) == [STORED]


# --- NIP-09 deletion ----------------------------------------------------------------------


def deletion(author: str, *tags: tuple[str, str], created_at: int = NOW + 10) -> StoredEvent:
    return make(author=author, kind=5, created_at=created_at, tags=tags)


def test_deletion_removes_the_authors_events_and_remembers_them(db: Db) -> None:
    note, kept = make(), make()
    assert db.save(note, kept) == [STORED, STORED]
    request = deletion(ALICE, ("e", note.event.id), ("k", "1"))
    assert db.save(request) == [STORED]
    assert db.ids({"kinds": [1]}) == [kept.event.id]
    assert db.ids({"kinds": [5]}) == [request.event.id]  # the request itself is kept
    assert db.save(note) == [DELETED]
    assert db.count({"ids": [note.event.id]}) == 0
    assert db.save(request) == [DUPLICATE]


def test_deleting_someone_elses_event_does_nothing(db: Db) -> None:
    note = make(author=ALICE)
    assert db.save(note) == [STORED]
    assert db.save(deletion(BOB, ("e", note.event.id))) == [STORED]
    assert db.ids({"ids": [note.event.id]}) == [note.event.id]
    fresh = make(author=ALICE)  # a tombstone by Bob does not block Alice's event
    assert db.save(deletion(BOB, ("e", fresh.event.id)), fresh) == [STORED, STORED]
    assert db.count({"authors": [ALICE]}) == 2


def test_a_deletion_arriving_before_its_event_blocks_it(db: Db) -> None:
    note = make()
    assert db.save(deletion(ALICE, ("e", note.event.id))) == [STORED]
    assert db.save(note) == [DELETED]
    assert db.ids({"kinds": [1]}) == []


def test_deletions_apply_in_batch_order(db: Db) -> None:
    a, b, c = make(), make(), make()
    request = deletion(ALICE, ("e", a.event.id), ("e", b.event.id))
    assert db.save(a, request, b, c) == [STORED, STORED, DELETED, STORED]
    assert db.ids({"kinds": [1]}) == [c.event.id]


def test_a_deletion_request_cannot_be_deleted(db: Db) -> None:
    first = deletion(ALICE, ("e", "ee" * 32))
    second = deletion(ALICE, ("e", first.event.id))
    assert db.save(first, second) == [STORED, STORED]
    assert set(db.ids({"kinds": [5]})) == {first.event.id, second.event.id}


def test_deletion_by_address_removes_versions_up_to_its_time(db: Db) -> None:
    post = make(kind=30023, created_at=NOW, tags=[["d", "post"]])
    other = make(kind=30023, created_at=NOW, tags=[["d", "other"]])
    bobs = make(author=BOB, kind=30023, created_at=NOW, tags=[["d", "post"]])
    assert db.save(post, other, bobs) == [STORED] * 3
    coordinate = f"30023:{ALICE}:post"
    request = deletion(ALICE, ("a", coordinate), created_at=NOW + 10)
    assert db.save(request) == [STORED]
    assert set(db.ids({"kinds": [30023]})) == {other.event.id, bobs.event.id}
    # Versions up to the request's time are refused; a later one is a new post.
    before = make(kind=30023, created_at=NOW + 10, tags=[["d", "post"]])
    after = make(kind=30023, created_at=NOW + 11, tags=[["d", "post"]])
    assert db.save(before, after) == [DELETED, STORED]
    assert db.ids({"#d": ["post"], "authors": [ALICE]}) == [after.event.id]


def test_deletion_by_address_spares_newer_versions_and_other_authors(db: Db) -> None:
    newer = make(kind=30001, created_at=NOW + 20, tags=[["d", "list"]])
    bobs = make(author=BOB, kind=30001, created_at=NOW, tags=[["d", "list"]])
    assert db.save(newer, bobs) == [STORED, STORED]
    by_alice = deletion(ALICE, ("a", f"30001:{ALICE}:list"), created_at=NOW + 10)
    naming_bob = deletion(ALICE, ("a", f"30001:{BOB}:list"))
    malformed = deletion(ALICE, ("a", "30001"), ("a", f"x:{ALICE}:list"), ("a", f"1:{ALICE}:"))
    assert db.save(by_alice, naming_bob, malformed) == [STORED] * 3
    assert set(db.ids({"kinds": [30001]})) == {newer.event.id, bobs.event.id}
    assert db.save(make(author=BOB, kind=30001, created_at=NOW + 1, tags=[["d", "list"]])) == [
        REPLACED
    ]


def test_deletion_by_address_of_a_replaceable_event(db: Db) -> None:
    profile = make(kind=0, created_at=NOW)
    assert db.save(profile) == [STORED]
    assert db.save(deletion(ALICE, ("a", f"0:{ALICE}:"))) == [STORED]
    assert db.ids({"kinds": [0]}) == []
    assert db.save(profile) == [DELETED]
    assert db.save(make(kind=0, created_at=NOW + 100)) == [STORED]


def test_a_gift_wrap_may_be_deleted_by_its_recipient(db: Db) -> None:
    wrapper = "77" * 32  # gift wraps are signed by one-time keys
    to_bob = make(author=wrapper, kind=1059, tags=[["p", BOB]])
    to_carol = make(author=wrapper, kind=1059, tags=[["p", CAROL]])
    note_to_bob = make(author=wrapper, kind=1, tags=[["p", BOB]])  # not a gift wrap
    assert db.save(to_bob, to_carol, note_to_bob) == [STORED] * 3
    request = deletion(
        BOB, ("e", to_bob.event.id), ("e", to_carol.event.id), ("e", note_to_bob.event.id)
    )
    assert db.save(request) == [STORED]
    assert set(db.ids({"authors": [wrapper]})) == {to_carol.event.id, note_to_bob.event.id}
    assert db.save(to_bob) == [DELETED]
    # A wrap deleted by its recipient before it arrived is refused too.
    late = make(author="78" * 32, kind=1059, tags=[["p", BOB]])
    assert db.save(deletion(BOB, ("e", late.event.id)), late) == [STORED, DELETED]


# --- queries ------------------------------------------------------------------------------


def test_queries_are_newest_first_with_ties_by_lowest_id(db: Db) -> None:
    events = [make(created_at=NOW - (i % 3)) for i in range(12)]
    assert db.save(*events) == [STORED] * 12
    expected = newest_first(*events)
    assert db.ids({}) == expected
    assert db.ids({"limit": 5}) == expected[:5]
    assert db.ids({"limit": 50}, max_limit=4) == expected[:4]
    assert db.ids({}, max_limit=7) == expected[:7]
    assert db.ids({"limit": 0}) == []
    assert db.ids({"#t": ["x"], "limit": 0}) == []


def test_several_filters_are_merged_sorted_and_without_duplicates(db: Db) -> None:
    a = [make(author=ALICE, created_at=NOW - i, tags=[["t", "both"]]) for i in range(4)]
    b = [make(author=BOB, created_at=NOW - i, tags=[["t", "both"]]) for i in range(4)]
    db.save(*a, *b)
    got = db.ids({"authors": [ALICE], "limit": 2}, {"#t": ["both"], "limit": 3})
    chosen = {a[0].event.id, a[1].event.id, *newest_first(*a, *b)[:3]}
    assert got == [i for i in newest_first(*a, *b) if i in chosen]
    everything = db.ids({"authors": [ALICE]}, {"authors": [BOB]}, {"kinds": [1]})
    assert everything == newest_first(*a, *b)
    assert db.ids({"ids": []}, {"authors": [BOB], "limit": 1}) == newest_first(b[0])


def test_every_filter_field(db: Db) -> None:
    target = "e1" * 32
    e1 = make(ALICE, 1, NOW - 30, [["e", target], ["t", "nostr"], ["p", BOB]])
    e2 = make(ALICE, 7, NOW - 20, [["e", target], ["t", "Nostr"], ["t", "x"]])
    e3 = make(BOB, 1, NOW - 10, [["p", ALICE], ["t", "x"], ["title", "not indexed"]])
    e4 = make(CAROL, 30023, NOW, [["d", "slug"], ["p", ALICE], ["p", BOB]])
    db.save(e1, e2, e3, e4)
    ids = {e.event.id: name for name, e in (("e1", e1), ("e2", e2), ("e3", e3), ("e4", e4))}

    def names(**f: Any) -> list[str]:
        return [ids[i] for i in db.ids(f)]

    assert names(ids=[e2.event.id, e4.event.id, "ff" * 32]) == ["e4", "e2"]
    assert names(authors=[ALICE]) == ["e2", "e1"]
    assert names(authors=[BOB, CAROL]) == ["e4", "e3"]
    assert names(kinds=[1]) == ["e3", "e1"]
    assert names(kinds=[1, 30023]) == ["e4", "e3", "e1"]
    assert names(since=NOW - 20) == ["e4", "e3", "e2"]
    assert names(until=NOW - 20) == ["e2", "e1"]
    assert names(since=NOW - 20, until=NOW - 10) == ["e3", "e2"]
    assert names(since=NOW - 5, until=NOW - 10) == []
    assert names(**{"#e": [target]}) == ["e2", "e1"]
    assert names(**{"#p": [ALICE]}) == ["e4", "e3"]
    assert names(**{"#p": [ALICE, BOB]}) == ["e4", "e3", "e1"]  # e4 has both: once
    assert names(**{"#t": ["x"]}) == ["e3", "e2"]
    assert names(**{"#t": ["nostr"]}) == ["e1"]  # values are case-sensitive
    assert names(**{"#t": ["x"], "#e": [target]}) == ["e2"]  # tag names AND'ed
    assert names(**{"#p": [ALICE, BOB], "#t": ["x", "nostr"]}) == ["e3", "e1"]
    assert names(**{"#d": ["slug"]}) == ["e4"]
    assert names(**{"#T": ["x"]}) == []
    assert names(kinds=[1], authors=[BOB], **{"#p": [ALICE]}) == ["e3"]
    assert names(ids=[e1.event.id, e2.event.id], **{"#t": ["x"]}) == ["e2"]
    assert names(kinds=[7], since=NOW - 20, until=NOW - 20, **{"#e": [target]}) == ["e2"]
    assert names(kinds=[1, 7], until=NOW - 25, **{"#e": [target, "00" * 32]}) == ["e1"]
    assert names(kinds=[1]) == names(kinds=[1], **{"#t": ["x", "nostr", "Nostr"]})


@pytest.mark.parametrize(
    "empty",
    [
        {"ids": []},
        {"authors": []},
        {"kinds": []},
        {"#p": []},
        {"#t": [], "kinds": [1]},
        {"since": NOW + 1, "until": NOW},
    ],
)
def test_a_filter_with_an_empty_list_matches_nothing(db: Db, empty: dict[str, Any]) -> None:
    db.save(make(tags=[["p", BOB], ["t", "a"]]))
    assert db.ids(empty) == []
    assert db.count(empty) == 0
    assert db.ids(empty, {"kinds": [1]}) != []


def test_tag_values_of_every_shape(db: Db) -> None:
    long_value = "v" * 5000
    many = [f"value {i}" for i in range(40)]  # more than fit in one IN (...) inline
    nul = make(tags=[["t", "a\x00b"]])
    long = make(tags=[["r", long_value]])
    unicode = make(tags=[["t", "\u00e9t\u00e9 \U0001f600"], ["t", ""]])
    listed = make(tags=[["l", many[17]]])
    db.save(nul, long, unicode, listed)
    assert db.ids({"#t": ["a\x00b"]}) == [nul.event.id]
    assert db.ids({"#t": ["a"]}) == []
    assert db.ids(Filter(tags={"r": frozenset([long_value])})) == [long.event.id]
    assert db.ids(Filter(tags={"r": frozenset([long_value[:-1]])})) == []
    assert db.ids({"#t": ["\u00e9t\u00e9 \U0001f600"]}) == [unicode.event.id]
    assert db.ids({"#t": [""]}) == [unicode.event.id]
    assert db.ids({"#l": many}) == [listed.event.id]
    assert db.ids({"#l": many, "#t": ["", "z"]}) == []
    assert db.ids(Filter(tags={"t": frozenset(["\ud800"])})) == []  # a lone surrogate
    assert db.ids(Filter(ids=frozenset(["not hex"]))) == []


# --- COUNT --------------------------------------------------------------------------------


def test_count_counts_distinct_matching_events(db: Db) -> None:
    events = [make(author=a, tags=[["t", "x"]]) for a in (ALICE, ALICE, BOB)]
    expired = make(author=BOB, tags=[["expiration", str(NOW)]])
    db.save(*events, expired)
    assert db.count({}) == 3
    assert db.count({"authors": [ALICE]}) == 2
    assert db.count({"authors": [ALICE]}, {"#t": ["x"]}, {"kinds": [1]}) == 3
    assert db.count({"authors": [BOB], "limit": 0}) == 1  # COUNT ignores limits
    assert db.count({"authors": [BOB]}, now=NOW - 1) == 2
    assert db.count() == 0
    assert db.count({"kinds": []}) == 0


# --- NIP-40 expiration and purges ---------------------------------------------------------


def test_expired_events_are_never_returned_and_purge_removes_them(db: Db) -> None:
    soon = make(tags=[["expiration", str(NOW + 10)], ["t", "x"]])
    now_ = make(tags=[["expiration", str(NOW)], ["t", "x"]])
    junk = make(tags=[["expiration", "tomorrow"], ["t", "x"]])  # not a number: no expiry
    plain = make(tags=[["t", "x"]])
    assert db.save(soon, now_, junk, plain) == [STORED] * 4
    assert set(db.ids({"#t": ["x"]})) == {soon.event.id, junk.event.id, plain.event.id}
    assert set(db.ids({}, now=NOW - 1)) == {e.event.id for e in (soon, now_, junk, plain)}
    assert db.ids({"ids": [now_.event.id]}) == []
    assert db.count({"#t": ["x"]}, now=NOW + 10) == 2
    assert db.purge(NOW, 30 * DAY) == 1
    assert db.count({}, now=NOW - 1) == 3
    assert db.purge(NOW + 10, 30 * DAY) == 1
    assert set(db.ids({}, now=0)) == {junk.event.id, plain.event.id}
    assert db.save(now_) == [STORED]  # purged, not deleted: it may come back (and expire)


def test_purge_removes_gift_wraps_by_the_time_they_were_received(db: Db) -> None:
    # created_at of a gift wrap is randomized into the past (NIP-59): it does not count.
    old = [make(author=f"{i:02x}" * 32, kind=1059, tags=[["p", BOB]]) for i in range(3)]
    db.save(*old, now=NOW - 31 * DAY)
    recent = make(kind=1059, created_at=NOW - 60 * DAY, tags=[["p", BOB]])
    note = make(created_at=NOW - 60 * DAY)
    db.save(recent, note, now=NOW - DAY)
    assert db.purge(NOW, 30 * DAY) == 3
    assert set(db.ids({})) == {recent.event.id, note.event.id}
    assert db.purge(NOW, 30 * DAY) == 0
    assert db.purge(NOW + 30 * DAY, 30 * DAY) == 1
    assert db.ids({}) == [note.event.id]


def test_purge_works_through_more_rows_than_one_chunk(db: Db) -> None:
    wraps = [make(author="99" * 32, kind=1059, tags=[["p", BOB]]) for _ in range(2100)]
    assert db.save(*wraps, now=NOW - 100) == [STORED] * 2100
    assert db.purge(NOW, 10) == 2100
    assert db.count({}) == 0


# --- durability ---------------------------------------------------------------------------


def test_acknowledged_events_are_visible_to_a_new_store_object(backend: Backend) -> None:
    first = Db(backend)
    events = [make(tags=[["p", BOB]]) for _ in range(20)]
    assert first.save(*events) == [STORED] * 20
    second = Db(backend)  # the first one is still open
    assert second.ids({"#p": [BOB]}) == newest_first(*events)
    later = make()
    assert second.save(later) == [STORED]
    assert first.ids({"ids": [later.event.id]}) == [later.event.id]
    backend.close(first.store)
    backend.close(second.store)
    assert Db(backend).count({}) == 21


KILLED_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from xchat.store.events import StoredEvent
    from xchat.store.sqlite import SqliteEventStore
    from xchat.wire.event import Event, compute_id

    async def main(path):
        store = SqliteEventStore(path)
        await store.open()
        for batch in range(10**6):
            events = []
            for i in range(50):
                tags = [["p", "b0" * 32], ["t", str(batch)]]
                content = f"{batch}/{i}" + "x" * 200
                eid = compute_id("a1" * 32, 1_700_000_000 + i, 1, tags, content).hex()
                event = Event(eid, "a1" * 32, 1_700_000_000 + i, 1, tags, content, "00" * 64)
                events.append(StoredEvent(event, event.to_json().decode()))
            await store.save_batch(events, 1_700_000_000)
            print(" ".join(e.event.id for e in events), flush=True)

    asyncio.run(main(sys.argv[1]))
    """
)


def test_sqlite_acknowledged_events_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "relay.sqlite3"
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert child.stdout is not None
    acknowledged: list[str] = []
    try:
        for _ in range(8):
            line = child.stdout.readline()
            assert line, "the writer died early"
            acknowledged += line.split()
    finally:
        child.send_signal(signal.SIGKILL)  # most likely in the middle of the next batch
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert (tmp_path / "relay.sqlite3-wal").exists()  # never checkpointed by a close

    async def check() -> tuple[list[str], int]:
        store = SqliteEventStore(path)
        await store.open()
        try:
            found = await store.query([Filter(ids=frozenset(acknowledged))], NOW, 10_000)
            return [s.event.id for s in found], await store.count([Filter()], NOW)
        finally:
            await store.close()

    found, total = asyncio.run(check())
    assert set(found) == set(acknowledged)
    assert total >= len(acknowledged)
    assert total % 50 == 0
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


# --- migrations ---------------------------------------------------------------------------

# Version 0, written out by hand as it was released: no received_at, no purge indexes.
V0_SQLITE = [
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
    """CREATE TABLE events (seq INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE,
        pubkey BLOB NOT NULL, created_at INTEGER NOT NULL, kind INTEGER NOT NULL,
        d_tag TEXT, expiration INTEGER, json TEXT NOT NULL)""",
    "CREATE INDEX events_created ON events (created_at)",
    "CREATE INDEX events_pubkey ON events (pubkey, created_at)",
    "CREATE INDEX events_kind ON events (kind, created_at)",
    "CREATE INDEX events_address ON events (kind, pubkey, d_tag) WHERE d_tag IS NOT NULL",
    """CREATE TABLE tags (event_seq INTEGER NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL,
        created_at INTEGER NOT NULL, kind INTEGER NOT NULL,
        PRIMARY KEY (event_seq, name, value)) WITHOUT ROWID""",
    "CREATE INDEX tags_value ON tags (name, value, created_at, kind)",
    """CREATE TRIGGER events_delete_tags AFTER DELETE ON events BEGIN
        DELETE FROM tags WHERE event_seq = old.seq; END""",
    """CREATE TABLE deleted_ids (id BLOB NOT NULL, pubkey BLOB NOT NULL,
        PRIMARY KEY (id, pubkey)) WITHOUT ROWID""",
    """CREATE TABLE deleted_addresses (kind INTEGER NOT NULL, pubkey BLOB NOT NULL,
        d_tag TEXT NOT NULL, until INTEGER NOT NULL,
        PRIMARY KEY (kind, pubkey, d_tag)) WITHOUT ROWID""",
    "INSERT INTO meta VALUES ('schema_version', 0)",
]
V0_POSTGRES = [
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL)",
    """CREATE TABLE events (seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id BYTEA NOT NULL UNIQUE, pubkey BYTEA NOT NULL, created_at BIGINT NOT NULL,
        kind INTEGER NOT NULL, d_tag BYTEA, expiration BIGINT, json TEXT NOT NULL)""",
    "CREATE INDEX events_created ON events (created_at)",
    "CREATE INDEX events_pubkey ON events (pubkey, created_at)",
    "CREATE INDEX events_kind ON events (kind, created_at)",
    "CREATE INDEX events_address ON events (kind, pubkey, d_tag) WHERE d_tag IS NOT NULL",
    """CREATE TABLE tags (event_seq BIGINT NOT NULL, name TEXT COLLATE "C" NOT NULL,
        value BYTEA NOT NULL, created_at BIGINT NOT NULL, kind INTEGER NOT NULL,
        PRIMARY KEY (event_seq, name, value))""",
    "CREATE INDEX tags_value ON tags (name, value, created_at, kind)",
    """CREATE FUNCTION delete_event_tags() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
        DELETE FROM tags WHERE event_seq IN (SELECT seq FROM gone); RETURN NULL; END $$""",
    """CREATE TRIGGER events_delete_tags AFTER DELETE ON events REFERENCING OLD TABLE AS gone
        FOR EACH STATEMENT EXECUTE FUNCTION delete_event_tags()""",
    """CREATE TABLE deleted_ids (id BYTEA NOT NULL, pubkey BYTEA NOT NULL,
        PRIMARY KEY (id, pubkey))""",
    """CREATE TABLE deleted_addresses (kind INTEGER NOT NULL, pubkey BYTEA NOT NULL,
        d_tag BYTEA NOT NULL, until BIGINT NOT NULL, PRIMARY KEY (kind, pubkey, d_tag))""",
    "INSERT INTO meta VALUES ('schema_version', 0)",
]


def run_sql(backend: Backend, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
    """Run statements straight on the backend's database, outside any store."""
    if backend.name == "sqlite":
        with sqlite3.connect(backend.location) as conn:
            for sql, params in statements:
                conn.execute(sql, params)
        return

    async def run() -> None:
        conn = await asyncpg.connect(backend.location)
        try:
            for sql, params in statements:
                await conn.execute(sql.replace("?", "${}").format(*range(1, 99)), *params)
        finally:
            await conn.close()

    backend.run(run())


def fetch_value(backend: Backend, sql: str) -> Any:
    if backend.name == "sqlite":
        with sqlite3.connect(backend.location) as conn:
            return conn.execute(sql).fetchone()[0]

    async def fetch() -> Any:
        conn = await asyncpg.connect(backend.location)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    return backend.run(fetch())


def test_every_way_of_removing_an_event_removes_its_tags(db: Db) -> None:
    orphans = "SELECT count(*) FROM tags WHERE event_seq NOT IN (SELECT seq FROM events)"
    old_profile = make(kind=0, created_at=NOW - 1, tags=[["t", "a"], ["p", BOB]])
    post = make(kind=30023, tags=[["d", "x"], ["t", "a"]])
    note = make(tags=[["t", "a"]])
    expiring = make(tags=[["t", "a"], ["expiration", str(NOW)]])
    wrap = make(kind=1059, tags=[["p", BOB], ["t", "a"]])
    db.save(old_profile, post, note, expiring, wrap, now=NOW - DAY)
    assert fetch_value(db.backend, "SELECT count(*) FROM tags") == 8
    db.save(make(kind=0, tags=[["t", "b"]]), deletion(ALICE, ("e", note.event.id)))
    db.save(deletion(ALICE, ("a", f"30023:{ALICE}:x")))
    assert db.purge(NOW, DAY - 1) == 2
    assert db.ids({"#t": ["a"]}) == []
    assert fetch_value(db.backend, orphans) == 0
    assert fetch_value(db.backend, "SELECT count(*) FROM tags") == 3  # t=b, e, a


def v0_rows(backend: Backend, events: list[StoredEvent]) -> list[tuple[str, tuple[Any, ...]]]:
    """INSERTs of events as version 0 stored them (seq 1, 2, ... in order)."""
    text = (lambda v: v) if backend.name == "sqlite" else (lambda v: v.encode())
    rows = []
    for seq, stored in enumerate(events, 1):
        e = stored.event
        d = e.first_tag("d") if 30000 <= e.kind < 40000 else None
        rows.append(
            (
                "INSERT INTO events (id, pubkey, created_at, kind, d_tag, expiration, json)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    bytes.fromhex(e.id),
                    bytes.fromhex(e.pubkey),
                    e.created_at,
                    e.kind,
                    None if d is None else text(d),
                    expiration_of(e),
                    stored.json,
                ),
            )
        )
        for name, value in {(t[0], t[1]) for t in e.tags if len(t) > 1 and len(t[0]) == 1}:
            rows.append(
                (
                    "INSERT INTO tags VALUES (?, ?, ?, ?, ?)",
                    (seq, name, text(value), e.created_at, e.kind),
                )
            )
    return rows


def test_opening_a_version_0_database_upgrades_it_and_keeps_its_events(
    backend: Backend,
) -> None:
    wrap = make(author="55" * 32, kind=1059, created_at=NOW - 40 * DAY, tags=[["p", BOB]])
    note = make(created_at=NOW - DAY, tags=[["t", "kept"]])
    post = make(kind=30023, created_at=NOW - DAY, tags=[["d", "slug"]])
    gone = make(created_at=NOW - 2 * DAY)
    schema = V0_SQLITE if backend.name == "sqlite" else V0_POSTGRES
    tombstone = (
        "INSERT INTO deleted_ids VALUES (?, ?)",
        (bytes.fromhex(gone.event.id), bytes.fromhex(ALICE)),
    )
    run_sql(backend, [(s, ()) for s in schema] + v0_rows(backend, [wrap, note, post]) + [tombstone])

    db = Db(backend)
    assert backend.run(db.store.schema_version()) == 1
    assert db.ids({}) == newest_first(wrap, note, post)
    assert db.ids({"#t": ["kept"]}) == [note.event.id]
    assert db.ids({"#p": [BOB], "kinds": [1059]}) == [wrap.event.id]
    assert db.save(gone, note) == [DELETED, DUPLICATE]
    assert db.save(make(kind=30023, created_at=NOW, tags=[["d", "slug"]])) == [REPLACED]
    # Rows from before received_at existed count as received when created.
    assert db.purge(NOW, 30 * DAY) == 1
    assert db.ids({"kinds": [1059]}) == []
    backend.close(db.store)
    assert backend.run(Db(backend).store.schema_version()) == 1  # opening again: no-op


def test_a_database_newer_than_the_code_is_refused(backend: Backend) -> None:
    Db(backend)
    run_sql(backend, [("UPDATE meta SET value = 99 WHERE key = 'schema_version'", ())])
    with pytest.raises(LocalProtocolError, match="newer"):
        backend.open_store()


def test_a_foreign_database_is_refused(backend: Backend) -> None:
    run_sql(backend, [("CREATE TABLE something_else (x INTEGER)", ())])
    with pytest.raises(LocalProtocolError, match="not an X Chat"):
        backend.open_store()


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"not a database, just some text " * 100)

    async def open_it() -> None:
        await SqliteEventStore(path).open()

    with pytest.raises(LocalProtocolError, match="cannot open"):
        asyncio.run(open_it())


def test_the_released_v1_sqlite_file_still_opens(tmp_path: Path) -> None:
    from tests.store.make_relay_v1 import NOW as FIXTURE_NOW
    from tests.store.make_relay_v1 import fixture_batches

    path = tmp_path / "relay.sqlite3"
    shutil.copyfile(FIXTURE, path)

    async def check() -> None:
        store = SqliteEventStore(path)
        await store.open()
        try:
            assert await store.schema_version() == 1
            kept, refused = fixture_batches()
            found = await store.query([Filter()], FIXTURE_NOW, 100)
            assert [s.json for s in found] == [s.json for s in kept]
            assert [s.event for s in found] == [s.event for s in kept]
            for stored in found:
                verify_event(stored.event)  # the file holds really signed events
            outcomes = await store.save_batch(kept + refused, FIXTURE_NOW)
            assert [o.status for o in outcomes] == [DUPLICATE] * len(kept) + [
                OBSOLETE,
                DELETED,
                DELETED,
            ]
            assert await store.count([Filter(kinds=frozenset([1059]))], FIXTURE_NOW) == 1
            assert await store.purge(FIXTURE_NOW + 365 * DAY, 30 * DAY) == 1
        finally:
            await store.close()

    asyncio.run(check())


def test_sqlite_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(LocalProtocolError):
        SqliteEventStore(tmp_path / "x", batch_synchronous="OFF")
    with pytest.raises(LocalProtocolError):
        SqliteEventStore(tmp_path / "x", readers=0)
    with pytest.raises(LocalProtocolError):
        SqliteEventStore(":memory:")

    async def normal() -> list[str]:
        store = SqliteEventStore(tmp_path / "x", batch_synchronous="normal", readers=1)
        await store.open()
        try:
            await store.save_batch([make()], NOW)
            return [s.event.id for s in await store.query([Filter()], NOW, 10)]
        finally:
            await store.close()

    assert len(asyncio.run(normal())) == 1


# --- concurrency --------------------------------------------------------------------------


def test_queries_run_while_batches_are_written(backend: Backend) -> None:
    store = backend.open_store()
    batches = [[make(created_at=NOW - j, tags=[["p", BOB]]) for j in range(100)] for _ in range(15)]
    saved: set[str] = set()
    done = asyncio.Event()
    ticks = 0

    async def write() -> None:
        for batch in batches:
            await store.save_batch(batch, NOW)
            saved.update(e.event.id for e in batch)
        done.set()

    async def read() -> int:
        rounds, seen = 0, 0
        while not done.is_set():
            before = set(saved)
            found = await store.query([Filter(tags={"p": frozenset([BOB])})], NOW, 5000)
            ids = [s.event.id for s in found]
            keys = [(-s.event.created_at, s.event.id) for s in found]
            assert keys == sorted(keys)
            assert before <= set(ids) <= {e.event.id for b in batches for e in b}
            assert len(ids) >= seen
            assert len(ids) % 100 == 0
            seen = len(ids)
            rounds += 1
        return rounds

    async def tick() -> None:
        nonlocal ticks
        while not done.is_set():
            await asyncio.sleep(0.001)
            ticks += 1

    async def main() -> list[int]:
        results = await asyncio.gather(write(), read(), read(), read(), tick())
        return [r for r in results if isinstance(r, int)]

    rounds = backend.run(main())
    assert all(r > 0 for r in rounds)
    assert ticks > 5  # the loop kept running while the disk was busy
    assert backend.run(store.count([Filter()], NOW)) == 1500


# --- a model: Filter.matches over everything stored ---------------------------------------

AUTHORS = [ALICE, BOB, CAROL]
P_VALUES = [ALICE, BOB, "d4" * 32]
E_VALUES = ["e5" * 32, "e6" * 32]
T_VALUES = ["a", "b", "\u00e9", ""]
EXPIRATIONS = [str(NOW - 1), str(NOW), str(NOW + 5), "soon"]

tag_strategy = st.one_of(
    st.tuples(st.just("p"), st.sampled_from(P_VALUES)),
    st.tuples(st.just("e"), st.sampled_from(E_VALUES)),
    st.tuples(st.just("t"), st.sampled_from(T_VALUES)),
    st.tuples(st.just("expiration"), st.sampled_from(EXPIRATIONS)),
    st.tuples(st.sampled_from(["title", "x"]), st.sampled_from(T_VALUES)),
)
event_strategy = st.builds(
    make,
    author=st.sampled_from(AUTHORS),
    kind=st.sampled_from([1, 4, 7, 1059, 40000]),
    created_at=st.integers(NOW - 6, NOW + 2),
    tags=st.lists(tag_strategy, max_size=4),
    content=st.sampled_from(["", "a", "b", "c", "d"]),
)


def maybe_set(strategy: st.SearchStrategy[Any], max_size: int) -> st.SearchStrategy[Any]:
    return st.none() | st.frozensets(strategy, max_size=max_size)


@st.composite
def filter_strategy(draw: st.DrawFn, known_ids: list[str]) -> Filter:
    tag_values = {"p": P_VALUES, "e": E_VALUES, "t": T_VALUES}
    names = draw(st.lists(st.sampled_from(sorted(tag_values)), unique=True, max_size=2))
    tags = {
        name: draw(st.frozensets(st.sampled_from(tag_values[name]), min_size=1, max_size=3))
        for name in names
    }
    ids = st.sampled_from(known_ids) if known_ids else st.just("00" * 32)
    return Filter(
        ids=draw(maybe_set(ids, 4)),
        authors=draw(maybe_set(st.sampled_from(AUTHORS), 2)),
        kinds=draw(maybe_set(st.sampled_from([1, 4, 7, 1059, 40000, 2]), 3)),
        tags=tags,
        since=draw(st.none() | st.integers(NOW - 7, NOW + 2)),
        until=draw(st.none() | st.integers(NOW - 6, NOW + 3)),
        limit=draw(st.none() | st.integers(0, 8)),
    )


def model_query(
    model: dict[str, StoredEvent], filters: list[Filter], now: int, cap: int
) -> list[str]:
    def alive(s: StoredEvent) -> bool:
        expiration = expiration_of(s.event)
        return expiration is None or expiration > now

    ordered = sorted(model.values(), key=lambda s: (-s.event.created_at, s.event.id))
    chosen: set[str] = set()
    for f in filters:
        limit = cap if f.limit is None else min(f.limit, cap)
        chosen.update([s.event.id for s in ordered if alive(s) and f.matches(s.event)][:limit])
    return [s.event.id for s in ordered if s.event.id in chosen]


def empty_tables(backend: Backend) -> None:
    if backend.name == "sqlite":
        tables = ["events", "tags", "deleted_ids", "deleted_addresses"]
        run_sql(backend, [(f"DELETE FROM {table}", ()) for table in tables])
    else:
        run_sql(backend, [("TRUNCATE events, tags, deleted_ids, deleted_addresses", ())])


@settings(
    max_examples=30,
    deadline=None,
    # The store is opened once per test and emptied for each example.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_queries_agree_with_a_model(backend: Backend, data: st.DataObject) -> None:
    store = backend.opened[0] if backend.opened else backend.open_store()
    empty_tables(backend)
    model: dict[str, StoredEvent] = {}
    for batch in data.draw(st.lists(st.lists(event_strategy, max_size=10), max_size=2)):
        outcomes = backend.run(store.save_batch(batch, NOW))
        for stored, outcome in zip(batch, outcomes, strict=True):
            assert outcome.status == (DUPLICATE if stored.event.id in model else STORED)
            model[stored.event.id] = stored
    known = sorted(model)
    filters = data.draw(st.lists(filter_strategy(known), min_size=1, max_size=3), label="filters")
    now = data.draw(st.sampled_from([NOW - 2, NOW, NOW + 10]), label="now")
    cap = data.draw(st.integers(1, 10), label="max_limit")
    found = backend.run(store.query(filters, now, cap))
    assert [s.event.id for s in found] == model_query(model, filters, now, cap)
    assert all(s.json == model[s.event.id].json for s in found)
    unlimited = [dataclasses.replace(f, limit=None) for f in filters]
    expected_count = len(model_query(model, unlimited, now, 10**9))
    assert backend.run(store.count(filters, now)) == expected_count
    # The relay's stream: keyset pages and byte-bounded loads give the same answer, and
    # gift wraps only to the recipients given.
    recipients = data.draw(
        st.none() | st.frozensets(st.sampled_from(P_VALUES), max_size=2), label="recipients"
    )
    page = data.draw(st.integers(1, 4), label="key_page")
    limits = RelayLimits(
        query_batch_events=data.draw(st.integers(1, 5), label="batch_events"),
        query_batch_bytes=data.draw(st.integers(1, 2000), label="batch_bytes"),
    )
    capped = [
        dataclasses.replace(f, limit=cap if f.limit is None else min(f.limit, cap)) for f in filters
    ]
    visible = {i: s for i, s in model.items() if seen_by(s, recipients)}
    streamed = backend.run(stream_ids(store, capped, now, recipients, limits, page))
    assert streamed == model_query(visible, filters, now, cap)
    assert backend.run(store.count(filters, now, recipients)) == len(
        model_query(visible, unlimited, now, 10**9)
    )


def seen_by(stored: StoredEvent, recipients: frozenset[str] | None) -> bool:
    if recipients is None or stored.event.kind != 1059:
        return True
    return any(t[0] == "p" and t[1] in recipients for t in stored.event.tags if len(t) >= 2)


async def stream_ids(
    store: EventStore,
    filters: list[Filter],
    now: int,
    recipients: frozenset[str] | None,
    limits: RelayLimits,
    page: int,
) -> list[str]:
    batches = stored_results(
        store,
        filters,
        now,
        recipients=recipients,
        limits=limits,
        gate=asyncio.Semaphore(1),
        key_page=page,
    )
    ids: list[str] = []
    async for texts in batches:
        assert len(texts) <= limits.query_batch_events
        # a batch exceeds its byte budget by less than one event
        assert sum(map(len, texts)) - len(texts[-1]) < limits.query_batch_bytes
        ids += [orjson.loads(text)["id"] for text in texts]
    return ids


def test_keyset_pages_and_byte_bounded_loads(db: Db) -> None:
    events = [make(created_at=NOW - (i % 4), content="x" * (100 + i)) for i in range(30)]
    db.save(*events)
    expected = newest_first(*events)
    store, run = db.store, db.backend.run
    keys: list[tuple[int, str]] = []
    after = None
    while True:
        page = run(store.query_keys(Filter(kinds=frozenset({1})), NOW, after=after, limit=7))
        keys += page
        if len(page) < 7:
            break
        after = page[-1]
    assert [k[1] for k in keys] == expected
    by_id = {e.event.id: e for e in events}
    assert all(by_id[i].event.created_at == c for c, i in keys)
    ids = [k[1] for k in keys]
    budget = len(by_id[ids[0]].json) + len(by_id[ids[1]].json) + 1
    consumed, texts = run(store.load(ids, NOW, budget))
    assert consumed == 3  # the third passes the budget, and is the last one read
    assert texts == [by_id[i].json for i in ids[:3]]
    # gone ids are consumed without a text; a zero budget still takes one id
    assert run(store.load(["00" * 32, "nothex", *ids[:2]], NOW, 1)) == (3, [by_id[ids[0]].json])
    assert run(store.load([], NOW, 100)) == (0, [])


def test_stores_never_block_the_event_loop_long(backend: Backend) -> None:
    """A batch of 2000 events with the loop measuring its own lag meanwhile."""
    store = backend.open_store()
    batch = [make(tags=[["p", BOB], ["t", "x"], ["e", "e5" * 32]]) for _ in range(2000)]
    lag = 0.0

    async def main() -> None:
        nonlocal lag
        task = asyncio.ensure_future(store.save_batch(batch, NOW))
        while not task.done():
            start = time.perf_counter()
            await asyncio.sleep(0)
            lag = max(lag, time.perf_counter() - start)
        await task

    backend.run(main())
    assert lag < 0.5, f"the event loop stalled for {lag:.3f} s"
    assert backend.run(store.count([Filter()], NOW)) == 2000


def address_of(event: Event) -> tuple[int, str, str] | None:
    if event.kind in (0, 3) or 10000 <= event.kind < 20000:
        return event.kind, event.pubkey, ""
    if 30000 <= event.kind < 40000:
        return event.kind, event.pubkey, event.first_tag("d") or ""
    return None


class NipModel:
    """NIP-01 replacement and NIP-09/59 deletion, one event at a time, over a dict."""

    def __init__(self) -> None:
        self.stored: dict[str, StoredEvent] = {}
        self.deleted_ids: set[tuple[str, str]] = set()  # (id, author of the deletion)
        self.deleted_addresses: dict[tuple[int, str, str], int] = {}

    def save(self, stored: StoredEvent) -> SaveStatus:
        event = stored.event
        if event.id in self.stored:
            return DUPLICATE
        if event.kind == 5:
            self.stored[event.id] = stored
            self.delete(event)
            return STORED
        deleters = {event.pubkey, *(event.tag_values("p") if event.kind == 1059 else [])}
        if any((event.id, who) in self.deleted_ids for who in deleters):
            return DELETED
        address = address_of(event)
        if address is not None and event.created_at <= self.deleted_addresses.get(address, -1):
            return DELETED
        rivals = [s for s in self.stored.values() if address and address_of(s.event) == address]
        if any((s.event.created_at, event.id) > (event.created_at, s.event.id) for s in rivals):
            return OBSOLETE
        for rival in rivals:
            del self.stored[rival.event.id]
        self.stored[event.id] = stored
        return REPLACED if rivals else STORED

    def delete(self, request: Event) -> None:
        author = request.pubkey
        for target in request.tag_values("e"):
            self.deleted_ids.add((target, author))
            victim = self.stored.get(target)
            if (
                victim
                and victim.event.kind != 5
                and (
                    victim.event.pubkey == author
                    or (victim.event.kind == 1059 and author in victim.event.tag_values("p"))
                )
            ):
                del self.stored[target]
        for coordinate in request.tag_values("a"):
            kind, pubkey, d = coordinate.split(":", 2)
            address = (int(kind), pubkey, d)
            if pubkey != author:
                continue
            self.deleted_addresses[address] = max(
                request.created_at, self.deleted_addresses.get(address, -1)
            )
            for s in list(self.stored.values()):
                if address_of(s.event) == address and s.event.created_at <= request.created_at:
                    del self.stored[s.event.id]


WRAPPERS = ["71" * 32, "72" * 32]
nip_event_strategy = st.one_of(
    st.builds(
        make,
        author=st.sampled_from([ALICE, BOB]),
        kind=st.sampled_from([0, 3, 10002, 30023, 1]),
        created_at=st.integers(NOW - 3, NOW),
        tags=st.lists(st.tuples(st.just("d"), st.sampled_from(["", "a", "b"])), max_size=2),
        content=st.sampled_from(["", "x", "y"]),
    ),
    st.builds(
        make,
        author=st.sampled_from(WRAPPERS),
        kind=st.just(1059),
        created_at=st.integers(NOW - 3, NOW),
        tags=st.lists(st.tuples(st.just("p"), st.sampled_from([ALICE, BOB])), max_size=2),
        content=st.sampled_from(["", "x"]),
    ),
)


@st.composite
def nip_batches(draw: st.DrawFn) -> list[list[StoredEvent]]:
    """Batches of events and of deletion requests naming events drawn before them."""
    seen: list[StoredEvent] = []
    batches = []
    for _ in range(draw(st.integers(1, 3))):
        batch = []
        for _ in range(draw(st.integers(0, 8))):
            if seen and draw(st.integers(0, 4)) == 0:
                targets = draw(st.lists(st.sampled_from(seen), min_size=1, max_size=2))
                tags = [("e", t.event.id) for t in targets]
                tags += [
                    ("a", f"{t.event.kind}:{t.event.pubkey}:{(address_of(t.event) or '')[2]}")
                    for t in targets
                    if address_of(t.event) and draw(st.booleans())
                ]
                author = draw(st.sampled_from([ALICE, BOB]))
                batch.append(deletion(author, *tags, created_at=draw(st.integers(NOW - 3, NOW))))
            else:
                batch.append(draw(nip_event_strategy))
            seen.append(batch[-1])
        batches.append(batch)
    return batches


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batches=nip_batches())
def test_replacement_and_deletion_agree_with_a_model(
    backend: Backend, batches: list[list[StoredEvent]]
) -> None:
    """Outcomes and what remains stored, whatever batches carry the events."""
    store = backend.opened[0] if backend.opened else backend.open_store()
    empty_tables(backend)
    model = NipModel()
    for batch in batches:
        expected = [model.save(stored) for stored in batch]
        outcomes = backend.run(store.save_batch(batch, NOW))
        assert [o.status for o in outcomes] == expected
    found = backend.run(store.query([Filter()], NOW, 1000))
    assert [s.event.id for s in found] == newest_first(*model.stored.values())
