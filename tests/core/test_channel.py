"""The secure channel end to end: sealing, opening, mailboxes, replays, forgeries."""

from __future__ import annotations

import os
import random

import orjson
import pytest

from tests.conftest import bundle_of, make_device
from xchat.core.channel import SKIPPED_KEYS, Channel, Incoming
from xchat.core.device import DeviceBundle
from xchat.core.envelope import BUCKETS, MAX_TIME_SPREAD, gift_wrap
from xchat.core.holdback import ChainState
from xchat.core.mailbox import EPOCH_SECONDS, SEED_LIFETIME
from xchat.core.message import Delivered, Edit, Reaction, Text, new_message_id
from xchat.core.session import Session
from xchat.crypto import nip44
from xchat.crypto.keys import PublicKey, SecretKey
from xchat.errors import (
    DecodeError,
    DecryptionError,
    InvalidSignature,
    RemoteProtocolError,
    ReplayError,
)
from xchat.wire.event import Event, event_from_json
from xchat.wire.kinds import KIND_GIFT_WRAP

K = b"\x07" * 32  # a storage key for pickling sessions in comparisons


def text(body: str, now: int) -> Text:
    return Text(new_message_id(os.urandom), now * 1000, body)


def relay_copy(event: Event) -> Event:
    """What the other side gets: the event through JSON bytes, as from a relay."""
    return event_from_json(event.to_json())


def connect(alice: Channel, bob: Channel, now: int) -> tuple[Session, Session]:
    """Alice opens a session to Bob; one message each way, so both know the mailboxes."""
    a = alice.open_session(bundle_of(bob.device, now), now, os.urandom)
    first = bob.open(relay_copy(alice.seal(a, text("hi", now), now, os.urandom)), now, os.urandom)
    assert first.session is not None
    b = first.session
    alice.open(relay_copy(bob.seal(b, text("hello", now), now, os.urandom)), now, os.urandom)
    return a, b


def snapshot(channel: Channel) -> dict[str, str]:
    return {s.session_id: s.olm.pickle(K) for s in channel.sessions()}


def test_first_message_opens_a_session_and_reaches_the_identity_key(
    alice: Channel, bob: Channel, now: int
) -> None:
    session = alice.open_session(bundle_of(bob.device, now), now, os.urandom)
    wrap = alice.seal(session, text("hello bob", now), now, os.urandom)
    assert wrap.kind == KIND_GIFT_WRAP
    assert wrap.tags == [["p", bob.identity.hex]]  # first contact: the identity key
    assert wrap.pubkey not in (alice.identity.hex, bob.identity.hex)
    assert now - MAX_TIME_SPREAD <= wrap.created_at <= now

    incoming = bob.open(relay_copy(wrap), now, os.urandom)
    assert isinstance(incoming, Incoming)
    assert incoming.message == wrap_message(incoming)
    assert incoming.sender == alice.identity
    assert incoming.forward_secret
    assert incoming.new_session
    assert incoming.device is not None
    assert incoming.device.curve25519 == alice.device.account.curve25519


def wrap_message(incoming: Incoming) -> Text:
    assert isinstance(incoming.message, Text)
    return incoming.message


def test_conversation_moves_to_mailbox_keys(alice: Channel, bob: Channel, now: int) -> None:
    a, b = connect(alice, bob, now)
    # Both sides learned the other's seed from the first exchange.
    assert a.send_seed is not None
    assert b.send_seed is not None
    for _ in range(3):
        wrap = alice.seal(a, text("via mailbox", now), now, os.urandom)
        recipient = wrap.tags[0][1]
        assert recipient not in (alice.identity.hex, bob.identity.hex)
        assert recipient in bob.receive_keys(now)
        got = bob.open(relay_copy(wrap), now, os.urandom)
        assert wrap_message(got).body == "via mailbox"
    # Bob has seen Alice use his current mailbox: he stops announcing his seed.
    assert not b.announcing
    # Mailbox keys change with the epoch, and are per direction.
    tomorrow = now + EPOCH_SECONDS
    assert a.send_address(now) != a.send_address(tomorrow)
    assert a.send_address(now) != b.send_address(now)


