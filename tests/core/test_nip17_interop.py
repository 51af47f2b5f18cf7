"""NIP-17 with rust-nostr (nostr-sdk): their private messages reach us, ours reach them."""

from __future__ import annotations

import os

import nostr_sdk
import pytest

from tests.conftest import make_device
from xchat.core.channel import Channel
from xchat.core.identity import Identity
from xchat.core.message import Reply, Text, new_message_id
from xchat.wire.event import event_from_json


@pytest.fixture
def us(now: int) -> Channel:
    return Channel(make_device("xchat-user", now))


def their_keys_for(identity: Identity) -> nostr_sdk.Keys:
    return nostr_sdk.Keys.parse(identity.nsec())


def test_a_nostr_sdk_private_message_opens_as_not_forward_secret(us: Channel, now: int) -> None:
    them = nostr_sdk.Keys.generate()
    receiver = nostr_sdk.PublicKey.parse(us.identity.hex)
    wrap = nostr_sdk.nip17_make_private_msg(them, receiver, "hello from rust-nostr ✓")
    incoming = us.open(event_from_json(wrap.as_json()), now, os.urandom)
    assert isinstance(incoming.message, Text)
    assert incoming.message.body == "hello from rust-nostr ✓"
    assert incoming.sender.hex == them.public_key().to_hex()
    assert not incoming.forward_secret


@pytest.mark.parametrize("kind", ["text", "reply"])
def test_our_nip17_messages_unwrap_in_nostr_sdk(us: Channel, now: int, kind: str) -> None:
    them = nostr_sdk.Keys.generate()
    recipient = Identity.from_nsec(them.secret_key().to_bech32()).public_key
    message = (
        Text(new_message_id(os.urandom), now * 1000, "hola desde X Chat")
        if kind == "text"
        else Reply(new_message_id(os.urandom), now * 1000, "hola desde X Chat", "ab" * 32)
    )
    rumor, to_them, to_self = us.seal_nip17(recipient, message, now, os.urandom)
    for wrap, keys in ((to_them, them), (to_self, their_keys_for(us.device.identity))):
        event = nostr_sdk.Event.from_json(wrap.to_json().decode())
        assert event.verify()
        unwrapped = nostr_sdk.UnwrappedGift.from_gift_wrap(keys, event)
        assert unwrapped.sender().to_hex() == us.identity.hex
        assert unwrapped.rumor().content() == "hola desde X Chat"
        assert unwrapped.rumor().kind().as_u16() == 14
        assert unwrapped.rumor().id().to_hex() == rumor.id
