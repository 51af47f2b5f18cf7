"""The conversation rules (xchat.core.conversation) over both stores: message requests,
duplicates, blocked senders, forward secrecy, devices, edits, deletions, reactions and
receipts authorised by conversation and author (cross-conversation attempts ignored),
early effects, NIP-17 own copies, lost-message items; and the local-side checks.

Messages come in as :class:`~xchat.core.channel.Incoming` values with real device
certificates; one test runs real channels end to end.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from tests.conftest import SeededRng, bundle_of, make_device
from tests.core.conftest import Boom, fail_in_transaction
from xchat.core.channel import Channel, Incoming
from xchat.core.conversation import (
    Applied,
    ConversationRules,
    apply_delete,
    apply_edit,
    apply_reaction,
    check_contact,
    check_delete,
    check_edit,
    direct_conversation,
    lost_item_id,
    may_edit,
)
from xchat.core.device import LocalDevice
from xchat.core.memory import MemoryStore
from xchat.core.message import (
    AppMessage,
    Delete,
    Delivered,
    Edit,
    Reaction,
    Read,
    Reply,
    Text,
)
from xchat.core.node_events import (
    ContactChanged,
    DeviceAdded,
    ForwardSecrecyUpgraded,
    MessageChanged,
    StateChanged,
)
from xchat.core.stores import NodeStoreProtocol
from xchat.errors import InvalidInput
from xchat.model import (
    Contact,
    ContactState,
    Conversation,
    ConversationKind,
    Message,
    MessageState,
)

NOW = 1_750_000_000
NOW_MS = NOW * 1000 + 123


@dataclass
class Person:
    device: LocalDevice

    @property
    def hex(self) -> str:
        return self.device.identity.public_key.hex


ME = Person(make_device("me", NOW))
ALICE = Person(make_device("alice", NOW))
BOB = Person(make_device("bob", NOW))
CAROL = Person(make_device("carol", NOW))
ALICE_LAPTOP = make_device("alice", NOW + 1)  # same identity (same seed), another device

_wraps = iter(range(10**9))
_ids = iter(range(10**9))


def mid() -> str:
    return f"{next(_ids):032x}"


def incoming(
    person: Person,
    message: AppMessage,
    *,
    forward_secret: bool = True,
    device: LocalDevice | None = None,
    lost: int = 0,
    peer: str = "",
    wrap_id: str | None = None,
) -> Incoming:
    cert = (device or person.device).certificate if forward_secret else None
    return Incoming(
        sender=person.device.identity.public_key,
        message=message,
        forward_secret=forward_secret,
        device=cert,
        session=None,
        new_session=False,
        wrap_id=wrap_id or f"{next(_wraps):064x}",
        peer=peer or (ME.hex if person is not ME else ""),
        lost=lost,
    )


def text(body: str = "hello", sent_at: int = NOW * 1000) -> Text:
    return Text(mid(), sent_at, body)


class World:
    """A store, the rules for ME, and shortcuts."""

    def __init__(self, store: NodeStoreProtocol, max_early: int = 2000) -> None:
        self.store = store
        self.rules = ConversationRules(ME.hex, max_early=max_early)
        self.rng = SeededRng("conversation-tests")

    def apply(self, *items: Incoming, seen_only: tuple[str, ...] = ()) -> Applied:
        with self.store.transaction():
            return self.rules.apply(self.store, items, seen_only, NOW, NOW_MS, self.rng)

    def contact(self, person: Person, state: ContactState = ContactState.ACCEPTED) -> str:
        """Make ``person`` a contact; the id of the direct conversation."""
        self.store.upsert_contact(Contact(person.hex, "x", state, [], NOW))
        return direct_conversation(self.store, person.hex, NOW, self.rng).id

    def conversation_of(self, person: Person) -> str:
        found = self.store.direct_conversation(person.hex)
        assert found is not None
        return found.id

    def outgoing(self, to: Person, state: MessageState = MessageState.SENT) -> Message:
        row = Message(
            id=mid(),
            conversation=self.conversation_of(to),
            outgoing=True,
            sender=ME.hex,
            type="text",
            body="from me",
            sent_at=NOW * 1000,
            received_at=NOW_MS,
            state=state,
            state_detail="ws://r1 ws://r2",
        )
        assert self.store.insert_message(row)
        return row

    def get(self, message_id: str) -> Message:
        row = self.store.get_message(message_id)
        assert row is not None
        return row


@pytest.fixture
def world(any_store: NodeStoreProtocol) -> World:
    return World(any_store)


# -- messages, requests, duplicates, blocked ------------------------------------------


def test_a_stranger_becomes_a_message_request_with_a_direct_conversation(world: World) -> None:
    message = text("hi, it's alice")
    out = world.apply(incoming(ALICE, message))
    contact = world.store.get_contact(ALICE.hex)
    assert contact is not None
    assert contact.state is ContactState.REQUEST
    conversation = world.store.direct_conversation(ALICE.hex)
    assert conversation is not None
    assert len(conversation.id) == 32
    assert int(conversation.id, 16) >= 0
    assert conversation.kind is ConversationKind.DIRECT
    assert conversation.members == (ALICE.hex,)
    assert contact.conversation == conversation.id
    changed, stored = out.events
    assert isinstance(changed, ContactChanged)
    assert changed.contact.pubkey == ALICE.hex
    assert changed.contact.conversation == conversation.id
    assert isinstance(stored, MessageChanged)
    row = world.get(message.id)
    assert stored.message == row
    assert row.conversation == conversation.id
    assert (row.outgoing, row.sender, row.state) == (False, ALICE.hex, MessageState.RECEIVED)
    assert row.received_at == NOW_MS
    assert row.sent_at == message.sent_at
    assert out.receipts == {}  # a request gets no delivery receipt until accepted
    assert out.received == 1
    # and it is a conversation of the list, as a request
    (summary,) = world.store.conversations()
    assert summary.state is ContactState.REQUEST
    assert summary.unread == 1


def test_an_accepted_contact_gets_delivery_receipts_for_forward_secret_messages_only(
    world: World,
) -> None:
    conversation = world.contact(ALICE)
    over_olm, over_nip17 = text("olm"), text("nip17")
    out = world.apply(incoming(ALICE, over_olm), incoming(ALICE, over_nip17, forward_secret=False))
    assert out.receipts == {ALICE.hex: [over_olm.id]}
    assert world.get(over_olm.id).forward_secret
    assert not world.get(over_nip17.id).forward_secret
    assert {world.get(m.id).conversation for m in (over_olm, over_nip17)} == {conversation}


def test_a_reply_keeps_what_it_replies_to(world: World) -> None:
    world.contact(ALICE)
    first = text()
    reply = Reply(mid(), NOW * 1000 + 1, "re", first.id)
    world.apply(incoming(ALICE, first), incoming(ALICE, reply))
    assert world.get(reply.id).reply_to == first.id
    assert world.get(reply.id).type == "reply"


def test_a_duplicate_message_is_stored_once_and_every_envelope_is_seen(world: World) -> None:
    world.contact(ALICE)
    message = text()
    a, b = incoming(ALICE, message), incoming(ALICE, message)
    out = world.apply(a, b, seen_only=("ee" * 32,))
    assert [type(e) for e in out.events] == [MessageChanged]
    assert out.receipts == {ALICE.hex: [message.id]}
    assert out.received == 2
    assert all(world.store.seen(i) for i in (a.wrap_id, b.wrap_id, "ee" * 32))
    again = world.apply(incoming(ALICE, message))
    assert again.events == []
    assert again.receipts == {}


def test_a_blocked_sender_stores_nothing_but_the_envelope_is_seen(world: World) -> None:
    conversation = world.contact(ALICE, ContactState.BLOCKED)
    ours = world.outgoing(ALICE)
    item = incoming(ALICE, text("let me in"))
    out = world.apply(
        item,
        incoming(ALICE, Reaction(mid(), NOW * 1000, ours.id, "👎")),
        incoming(ALICE, Read(mid(), NOW * 1000, (ours.id,))),
        incoming(ALICE, text("again"), lost=4),
    )
    assert out.events == []
    assert out.receipts == {}
    assert out.lost == 0
    assert world.store.seen(item.wrap_id)
    assert [m.id for m in world.store.messages(conversation)] == [ours.id]
    assert world.get(ours.id).state is MessageState.SENT
    assert world.get(ours.id).reactions is None


def test_a_nip17_contact_writing_over_olm_is_upgraded(world: World) -> None:
    world.store.upsert_contact(
        Contact(ALICE.hex, "a", ContactState.ACCEPTED, [], NOW, nip17_only=True)
    )
    world.apply(incoming(ALICE, text(), forward_secret=False))
    contact = world.store.get_contact(ALICE.hex)
    assert contact is not None
    assert contact.nip17_only
    out = world.apply(incoming(ALICE, text()))
    upgraded = [e for e in out.events if isinstance(e, ForwardSecrecyUpgraded)]
    assert len(upgraded) == 1
    assert not upgraded[0].contact.nip17_only
    contact = world.store.get_contact(ALICE.hex)
    assert contact is not None
    assert not contact.nip17_only


def test_a_new_stranger_over_nip17_is_a_nip17_request(world: World) -> None:
    world.apply(incoming(ALICE, text(), forward_secret=False))
    contact = world.store.get_contact(ALICE.hex)
    assert contact is not None
    assert contact.nip17_only
    assert contact.state is ContactState.REQUEST


def test_a_second_device_is_told_the_first_is_not(world: World) -> None:
    world.contact(ALICE)
    first = world.apply(incoming(ALICE, text()))
    assert not any(isinstance(e, DeviceAdded) for e in first.events)
    assert [d.device_id for d in world.store.devices(ALICE.hex)] == [
        ALICE.device.certificate.device_id
    ]
    second = world.apply(incoming(ALICE, text(), device=ALICE_LAPTOP))
    added = [e for e in second.events if isinstance(e, DeviceAdded)]
    assert added == [DeviceAdded(ALICE.hex, ALICE_LAPTOP.certificate.device_id)]
    again = world.apply(incoming(ALICE, text(), device=ALICE_LAPTOP))
    assert not any(isinstance(e, DeviceAdded) for e in again.events)
    assert len(world.store.devices(ALICE.hex)) == 2


# -- effects: edits, deletions, reactions ------------------------------------------------


def test_the_author_edits_and_deletes_their_message(world: World) -> None:
    world.contact(ALICE)
    message = text("tpyo")
    world.apply(incoming(ALICE, message))
    edit = Edit(mid(), NOW * 1000 + 5, message.id, "typo")
    out = world.apply(incoming(ALICE, edit))
    assert [type(e) for e in out.events] == [MessageChanged]
    row = world.get(message.id)
    assert (row.body, row.edited_at) == ("typo", edit.sent_at)
    world.apply(incoming(ALICE, Delete(mid(), NOW * 1000 + 6, message.id)))
    row = world.get(message.id)
    assert (row.body, row.deleted) == ("", True)
    # a deleted message cannot be edited back to life
    out = world.apply(incoming(ALICE, Edit(mid(), NOW * 1000 + 7, message.id, "back")))
    assert out.events == []
    assert world.get(message.id).body == ""


def test_a_peer_cannot_edit_or_delete_our_messages(world: World) -> None:
    world.contact(ALICE)
    ours = world.outgoing(ALICE)
    out = world.apply(
        incoming(ALICE, Edit(mid(), NOW * 1000, ours.id, "you said this")),
        incoming(ALICE, Delete(mid(), NOW * 1000, ours.id)),
    )
    assert out.events == []
    row = world.get(ours.id)
    assert (row.body, row.deleted, row.edited_at) == ("from me", False, None)


def test_reactions_from_members_are_set_and_taken_back(world: World) -> None:
    world.contact(ALICE)
    theirs, ours = text(), world.outgoing(ALICE)
    world.apply(incoming(ALICE, theirs))
    world.apply(
        incoming(ALICE, Reaction(mid(), NOW * 1000, theirs.id, "👍")),
        incoming(ALICE, Reaction(mid(), NOW * 1000, ours.id, "❤️")),
    )
    assert world.get(theirs.id).reactions == {ALICE.hex: "👍"}
    assert world.get(ours.id).reactions == {ALICE.hex: "❤️"}
    out = world.apply(incoming(ALICE, Reaction(mid(), NOW * 1000, ours.id, "")))
    assert world.get(ours.id).reactions == {}
    assert [type(e) for e in out.events] == [MessageChanged]


def test_cross_conversation_attacks_are_ignored(world: World) -> None:
    """Bob, a contact of ours, knows the ids of messages between Alice and us (say he
    saw them over her shoulder): he can neither edit, delete, react to nor acknowledge
    them."""
    world.contact(ALICE)
    world.contact(BOB)
    hers, ours = text("alice's"), world.outgoing(ALICE)
    world.apply(incoming(ALICE, hers))
    out = world.apply(
        incoming(BOB, Edit(mid(), NOW * 1000, hers.id, "forged")),
        incoming(BOB, Delete(mid(), NOW * 1000, hers.id)),
        incoming(BOB, Reaction(mid(), NOW * 1000, hers.id, "💩")),
        incoming(BOB, Reaction(mid(), NOW * 1000, ours.id, "💩")),
        incoming(BOB, Delivered(mid(), NOW * 1000, (ours.id,))),
        incoming(BOB, Read(mid(), NOW * 1000, (ours.id,))),
    )
    assert out.events == []
    row = world.get(hers.id)
    assert (row.body, row.deleted, row.reactions) == ("alice's", False, None)
    mine = world.get(ours.id)
    assert (mine.state, mine.reactions) == (MessageState.SENT, None)


def test_a_stranger_cannot_touch_anything_either(world: World) -> None:
    world.contact(ALICE)
    hers = text()
    world.apply(incoming(ALICE, hers))
    out = world.apply(incoming(CAROL, Delete(mid(), NOW * 1000, hers.id)))
    assert [type(e) for e in out.events] == [ContactChanged]  # Carol: a request, nothing else
    assert not world.get(hers.id).deleted


def test_group_messages_authorise_by_membership_author_and_conversation(world: World) -> None:
    """A conversation with two members (the shape groups will have): a member reacts; a
    member cannot edit another's message; the author cannot edit it through an envelope
    of another conversation (a direct one)."""
    world.contact(ALICE)
    world.contact(BOB)
    group = Conversation("ab" * 16, ConversationKind.GROUP, None, (ALICE.hex, BOB.hex), NOW)
    world.store.add_conversation(group)
    hers = Message(
        id=mid(),
        conversation=group.id,
        outgoing=False,
        sender=ALICE.hex,
        type="text",
        body="to the group",
        sent_at=NOW * 1000,
        received_at=NOW_MS,
        state=MessageState.RECEIVED,
    )
    assert world.store.insert_message(hers)
    out = world.apply(
        incoming(BOB, Reaction(mid(), NOW * 1000, hers.id, "🎉")),
        incoming(CAROL, Reaction(mid(), NOW * 1000, hers.id, "💩")),
        incoming(BOB, Edit(mid(), NOW * 1000, hers.id, "bob's words")),
        incoming(ALICE, Edit(mid(), NOW * 1000, hers.id, "via the direct conversation")),
        incoming(ALICE, Delete(mid(), NOW * 1000, hers.id)),
    )
    row = world.get(hers.id)
    assert row.reactions == {BOB.hex: "🎉"}
    assert (row.body, row.deleted) == ("to the group", False)
    assert [type(e) for e in out.events] == [MessageChanged, ContactChanged]


def test_in_a_group_only_the_author_edits_through_the_group() -> None:
    """The authorisation of an edit or deletion, for envelopes that will come in on a
    group conversation (not yet on the wire)."""
    group = "ab" * 16
    hers = Message(
        id=mid(),
        conversation=group,
        outgoing=False,
        sender=ALICE.hex,
        type="text",
        body="x",
        sent_at=1,
        received_at=1,
        state=MessageState.RECEIVED,
    )
    assert may_edit(hers, ALICE.hex, group)
    assert not may_edit(hers, BOB.hex, group)  # a member, not the author
    assert not may_edit(hers, ALICE.hex, "cd" * 16)  # the author, elsewhere
    hers.deleted = True
    assert not may_edit(hers, ALICE.hex, group)
    mine = own(conversation=group)
    assert not may_edit(mine, ME.hex, group)  # our own messages are edited by us, locally


# -- receipts -------------------------------------------------------------------------------


def test_receipts_move_our_messages_forward_only_and_keep_the_relays(world: World) -> None:
    world.contact(ALICE)
    a, b = world.outgoing(ALICE), world.outgoing(ALICE)
    queued = world.outgoing(ALICE, MessageState.QUEUED)
    out = world.apply(incoming(ALICE, Read(mid(), NOW * 1000, (a.id,))))
    assert out.events == [StateChanged(a.id, MessageState.READ, "ws://r1 ws://r2")]
    out = world.apply(incoming(ALICE, Delivered(mid(), NOW * 1000, (a.id, b.id, queued.id))))
    # a stays read; b and the still-queued one (the receipt came before the relays' OK)
    assert out.events == [
        StateChanged(b.id, MessageState.DELIVERED, "ws://r1 ws://r2"),
        StateChanged(queued.id, MessageState.DELIVERED, "ws://r1 ws://r2"),
    ]
    assert world.get(a.id).state is MessageState.READ
    assert world.get(b.id).state_detail == "ws://r1 ws://r2"


def test_receipts_for_incoming_or_unknown_messages_are_ignored(world: World) -> None:
    world.contact(ALICE)
    hers = text()
    world.apply(incoming(ALICE, hers))
    out = world.apply(incoming(ALICE, Read(mid(), NOW * 1000, (hers.id, mid()))))
    assert out.events == []
    assert world.get(hers.id).state is MessageState.RECEIVED


# -- early effects ------------------------------------------------------------------------


def test_effects_before_their_message_apply_when_it_arrives(world: World) -> None:
    world.contact(ALICE)
    message = text("frist")
    edit = Edit(mid(), NOW * 1000 + 2, message.id, "first")
    reaction = Reaction(mid(), NOW * 1000 + 3, message.id, "😀")
    early = world.apply(incoming(ALICE, edit), incoming(ALICE, reaction))
    assert early.events == []
    assert world.rules.early == 1
    out = world.apply(incoming(ALICE, message))
    assert [type(e) for e in out.events] == [MessageChanged] * 3
    row = world.get(message.id)
    assert (row.body, row.edited_at, row.reactions) == ("first", edit.sent_at, {ALICE.hex: "😀"})
    assert world.rules.early == 0


def test_early_effects_keep_the_authorisation_rules(world: World) -> None:
    """Bob's edit of a message Alice has not sent yet stays ignored once it comes."""
    world.contact(ALICE)
    world.contact(BOB)
    message = text("alice's")
    world.apply(
        incoming(BOB, Edit(mid(), NOW * 1000, message.id, "forged")),
        incoming(BOB, Reaction(mid(), NOW * 1000, message.id, "💩")),
    )
    out = world.apply(incoming(ALICE, message))
    assert [type(e) for e in out.events] == [MessageChanged]
    row = world.get(message.id)
    assert (row.body, row.reactions) == ("alice's", None)