def test_messages_of_every_type_round_trip(alice: Channel, bob: Channel, now: int) -> None:
    a, _ = connect(alice, bob, now)
    target = new_message_id(os.urandom)
    messages = [
        text("plain", now),
        Reaction(new_message_id(os.urandom), now * 1000, target, "👍"),
        Edit(new_message_id(os.urandom), now * 1000, target, "fixed"),
        Delivered(new_message_id(os.urandom), now * 1000, (target,)),
    ]
    for message in messages:
        got = bob.open(relay_copy(alice.seal(a, message, now, os.urandom)), now, os.urandom)
        assert got.message == message


def test_out_of_order_delivery_decrypts(alice: Channel, bob: Channel, now: int) -> None:
    a, _ = connect(alice, bob, now)
    wraps = [alice.seal(a, text(f"m{i}", now), now, os.urandom) for i in range(20)]
    bodies = [wrap_message(bob.open(relay_copy(w), now, os.urandom)).body for w in reversed(wraps)]
    assert bodies == [f"m{i}" for i in reversed(range(20))]


@pytest.mark.parametrize("stage", ["first", "later"])
def test_a_replayed_envelope_is_rejected_and_changes_nothing(
    alice: Channel, bob: Channel, now: int, stage: str
) -> None:
    if stage == "first":
        a = alice.open_session(bundle_of(bob.device, now), now, os.urandom)
    else:
        a, _ = connect(alice, bob, now)
    wrap = relay_copy(alice.seal(a, text("once", now), now, os.urandom))
    bob.open(wrap, now, os.urandom)
    before = snapshot(bob)
    for _ in range(2):
        with pytest.raises(ReplayError):
            bob.open(wrap, now, os.urandom)
    assert snapshot(bob) == before
    # The conversation goes on.
    later = alice.seal(a, text("still works", now), now, os.urandom)
    assert wrap_message(bob.open(relay_copy(later), now, os.urandom)).body == "still works"


def test_a_rewrapped_replay_of_a_first_message_is_rejected(
    alice: Channel, bob: Channel, now: int
) -> None:
    # Alice's own device could re-wrap an old pre-key message in a fresh gift wrap: the
    # envelope is new, the Olm message is not.
    a = alice.open_session(bundle_of(bob.device, now), now, os.urandom)
    wrap = alice.seal(a, text("once", now), now, os.urandom)
    bob.open(relay_copy(wrap), now, os.urandom)
    inner = nip44.decrypt_bytes(
        wrap.content,
        nip44.conversation_key(bob.device.identity.secret, _pub(wrap.pubkey)),
    )
    rewrapped = gift_wrap(inner.rstrip(b" "), bob.identity, now, os.urandom)
    before = snapshot(bob)
    with pytest.raises(ReplayError):
        bob.open(relay_copy(rewrapped), now, os.urandom)
    assert snapshot(bob) == before


def _pub(hex_key: str) -> PublicKey:
    return PublicKey.from_hex(hex_key)


