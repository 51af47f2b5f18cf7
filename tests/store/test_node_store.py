"""The node's encrypted database (SQLCipher): every row type, message ordering and paging,
forward-only states, conversations, search, outbox, de-duplication, transactions, the
file on disk (encrypted, owner-only, durable across SIGKILL), keys, damage and schema
versions. Real database files in tmp_path; no mocks.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlcipher3.dbapi2 as sqlcipher
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xchat.store.node as node_module
import xchat.store.node.db as node_db
from xchat.core.events import sign_event
from xchat.crypto.keys import SecretKey
from xchat.errors import (
    InvalidInput,
    KeystoreCorrupt,
    KeystoreError,
    LocalProtocolError,
    XChatError,
)
from xchat.model import Conversation, ConversationKind, JobKind
from xchat.store.migrations import Migration
from xchat.store.node import (
    CONTACT_STATES,
    MESSAGE_STATES,
    STATE_RANK,
    ContactRow,
    DeviceRow,
    MessageRow,
    NodeStore,
    OutboxRow,
    SessionRow,
)

KEY = bytes(range(32))
ALICE = "a1" * 32
BOB = "b0" * 32
CAROL = "c3" * 32
DAVE = "d4" * 32
ME = "ee" * 32
REPO = Path(__file__).resolve().parents[2]
SECRET_BODY = "the treasure is buried under the old oak tree, 42 paces north"
CURRENT_VERSION = node_db._MIGRATIONS[-1].version

_ids = iter(range(10**9))
#: A really signed gift wrap, for envelope jobs.
WRAP = sign_event(
    SecretKey.from_hex("01" * 32),
    kind=1059,
    tags=[["p", "a1" * 32]],
    content="sealed",
    created_at=1_800_000_000,
    rng=bytes,
)


def message(
    conversation: str = ALICE,
    *,
    sent_at: int = 1_000,
    outgoing: bool = False,
    body: str = "hi",
    state: str | None = None,
    id: str | None = None,
    **fields: object,
) -> MessageRow:
    if state is None:
        state = "queued" if outgoing else "received"
    return MessageRow(
        id=id or f"m{next(_ids):08d}",
        conversation=conversation,
        outgoing=outgoing,
        sender=ME if outgoing else conversation,
        type="text",
        body=body,
        sent_at=sent_at,
        received_at=sent_at + 5,
        state=state,
        **fields,  # type: ignore[arg-type]
    )


def outbox_row(message_id: str = "m", **fields: object) -> OutboxRow:
    values: dict[str, object] = {
        "id": 0,
        "message_id": message_id,
        "recipient": ALICE,
        "kind": JobKind.SEAL_LATER,  # a message waiting for a device of the recipient
        "event": None,
        "message": {"v": 1, "type": "text", "id": "ab" * 16, "ts": 1, "body": "hi"},
        "relays": ["wss://a.example", "wss://b.example"],
        "accepted": [],
        "state": "pending",
        "attempts": 0,
        "next_attempt_at": 100,
        "last_error": "",
        "created_at": 50,
    }
    values.update(fields)
    return OutboxRow(**values)  # type: ignore[arg-type]


def contact(pubkey: str = ALICE, state: str = "accepted", created_at: int = 1, **fields: object):
    return ContactRow(pubkey, fields.pop("name", "Alice"), state, [], created_at, **fields)  # type: ignore[arg-type]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "node.db"


@pytest.fixture
def store(path: Path) -> Iterator[NodeStore]:
    s = NodeStore(path, KEY)
    s.open()
    yield s
    s.close()


def reopen(store: NodeStore, path: Path, key: bytes = KEY) -> NodeStore:
    store.close()
    again = NodeStore(path, key)
    again.open()
    return again


def raw(path: Path, key: bytes = KEY) -> sqlcipher.Connection:
    """A plain SQLCipher connection to the file, to see or damage what the store wrote."""
    conn = sqlcipher.connect(str(path), isolation_level=None)
    conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
    return conn


# --- round trips ---------------------------------------------------------------------------


def test_settings_round_trip(store: NodeStore, path: Path) -> None:
    assert store.get_setting("missing") is None
    assert store.get_setting("missing", "fallback") == "fallback"
    store.set_setting("cursor:wss://r.example", "1700000000")
    store.set_setting("read_receipts", "on")
    store.set_setting("read_receipts", "off")
    store = reopen(store, path)
    assert store.get_setting("cursor:wss://r.example") == "1700000000"
    assert store.get_setting("read_receipts", "on") == "off"
    store.close()


def test_relays_keep_insertion_order(store: NodeStore) -> None:
    for url in ("wss://c.example", "wss://a.example", "wss://b.example"):
        store.add_relay(url)
    store.add_relay("wss://c.example")  # idempotent: keeps its place
    assert store.relays() == ["wss://c.example", "wss://a.example", "wss://b.example"]
    assert store.remove_relay("wss://a.example") is True
    assert store.remove_relay("wss://a.example") is False
    store.add_relay("wss://a.example")  # added again: now last
    assert store.relays() == ["wss://c.example", "wss://b.example", "wss://a.example"]
    with pytest.raises(InvalidInput):
        store.add_relay("")


def test_contact_round_trip_and_upsert(store: NodeStore, path: Path) -> None:
    row = ContactRow(
        ALICE,
        "Alice",
        "request",
        ["wss://a.example", "wss://b.example"],
        1_700_000_000,
        nip17_only=True,
        verified="12345 67890",
        bundle_checked_at=1_700_000_100,
    )
    store.upsert_contact(row)
    assert store.get_contact(ALICE) == row
    assert store.get_contact(BOB) is None
    updated = dataclasses.replace(row, name=None, state="accepted", relays=[], nip17_only=False)
    store.upsert_contact(updated)
    store = reopen(store, path)
    assert store.get_contact(ALICE) == updated
    store.close()


def test_contacts_by_state(store: NodeStore) -> None:
    store.upsert_contact(contact(BOB, "blocked", created_at=3))
    store.upsert_contact(contact(ALICE, "accepted", created_at=2))
    store.upsert_contact(contact(CAROL, "request", created_at=1))
    assert [c.pubkey for c in store.contacts()] == [CAROL, ALICE, BOB]
    assert [c.pubkey for c in store.contacts(("accepted", "request"))] == [CAROL, ALICE]
    assert store.contacts(()) == []
    with pytest.raises(InvalidInput):
        store.contacts(("friend",))
    with pytest.raises(InvalidInput):
        store.upsert_contact(contact(DAVE, "friend"))
    assert store.get_contact(DAVE) is None


def test_device_round_trip(store: NodeStore) -> None:
    first = DeviceRow("dev1", ALICE, "curve1", '{"cert":1}', 100, bundle='{"bundle":1}')
    assert store.upsert_device(first) is True
    assert store.devices(ALICE) == [first]
    # Known again (a later certificate, no bundle in hand): keeps first_seen and bundle.
    again = DeviceRow("dev1", ALICE, "curve1b", '{"cert":2}', 500)
    assert store.upsert_device(again) is False
    assert store.devices(ALICE) == [
        DeviceRow("dev1", ALICE, "curve1b", '{"cert":2}', 100, bundle='{"bundle":1}')
    ]
    assert store.upsert_device(DeviceRow("dev2", ALICE, "curve2", "{}", 200)) is True
    # The same device id claimed by another person is a separate row: no takeover.
    assert store.upsert_device(DeviceRow("dev1", BOB, "evil", "{}", 300)) is True
    assert [d.device_id for d in store.devices(ALICE)] == ["dev1", "dev2"]
    assert store.devices(ALICE)[0].curve25519 == "curve1b"
    assert [d.curve25519 for d in store.devices(BOB)] == ["evil"]
    assert store.devices(CAROL) == []


def test_session_round_trip(store: NodeStore, path: Path) -> None:
    record = os.urandom(300)
    store.save_session(SessionRow("s1", ALICE, "curveA", record, 10))
    store.save_session(SessionRow("s2", BOB, "curveB", b"\x00" * 5, 5))
    store.save_session(SessionRow("s1", ALICE, "curveA", record[::-1], 20))  # replaces
    store = reopen(store, path)
    assert store.sessions() == [
        SessionRow("s2", BOB, "curveB", b"\x00" * 5, 5),
        SessionRow("s1", ALICE, "curveA", record[::-1], 20),
    ]
    assert isinstance(store.sessions()[0].record, bytes)
    store.close()


def test_message_round_trip(store: NodeStore, path: Path) -> None:
    row = MessageRow(
        id="msg-1",
        conversation=ALICE,
        outgoing=True,
        sender=ME,
        type="reply",
        body="Ünïcödé ✓ and 'quotes' \"double\" \x00 nul",
        sent_at=1_700_000_000_123,
        received_at=1_700_000_000_124,
        state="sent",
        forward_secret=False,
        reply_to="msg-0",
        state_detail="wss://a.example wss://b.example",
        edited_at=1_700_000_000_999,
        deleted=False,
        reactions={ALICE: "👍", BOB: "❤️"},
    )
    assert store.insert_message(row) is True
    assert row.seq > 0
    store = reopen(store, path)
    assert store.get_message("msg-1") == row
    assert store.get_message("nope") is None
    store.close()


def test_update_message_writes_content_not_state(store: NodeStore) -> None:
    row = message(outgoing=True, state="sent", body="first")
    store.insert_message(row)
    stale = store.get_message(row.id)
    assert stale is not None
    assert store.set_state(row.id, "delivered")  # a receipt arrives meanwhile
    stale.body, stale.edited_at, stale.reactions = "edited", 2_000, {BOB: "🎉"}
    store.update_message(stale)
    got = store.get_message(row.id)
    assert got is not None
    assert (got.body, got.edited_at, got.reactions) == ("edited", 2_000, {BOB: "🎉"})
    assert got.state == "delivered"  # not moved back to the stale row's "sent"
    stale.body, stale.deleted, stale.reactions = "", True, None
    store.update_message(stale)
    got = store.get_message(row.id)
    assert got is not None
    assert (got.body, got.deleted, got.reactions) == ("", True, None)
    with pytest.raises(InvalidInput):
        store.update_message(message(id="not-stored"))


def test_outbox_round_trip(store: NodeStore, path: Path) -> None:
    row = outbox_row("m1")
    new_id = store.add_outbox(row)
    assert new_id == row.id > 0
    second = outbox_row("m1", recipient=ME)
    assert store.add_outbox(second) > new_id
    row.kind, row.event, row.message = JobKind.ENVELOPE, WRAP, None  # sealed now
    row.state, row.accepted = "pending", ["wss://a.example"]
    row.attempts, row.next_attempt_at, row.last_error = 2, 900, "wss://b.example: timeout"
    store.update_outbox(row)
    store = reopen(store, path)
    assert store.outbox_for("m1") == [row, second]
    assert store.outbox_for("m2") == []
    with pytest.raises(InvalidInput):
        store.update_outbox(outbox_row(id=12345))
    with pytest.raises(InvalidInput):
        store.add_outbox(outbox_row(state="lost"))
    store.close()


# --- messages: exactly once, ordering, paging -----------------------------------------------


def test_insert_is_exactly_once(store: NodeStore) -> None:
    first = message(id="dup", body="original")
    assert store.insert_message(first) is True
    seq = first.seq
    copy = message(id="dup", body="replayed", sent_at=5)
    assert store.insert_message(copy) is False
    assert copy.seq == 0  # untouched
    stored = store.get_message("dup")
    assert stored is not None
    assert (stored.body, stored.sent_at, stored.seq) == ("original", 1_000, seq)
    assert len(store.messages(ALICE)) == 1


def test_seq_is_monotonic(store: NodeStore) -> None:
    rows = [message(sent_at=t) for t in (5, 1, 3, 3, 2)]
    for row in rows:
        store.insert_message(row)
    seqs = [row.seq for row in rows]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)


def test_messages_newest_first_ties_by_seq(store: NodeStore) -> None:
    rows = [message(sent_at=t) for t in (10, 20, 20, 20, 5, 30)]
    for row in rows:
        store.insert_message(row)
    store.insert_message(message(BOB, sent_at=25))  # another conversation
    got = store.messages(ALICE)
    expected = sorted(rows, key=lambda r: (r.sent_at, r.seq), reverse=True)
    assert [r.id for r in got] == [r.id for r in expected]
    assert [r.sent_at for r in got] == [30, 20, 20, 20, 10, 5]
    ties = [r.seq for r in got if r.sent_at == 20]
    assert ties == sorted(ties, reverse=True)
    assert [r.id for r in store.messages(ALICE, limit=2)] == [r.id for r in expected[:2]]
    assert store.messages(ALICE, limit=0) == []
    assert store.messages(CAROL) == []
    with pytest.raises(InvalidInput):
        store.messages(ALICE, limit=-1)


def test_paging_with_before(store: NodeStore) -> None:
    for t in (1, 2, 2, 2, 2, 3, 4, 4, 5, 6):
        store.insert_message(message(sent_at=t))
    everything = store.messages(ALICE, limit=100)
    pages: list[MessageRow] = []
    before = None
    while True:
        page = store.messages(ALICE, before, limit=3)
        if not page:
            break
        if before is not None:
            assert all((r.sent_at, r.seq) < before for r in page)  # strictly older
        pages += page
        before = (page[-1].sent_at, page[-1].seq)
    assert [r.id for r in pages] == [r.id for r in everything]
    # A cursor inside a run of equal sent_at continues inside the run.
    middle = everything[6]  # one of the four rows at sent_at == 2
    assert middle.sent_at == 2
    assert store.messages(ALICE, (middle.sent_at, middle.seq)) == everything[7:]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    times=st.lists(st.integers(min_value=0, max_value=6), min_size=0, max_size=25),
    page=st.integers(min_value=1, max_value=7),
)
def test_paging_property(store: NodeStore, times: list[int], page: int) -> None:
    """Pages of any size, over any sent_at values with ties, walk the whole conversation
    newest first by (sent_at, seq), each row exactly once."""
    conversation = f"conv{next(_ids)}"
    rows = [message(conversation, sent_at=t) for t in times]
    for row in rows:
        store.insert_message(row)
    walked: list[str] = []
    before = None
    while page_rows := store.messages(conversation, before, page):
        walked += [r.id for r in page_rows]
        before = (page_rows[-1].sent_at, page_rows[-1].seq)
    expected = sorted(rows, key=lambda r: (r.sent_at, r.seq), reverse=True)
    assert walked == [r.id for r in expected]


# --- states ----------------------------------------------------------------------------------


def state_of(store: NodeStore, message_id: str) -> tuple[str, str]:
    row = store.get_message(message_id)
    assert row is not None
    return row.state, row.state_detail


def test_states_move_forward_only(store: NodeStore) -> None:
    row = message(outgoing=True)
    store.insert_message(row)
    assert store.set_state(row.id, "sent", "wss://a.example") is True
    assert state_of(store, row.id) == ("sent", "wss://a.example")
    assert store.set_state(row.id, "queued") is False  # backwards
    assert store.set_state(row.id, "sent", "other") is False  # not forward either
    assert state_of(store, row.id) == ("sent", "wss://a.example")
    assert store.set_state(row.id, "read") is True  # skipping delivered is forward
    assert state_of(store, row.id) == ("read", "wss://a.example")  # no detail: kept
    assert store.set_state(row.id, "delivered") is False  # a late delivery receipt
    assert store.set_state(row.id, "failed") is False  # read cannot fail
    assert state_of(store, row.id) == ("read", "wss://a.example")


def test_detail_kept_or_replaced(store: NodeStore) -> None:
    row = message(outgoing=True)
    store.insert_message(row)
    assert store.set_state(row.id, "sent", "wss://a.example wss://b.example")
    assert store.set_state(row.id, "delivered")
    assert state_of(store, row.id) == ("delivered", "wss://a.example wss://b.example")
    assert store.set_state(row.id, "read", "read on a phone")
    assert state_of(store, row.id) == ("read", "read on a phone")


def test_failed_and_retry(store: NodeStore) -> None:
    row = message(outgoing=True)
    store.insert_message(row)
    assert store.set_state(row.id, "failed", "not accepted by enough relays") is True
    assert state_of(store, row.id) == ("failed", "not accepted by enough relays")
    assert store.set_state(row.id, "failed", "again") is False
    assert store.set_state(row.id, "queued") is True  # retry
    assert state_of(store, row.id) == ("queued", "")  # the failure reason is gone
    assert store.set_state(row.id, "sent", "wss://a.example") is True
    assert store.set_state(row.id, "failed", "x") is True  # sent can still fail
    assert state_of(store, row.id) == ("failed", "x")
    assert store.set_state(row.id, "delivered") is True  # a late receipt proves delivery
    assert state_of(store, row.id) == ("delivered", "")
    assert store.set_state(row.id, "failed") is False  # delivered never fails
    assert store.set_state(row.id, "queued") is False
    assert state_of(store, row.id) == ("delivered", "")


def test_set_state_refuses_incoming_unknown_and_invalid(store: NodeStore) -> None:
    incoming = message()
    store.insert_message(incoming)
    assert store.set_state(incoming.id, "read") is False  # incoming: mark_read does that
    assert state_of(store, incoming.id) == ("received", "")
    assert store.set_state("unknown", "sent") is False
    row = message(outgoing=True)
    store.insert_message(row)
    for bad in ("received", "lost", ""):
        with pytest.raises(InvalidInput):
            store.set_state(row.id, bad)
    assert state_of(store, row.id) == ("queued", "")


def allowed(current: str, target: str) -> bool:
    """The rules, written out independently of the store's table."""
    if current == target:
        return False
    if target == "failed":
        return current in ("queued", "sent")
    if current == "failed":
        return True
    return STATE_RANK[target] > STATE_RANK[current]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(st.sampled_from(MESSAGE_STATES), max_size=12))