def test_the_early_effects_cache_is_bounded_oldest_target_first(
    any_store: NodeStoreProtocol,
) -> None:
    world = World(any_store, max_early=2)
    world.contact(ALICE)
    messages = [text(f"m{i}") for i in range(3)]
    for m in messages:
        world.apply(incoming(ALICE, Reaction(mid(), NOW * 1000, m.id, "👍")))
    assert world.rules.early == 2
    world.apply(*(incoming(ALICE, m) for m in messages))
    assert [world.get(m.id).reactions for m in messages] == [
        None,  # its reaction was dropped: the oldest target
        {ALICE.hex: "👍"},
        {ALICE.hex: "👍"},
    ]


# -- NIP-17 copies of our own messages, lost messages ---------------------------------------


def test_a_copy_of_a_message_we_wrote_elsewhere_is_filed_as_sent(world: World) -> None:
    message = text("written on my phone")
    out = world.apply(incoming(ME, message, forward_secret=False, peer=CAROL.hex))
    contact = world.store.get_contact(CAROL.hex)
    assert contact is not None
    assert (contact.state, contact.nip17_only) == (ContactState.ACCEPTED, True)
    changed, stored = out.events
    assert isinstance(changed, ContactChanged)
    assert changed.contact.conversation
    assert isinstance(stored, MessageChanged)
    row = world.get(message.id)
    assert row.conversation == world.conversation_of(CAROL) == changed.contact.conversation
    assert (row.outgoing, row.sender, row.state, row.forward_secret) == (
        True,
        ME.hex,
        MessageState.SENT,
        False,
    )
    assert out.receipts == {}


