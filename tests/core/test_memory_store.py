"""The in-memory store (xchat.core.memory) against the node's real SQLCipher store: every
case runs on both (``any_store``), and property tests run the same random steps on both
and compare, so that the reference the core's rules are tested with behaves as the store
they run on.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.core.conftest import Boom, fail_in_transaction, open_store
from xchat.core.events import sign_event
from xchat.core.memory import MemoryStore
from xchat.core.stores import NodeStoreProtocol
from xchat.crypto.keys import SecretKey
from xchat.errors import InvalidInput
from xchat.model import (
    Contact,
    ContactState,
    Conversation,
    ConversationKind,
    Device,
    JobKind,
    Message,
    MessageState,
    OutboxEntry,
    OutboxState,
    SessionRecord,
)
from xchat.store.node import NodeStore

ALICE, BOB, CAROL = "a1" * 32, "b0" * 32, "c3" * 32
ME = "ee" * 32
_ids = iter(range(10**9))


def conv_id(peer: str) -> str:
    return peer[:32]


def add_direct(store: NodeStoreProtocol, peer: str, created_at: int = 0) -> str:
    store.add_conversation(
        Conversation(conv_id(peer), ConversationKind.DIRECT, peer, (peer,), created_at)
    )
    return conv_id(peer)


def message(
    conversation: str,
    *,
    sent_at: int = 1_000,
    outgoing: bool = False,
    state: MessageState | None = None,
    body: str = "hi",
    id: str | None = None,
) -> Message:
    return Message(
        id=id or f"m{next(_ids):08d}",
        conversation=conversation,
        outgoing=outgoing,
        sender=ME if outgoing else "?",
        type="text",
        body=body,
        sent_at=sent_at,
        received_at=sent_at + 5,
        state=state or (MessageState.QUEUED if outgoing else MessageState.RECEIVED),
    )


_KEY = SecretKey.from_hex(bytes(range(1, 33)).hex())


def envelope(n: int = 0) -> OutboxEntry:
    event = sign_event(
        _KEY, kind=1059, tags=[["p", BOB]], content=f"x{n}", created_at=100, rng=lambda k: b"\1" * k
    )
    return OutboxEntry(
        id=0,
        message_id="msg",
        recipient=BOB,
        kind=JobKind.ENVELOPE,
        event=event,
        message=None,
        relays=["ws://a", "ws://b"],
        accepted=[],
        state=OutboxState.PENDING,
        attempts=0,
        next_attempt_at=100 + n,
        last_error="",
        created_at=100,
    )


def test_memory_store_implements_the_protocol() -> None:
    store: NodeStoreProtocol = MemoryStore()
    assert repr(store) == "MemoryStore(0 messages)"


# -- transactions ---------------------------------------------------------------------


def test_a_transaction_undoes_every_write_on_an_exception(any_store: NodeStoreProtocol) -> None:
    any_store.set_setting("kept", "1")

    def writes() -> None:
        any_store.set_setting("kept", "2")
        any_store.upsert_contact(Contact(ALICE, None, ContactState.REQUEST, [], 1))
        cid = add_direct(any_store, ALICE)
        any_store.insert_message(message(cid))
        any_store.add_outbox(envelope())
        any_store.mark_seen("e1", 5)

    with pytest.raises(Boom):
        fail_in_transaction(any_store, writes)
    assert any_store.get_setting("kept") == "1"
    assert any_store.get_contact(ALICE) is None
    assert any_store.direct_conversation(ALICE) is None
    assert any_store.messages(conv_id(ALICE)) == []
    assert any_store.outbox_waiting() == 0
    assert not any_store.seen("e1")


def test_a_nested_transaction_is_a_savepoint(any_store: NodeStoreProtocol) -> None:
    with any_store.transaction():
        any_store.set_setting("outer", "1")
        with pytest.raises(Boom):
            fail_in_transaction(any_store, lambda: any_store.set_setting("inner", "1"))
        with any_store.transaction():
            any_store.set_setting("inner2", "1")
    assert any_store.get_setting("outer") == "1"
    assert any_store.get_setting("inner") is None  # undone with its block
    assert any_store.get_setting("inner2") == "1"

    def nested() -> None:
        with any_store.transaction():
            any_store.set_setting("deep", "1")

    with pytest.raises(Boom):
        fail_in_transaction(any_store, nested)
    assert any_store.get_setting("deep") is None  # undone with the outer block


def test_seq_continues_after_a_rollback_as_in_sqlite(any_store: NodeStoreProtocol) -> None:
    cid = add_direct(any_store, ALICE)
    first = message(cid)
    assert any_store.insert_message(first)
    with pytest.raises(Boom):
        fail_in_transaction(any_store, lambda: any_store.insert_message(message(cid)))
    second = message(cid)
    assert any_store.insert_message(second)
    assert second.seq == first.seq + 1


# -- reads are copies ------------------------------------------------------------------


def test_reads_are_fresh_objects(any_store: NodeStoreProtocol) -> None:
    cid = add_direct(any_store, ALICE)
    row = message(cid)
    any_store.insert_message(row)
    row.body = "changed after insert"
    got = any_store.get_message(row.id)
    assert got is not None
    assert got.body == "hi"
    got.body = "changed after read"
    got.reactions = {ALICE: "x"}
    again = any_store.get_message(row.id)
    assert again is not None
    assert (again.body, again.reactions) == ("hi", None)


# -- contacts, devices, conversations --------------------------------------------------


def test_contacts_carry_their_direct_conversation(any_store: NodeStoreProtocol) -> None:
    any_store.upsert_contact(Contact(BOB, "b", ContactState.ACCEPTED, ["ws://r"], 2))
    any_store.upsert_contact(Contact(ALICE, "a", ContactState.REQUEST, [], 1))
    bob = any_store.get_contact(BOB)
    assert bob is not None
    assert bob.conversation == ""
    cid = add_direct(any_store, BOB)
    bob = any_store.get_contact(BOB)
    assert bob is not None
    assert bob.conversation == cid
    bob.conversation = "ignored on write"
    bob.name = "bobby"
    any_store.upsert_contact(bob)
    again = any_store.get_contact(BOB)
    assert again is not None
    assert (again.name, again.conversation) == ("bobby", cid)
    assert [c.pubkey for c in any_store.contacts()] == [ALICE, BOB]  # by created_at
    assert [c.pubkey for c in any_store.contacts([ContactState.ACCEPTED])] == [BOB]
    with pytest.raises(InvalidInput, match="a contact's state must be one of"):
        any_store.upsert_contact(Contact(CAROL, None, "friend", [], 1))  # type: ignore[arg-type]


def test_devices(any_store: NodeStoreProtocol) -> None:
    assert any_store.upsert_device(Device("d2", ALICE, "c2", "{}", 5))
    assert any_store.upsert_device(Device("d1", ALICE, "c1", "{}", 5, bundle="b1"))
    assert not any_store.upsert_device(Device("d1", ALICE, "c1new", "{1}", 9))
    assert any_store.upsert_device(Device("d1", BOB, "x", "{}", 1))  # another person's
    devices = any_store.devices(ALICE)
    assert [(d.device_id, d.curve25519, d.first_seen, d.bundle) for d in devices] == [
        ("d1", "c1new", 5, "b1"),
        ("d2", "c2", 5, None),
    ]


def test_sessions(any_store: NodeStoreProtocol) -> None:
    any_store.save_session(SessionRecord("s2", ALICE, "c", b"r2", 3))
    any_store.save_session(SessionRecord("s1", ALICE, "c", b"r1", 3))
    any_store.save_session(SessionRecord("s2", ALICE, "c", b"r2b", 1))
    assert [(s.session_id, s.record) for s in any_store.sessions()] == [
        ("s2", b"r2b"),
        ("s1", b"r1"),
    ]


def test_conversation_ids_and_peers_are_unique(any_store: NodeStoreProtocol) -> None:
    add_direct(any_store, ALICE)
    with pytest.raises(InvalidInput):
        add_direct(any_store, ALICE)
    with pytest.raises(InvalidInput):
        any_store.add_conversation(
            Conversation(conv_id(ALICE), ConversationKind.GROUP, None, (BOB,), 1)
        )
    group = Conversation("9" * 32, ConversationKind.GROUP, None, (CAROL, BOB), 7)
    any_store.add_conversation(group)
    got = any_store.get_conversation(group.id)
    assert got is not None
    assert got.members == (BOB, CAROL)
    assert got.has_member(CAROL)
    assert any_store.get_conversation("0" * 32) is None


def test_conversation_summaries(any_store: NodeStoreProtocol) -> None:
    any_store.upsert_contact(Contact(ALICE, "Alice", ContactState.ACCEPTED, [], 1))
    any_store.upsert_contact(Contact(BOB, None, ContactState.REQUEST, [], 1, nip17_only=True))
    any_store.upsert_contact(Contact(CAROL, "C", ContactState.BLOCKED, [], 1))
    a, b, c = (
        add_direct(any_store, ALICE),
        add_direct(any_store, BOB, 5),
        add_direct(any_store, CAROL),
    )
    stranger = add_direct(any_store, "d4" * 32, created_at=3)
    any_store.insert_message(message(a, sent_at=2_000))
    last = message(a, sent_at=2_000, outgoing=True)
    any_store.insert_message(last)  # same time: the later insert is the last
    any_store.insert_message(message(a, sent_at=1_000, state=MessageState.READ))
    any_store.insert_message(message(c, sent_at=9_000))
    summaries = any_store.conversations()
    assert [s.conversation.id for s in summaries] == [b, stranger, a]  # 5000, 3000, 2000 ms
    by_id = {s.conversation.id: s for s in summaries}
    assert (by_id[a].name, by_id[a].state, by_id[a].unread) == ("Alice", ContactState.ACCEPTED, 1)
    assert by_id[a].last_message is not None
    assert by_id[a].last_message.id == last.id
    assert by_id[a].last_activity == 2_000
    assert by_id[a].forward_secret
    assert (by_id[b].state, by_id[b].forward_secret, by_id[b].last_message) == (
        ContactState.REQUEST,
        False,
        None,
    )
    assert by_id[stranger].state is ContactState.REQUEST
    assert by_id[stranger].name is None
    assert by_id[b].conversation.members == (BOB,)


# -- messages --------------------------------------------------------------------------


def test_insert_once_and_state_checked_for_the_direction(any_store: NodeStoreProtocol) -> None:
    cid = add_direct(any_store, ALICE)
    row = message(cid, id="same")
    assert any_store.insert_message(row)
    assert row.seq > 0
    assert not any_store.insert_message(message(cid, id="same", body="other"))
    got = any_store.get_message("same")
    assert got is not None
    assert got.body == "hi"
    with pytest.raises(InvalidInput, match="the state of this message must be one of"):
        any_store.insert_message(message(cid, state=MessageState.SENT))
    with pytest.raises(InvalidInput, match="the state of this message must be one of"):
        any_store.insert_message(message(cid, outgoing=True, state=MessageState.RECEIVED))


def test_update_message_writes_content_not_state(any_store: NodeStoreProtocol) -> None:
    cid = add_direct(any_store, ALICE)
    row = message(cid, outgoing=True)
    any_store.insert_message(row)
    any_store.set_state(row.id, MessageState.SENT)
    row.body, row.edited_at, row.deleted, row.reactions = "new", 7, True, {ALICE: "👍"}
    row.state, row.conversation, row.sent_at = MessageState.FAILED, "elsewhere", 1
    any_store.update_message(row)
    got = any_store.get_message(row.id)
    assert got is not None
    assert (got.body, got.edited_at, got.deleted, got.reactions) == ("new", 7, True, {ALICE: "👍"})
    assert (got.state, got.conversation, got.sent_at) == (MessageState.SENT, cid, 1_000)
    with pytest.raises(InvalidInput, match="there is no stored message with that id"):
        any_store.update_message(message(cid))


def test_newest_first_with_paging(any_store: NodeStoreProtocol) -> None:
    cid = add_direct(any_store, ALICE)
    rows = [message(cid, sent_at=t) for t in (5, 3, 5, 1, 4)]
    for r in rows:
        any_store.insert_message(r)
    any_store.insert_message(message(add_direct(any_store, BOB), sent_at=9))
    order = [(m.sent_at, m.seq) for m in any_store.messages(cid)]
    assert order == sorted(order, reverse=True)
    assert len(order) == 5
    page = any_store.messages(cid, limit=2)
    rest = any_store.messages(cid, before=(page[-1].sent_at, page[-1].seq))
    assert [m.id for m in page + rest] == [m.id for m in any_store.messages(cid)]
    assert any_store.messages(cid, limit=0) == []
    with pytest.raises(InvalidInput, match="a limit cannot be negative"):
        any_store.messages(cid, limit=-1)


def test_set_state_moves_along_the_table_only(any_store: NodeStoreProtocol) -> None:
    cid = add_direct(any_store, ALICE)
    row = message(cid, outgoing=True)
    any_store.insert_message(row)
    assert any_store.set_state(row.id, MessageState.SENT, "ws://a")
    assert not any_store.set_state(row.id, MessageState.QUEUED)
    assert not any_store.set_state(row.id, MessageState.SENT)
    assert any_store.set_state(row.id, MessageState.DELIVERED)  # empty detail keeps it
    got = any_store.get_message(row.id)
    assert got is not None
    assert (got.state, got.state_detail) == (MessageState.DELIVERED, "ws://a")
    assert not any_store.set_state(row.id, MessageState.FAILED, "late")
    with pytest.raises(InvalidInput, match="a message state is one of"):
        any_store.set_state(row.id, MessageState.RECEIVED)
    incoming = message(cid)
    any_store.insert_message(incoming)
    assert not any_store.set_state(incoming.id, MessageState.READ)
    assert not any_store.set_state("unknown", MessageState.SENT)


def test_failed_then_retried_clears_the_reason(any_store: NodeStoreProtocol) -> None:
    cid = add_direct(any_store, ALICE)
    row = message(cid, outgoing=True)
    any_store.insert_message(row)
    assert any_store.set_state(row.id, MessageState.FAILED, "not accepted")
    assert any_store.set_state(row.id, MessageState.QUEUED)
    got = any_store.get_message(row.id)
    assert got is not None
    assert (got.state, got.state_detail) == (MessageState.QUEUED, "")
    assert any_store.set_detail(row.id, "ws://x")
    incoming = message(cid)
    any_store.insert_message(incoming)
    assert not any_store.set_detail(incoming.id, "no")


_STATES = [s for s in MessageState if s is not MessageState.RECEIVED]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(st.tuples(st.sampled_from(_STATES), st.sampled_from(["", "d1", "d2"]))))
def test_set_state_matches_the_real_store(
    tmp_path: Path, steps: list[tuple[MessageState, str]]
) -> None:
    folder = tmp_path / f"{next(_ids)}"
    folder.mkdir()
    memory, real = MemoryStore(), open_store("sqlcipher", folder)
    try:
        for store in (memory, real):
            store.insert_message(message("c" * 32, outgoing=True, id="x"))
        for state, detail in steps:
            assert memory.set_state("x", state, detail) == real.set_state("x", state, detail)
        a, b = memory.get_message("x"), real.get_message("x")
        assert a is not None
        assert b is not None
        assert (a.state, a.state_detail) == (b.state, b.state_detail)
    finally:
        assert isinstance(real, NodeStore)
        real.close()


def test_search(any_store: NodeStoreProtocol) -> None:
    cid = add_direct(any_store, ALICE)
    for body in ("Hello World", "100% sure", "ÉCOLE ouverte", "hello again"):
        any_store.insert_message(message(cid, body=body))
    gone = message(cid, body="hello deleted")
    any_store.insert_message(gone)
    gone.deleted = True
    any_store.update_message(gone)
    assert [m.body for m in any_store.search("HELLO")] == ["hello again", "Hello World"]
    assert [m.body for m in any_store.search("0%")] == ["100% sure"]
    assert [m.body for m in any_store.search("école")] == ["ÉCOLE ouverte"]
    assert [m.body for m in any_store.search("hello", limit=1)] == ["hello again"]


def test_mark_read(any_store: NodeStoreProtocol) -> None:
    cid = add_direct(any_store, ALICE)
    late, early = message(cid, sent_at=30), message(cid, sent_at=10)
    mine = message(cid, sent_at=5, outgoing=True)
    for r in (late, early, mine):
        any_store.insert_message(r)
    assert any_store.mark_read(cid, up_to_sent_at=20) == [early.id]
    assert any_store.mark_read(cid) == [late.id]
    assert any_store.mark_read(cid) == []
    got = any_store.get_message(mine.id)
    assert got is not None
    assert got.state is MessageState.QUEUED


# -- outbox ------------------------------------------------------------------------------


def test_outbox(any_store: NodeStoreProtocol) -> None:
    first, second = envelope(5), envelope(1)
    assert any_store.add_outbox(first) == first.id
    any_store.add_outbox(second)
    later = OutboxEntry(
        id=0,
        message_id="other",
        recipient=BOB,
        kind=JobKind.SEAL_LATER,
        event=None,
        message={"type": "text", "id": "1" * 32, "sent_at": 1, "body": "x", "v": 1},
        relays=[],
        accepted=[],
        state=OutboxState.PENDING,
        attempts=0,
        next_attempt_at=50,
        last_error="",
        created_at=1,
    )
    any_store.add_outbox(later)
    assert [e.id for e in any_store.due_outbox(101)] == [later.id, second.id]
    assert [e.id for e in any_store.due_outbox(200, limit=2)] == [later.id, second.id]
    first.state, first.accepted = OutboxState.DONE, ["ws://a"]
    any_store.update_outbox(first)
    assert any_store.outbox_waiting() == 2
    got = any_store.outbox_for("msg")
    assert [(e.id, e.state, e.accepted) for e in got] == [
        (first.id, OutboxState.DONE, ["ws://a"]),
        (second.id, OutboxState.PENDING, []),
    ]
    assert got[0].event == first.event
    assert any_store.outbox_for("other")[0].message == later.message
    assert any_store.delete_outbox("msg") == 2
    assert any_store.outbox_for("msg") == []
    with pytest.raises(InvalidInput, match="there is no outbox row with that id"):
        any_store.update_outbox(first)
    first.event = None
    with pytest.raises(InvalidInput, match="an envelope job needs its sealed event"):
        any_store.add_outbox(first)


# -- seen, held, chains, settings, relays ----------------------------------------------------


def test_seen_held_chains(any_store: NodeStoreProtocol) -> None:
    any_store.mark_seen("e1", 10)
    any_store.mark_seen("e1", 50)  # keeps the first time
    any_store.mark_seen("e2", 20)
    assert any_store.forget_seen(older_than=15) == 1
    assert (any_store.seen("e1"), any_store.seen("e2")) == (False, True)
    any_store.hold("h2", "{2}", 3, 9)
    any_store.hold("h1", "{1}", 3, 9)
    any_store.hold("h1", "{again}", 3, 99)
    assert any_store.held() == [("h1", "{1}", 9), ("h2", "{2}", 9)]
    any_store.release(["h1", "unknown"])
    assert any_store.held() == [("h2", "{2}", 9)]
    any_store.save_chain(b"r1", "s1", 1)
    any_store.save_chain(b"r2", "s2", 2)
    any_store.save_chain(b"r1", "s1b", 3)
    assert any_store.chains() == [(b"r2", "s2"), (b"r1", "s1b")]
    assert any_store.chains(limit=1) == [(b"r1", "s1b")]
    assert any_store.forget_chains(older_than=3) == 1
    assert any_store.chains() == [(b"r1", "s1b")]
    assert any_store.untracked() == []
    any_store.set_tracked(["nothing"])


def test_untracked_sessions_are_tracked_once() -> None:
    store = MemoryStore(untracked=["s1", "s2"])
    store.set_tracked(["s1"])
    assert store.untracked() == ["s2"]


def test_settings_and_relays(any_store: NodeStoreProtocol) -> None:
    assert any_store.get_setting("x") is None
    assert any_store.get_setting("x", "d") == "d"
    any_store.set_setting("x", "1")
    any_store.set_setting("x", "2")
    assert any_store.get_setting("x") == "2"
    for url in ("ws://b", "ws://a", "ws://b"):
        any_store.add_relay(url)
    assert any_store.relays() == ["ws://b", "ws://a"]
    assert any_store.remove_relay("ws://b")
    assert not any_store.remove_relay("ws://b")
    with pytest.raises(InvalidInput, match="a relay URL cannot be empty"):
        any_store.add_relay("")