def test_set_state_property(store: NodeStore, steps: list[str]) -> None:
    row = message(outgoing=True)
    store.insert_message(row)
    current = "queued"
    for i, target in enumerate(steps):
        expected = allowed(current, target)
        assert store.set_state(row.id, target, f"step {i}") is expected
        if expected:
            current = target
        got = store.get_message(row.id)
        assert got is not None
        assert got.state == current


def test_insert_checks_the_state_for_the_direction(store: NodeStore) -> None:
    with pytest.raises(InvalidInput):
        store.insert_message(message(outgoing=True, state="received"))
    with pytest.raises(InvalidInput):
        store.insert_message(message(outgoing=False, state="sent"))
    store.insert_message(message(outgoing=False, state="read"))
    for state in MESSAGE_STATES:
        assert store.insert_message(message(outgoing=True, state=state))


# --- conversations, unread, mark_read --------------------------------------------------------


def direct(store: NodeStore, peer: str, created_at: int) -> str:
    """A direct conversation with ``peer`` (as the node makes one); its id."""
    conversation_id = f"{next(_ids):032x}"
    store.add_conversation(
        Conversation(conversation_id, ConversationKind.DIRECT, peer, (peer,), created_at)
    )
    return conversation_id


def test_conversations(store: NodeStore) -> None:
    ids = {ALICE: direct(store, ALICE, 1), BOB: direct(store, BOB, 7)}
    ids |= {CAROL: direct(store, CAROL, 1), DAVE: direct(store, DAVE, 3)}
    # Alice: accepted, one old incoming unread, our reply later.
    store.upsert_contact(contact(ALICE, "accepted", created_at=1))
    a1 = message(ids[ALICE], sent_at=5_000)
    a2 = message(ids[ALICE], sent_at=9_000, outgoing=True)
    # Bob: a request, no messages yet, created recently: sorts by created_at * 1000.
    store.upsert_contact(contact(BOB, "request", created_at=7, name=None, nip17_only=True))
    # Carol: blocked, with messages: left out.
    store.upsert_contact(contact(CAROL, "blocked", created_at=1))
    c1 = message(ids[CAROL], sent_at=99_000)
    # Dave: no contact row, two unread incoming, ties on sent_at resolved by seq.
    d1 = message(ids[DAVE], sent_at=3_000)
    d2 = message(ids[DAVE], sent_at=3_000)
    for row in (a1, a2, c1, d1, d2):
        store.insert_message(row)
    got = store.conversations()
    assert [c.conversation.peer for c in got] == [ALICE, BOB, DAVE]
    alice, bob, dave = got
    assert (alice.name, alice.state, alice.unread, alice.forward_secret) == (
        "Alice",
        "accepted",
        1,
        True,
    )
    assert alice.last_message == store.get_message(a2.id)
    assert alice.last_activity == 9_000
    assert (bob.name, bob.state, bob.unread, bob.last_message) == (None, "request", 0, None)
    assert bob.last_activity == 7_000
    assert bob.forward_secret is False  # nip17_only
    assert (dave.name, dave.state, dave.unread, dave.forward_secret) == (None, "request", 2, True)
    assert dave.last_message is not None
    assert dave.last_message.id == d2.id  # same sent_at: the later insert
    assert dave.last_activity == 3_000

    assert store.mark_read(ids[DAVE]) == [d1.id, d2.id]
    store.upsert_contact(contact(DAVE, "accepted", created_at=100))  # now a contact
    got = store.conversations()
    assert [c.conversation.peer for c in got] == [DAVE, ALICE, BOB]
    assert (got[0].unread, got[0].last_activity, got[0].name) == (0, 100_000, "Alice")