def test_our_own_copy_and_copies_of_effects_change_nothing(world: World) -> None:
    world.contact(ALICE)
    ours = world.outgoing(ALICE)
    copy = Text(ours.id, ours.sent_at, "from me")
    out = world.apply(
        incoming(ME, copy, forward_secret=False, peer=ALICE.hex),
        incoming(ME, Reaction(mid(), NOW * 1000, ours.id, "👍"), forward_secret=False),
        incoming(ME, text(), forward_secret=False, peer=ME.hex),  # to ourselves: skipped
    )
    assert out.events == []
    assert out.received == 3
    assert world.get(ours.id).reactions is None
    assert world.store.get_contact(ME.hex) is None


def test_lost_messages_become_one_item_before_the_next(world: World) -> None:
    conversation = world.contact(ALICE)
    message = text("after the gap", sent_at=NOW * 1000 + 50)
    item = incoming(ALICE, message, lost=3)
    out = world.apply(item)
    assert out.lost == 3
    lost = world.get(lost_item_id(item.wrap_id))
    assert lost.type == "undecryptable"
    assert lost.body == "3 messages from this contact could not be decrypted"
    assert (lost.sent_at, lost.state_detail, lost.conversation) == (
        message.sent_at - 1,
        "3",
        conversation,
    )
    assert [m.id for m in world.store.messages(conversation)] == [message.id, lost.id]
    assert [type(e) for e in out.events] == [MessageChanged, MessageChanged]
    one = incoming(ALICE, text(), lost=1)
    world.apply(one)
    assert world.get(lost_item_id(one.wrap_id)).body == (
        "1 message from this contact could not be decrypted"
    )


