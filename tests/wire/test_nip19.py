"""Tests for xchat.wire.nip19: spec examples, round trips, bounds and hostile input."""

from __future__ import annotations

import contextlib
import string
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xchat.errors import DecodeError, LocalProtocolError
from xchat.wire import bech32, nip19
from xchat.wire.nip19 import EventPointer, Profile

# NIP-19 "Examples" and NIP-06 "Test vectors": (hex, bech32).
NPUBS = [
    (
        "3bf0c63fcb93463407af97a5e5ee64fa883d107ef9e558472c4eb9aaaefa459d",
        "npub180cvv07tjdrrgpa0j7j7tmnyl2yr6yr7l8j4s3evf6u64th6gkwsyjh6w6",
    ),
    (
        "7e7e9c42a91bfef19fa929e5fda1b72e0ebc1a4c1141673e2794234d86addf4e",
        "npub10elfcs4fr0l0r8af98jlmgdh9c8tcxjvz9qkw038js35mp4dma8qzvjptg",
    ),
    (
        "17162c921dc4d2518f9a101db33695df1afb56ab82f5ff3e5da6eec3ca5cd917",
        "npub1zutzeysacnf9rru6zqwmxd54mud0k44tst6l70ja5mhv8jjumytsd2x7nu",
    ),
    (
        "d41b22899549e1f3d335a31002cfd382174006e166d3e658e3a5eecdb6463573",
        "npub16sdj9zv4f8sl85e45vgq9n7nsgt5qphpvmf7vk8r5hhvmdjxx4es8rq74h",
    ),
]
NSECS = [
    (
        "67dea2ed018072d675f5415ecfaed7d2597555e202d85b3d65ea4e58d2d92ffa",
        "nsec1vl029mgpspedva04g90vltkh6fvh240zqtv9k0t9af8935ke9laqsnlfe5",
    ),
    (
        "7f7ff03d123792d6ac594bfa67bf6d0c0ab55b6b1fdb6249303fe861f1ccba9a",
        "nsec10allq0gjx7fddtzef0ax00mdps9t2kmtrldkyjfs8l5xruwvh2dq0lhhkp",
    ),
    (
        "c15d739894c81a2fcfd3a2df85a0d2c0dbc47a280d092799f144d73d7ae78add",
        "nsec1c9wh8xy5eqdzln7n5t0ctgxjcrdug73gp5yj0x03gntn67h83twssdfhel",
    ),
]
NPROFILE = (
    "nprofile1qqsrhuxx8l9ex335q7he0f09aej04zpazpl0ne2cgukyawd24mayt8gpp4mhxue69uhhytnc9e3k7mgpz4"
    "mhxue69uhkg6nzv9ejuumpv34kytnrdaksjlyr9p"
)
NPROFILE_KEY = bytes.fromhex("3bf0c63fcb93463407af97a5e5ee64fa883d107ef9e558472c4eb9aaaefa459d")
# NIP-21 examples; this nevent's values were cross-checked with nostr-sdk.
NEVENT = (
    "nevent1qqstna2yrezu5wghjvswqqculvvwxsrcvu7uc0f78gan4xqhvz49d9spr3mhxue69uhkummnw3ez6un9d3sh"
    "jtn4de6x2argwghx6egpr4mhxue69uhkummnw3ez6ur4vgh8wetvd3hhyer9wghxuet5nxnepm"
)
NEVENT_ID = bytes.fromhex("b9f5441e45ca39179320e0031cfb18e34078673dcc3d3e3a3b3a981760aa5696")

keys = st.binary(min_size=32, max_size=32)
url_chars = string.ascii_letters + string.digits + "-._~:/?#[]@!$&'()*+,;=%"
# 16 relays of up to 180 bytes keep every nprofile/nevent under the 5000-character bound.
relay_urls = st.builds(
    lambda scheme, rest: scheme + rest,
    st.sampled_from(["wss://", "ws://", ""]),
    st.text(alphabet=url_chars, min_size=1, max_size=174),
)
relay_lists = st.lists(relay_urls, max_size=nip19.MAX_RELAYS).map(tuple)
kinds = st.none() | st.integers(min_value=0, max_value=2**32 - 1)