def test_conversations_empty(store: NodeStore) -> None:
    assert store.conversations() == []
    store.upsert_contact(contact(CAROL, "blocked"))
    assert store.conversations() == []


def test_mark_read(store: NodeStore) -> None:
    incoming = [message(ALICE, sent_at=t) for t in (30, 10, 20)]
    ours = message(ALICE, sent_at=15, outgoing=True, state="sent")
    other = message(BOB, sent_at=10)
    for row in (*incoming, ours, other):
        store.insert_message(row)
    assert store.mark_read(ALICE, up_to_sent_at=20) == [incoming[1].id, incoming[2].id]
    assert state_of(store, incoming[0].id)[0] == "received"
    assert store.mark_read(ALICE) == [incoming[0].id]
    assert store.mark_read(ALICE) == []
    assert all(state_of(store, r.id)[0] == "read" for r in incoming)
    assert state_of(store, ours.id)[0] == "sent"  # outgoing rows are not touched
    assert state_of(store, other.id)[0] == "received"
    assert store.mark_read(CAROL) == []


# --- search -----------------------------------------------------------------------------------


def test_search_escapes_like_wildcards(store: NodeStore) -> None:
    bodies = [
        "I am 100% sure",  # 0
        "I am 1000 sure",  # 1: would match an unescaped "100%"
        "call it snake_case",  # 2
        "call it snakeXcase",  # 3: would match an unescaped "snake_case"
        r"a back\slash here",  # 4
        "SHOUTING Snake_Case",  # 5
    ]
    rows = [message(ALICE, sent_at=i * 10, body=b) for i, b in enumerate(bodies)]
    for row in rows:
        store.insert_message(row)

    def ids(text: str) -> list[int]:
        return [int(r.sent_at / 10) for r in store.search(text)]

    assert ids("100%") == [0]
    assert ids("%") == [0]
    assert ids("snake_case") == [5, 2]  # case-insensitive, newest first
    assert ids("_") == [5, 2]
    assert ids("k\\s") == [4]
    assert ids("\\") == [4]
    assert ids("SURE") == [1, 0]
    assert ids("nothing like it") == []


