"""The outbox machine (xchat.core.outbox): quorum, one backoff, giving up after
MAX_ATTEMPTS, retries, receipts before the relays' answers, seal-later jobs becoming
envelope jobs, and the transition table refusing illegal moves. Settling runs on both
stores (``any_store``); envelopes are real signed events.
"""

from __future__ import annotations

import pytest

from tests.conftest import SeededRng
from xchat.core import outbox
from xchat.core.events import sign_event
from xchat.core.message import Delete, Delivered, Edit, Reaction, Read, Text, encode_app_message
from xchat.core.node_events import StateChanged
from xchat.core.stores import NodeStoreProtocol
from xchat.crypto.keys import SecretKey
from xchat.errors import InvalidInput, LocalProtocolError
from xchat.model import (
    Conversation,
    ConversationKind,
    JobKind,
    Message,
    MessageState,
    OutboxEntry,
    OutboxState,
)
from xchat.wire.event import Event

BOB = "b0" * 32
ME = "ee" * 32
NOW = 1_750_000_000
R1, R2, R3 = "wss://one.example", "wss://two.example", "wss://three.example"
_KEY = SecretKey.from_hex("11" * 32)
_rng = SeededRng("outbox-tests")
_n = iter(range(10**9))


def wrap() -> Event:
    return sign_event(
        _KEY, kind=1059, tags=[["p", BOB]], content=f"c{next(_n)}", created_at=NOW, rng=_rng
    )


def job(relays: list[str], message_id: str = "m1") -> OutboxEntry:
    return outbox.envelope_job(message_id, BOB, wrap(), relays, NOW)


def queued(store: NodeStoreProtocol, message_id: str = "m1") -> None:
    if store.direct_conversation(BOB) is None:
        store.add_conversation(Conversation("c" * 32, ConversationKind.DIRECT, BOB, (BOB,), NOW))
    store.insert_message(
        Message(
            id=message_id,
            conversation="c" * 32,
            outgoing=True,
            sender=ME,
            type="text",
            body="hi",
            sent_at=NOW * 1000,
            received_at=NOW * 1000,
            state=MessageState.QUEUED,
        )
    )


def state_of(store: NodeStoreProtocol, message_id: str = "m1") -> tuple[MessageState, str]:
    row = store.get_message(message_id)
    assert row is not None
    return row.state, row.state_detail


# -- the pure machine ----------------------------------------------------------------------


def test_backoff_doubles_from_one_second_to_a_minute() -> None:
    assert [outbox.backoff(n) for n in range(1, 13)] == [
        1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0, 60.0, 60.0, 60.0,
    ]  # fmt: skip
    assert outbox.backoff(10_000) == 60.0


@pytest.mark.parametrize(("relays", "needed"), [(0, 0), (1, 1), (2, 2), (5, 2)])
def test_quorum_is_two_or_every_relay_if_fewer(relays: int, needed: int) -> None:
    assert outbox.quorum([f"wss://r{i}" for i in range(relays)]) == needed


def test_an_envelope_job_keeps_the_sealed_event_object() -> None:
    event = wrap()
    entry = outbox.envelope_job("m1", BOB, event, [R1, R2], NOW)
    assert entry.event is event  # never serialised and parsed again in memory
    assert (entry.kind, entry.state, entry.attempts, entry.next_attempt_at) == (
        JobKind.ENVELOPE,
        OutboxState.PENDING,
        0,
        NOW,
    )
    assert (entry.accepted, entry.last_error, entry.created_at, entry.message) == (
        [],
        "",
        NOW,
        None,
    )


def test_one_relay_is_a_quorum_of_one() -> None:
    entry = job([R1])
    assert outbox.record_publish(entry, [R1], [], NOW) is outbox.Outcome.DONE
    assert entry.state is OutboxState.DONE


def test_five_relays_need_two() -> None:
    entry = job([R1, R2, R3, "wss://4", "wss://5"])
    assert outbox.record_publish(entry, [R3], ["x"], NOW) is outbox.Outcome.RETRY
    assert outbox.remaining(entry) == [R1, R2, "wss://4", "wss://5"]
    assert outbox.record_publish(entry, ["wss://5"], [], NOW + 1) is outbox.Outcome.DONE
    assert entry.accepted == [R3, "wss://5"]
    assert (entry.attempts, entry.last_error) == (2, "")


def test_short_of_the_quorum_it_retries_with_backoff_only_where_needed() -> None:
    entry = job([R1, R2])
    errors = [outbox.publish_error(R2, "rate-limited: " + "x" * 300)]
    assert len(errors[0]) == 200
    assert outbox.record_publish(entry, [R1], errors, NOW + 0.5) is outbox.Outcome.RETRY
    assert (entry.state, entry.attempts, entry.next_attempt_at) == (
        OutboxState.PENDING,
        1,
        NOW + 1,
    )
    assert entry.last_error == errors[0]
    assert outbox.remaining(entry) == [R2]
    assert outbox.record_publish(entry, [], ["e"], NOW + 10) is outbox.Outcome.RETRY
    assert entry.next_attempt_at == NOW + 12  # 2 s after the second attempt
    assert outbox.next_due([entry, job([R1])]) == NOW
    assert outbox.next_due([entry]) == NOW + 12


