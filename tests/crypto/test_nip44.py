"""NIP-44 v2: the official vectors, the limits, and properties of the codec under hypothesis."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xchat.crypto import nip44
from xchat.crypto.keys import CURVE_ORDER, PublicKey, SecretKey
from xchat.errors import DecodeError, DecryptionError, LocalProtocolError

try:  # rust-nostr's bindings, a dev dependency: an independent NIP-44 implementation
    import nostr_sdk
except ImportError:  # pragma: no cover
    nostr_sdk = None

VECTORS_PATH = Path(__file__).parent.parent / "vectors" / "nip44.vectors.json"
VECTORS_SHA256 = "269ed0f69e4c192512cc779e78c555090cebc7c785b609e338a62afc3ce25040"
VECTORS: dict[str, Any] = json.loads(VECTORS_PATH.read_bytes())["v2"]
VALID = VECTORS["valid"]
INVALID = VECTORS["invalid"]

REMOTE_ERRORS = (DecodeError, DecryptionError)


def cases(vectors: list[Any]) -> list[Any]:
    """One pytest param per vector, named by its index and note."""
    params = []
    for index, vector in enumerate(vectors):
        note = vector.get("note", "") if isinstance(vector, dict) else ""
        label = re.sub(r"[^0-9A-Za-z]+", "_", note).strip("_")
        params.append(pytest.param(vector, id=f"{index:02d}-{label}" if label else f"{index:02d}"))
    return params


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def secret_from_int(value: int) -> SecretKey:
    return SecretKey(value.to_bytes(32, "big"))


def test_vectors_file_is_the_official_one() -> None:
    assert sha256_hex(VECTORS_PATH.read_bytes()) == VECTORS_SHA256


# --- valid vectors ------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", cases(VALID["get_conversation_key"]))
def test_valid_get_conversation_key(vector: dict[str, str]) -> None:
    secret = SecretKey.from_hex(vector["sec1"])
    peer = PublicKey.from_hex(vector["pub2"])
    assert nip44.conversation_key(secret, peer).hex() == vector["conversation_key"]


@pytest.mark.parametrize(
    "vector",
    cases(VALID["get_message_keys"]["keys"]),
)
def test_valid_get_message_keys(vector: dict[str, str]) -> None:
    conversation_key = bytes.fromhex(VALID["get_message_keys"]["conversation_key"])
    chacha_key, chacha_nonce, hmac_key = nip44.message_keys(
        conversation_key, bytes.fromhex(vector["nonce"])
    )
    assert chacha_key.hex() == vector["chacha_key"]
    assert chacha_nonce.hex() == vector["chacha_nonce"]
    assert hmac_key.hex() == vector["hmac_key"]


@pytest.mark.parametrize(
    ("unpadded", "padded"),
    [pytest.param(u, p, id=f"{u}->{p}") for u, p in VALID["calc_padded_len"]],
)
def test_valid_calc_padded_len(unpadded: int, padded: int) -> None:
    assert nip44.calc_padded_len(unpadded) == padded


@pytest.mark.parametrize("vector", cases(VALID["encrypt_decrypt"]))
def test_valid_encrypt_decrypt(vector: dict[str, str]) -> None:
    sec1 = SecretKey.from_hex(vector["sec1"])
    sec2 = SecretKey.from_hex(vector["sec2"])
    conversation_key = nip44.conversation_key(sec1, sec2.public_key)
    assert conversation_key.hex() == vector["conversation_key"]

    payload = nip44.encrypt(vector["plaintext"], conversation_key, bytes.fromhex(vector["nonce"]))
    assert payload == vector["payload"]

    their_key = nip44.conversation_key(sec2, sec1.public_key)
    assert their_key == conversation_key
    assert nip44.decrypt(payload, their_key) == vector["plaintext"]
    assert nip44.decrypt_bytes(payload, their_key) == vector["plaintext"].encode()


def check_long_message(
    conversation_key_hex: str,
    nonce_hex: str,
    plaintext: str,
    plaintext_sha256: str,
    payload_sha256: str,
) -> None:
    conversation_key = bytes.fromhex(conversation_key_hex)
    assert sha256_hex(plaintext.encode()) == plaintext_sha256
    payload = nip44.encrypt(plaintext, conversation_key, bytes.fromhex(nonce_hex))
    assert sha256_hex(payload.encode()) == payload_sha256
    assert nip44.decrypt(payload, conversation_key) == plaintext


@pytest.mark.parametrize("vector", cases(VALID["encrypt_decrypt_long_msg"]))
def test_valid_encrypt_decrypt_long_msg(vector: dict[str, Any]) -> None:
    check_long_message(
        vector["conversation_key"],
        vector["nonce"],
        vector["pattern"] * vector["repeat"],
        vector["plaintext_sha256"],
        vector["payload_sha256"],
    )


def test_longest_plaintext_from_the_spec_table() -> None:
    """The 65535-byte row of the spec's "Extended length prefix" table (the last u16 length)."""
    check_long_message(
        "c41c775356fd92eadc63ff5a0dc1da211b268cbea22316767095b2871ea1412d",
        "00" * 31 + "01",
        "a" * 65535,
        "6e1bebca6a8229364a162a72ef064826c4cd7457bf54f190ef782bd9deff3e42",
        "6d8c2810d1e870fbaa1f0a0937126cca837a15f9260e27060c331d70a3c0bc84",
    )