def test_search_skips_deleted_pages_and_folds_unicode(store: NodeStore) -> None:
    a = message(ALICE, sent_at=1, body="Grüße aus MÜNCHEN")
    b = message(BOB, sent_at=2, body="münchen again")
    gone = message(BOB, sent_at=3, body="münchen deleted", deleted=True)
    for row in (a, b, gone):
        store.insert_message(row)
    assert [r.id for r in store.search("München")] == [b.id, a.id]
    assert [r.id for r in store.search("münchen", limit=1)] == [b.id]
    assert [r.id for r in store.search("grüsse")] == [a.id]  # ß case-folds to ss
    assert [r.id for r in store.search("AUS")] == [a.id]


# --- outbox -----------------------------------------------------------------------------------


def test_due_outbox(store: NodeStore) -> None:
    rows = [
        outbox_row("m1", next_attempt_at=50),  # due
        outbox_row("m2", next_attempt_at=200),  # not yet
        outbox_row("m3", next_attempt_at=10, kind=JobKind.ENVELOPE, event=WRAP, message=None),
        outbox_row("m4", next_attempt_at=10, state="done"),  # finished
        outbox_row("m5", next_attempt_at=10, state="failed"),  # given up
        outbox_row("m6", next_attempt_at=100),  # due exactly now
    ]
    for row in rows:
        store.add_outbox(row)
    # the longest due first
    assert [r.message_id for r in store.due_outbox(100)] == ["m3", "m1", "m6"]
    assert [r.message_id for r in store.due_outbox(100, limit=2)] == ["m3", "m1"]
    assert [r.message_id for r in store.due_outbox(9)] == []
    assert [r.message_id for r in store.due_outbox(2**62)] == ["m3", "m1", "m6", "m2"]
    rows[0].state = "done"
    store.update_outbox(rows[0])
    assert [r.message_id for r in store.due_outbox(100)] == ["m3", "m6"]
    assert store.due_outbox(100)[0] == rows[2]
    plan = (
        store._db()
        .execute(
            "EXPLAIN QUERY PLAN SELECT id FROM outbox WHERE state = 'pending'"
            " AND next_attempt_at <= 100 ORDER BY next_attempt_at, id LIMIT 5"
        )
        .fetchall()
    )
    assert "outbox_due" in str(plan)


