"""The contact directory rules (xchat.core.directory) with real signed events: the
newest valid inbox relay list (normalised, de-duplicated, at most ten; forged lists
ignored), the newest valid bundle per device (forged and broken ones ignored), the
contact after a lookup, names, states and adding a contact.
"""

from __future__ import annotations

import pytest

from tests.conftest import SeededRng, make_device
from xchat.core import directory
from xchat.core.device import LocalDevice
from xchat.core.events import sign_event
from xchat.crypto.keys import SecretKey
from xchat.errors import InvalidInput
from xchat.model import Contact, ContactState
from xchat.wire.event import Event, compute_id
from xchat.wire.kinds import KIND_DEVICE_BUNDLE, KIND_INBOX_RELAYS

NOW = 1_750_000_000
rng = SeededRng("directory-tests")
PHONE = make_device("alice", NOW)
LAPTOP = make_device("alice", NOW)  # same identity (same seed), another device
ALICE = PHONE.identity
ALICE_HEX = ALICE.public_key.hex
MALLORY = SecretKey.from_hex("42" * 32)
ME = "ee" * 32


def relay_list(urls: list[str], at: int, secret: SecretKey = ALICE.secret) -> Event:
    return sign_event(
        secret,
        kind=KIND_INBOX_RELAYS,
        tags=[["relay", u] for u in urls],
        content="",
        created_at=at,
        rng=rng,
    )


def forged(kind: int, tags: list[list[str]], content: str, at: int) -> Event:
    """An event claiming to be Alice's, with a correct id, signed by Mallory."""
    digest = compute_id(ALICE_HEX, at, kind, tags, content)
    sig = MALLORY.sign(digest, rng(32), check=False)
    return Event(digest.hex(), ALICE_HEX, at, kind, tags, content, sig.hex())


def bundle(device: LocalDevice, at: int) -> Event:
    return device.bundle_event(at, rng, one_time_keys=2)


# -- inbox relays -----------------------------------------------------------------------


def test_the_newest_valid_list_wins_normalised_and_de_duplicated() -> None:
    old = relay_list(["wss://old.example"], NOW - 100)
    new = relay_list(
        ["WSS://Inbox.Example:443/", "wss://inbox.example", "not a url", "ws://b.example:8080"],
        NOW,
    )
    assert directory.inbox_relays([new, old], ALICE_HEX) == [
        "wss://inbox.example",
        "ws://b.example:8080",
    ]
    assert directory.inbox_relays([old], ALICE_HEX) == ["wss://old.example"]


def test_forged_lists_are_ignored() -> None:
    real = relay_list(["wss://real.example"], NOW)
    newer_forgery = forged(KIND_INBOX_RELAYS, [["relay", "wss://evil.example"]], "", NOW + 50)
    mallorys = relay_list(["wss://evil.example"], NOW + 60, MALLORY)  # her own key
    events = [newer_forgery, real, mallorys]
    assert directory.inbox_relays(events, ALICE_HEX) == ["wss://real.example"]
    assert directory.inbox_relays([newer_forgery], ALICE_HEX) == []


def test_at_most_ten_relays_are_kept() -> None:
    urls = [f"wss://r{i}.example" for i in range(15)]
    assert directory.inbox_relays([relay_list(urls, NOW)], ALICE_HEX) == urls[:10]


def test_other_kinds_and_authors_are_not_lists() -> None:
    assert directory.inbox_relays([bundle(PHONE, NOW)], ALICE_HEX) == []
    assert directory.inbox_relays([relay_list(["wss://x.example"], NOW)], ME) == []


def test_ties_go_to_the_higher_id() -> None:
    a, b = relay_list(["wss://a.example"], NOW), relay_list(["wss://b.example"], NOW)
    winner = max([a, b], key=lambda e: e.id)
    assert directory.inbox_relays([a, b], ALICE_HEX) == [winner.tag_values("relay")[0]]
    assert directory.inbox_relays([b, a], ALICE_HEX) == [winner.tag_values("relay")[0]]


# -- bundles --------------------------------------------------------------------------------


def test_the_newest_valid_bundle_per_device() -> None:
    phone_old, phone_new = bundle(PHONE, NOW - 10), bundle(PHONE, NOW)
    laptop = bundle(LAPTOP, NOW - 5)
    found = directory.newest_bundles([phone_new, laptop, phone_old], ALICE_HEX)
    assert set(found) == {PHONE.certificate.device_id, LAPTOP.certificate.device_id}
    assert found[PHONE.certificate.device_id].published_at == NOW
    assert found[LAPTOP.certificate.device_id].published_at == NOW - 5