def mutate(text: str, draw: st.DataObject) -> str:
    """Flip, insert or delete one character."""
    op = draw.draw(st.sampled_from(["flip", "insert", "delete"]))
    i = draw.draw(st.integers(min_value=0, max_value=len(text) - 1))
    char = draw.draw(st.sampled_from(bech32.CHARSET + "1bio" + string.ascii_uppercase + " é"))
    if op == "flip":
        return text[:i] + char + text[i + 1 :]
    if op == "insert":
        return text[:i] + char + text[i:]
    return text[:i] + text[i + 1 :]


def tlv(type_: int, value: bytes) -> bytes:
    return bytes([type_, len(value)]) + value


# Known answers


@pytest.mark.parametrize(("hex_key", "text"), NPUBS)
def test_npub_known_answers(hex_key: str, text: str) -> None:
    assert nip19.npub_encode(bytes.fromhex(hex_key)) == text
    assert nip19.npub_decode(text) == bytes.fromhex(hex_key)
    assert nip19.decode(text) == ("npub", bytes.fromhex(hex_key))


@pytest.mark.parametrize(("hex_key", "text"), NSECS)
def test_nsec_known_answers(hex_key: str, text: str) -> None:
    assert nip19.nsec_encode(bytes.fromhex(hex_key)) == text
    assert nip19.nsec_decode(text) == bytes.fromhex(hex_key)
    assert nip19.decode(text) == ("nsec", bytes.fromhex(hex_key))


def test_nprofile_known_answer() -> None:
    relays = ("wss://r.x.com", "wss://djbas.sadkb.com")
    assert nip19.nprofile_decode(NPROFILE) == Profile(NPROFILE_KEY, relays)
    assert nip19.nprofile_encode(NPROFILE_KEY, relays) == NPROFILE


def test_nip21_examples() -> None:
    assert nip19.decode(
        "nostr:npub1sn0wdenkukak0d9dfczzeacvhkrgz92ak56egt7vdgzn8pv2wfqqhrjdv9"
    ) == ("npub", bytes.fromhex("84dee6e676e5bb67b4ad4e042cf70cbd8681155db535942fcc6a0533858a7240"))
    relays = ("wss://nostr-relay.untethr.me", "wss://nostr-pub.wellorder.net")
    assert nip19.decode("nostr:" + NEVENT) == ("nevent", EventPointer(NEVENT_ID, relays))
    assert nip19.decode("NOSTR:" + NPROFILE) == ("nprofile", nip19.nprofile_decode(NPROFILE))
    # Relays before the key: TLV order does not matter.
    reordered = (
        "nprofile1qyxhwumn8ghj7mn0wvhxcmmvqyd8wumn8ghj7un9d3shjtnhv4ehgetjde38gcewvdhk6qpq80cvv07"
        "tjdrrgpa0j7j7tmnyl2yr6yr7l8j4s3evf6u64th6gkwswpnfsn"
    )
    assert nip19.nprofile_decode(reordered) == Profile(
        NPROFILE_KEY, ("wss://nos.lol", "wss://relay.westernbtc.com")
    )


def test_note_known_answer() -> None:
    # An nevent with only TLV 0 and a note carry the same id.
    text = nip19.note_encode(NEVENT_ID)
    assert text.startswith("note1")
    assert nip19.note_decode(text) == NEVENT_ID
    assert bech32.decode(text) == ("note", NEVENT_ID)


# Round trips


@given(keys)
def test_key_round_trips(key: bytes) -> None:
    assert nip19.npub_decode(nip19.npub_encode(key)) == key
    assert nip19.nsec_decode(nip19.nsec_encode(key)) == key
    assert nip19.note_decode(nip19.note_encode(key)) == key
    assert nip19.decode(nip19.npub_encode(key)) == ("npub", key)
    assert nip19.decode(nip19.note_encode(key)) == ("note", key)