# --- seen -------------------------------------------------------------------------------------


def test_seen(store: NodeStore) -> None:
    assert store.seen("e1") is False
    store.mark_seen("e1", 100)
    store.mark_seen("e1", 500)  # idempotent: keeps the first time
    store.mark_seen("e2", 200)
    store.mark_seen("e3", 300)
    assert [store.seen(e) for e in ("e1", "e2", "e3")] == [True, True, True]
    assert store.forget_seen(older_than=250) == 2
    assert (store.seen("e1"), store.seen("e2"), store.seen("e3")) == (False, False, True)
    assert store.forget_seen(older_than=250) == 0


# --- transactions -----------------------------------------------------------------------------


class Boom(Exception):
    pass


def fail_in_transaction(store: NodeStore, writes: Callable[[], object]) -> None:
    """Run ``writes`` in a transaction, then raise Boom out of it."""
    with store.transaction():
        writes()
        raise Boom


def test_transaction_rolls_back_everything(store: NodeStore, path: Path) -> None:
    row = message()

    def writes() -> None:
        store.insert_message(row)
        store.add_outbox(outbox_row(row.id))
        store.set_setting("k", "v")
        store.mark_seen("e1", 1)

    with pytest.raises(Boom):
        fail_in_transaction(store, writes)
    assert store.get_message(row.id) is None
    assert store.outbox_for(row.id) == []
    assert store.get_setting("k") is None
    assert store.seen("e1") is False
    store = reopen(store, path)
    assert store.get_message(row.id) is None
    store.close()