def test_twelve_attempts_then_failed() -> None:
    entry = job([R1, R2])
    outcomes = [
        outbox.record_publish(entry, [], [f"{R1}: down", f"{R2}: down"], NOW + i)
        for i in range(outbox.MAX_ATTEMPTS)
    ]
    assert outcomes == [outbox.Outcome.RETRY] * 11 + [outbox.Outcome.FAILED]
    assert entry.state is OutboxState.FAILED
    assert entry.last_error == f"{R1}: down; {R2}: down"
    assert outbox.failure_detail(entry) == f"not accepted by enough relays: {R1}: down; {R2}: down"
    assert outbox.next_due([entry]) is None


def test_no_relay_fails_at_once() -> None:
    entry = job([])
    assert outbox.record_publish(entry, [], [], NOW) is outbox.Outcome.FAILED
    assert entry.last_error == "no relay to publish to"


def test_retry_after_failed() -> None:
    entry = job([R1])
    outbox.fail(entry, "gone")
    outbox.retry(entry, NOW + 99)
    assert (entry.state, entry.attempts, entry.next_attempt_at, entry.last_error) == (
        OutboxState.PENDING,
        0,
        NOW + 99,
        "",
    )
    assert outbox.record_publish(entry, [R1], [], NOW + 100) is outbox.Outcome.DONE


def test_the_transition_table_refuses_illegal_moves() -> None:
    done = job([R1])
    outbox.record_publish(done, [R1], [], NOW)
    with pytest.raises(LocalProtocolError, match="cannot go from done"):
        outbox.record_publish(done, [R1], [], NOW)
    with pytest.raises(LocalProtocolError, match="cannot go from done to failed"):
        outbox.fail(done, "late")
    with pytest.raises(LocalProtocolError, match="is not retried"):
        outbox.retry(done, NOW)
    pending = job([R1])
    with pytest.raises(LocalProtocolError, match="is not retried"):
        outbox.retry(pending, NOW)
    failed = job([R1])
    outbox.fail(failed, "x")
    with pytest.raises(LocalProtocolError, match="cannot go from failed to done"):
        outbox.record_publish(failed, [R1], [], NOW)
    later = outbox.seal_later_job("m2", BOB, {"type": "text"}, [R1], NOW)
    with pytest.raises(LocalProtocolError, match="only an envelope job is published"):
        outbox.record_publish(later, [R1], [], NOW)
    with pytest.raises(LocalProtocolError, match="waits for a device"):
        outbox.record_no_device(pending, NOW)
    outbox.fail(later, "x")
    with pytest.raises(LocalProtocolError, match="waits for a device"):
        outbox.record_no_device(later, NOW)


# -- seal later ----------------------------------------------------------------------------


def test_seal_later_waits_for_a_device_then_gives_up() -> None:
    message = encode_app_message(Text("1" * 32, NOW * 1000, "hi"))
    entry = outbox.seal_later_job("m1", BOB, message, [R1], NOW)
    assert (entry.kind, entry.event, entry.message) == (JobKind.SEAL_LATER, None, message)
    outcomes = [outbox.record_no_device(entry, NOW + i) for i in range(outbox.MAX_ATTEMPTS)]
    assert outcomes == [outbox.Outcome.RETRY] * 11 + [outbox.Outcome.FAILED]
    assert (entry.state, entry.last_error) == (OutboxState.FAILED, outbox.NO_DEVICE)
    assert outbox.failure_detail(entry) == outbox.NO_DEVICE


def test_sealed_jobs_take_the_place_of_the_seal_later_job(any_store: NodeStoreProtocol) -> None:
    queued(any_store)
    message = encode_app_message(Text("1" * 32, NOW * 1000, "hi"))
    later = outbox.seal_later_job("m1", BOB, message, [R1], NOW)
    any_store.add_outbox(later)
    outbox.record_no_device(later, NOW)
    any_store.update_outbox(later)
    envelopes = outbox.sealed(later, [job([R1]), job([R1])])
    assert envelopes[0].id == later.id
    any_store.update_outbox(envelopes[0])
    any_store.add_outbox(envelopes[1])
    rows = any_store.outbox_for("m1")
    assert [(r.kind, r.attempts) for r in rows] == [(JobKind.ENVELOPE, 0)] * 2
    assert rows[0].id == later.id
    assert [r.event for r in rows] == [e.event for e in envelopes]
    with pytest.raises(LocalProtocolError, match="one envelope job or more"):
        outbox.sealed(outbox.seal_later_job("m", BOB, message, [R1], NOW), [])
    with pytest.raises(LocalProtocolError, match="only a pending seal-later job"):
        outbox.sealed(envelopes[1], [job([R1])])