@given(keys, relay_lists)
def test_nprofile_round_trip(key: bytes, relays: tuple[str, ...]) -> None:
    text = nip19.nprofile_encode(key, relays)
    assert len(text) <= nip19.MAX_LENGTH
    assert nip19.nprofile_decode(text) == Profile(key, relays)
    assert nip19.decode("nostr:" + text) == ("nprofile", Profile(key, relays))


@given(keys, relay_lists, st.none() | keys, kinds)
def test_nevent_round_trip(
    event_id: bytes, relays: tuple[str, ...], author: bytes | None, kind: int | None
) -> None:
    text = nip19.nevent_encode(event_id, relays, author=author, kind=kind)
    pointer = EventPointer(event_id, relays, author, kind)
    assert nip19.nevent_decode(text) == pointer
    assert nip19.decode(text) == ("nevent", pointer)


@given(keys)
def test_uppercase_round_trip(key: bytes) -> None:
    assert nip19.npub_decode(nip19.npub_encode(key).upper()) == key
    assert nip19.nsec_decode(nip19.nsec_encode(key).upper()) == key
    # Case belongs to the bech32 text, not the data: the relay keeps its own case.
    profile = nip19.nprofile_decode(nip19.nprofile_encode(key, ["wss://a.b"]).upper())
    assert profile == Profile(key, ("wss://a.b",))


@given(keys, st.integers(min_value=0, max_value=62))
def test_mixed_case_is_rejected(key: bytes, i: int) -> None:
    text = nip19.npub_encode(key)
    mixed = text[:i] + text[i].upper() + text[i + 1 :]
    if mixed != text:  # digits have no case
        with pytest.raises(DecodeError, match="mixes upper and lower case"):
            nip19.npub_decode(mixed)


# Encoder bounds


@pytest.mark.parametrize(
    "encoder", [nip19.npub_encode, nip19.nsec_encode, nip19.note_encode, nip19.nprofile_encode]
)
@pytest.mark.parametrize("key", [bytes(31), bytes(33), b"", "00" * 32, None, bytearray(32)])
def test_encoders_reject_bad_keys(encoder: Callable[[bytes], str], key: object) -> None:
    with pytest.raises(LocalProtocolError):
        encoder(key)  # type: ignore[arg-type]


def test_relay_bounds_on_encode() -> None:
    key = bytes(32)
    nip19.nprofile_encode(key, ["wss://" + "a" * 249])  # 255 bytes
    nip19.nprofile_encode(key, ["wss://a"] * nip19.MAX_RELAYS)
    for relays in (
        ["wss://" + "a" * 250],
        ["wss://a"] * (nip19.MAX_RELAYS + 1),
        [""],
        ["wss://é.com"],
        ["wss://a\n"],
        [b"wss://a"],
        "wss://a",
    ):
        with pytest.raises(LocalProtocolError):
            nip19.nprofile_encode(key, relays)  # type: ignore[arg-type]
        with pytest.raises(LocalProtocolError):
            nip19.nevent_encode(key, relays)  # type: ignore[arg-type]


def test_encoders_never_emit_what_decoders_refuse() -> None:
    # 16 relays of 255 bytes are within the per-relay bounds but not the 5000 characters.
    with pytest.raises(LocalProtocolError, match="longer than 5000"):
        nip19.nprofile_encode(bytes(32), ["wss://" + "a" * 249] * nip19.MAX_RELAYS)


@pytest.mark.parametrize("kind", [-1, 2**32, True, 1.0, "1"])
def test_nevent_rejects_bad_kind(kind: object) -> None:
    with pytest.raises(LocalProtocolError):
        nip19.nevent_encode(bytes(32), kind=kind)  # type: ignore[arg-type]


def test_nevent_rejects_bad_author() -> None:
    with pytest.raises(LocalProtocolError):
        nip19.nevent_encode(bytes(32), author=bytes(31))


# Decoder strictness