def test_transaction_commits_at_the_end(store: NodeStore, path: Path) -> None:
    other = NodeStore(path, KEY)  # a second connection sees only committed data
    other.open()
    try:
        row = message()
        with store.transaction():
            store.insert_message(row)
            with store.transaction():  # nested: joins the outer one
                store.set_setting("k", "v")
            assert store.get_setting("k") == "v"
            assert other.get_message(row.id) is None
            assert other.get_setting("k") is None
        assert other.get_message(row.id) is not None
        assert other.get_setting("k") == "v"
    finally:
        other.close()


def test_nested_transaction_failure(store: NodeStore) -> None:
    with store.transaction():
        store.set_setting("outer", "1")
        with pytest.raises(Boom):
            fail_in_transaction(store, lambda: store.set_setting("inner", "1"))
        store.set_setting("after", "1")
    assert store.get_setting("outer") == "1"
    assert store.get_setting("inner") is None  # undone with its block
    assert store.get_setting("after") == "1"

    def nested() -> None:
        with store.transaction():
            store.set_setting("deep", "1")

    with pytest.raises(Boom):
        fail_in_transaction(store, nested)
    assert store.get_setting("deep") is None  # undone with the outer block


def test_methods_autocommit_outside_transactions(store: NodeStore, path: Path) -> None:
    row = message()
    store.insert_message(row)
    store.mark_read(ALICE)  # runs its own transaction
    other = NodeStore(path, KEY)
    other.open()
    try:
        got = other.get_message(row.id)
        assert got is not None
        assert got.state == "read"
    finally:
        other.close()


def test_used_from_another_thread(path: Path) -> None:
    s = NodeStore(path, KEY)
    s.open()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with s.transaction():
                s.insert_message(message(id="from-thread"))
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    assert errors == []
    assert s.get_message("from-thread") is not None
    s.close()


# --- the file ---------------------------------------------------------------------------------


def test_reopen_keeps_data(store: NodeStore, path: Path) -> None:
    rows = [message(sent_at=t) for t in range(20)]
    for row in rows:
        store.insert_message(row)
    store.upsert_contact(contact())
    store.add_relay("wss://a.example")
    store = reopen(store, path)
    assert [r.id for r in store.messages(ALICE, limit=100)] == [r.id for r in reversed(rows)]
    assert store.get_contact(ALICE) == contact()
    assert store.relays() == ["wss://a.example"]
    # Inserting after a reopen continues the seq counter.
    late = message(sent_at=0)
    store.insert_message(late)
    assert late.seq > max(r.seq for r in rows)
    store.close()


def file_bytes(path: Path) -> bytes:
    return b"".join(
        p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists()
    )


def test_file_is_encrypted(store: NodeStore, path: Path) -> None:
    store.insert_message(message(body=SECRET_BODY))
    store.upsert_contact(contact(name="Alice Liddell"))
    store.set_setting("visible-setting-name", "visible-setting-value")
    needles = (
        SECRET_BODY[:20].encode(),
        b"treasure",
        b"Alice Liddell",
        ALICE.encode(),
        b"visible-setting",
        b"CREATE TABLE",
    )
    for still_open in (True, False):  # with the WAL, then checkpointed by the close
        data = file_bytes(path)
        assert len(data) > 0
        assert path.with_name(path.name + "-wal").exists() is still_open
        for needle in needles:
            assert needle not in data
        store.close()
    assert not path.read_bytes().startswith(b"SQLite format 3")
    # The same bytes really are the message, for the right key.
    store.open()
    assert store.search("treasure")[0].body == SECRET_BODY


def test_file_modes_are_owner_only(path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        s = NodeStore(path, KEY)
        s.open()
        s.insert_message(message())
        for suffix in ("", "-wal", "-shm"):
            f = path.with_name(path.name + suffix)
            assert f.exists(), suffix
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, suffix
        s.close()
        # An existing file readable by others is restricted on open.
        os.chmod(path, 0o644)
        s.open()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        s.close()
    finally:
        os.umask(old_umask)


def test_wrong_key(store: NodeStore, path: Path) -> None:
    store.insert_message(message())
    store.close()
    wrong = bytes(31) + b"\x01"
    other = NodeStore(path, wrong)
    with pytest.raises(KeystoreCorrupt) as caught:
        other.open()
    text = str(caught.value)
    assert "\n" not in text
    assert wrong.hex() not in text
    assert KEY.hex() not in text
    assert "key" in text
    assert wrong.hex() not in repr(other)
    with pytest.raises(LocalProtocolError):  # still closed
        other.get_setting("x")
    store.open()  # the right key still opens it
    assert len(store.messages(ALICE)) == 1


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(os.urandom(8192), id="random"),
        pytest.param(b"SQLite format 3\x00" + bytes(4080), id="bad-header"),
        pytest.param(b"not a database at all", id="text"),
    ],
)
def test_damaged_file(path: Path, content: bytes) -> None:
    path.write_bytes(content)
    with pytest.raises(KeystoreCorrupt):
        NodeStore(path, KEY).open()


