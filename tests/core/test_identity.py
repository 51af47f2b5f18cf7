"""Identities and contact cards as a person meets them: typed, pasted, scanned."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import SeededRng
from xchat.core.identity import ContactCard, Identity
from xchat.crypto.keys import SecretKey
from xchat.errors import InvalidInput
from xchat.wire import nip19


def test_generated_identity_is_restorable_from_its_phrase() -> None:
    for words in (12, 24):
        identity = Identity.generate(SeededRng(f"id-{words}"), words)
        assert identity.phrase is not None
        assert len(identity.phrase.split()) == words
        assert Identity.from_phrase(identity.phrase) == identity
        # Typing it differently still restores the same key.
        assert Identity.from_phrase("  " + identity.phrase.upper() + "\n") == identity


def test_generation_is_deterministic_in_the_rng() -> None:
    assert Identity.generate(SeededRng("x")) == Identity.generate(SeededRng("x"))
    assert Identity.generate(SeededRng("x")) != Identity.generate(SeededRng("y"))


def test_only_12_or_24_words_are_offered() -> None:
    with pytest.raises(InvalidInput):
        Identity.generate(SeededRng("x"), 18)


def test_nsec_import_accepts_nsec_and_hex_and_names_no_secret() -> None:
    identity = Identity.generate(SeededRng("nsec"))
    nsec = identity.nsec()
    imported = Identity.from_nsec(nsec)
    assert imported.secret == identity.secret
    assert imported.phrase is None
    assert Identity.from_nsec(identity.secret.to_bytes().hex()).secret == identity.secret
    for bad in (
        "",
        "nsec1",
        nsec[:-1] + ("q" if nsec[-1] != "q" else "p"),
        identity.npub,
        "00" * 32,
        "ff" * 32,
    ):
        with pytest.raises(InvalidInput) as caught:
            Identity.from_nsec(bad)
        assert nsec[5:] not in str(caught.value)


def test_repr_shows_the_npub_and_no_secret() -> None:
    identity = Identity.generate(SeededRng("repr"))
    text = repr(identity)
    assert identity.npub in text
    assert identity.secret.to_bytes().hex() not in text
    assert identity.phrase is not None
    assert all(word not in text for word in identity.phrase.split())
    assert identity.nsec() not in repr(identity.secret)


def test_card_formats_and_parses_back() -> None:
    identity = Identity.generate(SeededRng("card"))
    card = identity.card(("wss://Relay.Example.com:443/", "ws://127.0.0.1:7447"))
    assert card.relays == ("wss://relay.example.com", "ws://127.0.0.1:7447")
    assert card.uri == f"nostr:{card.nprofile}"
    for text in (card.npub, card.nprofile, card.uri, f"  {card.uri}\n", card.public_key.hex):
        parsed = ContactCard.parse(text)
        assert parsed.public_key == identity.public_key
    assert ContactCard.parse(card.nprofile) == card
    assert ContactCard.parse(card.npub).relays == ()


def test_card_parse_drops_unusable_relay_hints_and_caps_them() -> None:
    key = Identity.generate(SeededRng("hints")).public_key
    relays = ["https://not-a-relay.example", "wss://a.example", "wss://a.example/"]
    relays += [f"wss://r{i}.example" for i in range(8)]
    text = nip19.nprofile_encode(key.raw, relays)
    card = ContactCard.parse(text)
    assert card.relays[0] == "wss://a.example"
    assert len(card.relays) == 5
    assert len(set(card.relays)) == 5


@pytest.mark.parametrize(
    "text",
    [
        "",
        "npub",
        "hello",
        "nsec1vl029mgpspedva04g90vltkh6fvh240zqtv9k0t9af8935ke9laqsnlfe5",
        "note1fntxtkcy9pjwucqwa9mddn7v03wwwsu9j330jj350nvhpky2tuaspk6nqc",
        "zz" * 32,
    ],
)
def test_bad_addresses_say_what_was_expected(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        ContactCard.parse(text)
    message = str(caught.value)
    assert "npub" in message or "contact address" in message
    if text.startswith("nsec"):
        assert text not in message


def test_a_key_off_the_curve_is_refused() -> None:
    # x = 5 is not the x coordinate of any point on secp256k1.
    off_curve = (5).to_bytes(32, "big")
    with pytest.raises(InvalidInput):
        ContactCard.parse(nip19.npub_encode(off_curve))


@given(st.binary(min_size=32, max_size=32))
def test_any_valid_key_round_trips_as_a_card(raw: bytes) -> None:
    try:
        key = SecretKey(raw).public_key
    except Exception:
        return
    assert ContactCard.parse(ContactCard(key).npub).public_key == key


@given(st.text(max_size=200))
def test_parsing_arbitrary_text_raises_only_invalid_input(text: str) -> None:
    with contextlib.suppress(InvalidInput):
        ContactCard.parse(text)