def test_tampering_anywhere_is_rejected_and_changes_nothing(
    alice: Channel, bob: Channel, now: int
) -> None:
    a, _ = connect(alice, bob, now)
    wrap = alice.seal(a, text("do not touch", now), now, os.urandom)
    raw = wrap.to_dict()
    before = snapshot(bob)
    content = raw["content"]
    # Flip characters across the NIP-44 payload: version, nonce, ciphertext, MAC.
    for position in (0, 5, 50, len(content) // 2, len(content) - 5, len(content) - 1):
        replacement = "A" if content[position] != "A" else "B"
        forged = dict(raw, content=content[:position] + replacement + content[position + 1 :])
        with pytest.raises(RemoteProtocolError):
            bob.open(_resign(forged), now, os.urandom)
    # Change the recipient tag, the time or the content without re-signing.
    for field, value in (("created_at", raw["created_at"] + 1), ("content", content[::-1])):
        with pytest.raises(RemoteProtocolError):
            bob.open(event_from_json(orjson.dumps(dict(raw, **{field: value}))), now, os.urandom)
    assert snapshot(bob) == before
    assert wrap_message(bob.open(relay_copy(wrap), now, os.urandom)).body == "do not touch"


def _resign(raw: dict[str, object]) -> Event:
    """Re-sign a modified wrap with a fresh key, as an attacker on the relay could."""
    from xchat.core.events import sign_event

    key = SecretKey.generate(os.urandom)
    tags = raw["tags"]
    assert isinstance(tags, list)
    return sign_event(
        key,
        kind=KIND_GIFT_WRAP,
        tags=tags,
        content=str(raw["content"]),
        created_at=int(str(raw["created_at"])),
        rng=os.urandom,
    )


def test_a_wrap_for_an_unknown_key_is_refused(alice: Channel, bob: Channel, now: int) -> None:
    stranger = SecretKey.generate(os.urandom).public_key
    wrap = gift_wrap(b'{"xchat":1}', stranger, now, os.urandom)
    with pytest.raises(DecryptionError):
        bob.open(wrap, now, os.urandom)


def test_an_envelope_for_another_device_is_refused(now: int) -> None:
    # Bob has two devices with the same identity; a message for one reaches the other
    # through the shared identity key and must be refused, not mis-decrypted.
    bob_phone = make_device("bob", now)
    bob_laptop = Channel(make_device("bob", now))
    alice = Channel(make_device("alice", now))
    assert bob_laptop.identity == bob_phone.identity.public_key
    a = alice.open_session(bundle_of(bob_phone, now), now, os.urandom)
    with pytest.raises(DecryptionError, match="another device"):
        bob_laptop.open(
            relay_copy(alice.seal(a, text("for the phone", now), now, os.urandom)), now, os.urandom
        )
    assert bob_laptop.sessions() == []


def test_a_frame_claiming_another_identity_is_rejected(
    alice: Channel, bob: Channel, now: int
) -> None:
    # Mallory has a valid certificate for her own identity and writes Alice's identity
    # into the frame: the frame's "from" must match the certificate's identity.
    mallory = Channel(make_device("mallory", now))
    m = mallory.open_session(bundle_of(bob.device, now), now, os.urandom)
    wrap = Channel.seal(_Impersonating(mallory, alice), m, text("I am Alice", now), now, os.urandom)  # type: ignore[arg-type]
    with pytest.raises(InvalidSignature):
        bob.open(relay_copy(wrap), now, os.urandom)
    assert bob.sessions() == []


class _Impersonating:
    """Mallory's channel, writing Alice's identity into the frames it seals."""

    def __init__(self, real: Channel, victim: Channel) -> None:
        self.device = real.device
        self.identity = victim.identity


def test_nip17_messages_both_ways_are_marked_not_forward_secret(
    alice: Channel, bob: Channel, now: int
) -> None:
    rumor, to_bob, to_self = alice.seal_nip17(bob.identity, text("hola", now), now, os.urandom)
    assert to_bob.tags == [["p", bob.identity.hex]]
    got = bob.open(relay_copy(to_bob), now, os.urandom)
    assert not got.forward_secret
    assert got.session is None
    assert got.device is None
    assert got.sender == alice.identity
    assert wrap_message(got).body == "hola"
    assert got.message.id == rumor.id
    mine = alice.open(relay_copy(to_self), now, os.urandom)
    assert mine.message == got.message


def test_nip17_rumor_claiming_another_author_is_rejected(
    alice: Channel, bob: Channel, now: int
) -> None:
    from xchat.core.nip17 import wrap_rumor
    from xchat.wire.event import Rumor

    mallory = make_device("mallory", now).identity
    # Mallory seals a rumor that says Alice wrote it.
    rumor = Rumor.create(alice.identity.hex, now, 14, [["p", bob.identity.hex]], "it's me, alice")
    wrap = wrap_rumor(mallory, bob.identity, rumor, now, os.urandom, nip44.ConversationKeyCache())
    with pytest.raises(InvalidSignature):
        bob.open(relay_copy(wrap), now, os.urandom)


def test_nip17_is_only_accepted_at_the_identity_key(alice: Channel, bob: Channel, now: int) -> None:
    # Mailbox keys carry X Chat envelopes only; anything else there is refused.
    a, _ = connect(alice, bob, now)
    wrap = gift_wrap(b"{}", a.send_address(now), now, os.urandom)
    with pytest.raises(DecodeError):
        bob.open(relay_copy(wrap), now, os.urandom)


def test_sessions_survive_a_save_and_load_mid_conversation(now: int) -> None:
    alice_device, bob_device = make_device("alice", now), make_device("bob", now)
    alice, bob = Channel(alice_device), Channel(bob_device)
    a, b = connect(alice, bob, now)
    storage = os.urandom(32)
    # Bob's node restarts: his sessions and device come back from their records.
    record = b.to_record(storage, os.urandom)
    device_record = bob_device.to_record(storage, os.urandom)
    from xchat.core.device import LocalDevice

    restored_device = LocalDevice.from_record(bob_device.identity, device_record, storage)
    bob2 = Channel(restored_device, [Session.from_record(record, b.session_id, storage)])
    for i in range(3):
        wrap = alice.seal(a, text(f"after restart {i}", now), now, os.urandom)
        assert (
            wrap_message(bob2.open(relay_copy(wrap), now, os.urandom)).body == f"after restart {i}"
        )
    b2 = bob2.session(b.session_id)
    assert b2 is not None
    reply = bob2.seal(b2, text("back", now), now, os.urandom)
    assert wrap_message(alice.open(relay_copy(reply), now, os.urandom)).body == "back"


def test_session_record_is_bound_to_its_id_and_key(alice: Channel, bob: Channel, now: int) -> None:
    a, _ = connect(alice, bob, now)
    storage = os.urandom(32)
    record = a.to_record(storage, os.urandom)
    with pytest.raises(DecryptionError):
        Session.from_record(record, "another-session-id", storage)
    with pytest.raises(DecryptionError):
        Session.from_record(record, a.session_id, os.urandom(32))
    assert repr(a).startswith("Session(id=")
    assert a.receive_seeds[0].seed.hex() not in repr(a)


def test_mailbox_rotation_announces_a_new_seed_and_keeps_the_old_one(
    alice: Channel, bob: Channel, now: int
) -> None:
    a, b = connect(alice, bob, now)
    bob.open(relay_copy(alice.seal(a, text("x", now), now, os.urandom)), now, os.urandom)
    assert not b.announcing
    later = now + SEED_LIFETIME + 1
    assert bob.rotate_mailboxes(later, os.urandom) == [b]
    assert b.announcing
    assert len(b.receive_seeds) == 2
    # Alice still writes to the old mailbox until Bob's next frame tells her the new seed.
    old_address = a.send_address(later)
    assert old_address.hex in bob.receive_keys(later)
    bob.open(
        relay_copy(alice.seal(a, text("old box", later), later, os.urandom)), later, os.urandom
    )
    assert b.announcing  # she used the retired seed: still announcing
    alice.open(
        relay_copy(bob.seal(b, text("new seed inside", later), later, os.urandom)),
        later,
        os.urandom,
    )
    assert a.send_address(later) != old_address
    bob.open(
        relay_copy(alice.seal(a, text("new box", later), later, os.urandom)), later, os.urandom
    )
    assert not b.announcing


def test_receive_keys_cover_identity_and_a_window_of_epochs(
    alice: Channel, bob: Channel, now: int
) -> None:
    connect(alice, bob, now)
    keys = bob.receive_keys(now)
    assert bob.identity.hex in keys
    # identity + one seed x (2 days back, today, tomorrow)
    assert len(keys) == 1 + 4
    assert len(bob.receive_keys(now, lookback=10)) == 1 + 12


def test_envelope_sizes_fall_in_a_few_buckets(alice: Channel, bob: Channel, now: int) -> None:
    a, _ = connect(alice, bob, now)
    sizes = set()
    for body in ("k", "x" * 100, "y" * 700, "z" * 3000, "w" * 20000):
        sizes.add(len(alice.seal(a, text(body, now), now, os.urandom).content))
    expected = {
        len(nip44.encrypt_bytes(b" " * size, b"\x01" * 32, b"\x02" * 32)) for size in BUCKETS
    }
    assert sizes <= expected
    assert len(sizes) == 3


def test_bundle_with_one_time_keys_exhausted_uses_the_fallback(now: int) -> None:
    bob = Channel(make_device("bob", now))
    bundle = bundle_of(bob.device, now)
    only_fallback = DeviceBundle(bundle.certificate, {}, bundle.fallback_key, bundle.published_at)
    for name in ("carol", "dave"):
        sender = Channel(make_device(name, now))
        s = sender.open_session(only_fallback, now, os.urandom)
        got = bob.open(
            relay_copy(sender.seal(s, text(f"from {name}", now), now, os.urandom)), now, os.urandom
        )
        assert wrap_message(got).body == f"from {name}"


def test_safety_numbers_match_and_change_with_devices(now: int) -> None:
    alice, bob = Channel(make_device("alice", now)), Channel(make_device("bob", now))
    connect(alice, bob, now)
    number, qr = alice.safety_number(bob.identity)
    assert (number, qr) == bob.safety_number(alice.identity)
    assert len(number.replace(" ", "")) == 60
    # Bob adds a laptop and it writes to Alice: her number with Bob changes.
    laptop = Channel(make_device("bob", now))
    s = laptop.open_session(bundle_of(alice.device, now), now, os.urandom)
    alice.open(
        relay_copy(laptop.seal(s, text("from the laptop", now), now, os.urandom)), now, os.urandom
    )
    assert set(alice.peer_devices(bob.identity)) == {
        bob.device.certificate.device_id,
        laptop.device.certificate.device_id,
    }
    changed, _ = alice.safety_number(bob.identity)
    assert changed != number
    # Only Bob's half changed.
    halves = {number[:35], number[36:]}
    assert len(halves & {changed[:35], changed[36:]}) == 1


def test_open_batch_puts_a_long_chain_in_order(alice: Channel, bob: Channel, now: int) -> None:
    """Relays hand gift wraps back in timestamp order, which is random: a chain of 120
    messages received newest first would lose its oldest ones to the skipped-key bound
    if opened one by one; open_batch opens every one."""
    session = alice.open_session(bundle_of(bob.device, now), now, os.urandom)
    sent = [text(f"m{i}", now) for i in range(120)]
    wraps = [alice.seal(session, m, now, os.urandom) for m in sent]
    backwards = list(reversed(wraps))
    results = bob.open_batch(backwards, now, os.urandom)
    opened = [r for _, r in results if isinstance(r, Incoming)]
    assert sorted(i.message.id for i in opened) == sorted(m.id for m in sent)
    assert [i.message for i in opened] == sent  # processed in chain order
    # the same envelopes again: every one is a replay, nothing changes
    again = bob.open_batch(wraps, now, os.urandom)
    assert all(isinstance(r, ReplayError) for _, r in again)


def test_open_one_by_one_backwards_loses_the_oldest(now: int) -> None:
    """The reason open_batch exists: vodozemac's bound on skipped message keys."""
    alice, bob = Channel(make_device("alice", now)), Channel(make_device("bob", now))
    session = alice.open_session(bundle_of(bob.device, now), now, os.urandom)
    wraps = [alice.seal(session, text(f"m{i}", now), now, os.urandom) for i in range(120)]
    opened = 0
    for wrap in reversed(wraps):
        try:
            bob.open(wrap, now, os.urandom)
            opened += 1
        except DecryptionError:
            pass
    assert opened < 120


def opened_ids(results: list[tuple[Event, object]]) -> list[str]:
    return [r.message.id for _, r in results if isinstance(r, Incoming)]


def test_a_long_chain_in_random_order_and_small_batches_loses_nothing(
    alice: Channel, bob: Channel, now: int
) -> None:
    """Catch-up pages are small and in random order: a batch may hold a message far
    ahead of the ones still to come. It is held back until they came, then opened."""
    session = alice.open_session(bundle_of(bob.device, now), now, os.urandom)
    sent = [text(f"m{i}", now) for i in range(150)]
    wraps = [alice.seal(session, m, now, os.urandom) for m in sent]
    shuffled = random.Random(7).sample(wraps, len(wraps))
    got: list[str] = []
    for start in range(0, len(shuffled), 7):
        batch = shuffled[start : start + 7] + shuffled[start : start + 2]  # some twice
        results = bob.open_batch(batch, now, os.urandom)
        got += opened_ids(results)
        assert not [r for _, r in results if not isinstance(r, Incoming | ReplayError)]
    assert bob.holding == 0
    assert sorted(got) == sorted(m.id for m in sent)


def test_without_holding_back_the_same_batches_lose_messages(now: int) -> None:
    """The counterpart of the test above: opened as they come, the keys run out."""
    alice, bob = Channel(make_device("alice", now)), Channel(make_device("bob", now))
    session = alice.open_session(bundle_of(bob.device, now), now, os.urandom)
    wraps = [alice.seal(session, text(f"m{i}", now), now, os.urandom) for i in range(150)]
    lost = 0
    for wrap in random.Random(7).sample(wraps, len(wraps)):
        try:
            bob.open(wrap, now, os.urandom)
        except DecryptionError:
            lost += 1
    assert lost > 0


def test_a_held_envelope_waits_for_evidence_then_opens_and_reports_the_lost(
    alice: Channel, bob: Channel, now: int
) -> None:
    """No time limit: a far-ahead envelope waits until the caller has evidence that
    its gap never fills (every relay read back since it was held); then it opens and
    reports the messages given up, which then fail to open as the ratchet forgot them."""
    session = alice.open_session(bundle_of(bob.device, now), now, os.urandom)
    sent = [text(f"m{i}", now) for i in range(SKIPPED_KEYS + 11)]
    wraps = [alice.seal(session, m, now, os.urandom) for m in sent]
    ahead = wraps[-1]  # index 50: opening it would forget the keys of 0..9
    assert bob.open_batch([ahead], now, os.urandom) == []
    assert bob.holding == 1
    assert bob.open_batch([ahead], now, os.urandom) == []  # given again: still one
    assert bob.open_batch([], now + 86400, os.urandom) == []  # a day: still held
    assert bob.open_batch([], now + 5, os.urandom, give_up_before=now) == []  # not before
    results = bob.open_batch([], now + 5, os.urandom, give_up_before=now + 1)
    assert opened_ids(results) == [sent[-1].id]
    (incoming,) = [r for _, r in results if isinstance(r, Incoming)]
    assert incoming.lost == 50  # 0..49: ten forgotten, forty no longer waited for
    assert bob.holding == 0
    # the late ones: the ratchet kept the newest SKIPPED_KEYS keys, the oldest are gone
    late = bob.open_batch(wraps[:-1], now + 5, os.urandom)
    assert opened_ids(late) == [m.id for m in sent[10:-1]]
    assert all(isinstance(r, DecryptionError) for _, r in late[:10])


def test_a_far_ahead_envelope_opens_at_once_once_its_gap_fills(
    alice: Channel, bob: Channel, now: int
) -> None:
    session = alice.open_session(bundle_of(bob.device, now), now, os.urandom)
    wraps = [alice.seal(session, text(f"m{i}", now), now, os.urandom) for i in range(60)]
    assert bob.open_batch(wraps[50:], now, os.urandom) == []
    added, removed = bob.take_held_changes()
    assert sorted(e.id for e, _ in added) == sorted(w.id for w in wraps[50:])
    assert all(since == now for _, since in added)
    assert removed == []
    results = bob.open_batch(wraps[:50], now + 1, os.urandom)
    assert len(opened_ids(results)) == 60
    assert bob.holding == 0
    assert all(r.lost == 0 for _, r in results if isinstance(r, Incoming))
    added, removed = bob.take_held_changes()
    assert added == []
    assert sorted(removed) == sorted(w.id for w in wraps[50:])


def test_a_backlog_of_thousands_in_random_order_and_pages_loses_nothing(
    alice: Channel, bob: Channel, now: int
) -> None:
    """The defect of issue 9: 3,000 messages of one chain, read back 100 at a time in
    random order with no time passing. The old hold-back (2,000 envelopes, 2 s) opened
    far-ahead ones and lost the ones before them; now nothing is lost."""
    session = alice.open_session(bundle_of(bob.device, now), now, os.urandom)
    sent = [text(f"m{i}", now) for i in range(3000)]
    wraps = [alice.seal(session, m, now, os.urandom) for m in sent]
    shuffled = random.Random(9).sample(wraps, len(wraps))
    got: list[str] = []
    for start in range(0, len(shuffled), 100):
        results = bob.open_batch(shuffled[start : start + 100], now, os.urandom)
        assert all(isinstance(r, Incoming) for _, r in results)
        got += opened_ids(results)
    assert bob.holding == 0
    assert bob.take_deferred() == []
    assert sorted(got) == sorted(m.id for m in sent)


def test_held_envelopes_and_chain_progress_survive_a_restart(now: int) -> None:
    alice_device, bob_device = make_device("alice", now), make_device("bob", now)
    alice, bob = Channel(alice_device), Channel(bob_device)
    a, b = connect(alice, bob, now)
    wraps = [alice.seal(a, text(f"m{i}", now), now, os.urandom) for i in range(150)]
    bob.open_batch(wraps[:100], now, os.urandom)  # the chain is opened up to 100
    assert bob.open_batch(wraps[145:], now, os.urandom) == []  # 145..149 wait for 100..144
    held, _ = bob.take_held_changes()
    chains = {r: ChainState.from_json(c.to_json()) for r, c in bob.take_chain_changes().items()}
    storage = os.urandom(32)
    bob2 = Channel(
        bob_device, [Session.from_record(b.to_record(storage, os.urandom), b.session_id, storage)]
    )
    bob2.restore_chains(chains)
    assert bob2.restore_held(held, now) == []
    assert bob2.holding == 5
    # 100..144 come: chain order from index 100, nothing waits for 0..99 again
    results = bob2.open_batch(wraps[100:145], now + 1, os.urandom)
    assert len(opened_ids(results)) == 50
    assert bob2.holding == 0


def test_a_session_from_before_chain_progress_was_kept_takes_its_chain_as_it_comes(
    now: int,
) -> None:
    """After the upgrade that began keeping chain progress, a session's current chain
    may already be hundreds long: its first envelope opens at once, not held as if the
    chain began at 0 (which would wait for, then report lost, messages opened long ago);
    from then on the chain is tracked. A session not marked so is held as before."""
    alice_device, bob_device = make_device("alice", now), make_device("bob", now)
    alice, bob = Channel(alice_device), Channel(bob_device)
    a, b = connect(alice, bob, now)
    wraps = [alice.seal(a, text(f"m{i}", now), now, os.urandom) for i in range(200)]
    bob.open_batch(wraps[:100], now, os.urandom)  # opened before the upgrade
    storage = os.urandom(32)
    record = b.to_record(storage, os.urandom)

    def restarted(untracked: list[str]) -> Channel:
        again = Channel(bob_device, [Session.from_record(record, b.session_id, storage)])
        again.restore_chains({}, untracked)
        return again

    legacy = restarted([b.session_id])
    results = legacy.open_batch([wraps[120]], now, os.urandom)
    (incoming,) = [r for _, r in results if isinstance(r, Incoming)]
    assert incoming.lost == 0
    assert legacy.take_tracked() == [b.session_id]
    assert legacy.take_tracked() == []
    # tracked from here on: 100..119 are below it and open; 199 is far ahead of 121
    assert len(opened_ids(legacy.open_batch(wraps[100:120], now, os.urandom))) == 20
    assert legacy.open_batch([wraps[199]], now, os.urandom) == []
    assert legacy.holding == 1
    # not marked: held as if the chain began at 0
    plain = restarted([])
    assert plain.open_batch([wraps[120]], now, os.urandom) == []
    assert plain.holding == 1
    assert plain.take_tracked() == []


def test_a_chain_state_from_disk_is_checked() -> None:
    assert ChainState.from_json(ChainState(5, {1, 3}).to_json()) == ChainState(5, {1, 3})
    for bad in (b"", b"[]", b'{"next": 2, "missing": [5]}', b'{"next": -1, "missing": []}'):
        with pytest.raises(DecodeError):
            ChainState.from_json(bad)


def test_messages_in_order_or_slightly_out_of_order_are_never_held(
    alice: Channel, bob: Channel, now: int
) -> None:
    session = alice.open_session(bundle_of(bob.device, now), now, os.urandom)
    wraps = [alice.seal(session, text(f"m{i}", now), now, os.urandom) for i in range(100)]
    order = [w for pair in zip(wraps[1::2], wraps[0::2], strict=True) for w in pair]
    for wrap in order:  # 1, 0, 3, 2, ...: each a gap of at most one
        results = bob.open_batch([wrap], now, os.urandom)
        assert len(opened_ids(results)) == 1
    assert bob.holding == 0


def test_held_envelopes_are_bounded_in_bytes_and_the_rest_deferred(
    alice: Channel, bob: Channel, now: int
) -> None:
    """A flood of envelopes far ahead cannot grow memory: past the byte bound they are
    deferred (neither opened, nor held, nor to be marked seen), for a later read."""
    session = alice.open_session(bundle_of(bob.device, now), now, os.urandom)
    wraps = [alice.seal(session, text(f"m{i}", now), now, os.urandom) for i in range(60)]
    bob._hold.max_bytes = 5 * len(wraps[0].content) + 5 * 1000  # room for about five
    results = bob.open_batch(wraps[45:], now, os.urandom)
    assert results == []
    assert bob.holding == 5
    deferred = bob.take_deferred()
    assert len(deferred) == 10
    assert not {e.id for e in deferred} & {w.id for w in wraps[45:50]}
    # once the gap fills, the deferred ones open when they are read again
    assert len(opened_ids(bob.open_batch(wraps[:45], now, os.urandom))) == 50
    assert len(opened_ids(bob.open_batch(deferred, now, os.urandom))) == 10


def test_open_batch_reports_bad_envelopes_beside_good_ones(
    alice: Channel, bob: Channel, now: int
) -> None:
    session = alice.open_session(bundle_of(bob.device, now), now, os.urandom)
    good = alice.seal(session, text("fine", now), now, os.urandom)
    stranger = gift_wrap(b"{}", SecretKey.generate(os.urandom).public_key, now, os.urandom)
    results = bob.open_batch([stranger, good], now, os.urandom)
    assert isinstance(results[0][1], DecryptionError)
    assert isinstance(results[1][1], Incoming)


def _nip17_from(
    sender: Channel, to: Channel, kind: int, tags: list[list[str]], content: str, now: int
) -> Event:
    from xchat.core.nip17 import wrap_rumor
    from xchat.wire.event import Rumor

    rumor = Rumor.create(sender.identity.hex, now, kind, tags, content)
    return wrap_rumor(
        sender.device.identity, to.identity, rumor, now, os.urandom, nip44.ConversationKeyCache()
    )


def test_nip17_copies_name_the_peer_and_group_messages_are_refused(
    alice: Channel, bob: Channel, now: int
) -> None:
    from xchat.core.nip17 import GroupMessage

    _, to_bob, to_self = alice.seal_nip17(bob.identity, text("hola", now), now, os.urandom)
    assert bob.open(relay_copy(to_bob), now, os.urandom).peer == alice.identity.hex
    # our own copy belongs to the conversation with its recipient
    assert alice.open(relay_copy(to_self), now, os.urandom).peer == bob.identity.hex
    carol = make_device("carol", now).identity.public_key.hex
    group = [["p", bob.identity.hex], ["p", carol]]
    with pytest.raises(GroupMessage):
        bob.open(relay_copy(_nip17_from(alice, bob, 14, group, "hi all", now)), now, os.urandom)
    # a group message is a DecodeError: callers that count errors by class see its name
    assert issubclass(GroupMessage, DecodeError)
    elsewhere = [["p", carol]]
    with pytest.raises(DecodeError):
        bob.open(
            relay_copy(_nip17_from(alice, bob, 14, elsewhere, "not yours", now)), now, os.urandom
        )


def test_a_nip17_file_message_is_a_text_that_says_so(
    alice: Channel, bob: Channel, now: int
) -> None:
    from xchat.core.nip17 import FileNotice

    tags = [["p", bob.identity.hex], ["file-type", "image/png"], ["decryption-key", "00"]]
    got = bob.open(
        relay_copy(_nip17_from(alice, bob, 15, tags, "https://files.example/x", now)),
        now,
        os.urandom,
    )
    assert isinstance(got.message, FileNotice)
    assert got.message.type == "file"
    assert "image/png" in got.message.body
    assert "https://" not in got.message.body  # the file is not fetched or linked
    bad_type = [["p", bob.identity.hex], ["file-type", "\x1b[2J"]]
    odd = bob.open(relay_copy(_nip17_from(alice, bob, 15, bad_type, "u", now)), now, os.urandom)
    assert "\x1b" not in odd.message.body