def test_plain_sqlite_file_is_refused(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(KeystoreCorrupt):
        NodeStore(path, KEY).open()


def test_truncated_file(store: NodeStore, path: Path) -> None:
    for i in range(300):
        store.insert_message(message(sent_at=i, body=SECRET_BODY * 3))
    store.close()
    data = path.read_bytes()
    assert len(data) > 40_000
    path.write_bytes(data[: len(data) // 2])

    def read_everything() -> None:
        store.open()
        store.messages(ALICE, limit=1000)  # damage may show only when pages are read
        store.search("nothing")

    with pytest.raises(KeystoreCorrupt):
        read_everything()


def test_survives_sigkill(path: Path) -> None:
    """A committed message is on disk: the process killed right after loses nothing."""
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        from pathlib import Path
        from xchat.store.node import MessageRow, NodeStore
        s = NodeStore(Path({str(path)!r}), bytes(range(32)))
        s.open()
        with s.transaction():
            for i in range(50):
                s.insert_message(MessageRow(
                    f"k{{i}}", "conv", True, "me", "text", "body", i, i, "queued"))
        s.set_state("k7", "sent")
        print("committed", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert done.stdout.strip() == "committed"
    s = NodeStore(path, KEY)
    s.open()
    assert len(s.messages("conv", limit=100)) == 50
    assert state_of(s, "k7") == ("sent", "")
    s.close()


# --- schema versions --------------------------------------------------------------------------


def test_fresh_database_is_current(store: NodeStore, path: Path) -> None:
    store.close()
    conn = raw(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == CURRENT_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_newer_database_is_refused(store: NodeStore, path: Path) -> None:
    store.insert_message(message())
    store.close()
    conn = raw(path)
    conn.execute(f"PRAGMA user_version = {CURRENT_VERSION + 1}")
    conn.close()
    with pytest.raises(KeystoreCorrupt, match="newer X Chat"):
        store.open()
    with pytest.raises(LocalProtocolError):
        store.messages(ALICE)


def test_version_0_is_upgraded(path: Path) -> None:
    """A database at user_version 0 with no tables (as an interrupted first start could
    leave it) is migrated to the current schema when opened."""
    conn = raw(path)
    conn.execute("CREATE TABLE scratch (x)")  # make SQLCipher write a real, keyed file
    conn.execute("DROP TABLE scratch")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    conn.close()
    assert path.stat().st_size > 0
    s = NodeStore(path, KEY)
    s.open()
    s.insert_message(message())
    s.add_outbox(outbox_row())
    s.close()
    conn = raw(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == CURRENT_VERSION
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"settings", "relays", "contacts", "devices", "sessions", "messages"} <= tables
    assert {"outbox", "seen"} <= tables
    conn.close()


def test_later_steps_upgrade_in_one_transaction(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The migration mechanism: a new step runs on an old file and keeps its rows; a
    step that fails leaves the file at its old version, whole."""
    s = NodeStore(path, KEY)
    s.open()
    s.insert_message(message(id="kept"))
    s.close()
    broken = Migration(
        CURRENT_VERSION + 1,
        "a step that fails halfway",
        ("CREATE TABLE extra (x)", "THIS IS NOT SQL"),
    )
    monkeypatch.setattr(node_db, "_MIGRATIONS", (*node_db._MIGRATIONS, broken))
    with pytest.raises(XChatError):
        s.open()
    conn = raw(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == CURRENT_VERSION
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'extra'").fetchone() == (
        0,
    )
    conn.close()
    good = Migration(
        CURRENT_VERSION + 1,
        "a new column",
        ("ALTER TABLE messages ADD COLUMN extra TEXT NOT NULL DEFAULT 'x'",),
    )
    monkeypatch.setattr(node_db, "_MIGRATIONS", (*node_db._MIGRATIONS[:-1], good))
    s.open()
    assert s.get_message("kept") is not None
    s.close()
    conn = raw(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == CURRENT_VERSION + 1
    assert conn.execute("SELECT extra FROM messages").fetchall() == [("x",)]
    conn.close()


# --- misuse and errors ------------------------------------------------------------------------


def test_lifecycle_misuse(path: Path) -> None:
    with pytest.raises(InvalidInput):
        NodeStore(path, b"short")
    with pytest.raises(InvalidInput):
        NodeStore(path, KEY.hex())  # type: ignore[arg-type]
    s = NodeStore(path, KEY)
    with pytest.raises(LocalProtocolError):
        s.get_setting("x")
    with pytest.raises(LocalProtocolError), s.transaction():
        pass
    s.open()
    with pytest.raises(LocalProtocolError):
        s.open()
    s.close()
    s.close()  # idempotent
    with pytest.raises(LocalProtocolError):
        s.insert_message(message())
    with pytest.raises(KeystoreError, match="cannot create"):  # no such folder
        NodeStore(path.parent / "missing" / "node.db", KEY).open()


def test_bad_values_raise_x_chat_errors(store: NodeStore) -> None:
    with pytest.raises(InvalidInput):
        store.insert_message(message(body=["not", "a", "string"]))  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        store.insert_message(message(sent_at=2**70))
    with pytest.raises(InvalidInput):
        store.upsert_contact(ContactRow(ALICE, None, "accepted", [1, 2], 0))  # type: ignore[list-item]
    with pytest.raises(InvalidInput):
        store.insert_message(message(reactions={ALICE: 5}))
    with pytest.raises(InvalidInput):
        store.messages(ALICE, before=(1,))  # type: ignore[arg-type]
    assert store.messages(ALICE) == []


def test_reprs_hold_no_secrets(store: NodeStore) -> None:
    row = message(body=SECRET_BODY)
    store.insert_message(row)
    assert SECRET_BODY not in repr(row)
    assert SECRET_BODY not in repr(store.get_message(row.id))
    assert SECRET_BODY not in repr(store.conversations())
    assert KEY.hex() not in repr(store)
    assert repr(store).startswith("NodeStore(")


def test_constants() -> None:
    assert set(STATE_RANK) | {"failed"} == set(MESSAGE_STATES)
    assert CONTACT_STATES == ("accepted", "request", "blocked")
    assert {"CONTACT_STATES", "STATE_RANK", "NodeStore"} <= set(node_module.__all__)


def test_outbox_housekeeping(tmp_path: Path) -> None:
    store = NodeStore(tmp_path / "house.db", bytes(range(32)))
    store.open()
    try:
        for i in range(3):
            store.add_outbox(
                OutboxRow(
                    0,
                    "m1",
                    "p" * 64,
                    JobKind.ENVELOPE,
                    WRAP,
                    None,
                    ["ws://a"],
                    [],
                    "pending",
                    0,
                    100 - i,
                    "",
                    1,
                )
            )
        store.add_outbox(
            OutboxRow(
                0,
                "m2",
                "p" * 64,
                JobKind.ENVELOPE,
                WRAP,
                None,
                ["ws://a"],
                [],
                "done",
                0,
                0,
                "",
                1,
            )
        )
        assert store.outbox_waiting() == 3
        due = store.due_outbox(1000)
        assert [r.next_attempt_at for r in due] == [98, 99, 100]  # longest due first
        assert store.delete_outbox("m1") == 3
        assert store.outbox_waiting() == 0
        assert store.set_detail("nothing", "x") is False
    finally:
        store.close()


# --- envelopes held back and chain progress (schema version 2) --------------------------------


def test_version_1_is_upgraded_with_empty_held_and_chains_tables_and_untracked_sessions(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as m:
        m.setattr(node_db, "_MIGRATIONS", node_db._MIGRATIONS[:1])
        s = NodeStore(path, KEY)
        s.open()
        s.insert_message(message(id="from-v1"))
        s.save_session(SessionRow("s1", ALICE, "curveA", b"\x01" * 5, 10))
        s.close()
    conn = raw(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    conn.close()
    s = NodeStore(path, KEY)
    s.open()
    assert s.get_message("from-v1") is not None
    assert s.held() == []
    assert s.chains() == []
    # its sessions predate chain progress: their first chain opens as it comes
    assert s.untracked() == ["s1"]
    s.save_session(SessionRow("s2", BOB, "curveB", b"\x02" * 5, 20))
    assert s.untracked() == ["s1"]  # a new session is tracked from its start
    s.set_tracked(["s1"])
    assert s.untracked() == []
    s.close()
    conn = raw(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == CURRENT_VERSION >= 2
    conn.close()


def test_held_envelopes_survive_a_reopen_and_keep_their_first_time(
    store: NodeStore, path: Path
) -> None:
    store.hold("b" * 64, '{"id": "b"}', 100, 20)
    store.hold("a" * 64, '{"id": "a"}', 100, 10)
    store.hold("a" * 64, '{"id": "a"}', 100, 30)  # again: the first time stays
    store = reopen(store, path)
    assert store.held() == [("a" * 64, '{"id": "a"}', 10), ("b" * 64, '{"id": "b"}', 20)]
    store.release(["a" * 64, "c" * 64])
    assert store.held() == [("b" * 64, '{"id": "b"}', 20)]
    store.close()


def test_chain_states_are_replaced_and_forgotten_by_age(store: NodeStore, path: Path) -> None:
    store.save_chain(b"r1", '{"next": 1, "missing": []}', 10)
    store.save_chain(b"r2", '{"next": 5, "missing": [2]}', 20)
    store.save_chain(b"r1", '{"next": 9, "missing": []}', 30)
    store = reopen(store, path)
    assert store.chains() == [
        (b"r2", '{"next": 5, "missing": [2]}'),
        (b"r1", '{"next": 9, "missing": []}'),
    ]
    assert store.chains(limit=1) == [(b"r1", '{"next": 9, "missing": []}')]
    assert store.forget_chains(older_than=25) == 1
    assert store.chains() == [(b"r1", '{"next": 9, "missing": []}')]
    store.close()


def test_a_damaged_envelope_job_is_failed_and_keeps_its_stored_text(tmp_path: Path) -> None:
    """An envelope whose stored JSON cannot be parsed reads back without its event;
    writing it back failed keeps the damaged text (for inspection) and ends the job."""
    from xchat.core import outbox as jobs

    store = NodeStore(tmp_path / "node.db", KEY)
    store.open()
    entry = jobs.envelope_job("m1", BOB, WRAP, ["wss://a"], 100)
    store.add_outbox(entry)
    store._db().execute("UPDATE outbox SET event = '{broken' WHERE id = ?", (entry.id,))
    (loaded,) = store.due_outbox(200)
    assert loaded.event is None
    jobs.damaged(loaded)
    store.update_outbox(loaded)
    assert store.due_outbox(10**9) == []
    text = store._db().execute("SELECT event FROM outbox WHERE id = ?", (entry.id,)).fetchone()
    assert text[0] == "{broken"
    store.close()


def test_conversations_read_again_see_only_committed_rows(store: NodeStore) -> None:
    """Conversations are cached once read outside a transaction; one read inside a
    transaction that is then rolled back is not (it never existed)."""
    peer, other = "aa" * 32, "bb" * 32
    rolled_back = "0" * 32

    def add_then_fail() -> None:
        with store.transaction():
            store.add_conversation(
                Conversation(rolled_back, ConversationKind.DIRECT, peer, (peer,), 1)
            )
            assert store.get_conversation(rolled_back) is not None
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        add_then_fail()
    assert store.get_conversation(rolled_back) is None
    assert store.direct_conversation(peer) is None
    kept = Conversation("1" * 32, ConversationKind.DIRECT, other, (other,), 2)
    store.add_conversation(kept)
    assert store.get_conversation(kept.id) == kept
    assert store.direct_conversation(other) == kept
    with pytest.raises(dataclasses.FrozenInstanceError):
        kept.peer = peer  # type: ignore[misc]