def test_forged_and_broken_bundles_are_ignored() -> None:
    good = bundle(PHONE, NOW)
    copied = forged(KIND_DEVICE_BUNDLE, good.tags, good.content, NOW + 10)  # bad signature
    garbage = sign_event(
        ALICE.secret,
        kind=KIND_DEVICE_BUNDLE,
        tags=[["d", PHONE.certificate.device_id]],
        content='{"v": 1}',
        created_at=NOW + 20,
        rng=rng,
    )
    # Mallory republishes Alice's bundle content under her own key
    mallorys = sign_event(
        MALLORY, kind=KIND_DEVICE_BUNDLE, tags=good.tags, content=good.content, created_at=NOW,
        rng=rng,
    )  # fmt: skip
    found = directory.newest_bundles([copied, garbage, mallorys, good], ALICE_HEX)
    assert list(found) == [PHONE.certificate.device_id]
    assert found[PHONE.certificate.device_id].published_at == NOW
    assert directory.newest_bundles([copied, garbage], ALICE_HEX) == {}
    assert directory.newest_bundles([mallorys], MALLORY.public_key.hex) == {}


def test_device_rows_from_bundles() -> None:
    (found,) = directory.newest_bundles([bundle(LAPTOP, NOW)], ALICE_HEX).values()
    device = directory.device_of(found, NOW + 1)
    assert (device.device_id, device.pubkey, device.curve25519, device.first_seen) == (
        LAPTOP.certificate.device_id,
        ALICE_HEX,
        LAPTOP.certificate.curve25519,
        NOW + 1,
    )
    assert '"identity":"' + ALICE_HEX in device.certificate


def test_lookup_filters() -> None:
    assert directory.lookup_filters(ALICE_HEX) == [
        {"kinds": [KIND_INBOX_RELAYS, KIND_DEVICE_BUNDLE], "authors": [ALICE_HEX]}
    ]


# -- the contact after a lookup -----------------------------------------------------------


def contact(**fields: object) -> Contact:
    values: dict[str, object] = {
        "pubkey": ALICE_HEX,
        "name": "Alice",
        "state": ContactState.ACCEPTED,
        "relays": ["wss://hint.example"],
        "created_at": NOW - 1000,
    }
    values.update(fields)
    return Contact(**values)  # type: ignore[arg-type]


def test_apply_lookup() -> None:
    c = contact()
    directory.apply_lookup(
        c, ["wss://inbox.example"], found_bundles=True, have_devices=False, now=NOW
    )
    assert (c.relays, c.bundle_checked_at, c.nip17_only) == (["wss://inbox.example"], NOW, False)
    directory.apply_lookup(c, [], found_bundles=False, have_devices=False, now=NOW + 1)
    assert (c.relays, c.nip17_only) == (["wss://inbox.example"], True)  # known relays stay
    assert directory.keep_looking(c)  # accepted, NIP-17 only: look again later
    directory.apply_lookup(c, [], found_bundles=False, have_devices=True, now=NOW + 2)
    assert not c.nip17_only
    assert not directory.keep_looking(c)
    assert not directory.keep_looking(contact(nip17_only=True, state=ContactState.REQUEST))


# -- names, states, adding ---------------------------------------------------------------------


def test_check_name() -> None:
    assert directory.check_name("  Alice  ") == "Alice"
    assert directory.check_name("Zoë 🌻") == "Zoë 🌻"
    assert directory.check_name("x" * 64) == "x" * 64
    for bad in ("x" * 65, "tab\there", "bell\x07", "del\x7f"):
        with pytest.raises(InvalidInput, match=r"^a contact name has at most 64 printable"):
            directory.check_name(bad)


def test_set_state() -> None:
    c = contact(state=ContactState.REQUEST)
    assert directory.set_state(c, "accepted")
    assert c.state is ContactState.ACCEPTED
    assert not directory.set_state(c, "accepted")  # already: no change, no error
    assert directory.set_state(c, "blocked")
    assert directory.set_state(c, ContactState.ACCEPTED)
    for bad in ("request", "friend", ""):
        with pytest.raises(
            InvalidInput, match=r"^a contact's state can be set to accepted or blocked$"
        ):
            directory.set_state(c, bad)
    assert c.state is ContactState.ACCEPTED


def test_adding_a_contact() -> None:
    new, already = directory.add_contact(None, ALICE_HEX, " Al ", ["wss://a.example"], ME, NOW)
    assert (already, new.name, new.state, new.relays, new.created_at) == (
        False,
        "Al",
        ContactState.ACCEPTED,
        ["wss://a.example"],
        NOW,
    )
    again, already = directory.add_contact(new, ALICE_HEX, "Renamed", ["wss://b.example"], ME, NOW)
    assert already
    assert again.name == "Al"  # adding never renames
    assert again.relays == ["wss://a.example", "wss://b.example"]
    request = contact(state=ContactState.REQUEST, name=None)
    accepted, already = directory.add_contact(request, ALICE_HEX, "Alice", [], ME, NOW)
    assert (already, accepted.state, accepted.name) == (False, ContactState.ACCEPTED, "Alice")
    blocked = contact(state=ContactState.BLOCKED)
    unblocked, already = directory.add_contact(blocked, ALICE_HEX, None, [], ME, NOW)
    assert (already, unblocked.state, unblocked.name) == (False, ContactState.ACCEPTED, "Alice")
    with pytest.raises(InvalidInput, match=r"^that is your own address$"):
        directory.add_contact(None, ME, None, [], ME, NOW)
    with pytest.raises(InvalidInput, match="at most 64"):
        directory.add_contact(None, ALICE_HEX, "x" * 65, [], ME, NOW)