def test_wrong_prefix_names_both() -> None:
    npub = NPUBS[0][1]
    with pytest.raises(DecodeError, match="expected an nsec1… address, got npub1…"):
        nip19.nsec_decode(npub)
    with pytest.raises(DecodeError, match="expected a note1… address, got npub1…"):
        nip19.note_decode(npub)
    with pytest.raises(DecodeError, match="got an unknown prefix"):
        nip19.npub_decode(bech32.encode("secret", bytes(32)))


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_wrong_payload_length(length: int) -> None:
    for prefix, decoder in (
        ("npub", nip19.npub_decode),
        ("nsec", nip19.nsec_decode),
        ("note", nip19.note_decode),
    ):
        text = bech32.encode(prefix, bytes(length))
        with pytest.raises(DecodeError, match="32 bytes"):
            decoder(text)
        with pytest.raises(DecodeError):
            nip19.decode(text)


def test_unknown_tlv_types_are_ignored() -> None:
    data = (
        tlv(9, b"future") + tlv(0, NPROFILE_KEY) + tlv(2, b"x") + tlv(1, b"wss://a") + tlv(3, b"")
    )
    profile = nip19.nprofile_decode(bech32.encode("nprofile", data))
    assert profile == Profile(NPROFILE_KEY, ("wss://a",))
    pointer = nip19.nevent_decode(bech32.encode("nevent", tlv(0, NEVENT_ID) + tlv(200, bytes(9))))
    assert pointer == EventPointer(NEVENT_ID)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "lacks the required TLV of type 0"),
        (tlv(1, b"wss://a"), "lacks the required TLV of type 0"),
        (tlv(0, bytes(31)), "must hold 32 bytes"),
        (tlv(0, bytes(33)), "must hold 32 bytes"),
        (tlv(0, bytes(32)) * 2, "more than one TLV of type 0"),
        (tlv(0, bytes(32)) + b"\x01", "inside a TLV header"),
        (tlv(0, bytes(32))[:-1], "inside a TLV value"),
        (tlv(0, bytes(32)) + b"\x01\x05wss:", "inside a TLV value"),
    ],
)
def test_bad_tlv_is_rejected(data: bytes, reason: str) -> None:
    for prefix, decoder in (("nprofile", nip19.nprofile_decode), ("nevent", nip19.nevent_decode)):
        text = bech32.encode(prefix, data)
        with pytest.raises(DecodeError, match=reason):
            decoder(text)
        with pytest.raises(DecodeError, match=reason):
            nip19.decode(text)


@pytest.mark.parametrize(
    ("relays", "kept"),
    [
        (tlv(1, b""), ()),
        (tlv(1, "wss://é".encode()), ()),
        (tlv(1, b"wss://a\x00") + tlv(1, b"wss://b"), ("wss://b",)),
        (tlv(1, b"wss://a") * 17, ("wss://a",) * 16),
    ],
)
def test_unusable_relay_hints_are_skipped(relays: bytes, kept: tuple[str, ...]) -> None:
    # Hints are optional and other clients write odd ones: the address still decodes.
    text = bech32.encode("nprofile", tlv(0, bytes(32)) + relays)
    assert nip19.nprofile_decode(text).relays == kept


@pytest.mark.parametrize(
    "extra",
    [
        tlv(2, bytes(31)),
        tlv(2, bytes(32)) * 2,
        tlv(3, bytes(3)),
        tlv(3, bytes(5)),
        tlv(3, bytes(4)) * 2,
    ],
)
def test_bad_nevent_fields_are_rejected(extra: bytes) -> None:
    with pytest.raises(DecodeError):
        nip19.nevent_decode(bech32.encode("nevent", tlv(0, NEVENT_ID) + extra))


def test_over_long_strings_are_rejected() -> None:
    text = bech32.encode("nprofile", tlv(0, NPROFILE_KEY) + tlv(99, bytes(255)) * 13)
    assert len(text) > nip19.MAX_LENGTH
    with pytest.raises(DecodeError, match="longer than 5000"):
        nip19.nprofile_decode(text)


def test_generic_decode_rejects_unsupported_entities() -> None:
    with pytest.raises(DecodeError, match="unsupported NIP-19 entity: naddr1…"):
        nip19.decode(bech32.encode("naddr", tlv(0, b"")))
    with pytest.raises(DecodeError, match="unknown prefix"):
        nip19.decode(bech32.encode("xyz", bytes(32)))
    with pytest.raises(DecodeError, match="must not hold an nsec"):
        nip19.decode("nostr:" + NSECS[0][1])