# --- invalid vectors ----------------------------------------------------------------------------


@pytest.mark.parametrize("length", INVALID["encrypt_msg_lengths"])
def test_invalid_encrypt_msg_lengths(length: int) -> None:
    with pytest.raises(LocalProtocolError):
        nip44.encrypt("a" * length, b"\x01" * 32, b"\x02" * 32)
    with pytest.raises(LocalProtocolError):
        nip44.encrypt_bytes(b"a" * length, b"\x01" * 32, b"\x02" * 32)


@pytest.mark.parametrize("vector", cases(INVALID["get_conversation_key"]))
def test_invalid_get_conversation_key(vector: dict[str, str]) -> None:
    if 0 < int(vector["sec1"], 16) < CURVE_ORDER:
        # The secret is fine, so the public key is the invalid part.
        secret = SecretKey.from_hex(vector["sec1"])
        with pytest.raises(DecodeError):
            nip44.conversation_key(secret, PublicKey.from_hex(vector["pub2"]))
        with pytest.raises(DecodeError):
            nip44.ConversationKeyCache().get(secret, PublicKey.from_hex(vector["pub2"]))
    else:
        with pytest.raises(LocalProtocolError):
            SecretKey.from_hex(vector["sec1"])


@pytest.mark.parametrize("vector", cases(INVALID["decrypt"]))
def test_invalid_decrypt(vector: dict[str, str]) -> None:
    conversation_key = bytes.fromhex(vector["conversation_key"])
    with pytest.raises(REMOTE_ERRORS) as info:
        nip44.decrypt(vector["payload"], conversation_key)
    expected = DecryptionError if "MAC" in vector["note"] else DecodeError
    assert type(info.value) is expected
    assert vector["plaintext"] not in str(info.value)
    assert vector["conversation_key"] not in str(info.value)


# --- limits and argument checks ----------------------------------------------------------------

KEY = bytes(range(32))
NONCE = bytes(range(32, 64))


def test_limits() -> None:
    assert nip44.MIN_PLAINTEXT == 1
    assert nip44.MAX_PLAINTEXT == 65535
    assert len(nip44.encrypt("a", KEY, NONCE)) == 132
    assert len(nip44.encrypt("a" * 65535, KEY, NONCE)) == 87472


@pytest.mark.parametrize(
    ("key", "nonce"),
    [
        (KEY[:31], NONCE),
        (KEY + b"\x00", NONCE),
        (KEY, NONCE[:31]),
        (KEY, NONCE + b"\x00"),
        (KEY.hex(), NONCE),
        (KEY, bytearray(NONCE)),
    ],
)
def test_encrypt_rejects_bad_key_or_nonce(key: Any, nonce: Any) -> None:
    with pytest.raises(LocalProtocolError):
        nip44.encrypt("hello", key, nonce)
    with pytest.raises(LocalProtocolError):
        nip44.message_keys(key, nonce)