def test_a_failed_batch_leaves_nothing_behind(any_store: NodeStoreProtocol) -> None:
    world = World(any_store)
    item = incoming(ALICE, text())
    with pytest.raises(Boom):
        fail_in_transaction(
            world.store, lambda: world.rules.apply(world.store, [item], [], NOW, NOW_MS, world.rng)
        )
    assert world.store.get_contact(ALICE.hex) is None
    assert world.store.direct_conversation(ALICE.hex) is None
    assert not world.store.seen(item.wrap_id)


# -- end to end, through real channels -----------------------------------------------------


def test_real_envelopes_through_the_channel_then_the_rules() -> None:
    """Alice's channel seals a text, an early edit and a reaction; ours opens them as a
    relay would hand them over; the rules store what they mean."""
    me, alice = Channel(ME.device), Channel(ALICE.device)
    session = alice.open_session(bundle_of(me.device, NOW), NOW, os.urandom)
    message = text("hello from a real channel")
    effects = [
        Edit(mid(), NOW * 1000 + 1, message.id, "hello, edited"),
        Reaction(mid(), NOW * 1000 + 2, message.id, "🙂"),
    ]
    wraps = [alice.seal(session, m, NOW, os.urandom) for m in (message, *effects)]
    results = me.open_batch(wraps, NOW, os.urandom)
    opened = [r for _, r in results if isinstance(r, Incoming)]
    assert len(opened) == 3
    by_type = {type(i.message): i for i in opened}
    world = World(MemoryStore())
    world.contact(ALICE)
    world.apply(by_type[Edit], by_type[Reaction])  # relays reorder: the effects first
    out = world.apply(by_type[Text])
    row = world.get(message.id)
    assert (row.body, row.reactions) == ("hello, edited", {ALICE.hex: "🙂"})
    assert out.receipts == {ALICE.hex: [message.id]}