# Hostile input

DECODERS: list[Callable[[str], object]] = [
    nip19.decode,
    nip19.npub_decode,
    nip19.nsec_decode,
    nip19.note_decode,
    nip19.nprofile_decode,
    nip19.nevent_decode,
]


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("value", [None, 5, b"npub1", ["npub1"], NPUBS[0][1].encode()])
def test_non_str_input_is_a_decode_error(
    decoder: Callable[[object], object], value: object
) -> None:
    with pytest.raises(DecodeError):
        decoder(value)


@pytest.mark.parametrize("decoder", DECODERS)
@given(text=st.text(max_size=300))
def test_arbitrary_text_raises_only_decode_error(
    decoder: Callable[[str], object], text: str
) -> None:
    with contextlib.suppress(DecodeError):
        decoder(text)


@pytest.mark.parametrize("decoder", DECODERS)
@given(key=keys, relays=relay_lists, draw=st.data())
def test_mutated_strings_raise_only_decode_error(
    decoder: Callable[[str], object], key: bytes, relays: tuple[str, ...], draw: st.DataObject
) -> None:
    valid = draw.draw(
        st.sampled_from(
            [
                nip19.npub_encode(key),
                nip19.nsec_encode(key),
                nip19.nprofile_encode(key, relays),
                nip19.nevent_encode(key, relays, author=key, kind=1),
            ]
        )
    )
    with contextlib.suppress(DecodeError):
        decoder(mutate(valid, draw))


def error_of(decoder: Callable[[str], object], text: str) -> DecodeError | None:
    try:
        decoder(text)
    except DecodeError as exc:
        return exc
    return None


@given(key=keys, draw=st.data())
def test_nsec_errors_never_contain_the_input(key: bytes, draw: st.DataObject) -> None:
    nsec = nip19.nsec_encode(key)
    for text in (mutate(nsec, draw), "nostr:" + nsec, nsec + "q", nsec[:-1], nsec):
        for decoder in (nip19.nsec_decode, nip19.npub_decode, nip19.nprofile_decode, nip19.decode):
            exc = error_of(decoder, text)
            if exc is None:
                continue
            for leaked in (text, nsec[5:], key.hex()):
                assert leaked not in str(exc)
                assert leaked not in repr(exc)
            assert exc.__cause__ is None
            assert exc.__context__ is None


# Interoperability


def test_agrees_with_nostr_sdk() -> None:
    sdk = pytest.importorskip("nostr_sdk")
    keys = sdk.Keys.generate()
    pubkey = bytes.fromhex(keys.public_key().to_hex())
    secret = bytes.fromhex(keys.secret_key().to_hex())
    relays = ["wss://relay.example.com", "wss://nos.lol"]
    assert nip19.npub_encode(pubkey) == keys.public_key().to_bech32()
    assert nip19.nsec_encode(secret) == keys.secret_key().to_bech32()

    sdk_relays = [sdk.RelayUrl.parse(r) for r in relays]
    ours = nip19.nprofile_encode(pubkey, relays)
    theirs = sdk.Nip19Profile(keys.public_key(), sdk_relays).to_bech32()
    assert nip19.nprofile_decode(theirs) == Profile(pubkey, tuple(relays))
    assert sdk.Nip19Profile.from_bech32(ours).public_key().to_hex() == pubkey.hex()

    event_id = sdk.EventId.parse(NEVENT_ID.hex())
    theirs = sdk.Nip19Event(event_id, keys.public_key(), sdk.Kind(1), sdk_relays).to_bech32()
    assert nip19.nevent_decode(theirs) == EventPointer(NEVENT_ID, tuple(relays), pubkey, 1)
    parsed = sdk.Nip19Event.from_bech32(nip19.nevent_encode(NEVENT_ID, relays, pubkey, 1))
    assert parsed.event_id().to_hex() == NEVENT_ID.hex()
    assert parsed.author().to_hex() == pubkey.hex()
    assert parsed.kind().as_u16() == 1
    assert [str(r) for r in parsed.relays()] == relays