@pytest.mark.parametrize("plaintext", ["", "\ud800", b"bytes", None])
def test_encrypt_rejects_bad_plaintext(plaintext: Any) -> None:
    with pytest.raises(LocalProtocolError):
        nip44.encrypt(plaintext, KEY, NONCE)


def test_encrypt_bytes_rejects_text() -> None:
    with pytest.raises(LocalProtocolError):
        nip44.encrypt_bytes("text", KEY, NONCE)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", [KEY[:31], b"", KEY.hex(), None])
def test_decrypt_rejects_bad_key(key: Any) -> None:
    payload = nip44.encrypt("hello", KEY, NONCE)
    with pytest.raises(LocalProtocolError):
        nip44.decrypt(payload, key)


def test_calc_padded_len_rejects_empty() -> None:
    with pytest.raises(LocalProtocolError):
        nip44.calc_padded_len(0)


def test_pad_layout() -> None:
    assert nip44.pad(b"abc") == b"\x00\x03abc" + bytes(29)
    assert nip44.unpad(nip44.pad(b"abc")) == b"abc"
    with pytest.raises(LocalProtocolError):
        nip44.pad(b"")
    with pytest.raises(LocalProtocolError):
        nip44.pad(bytes(65536))


@pytest.mark.parametrize(
    "padded",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x00\x03abc" + bytes(28), id="short"),
        pytest.param(b"\x00\x03abc" + bytes(30), id="long"),
        pytest.param(b"\x00\x00abc" + bytes(29), id="zero-length"),
        pytest.param(b"\x00\x00\x00\x01\x00\x00" + bytes(65536), id="extended-prefix"),
        pytest.param(b"\x00\x21" + bytes(32), id="length-over-padding"),
    ],
)
def test_unpad_rejects(padded: bytes) -> None:
    with pytest.raises(DecodeError):
        nip44.unpad(padded)


def encrypt_raw(plaintext: bytes, key: bytes = KEY, nonce: bytes = NONCE) -> bytes:
    return base64.b64decode(nip44.encrypt_bytes(plaintext, key, nonce))


def test_non_utf8_plaintext_is_a_decode_error() -> None:
    payload = nip44.encrypt_bytes(b"\xff\xfe", KEY, NONCE)
    assert nip44.decrypt_bytes(payload, KEY) == b"\xff\xfe"
    with pytest.raises(DecodeError):
        nip44.decrypt(payload, KEY)


def test_wrong_key_is_a_decryption_error() -> None:
    payload = nip44.encrypt("hello", KEY, NONCE)
    with pytest.raises(DecryptionError):
        nip44.decrypt(payload, bytes(32))


def test_hash_prefix_is_an_unsupported_version() -> None:
    payload = nip44.encrypt("hello", KEY, NONCE)
    with pytest.raises(DecodeError, match="unsupported"):
        nip44.decrypt("#" + payload[1:], KEY)


def test_version_byte_is_checked() -> None:
    for version in (0, 1, 3, 255):
        raw = bytes([version]) + encrypt_raw(b"hello")[1:]
        with pytest.raises(DecodeError, match="version"):
            nip44.decrypt(base64.b64encode(raw).decode(), KEY)


def test_non_canonical_base64_is_rejected() -> None:
    # A 64-byte padded plaintext makes 131 bytes of data: the last quantum has one "=".
    payload = nip44.encrypt("a" * 40, KEY, NONCE)
    assert payload.endswith("=")
    assert not payload.endswith("==")
    last = payload[-2]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    # The last character before "=" carries two unused bits; setting one decodes the same bytes.
    sloppy = payload[:-2] + alphabet[alphabet.index(last) | 1] + "="
    assert sloppy != payload
    assert base64.b64decode(sloppy) == base64.b64decode(payload)
    with pytest.raises(DecodeError):
        nip44.decrypt(sloppy, KEY)
    with pytest.raises(DecodeError):
        nip44.decrypt(nip44.encrypt("a", KEY, NONCE) + "====", KEY)
    with pytest.raises(DecodeError):
        nip44.decrypt(payload[:64] + "\n" + payload[64:], KEY)


