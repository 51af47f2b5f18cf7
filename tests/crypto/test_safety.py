"""Safety numbers: symmetric, per-person halves, the QR payload, and a pinned known answer."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xchat.crypto import safety
from xchat.errors import DecodeError, LocalProtocolError

VECTOR: dict[str, Any] = json.loads(
    (Path(__file__).parent.parent / "vectors" / "safety_number.json").read_bytes()
)


def side(person: dict[str, Any]) -> tuple[bytes, list[bytes]]:
    return bytes.fromhex(person["identity"]), [bytes.fromhex(d) for d in person["devices"]]


ALICE = side(VECTOR["alice"])
BOB = side(VECTOR["bob"])
CAROL = (hashlib.sha256(b"carol").digest(), [hashlib.sha256(b"carol device").digest()])

keys32 = st.binary(min_size=32, max_size=32)
people = st.tuples(keys32, st.lists(keys32, max_size=3))


def spec_digest(identity: bytes, devices: list[bytes]) -> bytes:
    """docs/protocol.md, "Safety numbers", written out independently of xchat.crypto.safety."""
    unique = sorted(set(devices))
    data = b"xchat-safety-number/v1\x00" + identity + len(unique).to_bytes(2, "big")
    digest = hashlib.sha512(data + b"".join(unique)).digest()
    for _ in range(5200):
        digest = hashlib.sha512(digest + identity).digest()
    return digest


def spec_fingerprint(identity: bytes, devices: list[bytes]) -> str:
    digest = spec_digest(identity, devices)
    return "".join(
        str(int.from_bytes(digest[i : i + 5], "big") % 100000).zfill(5) for i in range(0, 30, 5)
    )


# --- the pinned vector --------------------------------------------------------------------------


def test_known_answer() -> None:
    assert safety.fingerprint(*ALICE) == VECTOR["alice"]["fingerprint"]
    assert safety.fingerprint(*BOB) == VECTOR["bob"]["fingerprint"]
    assert safety.safety_number(ALICE, BOB) == VECTOR["safety_number"]
    assert safety.qr_payload(ALICE, BOB).hex() == VECTOR["qr_payload"]


def test_known_answer_follows_the_spec() -> None:
    assert spec_fingerprint(*ALICE) == VECTOR["alice"]["fingerprint"]
    assert spec_fingerprint(*BOB) == VECTOR["bob"]["fingerprint"]
    digests = sorted([spec_digest(*ALICE)[:32], spec_digest(*BOB)[:32]])
    assert (b"XCSN\x01" + digests[0] + digests[1]).hex() == VECTOR["qr_payload"]
    halves = sorted([VECTOR["alice"]["fingerprint"], VECTOR["bob"]["fingerprint"]])
    digits = "".join(halves)
    assert VECTOR["safety_number"] == " ".join(digits[i : i + 5] for i in range(0, 60, 5))


# --- properties ---------------------------------------------------------------------------------


def test_same_number_on_both_sides() -> None:
    assert safety.safety_number(ALICE, BOB) == safety.safety_number(BOB, ALICE)
    assert safety.qr_payload(ALICE, BOB) == safety.qr_payload(BOB, ALICE)


@settings(max_examples=10, deadline=None)
@given(a=people, b=people)
def test_symmetric_for_any_keys(a: tuple[bytes, list[bytes]], b: tuple[bytes, list[bytes]]) -> None:
    number = safety.safety_number(a, b)
    assert number == safety.safety_number(b, a)
    assert safety.qr_payload(a, b) == safety.qr_payload(b, a)
    assert safety.verify_qr(safety.qr_payload(a, b), b, a)


def test_format_is_60_digits_in_12_groups() -> None:
    number = safety.safety_number(ALICE, CAROL)
    groups = number.split(" ")
    assert len(groups) == 12
    assert all(len(g) == 5 and g.isascii() and g.isdigit() for g in groups)
    assert len(number.replace(" ", "")) == 60
    assert len(safety.fingerprint(*ALICE)) == 30


def test_halves_are_the_two_fingerprints_lower_first() -> None:
    number = safety.safety_number(ALICE, CAROL).replace(" ", "")
    halves = sorted([safety.fingerprint(*ALICE), safety.fingerprint(*CAROL)])
    assert number == halves[0] + halves[1]


def test_added_device_changes_only_that_persons_half() -> None:
    before = safety.safety_number(ALICE, BOB).replace(" ", "")
    bob_plus = (BOB[0], [*BOB[1], hashlib.sha256(b"bob device 2").digest()])
    after = safety.safety_number(ALICE, bob_plus).replace(" ", "")
    assert before != after
    assert safety.fingerprint(*ALICE) in before
    assert safety.fingerprint(*ALICE) in after
    assert safety.fingerprint(*BOB) in before
    assert safety.fingerprint(*BOB) not in after
    assert safety.fingerprint(*bob_plus) in after


def test_replaced_device_changes_only_that_persons_half() -> None:
    alice_new = (ALICE[0], [ALICE[1][0], hashlib.sha256(b"alice device 3").digest()])
    assert safety.fingerprint(*alice_new) != safety.fingerprint(*ALICE)
    assert safety.fingerprint(*BOB) in safety.safety_number(alice_new, BOB).replace(" ", "")
    assert safety.qr_payload(alice_new, BOB) != safety.qr_payload(ALICE, BOB)


def test_changed_identity_changes_that_half() -> None:
    other = (hashlib.sha256(b"mallory").digest(), BOB[1])
    assert safety.fingerprint(*other) != safety.fingerprint(*BOB)
    assert safety.fingerprint(*ALICE) in safety.safety_number(ALICE, other).replace(" ", "")


def test_removed_device_changes_the_half() -> None:
    assert safety.fingerprint(ALICE[0], ALICE[1][:1]) != safety.fingerprint(*ALICE)
    assert safety.fingerprint(ALICE[0], []) != safety.fingerprint(ALICE[0], ALICE[1][:1])


def test_device_order_and_duplicates_do_not_matter() -> None:
    identity, devices = ALICE
    reference = safety.fingerprint(identity, devices)
    assert safety.fingerprint(identity, list(reversed(devices))) == reference
    assert safety.fingerprint(identity, devices + devices) == reference
    assert safety.fingerprint(identity, iter(devices)) == reference
    assert safety.fingerprint(identity, set(devices)) == reference


def test_identity_and_device_roles_are_not_interchangeable() -> None:
    a, b = hashlib.sha256(b"a").digest(), hashlib.sha256(b"b").digest()
    assert safety.fingerprint(a, [b]) != safety.fingerprint(b, [a])


def test_talking_to_yourself_gives_two_equal_halves() -> None:
    number = safety.safety_number(ALICE, ALICE).replace(" ", "")
    assert number == safety.fingerprint(*ALICE) * 2


# --- QR codes -----------------------------------------------------------------------------------


def test_qr_layout() -> None:
    payload = safety.qr_payload(ALICE, BOB)
    assert len(payload) == 69
    assert payload[:4] == safety.QR_PREFIX == b"XCSN"
    assert payload[4] == 1


def test_verify_qr() -> None:
    scanned = safety.qr_payload(BOB, ALICE)  # what Bob's screen shows
    assert safety.verify_qr(scanned, ALICE, BOB) is True
    assert safety.verify_qr(scanned, BOB, ALICE) is True
    assert safety.verify_qr(safety.qr_payload(ALICE, CAROL), ALICE, BOB) is False
    bob_new = (BOB[0], [hashlib.sha256(b"new phone").digest()])
    assert safety.verify_qr(scanned, ALICE, bob_new) is False


@settings(max_examples=30, deadline=None)
@given(index=st.integers(min_value=5, max_value=68), mask=st.integers(min_value=1, max_value=255))
def test_verify_qr_any_changed_digest_byte_is_false(index: int, mask: int) -> None:
    payload = bytearray(safety.qr_payload(ALICE, BOB))
    payload[index] ^= mask
    assert safety.verify_qr(bytes(payload), ALICE, BOB) is False


@pytest.mark.parametrize(
    "scanned",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"XCSN", id="prefix-only"),
        pytest.param(b"XCSN\x01" + bytes(63), id="short"),
        pytest.param(b"XCSN\x01" + bytes(65), id="long"),
        pytest.param(b"XCSM\x01" + bytes(64), id="wrong-prefix"),
        pytest.param(b"xcsn\x01" + bytes(64), id="lowercase-prefix"),
        pytest.param(b"XCSN\x00" + bytes(64), id="version-0"),
        pytest.param(b"XCSN\x02" + bytes(64), id="version-2"),
        pytest.param(b"nostr:npub1" + bytes(58), id="contact-code"),
    ],
)
def test_malformed_qr_is_a_decode_error(scanned: bytes) -> None:
    with pytest.raises(DecodeError):
        safety.verify_qr(scanned, ALICE, BOB)


@given(scanned=st.binary(max_size=100))
def test_arbitrary_scans_raise_only_decode_error(scanned: bytes) -> None:
    with contextlib.suppress(DecodeError):
        assert safety.verify_qr(scanned, ALICE, BOB) is False


# --- argument checks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("identity", "devices"),
    [
        (bytes(31), []),
        (bytes(33), []),
        (b"", []),
        (bytes(32), [bytes(31)]),
        (bytes(32), [bytes(32), bytes(64)]),
    ],
)
def test_key_lengths(identity: bytes, devices: list[bytes]) -> None:
    with pytest.raises(LocalProtocolError):
        safety.fingerprint(identity, devices)
    with pytest.raises(LocalProtocolError):
        safety.safety_number((identity, devices), BOB)
    with pytest.raises(LocalProtocolError):
        safety.qr_payload(ALICE, (identity, devices))
