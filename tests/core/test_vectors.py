"""Our published vectors (tests/vectors/envelope.json) reproduce byte for byte.

A second implementation of the X Chat protocol checks itself against the same file;
docs/protocol.md says what each field means and in which order random bytes are drawn.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nostr_sdk
import orjson
import pytest

from tests.conftest import ReplayRng
from xchat.core.channel import Channel
from xchat.core.device import DeviceBundle, LocalDevice
from xchat.core.envelope import gift_wrap, unwrap
from xchat.core.identity import Identity
from xchat.core.message import decode_app_message
from xchat.core.nip17 import open_seal, wrap_rumor
from xchat.crypto import nip44
from xchat.crypto.keys import SecretKey
from xchat.crypto.olm import OlmAccount
from xchat.wire.event import Rumor, parse_event, parse_rumor

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "envelope.json").read_text())


def assert_valid_nostr_event(event: dict[str, Any]) -> None:
    """The outer event is a NIP-01 event by another implementation's judgement too."""
    assert nostr_sdk.Event.from_json(json.dumps(event)).verify()


@pytest.mark.parametrize("vector", VECTORS["gift_wrap"], ids=lambda v: v["description"])
def test_gift_wrap_vectors(vector: dict[str, Any]) -> None:
    recipient = SecretKey.from_hex(vector["recipient_secret"])
    assert recipient.public_key.hex == vector["recipient_pubkey"]
    rng = ReplayRng(vector["rng"])
    event = gift_wrap(vector["plaintext"].encode(), recipient.public_key, vector["now"], rng)
    assert rng.exhausted()
    assert event.to_dict() == vector["event"]
    assert_valid_nostr_event(vector["event"])
    opened = unwrap(parse_event(vector["event"]), recipient)
    assert opened.rstrip(b" ").decode() == vector["plaintext"]


@pytest.mark.parametrize("vector", VECTORS["xchat_envelope"], ids=lambda v: v["description"])
def test_xchat_envelope_vectors(vector: dict[str, Any]) -> None:
    bob_identity = Identity.from_phrase(vector["bob_phrase"])
    assert bob_identity.secret.to_bytes().hex() == vector["bob_identity_secret"]
    # The gift wrap layer reproduces exactly from the inner JSON and the recorded rng.
    rng = ReplayRng(vector["rng"])
    event = gift_wrap(vector["inner_json"].encode(), bob_identity.public_key, vector["now"], rng)
    assert rng.exhausted()
    assert event.to_dict() == vector["event"]
    assert_valid_nostr_event(vector["event"])
    assert len(unwrap(event, bob_identity.secret)) == vector["inner_padded_length"]
    # The Olm layer opens with Bob's account as it was before the message arrived.
    bundle = DeviceBundle.from_event(parse_event(vector["bob_bundle_event"]))
    account = OlmAccount.from_pickle(
        vector["bob_account_pickle"], bytes.fromhex(vector["pickle_key"])
    )
    bob = Channel(LocalDevice(bob_identity, account, bundle.certificate))
    incoming = bob.open(event, vector["now"], lambda n: b"\x01" * n)
    assert incoming.message == decode_app_message(vector["app_message"])
    assert incoming.sender == Identity.from_phrase(vector["alice_phrase"]).public_key


@pytest.mark.parametrize("vector", VECTORS["nip17"], ids=lambda v: v["description"])
def test_nip17_vectors(vector: dict[str, Any]) -> None:
    sender = Identity(SecretKey.from_hex(vector["sender_secret"]))
    recipient = SecretKey.from_hex(vector["recipient_secret"])
    rumor = parse_rumor(vector["rumor"])
    assert isinstance(rumor, Rumor)
    rng = ReplayRng(vector["rng"])
    event = wrap_rumor(
        sender, recipient.public_key, rumor, vector["now"], rng, nip44.ConversationKeyCache()
    )
    assert rng.exhausted()
    assert event.to_dict() == vector["event"]
    assert_valid_nostr_event(vector["event"])
    unwrapped = nostr_sdk.UnwrappedGift.from_gift_wrap(
        nostr_sdk.Keys.parse(recipient.to_bytes().hex()),
        nostr_sdk.Event.from_json(json.dumps(vector["event"])),
    )
    assert unwrapped.rumor().id().to_hex() == rumor.id
    opened = open_seal(unwrap(event, recipient), recipient, nip44.ConversationKeyCache())
    assert opened == rumor


@pytest.mark.parametrize("vector", VECTORS["app_messages"], ids=lambda v: v["json"][:40])
def test_app_message_vectors(vector: dict[str, Any]) -> None:
    message = decode_app_message(orjson.loads(vector["json"]))
    from xchat.core.message import encode_app_message

    assert orjson.dumps(encode_app_message(message)).decode() == vector["json"]