def test_payload_length_bounds() -> None:
    with pytest.raises(DecodeError, match="length"):
        nip44.decrypt("A" * 87476, KEY)
    # 87472 characters without padding decode to 65604 bytes, one more than allowed.
    with pytest.raises(DecodeError, match="length"):
        nip44.decrypt("A" * 87472, KEY)


# --- properties ---------------------------------------------------------------------------------

keys32 = st.binary(min_size=32, max_size=32)
secrets = st.integers(min_value=1, max_value=CURVE_ORDER - 1).map(secret_from_int)
texts = st.text(min_size=1, max_size=2000)


@given(plaintext=texts, key=keys32, nonce=keys32)
def test_round_trip(plaintext: str, key: bytes, nonce: bytes) -> None:
    payload = nip44.encrypt(plaintext, key, nonce)
    assert nip44.decrypt(payload, key) == plaintext
    assert payload == nip44.encrypt_bytes(plaintext.encode(), key, nonce)
    assert len(base64.b64decode(payload)) == 67 + nip44.calc_padded_len(len(plaintext.encode()))


@settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=st.integers(min_value=1, max_value=65535),
    char=st.characters(codec="utf-8"),
    key=keys32,
    nonce=keys32,
)
def test_round_trip_any_size(size: int, char: str, key: bytes, nonce: bytes) -> None:
    encoded = char.encode()
    plaintext = char * (size // len(encoded)) + "a" * (size % len(encoded))
    assert len(plaintext.encode()) == size
    assert nip44.decrypt(nip44.encrypt(plaintext, key, nonce), key) == plaintext


@given(
    garbage=st.one_of(
        st.text(),
        st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=#"),
        st.binary(),
        st.binary(min_size=99, max_size=1000).map(lambda b: base64.b64encode(b).decode()),
        st.binary(min_size=98, max_size=1000).map(lambda b: base64.b64encode(b"\x02" + b).decode()),
        st.none(),
        st.integers(),
        st.lists(st.text()),
    ),
    key=keys32,
)
def test_decrypt_garbage_raises_only_remote_errors(garbage: Any, key: bytes) -> None:
    with pytest.raises(REMOTE_ERRORS):
        nip44.decrypt(garbage, key)
    with pytest.raises(REMOTE_ERRORS):
        nip44.decrypt_bytes(garbage, key)


@given(plaintext=texts, key=keys32, nonce=keys32, data=st.data())
def test_changing_any_character_is_detected(
    plaintext: str, key: bytes, nonce: bytes, data: st.DataObject
) -> None:
    payload = nip44.encrypt(plaintext, key, nonce)
    index = data.draw(st.integers(min_value=0, max_value=len(payload) - 1), label="index")
    replacement = data.draw(st.characters().filter(lambda c: c != payload[index]), label="char")
    with pytest.raises(REMOTE_ERRORS):
        nip44.decrypt(payload[:index] + replacement + payload[index + 1 :], key)


@given(plaintext=texts, key=keys32, nonce=keys32, data=st.data())
def test_flipping_any_decoded_byte_is_detected(
    plaintext: str, key: bytes, nonce: bytes, data: st.DataObject
) -> None:
    raw = bytearray(encrypt_raw(plaintext.encode(), key, nonce))
    index = data.draw(st.integers(min_value=0, max_value=len(raw) - 1), label="index")
    raw[index] ^= data.draw(st.integers(min_value=1, max_value=255), label="mask")
    with pytest.raises(REMOTE_ERRORS):
        nip44.decrypt(base64.b64encode(raw).decode(), key)


@settings(max_examples=50)
@given(a=secrets, b=secrets)
def test_conversation_key_is_symmetric(a: SecretKey, b: SecretKey) -> None:
    assert nip44.conversation_key(a, b.public_key) == nip44.conversation_key(b, a.public_key)


@settings(max_examples=50)
@given(secret=secrets)
def test_conversation_key_ignores_the_sign_of_the_secret(secret: SecretKey) -> None:
    """``d`` and ``n - d`` share an x-only public key, so the cache may key on it."""
    negated = secret_from_int(CURVE_ORDER - int.from_bytes(secret.to_bytes(), "big"))
    assert negated.public_key == secret.public_key
    peer = secret_from_int(7).public_key
    assert nip44.conversation_key(secret, peer) == nip44.conversation_key(negated, peer)


POOL = [secret_from_int(value) for value in range(1, 9)]


@settings(max_examples=50)
@given(
    max_entries=st.integers(min_value=1, max_value=6),
    lookups=st.lists(st.tuples(st.sampled_from(POOL), st.sampled_from(POOL)), max_size=40),
)
def test_cache_matches_function_and_stays_bounded(
    max_entries: int, lookups: list[tuple[SecretKey, SecretKey]]
) -> None:
    cache = nip44.ConversationKeyCache(max_entries)
    for secret, peer in lookups:
        assert cache.get(secret, peer.public_key) == nip44.conversation_key(secret, peer.public_key)
        assert len(cache) <= max_entries


def test_cache_evicts_least_recently_used() -> None:
    a, b, c, d = POOL[:4]
    cache = nip44.ConversationKeyCache(max_entries=2)
    cache.get(a, b.public_key)
    cache.get(a, c.public_key)
    cache.get(a, b.public_key)  # now (a, c) is the least recently used
    cache.get(a, d.public_key)
    assert set(cache._entries) == {
        (a.public_key.raw, b.public_key.raw),
        (a.public_key.raw, d.public_key.raw),
    }
    cache.clear()
    assert len(cache) == 0


@pytest.mark.parametrize("max_entries", [0, -1, 1.5, "10"])
def test_cache_rejects_bad_bound(max_entries: Any) -> None:
    with pytest.raises(LocalProtocolError):
        nip44.ConversationKeyCache(max_entries)


def test_cache_repr_shows_no_keys() -> None:
    secret, peer = POOL[0], POOL[1].public_key
    cache = nip44.ConversationKeyCache(max_entries=10)
    key = cache.get(secret, peer)
    text = repr(cache)
    assert text == "ConversationKeyCache(entries=1, max_entries=10)"
    for material in (key, secret.to_bytes(), secret.public_key.raw, peer.raw):
        assert material.hex() not in text
        assert base64.b64encode(material).decode() not in text
    assert not re.search(r"[0-9a-fA-F]{16}", text)


# --- interop with an independent implementation (rust-nostr) -----------------------------------


@pytest.mark.skipif(nostr_sdk is None, reason="nostr-sdk is not installed")
@settings(max_examples=30)
@given(plaintext=texts, a=secrets, b=secrets)
def test_interop_with_nostr_sdk(plaintext: str, a: SecretKey, b: SecretKey) -> None:
    their_a = nostr_sdk.SecretKey.from_bytes(a.to_bytes())
    their_b_pub = nostr_sdk.PublicKey.from_bytes(b.public_key.raw)
    theirs = nostr_sdk.nip44_encrypt(their_a, their_b_pub, plaintext, nostr_sdk.Nip44Version.V2)
    assert nip44.decrypt(theirs, nip44.conversation_key(b, a.public_key)) == plaintext

    ours = nip44.encrypt(plaintext, nip44.conversation_key(a, b.public_key), bytes(range(32)))
    their_b = nostr_sdk.SecretKey.from_bytes(b.to_bytes())
    their_a_pub = nostr_sdk.PublicKey.from_bytes(a.public_key.raw)
    assert nostr_sdk.nip44_decrypt(their_b, their_a_pub, ours) == plaintext