# -- our own side --------------------------------------------------------------------------


def own(**fields: object) -> Message:
    values: dict[str, object] = {
        "id": mid(),
        "conversation": "cd" * 16,
        "outgoing": True,
        "sender": ME.hex,
        "type": "text",
        "body": "mine",
        "sent_at": 1,
        "received_at": 1,
        "state": MessageState.SENT,
    }
    values.update(fields)
    return Message(**values)  # type: ignore[arg-type]


def test_only_our_own_messages_can_be_edited_or_deleted() -> None:
    check_edit(own(), ME.hex)
    check_delete(own(), ME.hex)
    check_delete(own(deleted=True), ME.hex)  # deleting again is harmless
    theirs = own(outgoing=False, sender=ALICE.hex, state=MessageState.RECEIVED)
    for bad in (theirs, own(deleted=True)):
        with pytest.raises(InvalidInput, match=r"^only your own messages can be edited$"):
            check_edit(bad, ME.hex)
    with pytest.raises(InvalidInput, match=r"^only your own messages can be deleted for everyone$"):
        check_delete(theirs, ME.hex)


def test_the_contact_of_a_conversation_must_be_there_and_not_blocked() -> None:
    accepted = Contact(ALICE.hex, None, ContactState.ACCEPTED, [], NOW)
    assert check_contact(accepted) is accepted
    blocked = Contact(ALICE.hex, None, ContactState.BLOCKED, [], NOW)
    for bad in (None, blocked):
        with pytest.raises(InvalidInput, match=r"^that conversation's contact is gone or blocked$"):
            check_contact(bad)
    nip17 = Contact(ALICE.hex, None, ContactState.ACCEPTED, [], NOW, nip17_only=True)
    assert check_contact(nip17) is nip17
    with pytest.raises(InvalidInput, match=r"^messages to NIP-17 contacts cannot be edited$"):
        check_contact(nip17, editing=True)


def test_local_reactions_edits_and_deletions() -> None:
    row = own(reactions={ALICE.hex: "👍"})
    apply_reaction(row, ME.hex, "🎉")
    assert row.reactions == {ALICE.hex: "👍", ME.hex: "🎉"}
    apply_reaction(row, ME.hex, "")
    apply_reaction(row, ME.hex, "")  # taking back twice is harmless
    assert row.reactions == {ALICE.hex: "👍"}
    apply_edit(row, "new words", 99)
    assert (row.body, row.edited_at) == ("new words", 99)
    apply_delete(row)
    assert (row.body, row.deleted) == ("", True)


def test_direct_conversation_is_created_once(world: World) -> None:
    first = direct_conversation(world.store, ALICE.hex, NOW, world.rng)
    again = direct_conversation(world.store, ALICE.hex, NOW + 5, world.rng)
    assert first == again
    assert (first.peer, first.members, first.created_at) == (ALICE.hex, (ALICE.hex,), NOW)