def test_what_nip17_contacts_cannot_receive() -> None:
    target = "2" * 32
    refused = [
        Edit("1" * 32, 1, target, "x"),
        Delivered("1" * 32, 1, (target,)),
        Read("1" * 32, 1, (target,)),
    ]
    allowed = [
        Text("1" * 32, 1, "x"),
        Reaction("1" * 32, 1, target, "👍"),
        Delete("1" * 32, 1, target),
    ]
    for message in refused:
        assert outbox.cannot_seal(message, nip17_only=True) == "NIP-17 contacts cannot receive this"
        assert outbox.cannot_seal(message, nip17_only=False) is None
    for message in allowed:
        assert outbox.cannot_seal(message, nip17_only=True) is None


# -- settling, on the stores ------------------------------------------------------------------


def test_every_envelope_done_makes_the_message_sent(any_store: NodeStoreProtocol) -> None:
    queued(any_store)
    a, b = job([R2, R1]), job([R3, R1])
    any_store.add_outbox(a)
    any_store.add_outbox(b)
    outbox.record_publish(a, [R1, R2], [], NOW)
    assert outbox.settle(any_store, a) is None  # b is still pending
    assert state_of(any_store) == (MessageState.QUEUED, "")
    outbox.record_publish(b, [R3], ["x"], NOW)
    assert outbox.settle(any_store, b) is None
    outbox.record_publish(b, [R1], [], NOW + 1)
    detail = f"{R1} {R3} {R2}"  # sorted, once each
    assert outbox.settle(any_store, b) == StateChanged("m1", MessageState.SENT, detail)
    assert state_of(any_store) == (MessageState.SENT, detail)
    assert any_store.outbox_for("m1") == []  # done: deleted
    assert any_store.outbox_waiting() == 0


def test_a_receipt_before_the_relays_answer(any_store: NodeStoreProtocol) -> None:
    queued(any_store)
    entry = job([R1])
    any_store.add_outbox(entry)
    assert any_store.set_state("m1", MessageState.DELIVERED)  # the peer's receipt came first
    outbox.record_publish(entry, [R1], [], NOW)
    assert outbox.settle(any_store, entry) == StateChanged("m1", MessageState.DELIVERED, R1)
    assert state_of(any_store) == (MessageState.DELIVERED, R1)


def test_a_failed_job_fails_its_message_and_a_retry_queues_it(
    any_store: NodeStoreProtocol,
) -> None:
    queued(any_store)
    ok, bad = job([R1]), job([R2])
    any_store.add_outbox(ok)
    any_store.add_outbox(bad)
    outbox.record_publish(ok, [R1], [], NOW)
    outbox.settle(any_store, ok)
    for i in range(outbox.MAX_ATTEMPTS):
        outcome = outbox.record_publish(bad, [], [f"{R2}: blocked"], NOW + i)
        changed = outbox.settle(any_store, bad)
    assert outcome is outbox.Outcome.FAILED
    detail = f"not accepted by enough relays: {R2}: blocked"
    assert changed == StateChanged("m1", MessageState.FAILED, detail)
    assert state_of(any_store) == (MessageState.FAILED, detail)
    with pytest.raises(InvalidInput, match="only failed messages can be retried"):
        outbox.check_retry(Message("x", "c", True, ME, "text", "", 1, 1, MessageState.SENT))
    row = any_store.get_message("m1")
    assert row is not None
    outbox.check_retry(row)
    assert outbox.retry_message(any_store, "m1", NOW + 50) == StateChanged(
        "m1", MessageState.QUEUED, ""
    )
    assert state_of(any_store) == (MessageState.QUEUED, "")
    rows = any_store.outbox_for("m1")
    assert [(r.state, r.attempts) for r in rows] == [
        (OutboxState.DONE, 1),  # the done one is left alone
        (OutboxState.PENDING, 0),
    ]
    assert [r.id for r in any_store.due_outbox(NOW + 50)] == [bad.id]
    assert outbox.retry_message(any_store, "m1", NOW + 60) is None  # not failed: nothing


def test_jobs_without_a_message_row_settle_quietly(any_store: NodeStoreProtocol) -> None:
    """The NIP-17 copy to ourselves (message id ``<id>:self``) has no row of its own."""
    copy = job([R1], message_id="m1:self")
    any_store.add_outbox(copy)
    outbox.record_publish(copy, [R1], [], NOW)
    assert outbox.settle(any_store, copy) is None
    assert any_store.outbox_for("m1:self") == []
    failing = job([], message_id="m2:self")
    any_store.add_outbox(failing)
    outbox.record_publish(failing, [], [], NOW)
    assert outbox.settle(any_store, failing) is None


def test_a_damaged_envelope_fails_with_its_own_reason() -> None:
    entry = job([R1])
    outbox.damaged(entry)
    assert (entry.state, outbox.failure_detail(entry)) == (OutboxState.FAILED, outbox.DAMAGED)
