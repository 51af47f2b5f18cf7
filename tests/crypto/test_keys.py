"""secp256k1 keys: the BIP-340 vectors, range checks, ECDH and tweaks, and hostile input."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import coincurve
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xchat.crypto.keys import CURVE_ORDER, PublicKey, SecretKey, verify_schnorr
from xchat.errors import DecodeError, LocalProtocolError

VECTORS_PATH = Path(__file__).parent.parent / "vectors" / "bip340.json"
VECTORS: list[dict[str, Any]] = json.loads(VECTORS_PATH.read_bytes())["vectors"]
SIGNING = [v for v in VECTORS if v["secret_key"]]
#: The field prime: x coordinates at or above it are not field elements.
FIELD_PRIME = 2**256 - 2**32 - 977


def vector_id(vector: dict[str, Any]) -> str:
    return f"{vector['index']:02d}"


def secret_from_int(value: int) -> SecretKey:
    return SecretKey(value.to_bytes(32, "big"))


def lift_x_exists(x: int) -> bool:
    """True if x is the x coordinate of a curve point (y^2 = x^3 + 7 has a root mod p)."""
    if x >= FIELD_PRIME:
        return False
    c = (pow(x, 3, FIELD_PRIME) + 7) % FIELD_PRIME
    y = pow(c, (FIELD_PRIME + 1) // 4, FIELD_PRIME)
    return y * y % FIELD_PRIME == c


secrets = st.integers(min_value=1, max_value=CURVE_ORDER - 1).map(secret_from_int)
bytes32 = st.binary(min_size=32, max_size=32)


def test_vectors_file_holds_every_row() -> None:
    assert json.loads(VECTORS_PATH.read_bytes())["source"].count("bip-0340/test-vectors.csv")
    assert [v["index"] for v in VECTORS] == list(range(19))


# --- BIP-340 vectors ----------------------------------------------------------------------------


@pytest.mark.parametrize("vector", SIGNING, ids=vector_id)
def test_bip340_signing_vectors(vector: dict[str, Any]) -> None:
    secret = SecretKey.from_hex(vector["secret_key"])
    assert secret.public_key.hex == vector["public_key"].lower()
    assert secret.public_key == PublicKey.from_hex(vector["public_key"])
    message = bytes.fromhex(vector["message"])
    aux = bytes.fromhex(vector["aux_rand"])
    if len(message) == 32:
        assert secret.sign(message, aux).hex() == vector["signature"].lower()
        assert secret.sign(message, aux, check=False).hex() == vector["signature"].lower()
    else:
        # Rows 15 to 18 (added 2022-12) sign messages of other lengths. Nostr only ever signs
        # 32-byte event ids, so this API refuses them rather than signing them.
        with pytest.raises(LocalProtocolError):
            secret.sign(message, aux)


@pytest.mark.parametrize("vector", VECTORS, ids=vector_id)
def test_bip340_verification_vectors(vector: dict[str, Any]) -> None:
    public = bytes.fromhex(vector["public_key"])
    message = bytes.fromhex(vector["message"])
    signature = bytes.fromhex(vector["signature"])
    expected = vector["verification_result"] and len(message) == 32
    assert verify_schnorr(public, message, signature) is expected
    assert PublicKey(public).verify(message, signature) is expected


def test_bip340_invalid_public_keys_are_not_valid() -> None:
    by_index = {v["index"]: v for v in VECTORS}
    assert not PublicKey.from_hex(by_index[5]["public_key"]).is_valid()  # not on the curve
    assert not PublicKey.from_hex(by_index[14]["public_key"]).is_valid()  # x >= field size
    for vector in SIGNING:
        assert PublicKey.from_hex(vector["public_key"]).is_valid()


def test_sign_agrees_with_coincurve() -> None:
    """An independent route into libsecp256k1 (coincurve's own classes) gives the same bytes."""
    rng = random.Random(340)
    for _ in range(20):
        raw = rng.randbytes(32)
        message, aux = rng.randbytes(32), rng.randbytes(32)
        theirs = coincurve.PrivateKey(raw)
        ours = SecretKey(raw)
        assert ours.public_key.raw == theirs.public_key_xonly.format()
        assert ours.compressed_public_key() == theirs.public_key.format(compressed=True)
        assert ours.sign(message, aux) == theirs.sign_schnorr(message, aux)


# --- signatures under hypothesis -----------------------------------------------------------------


@settings(max_examples=50)
@given(secret=secrets, message=bytes32, aux=bytes32)
def test_sign_verify_round_trip(secret: SecretKey, message: bytes, aux: bytes) -> None:
    signature = secret.sign(message, aux)
    assert len(signature) == 64
    assert secret.public_key.verify(message, signature)
    assert secret.sign(message, aux, check=False) == signature  # deterministic given aux


@settings(max_examples=50)
@given(secret=secrets, message=bytes32, aux=bytes32, data=st.data())
def test_any_changed_bit_fails_verification(
    secret: SecretKey, message: bytes, aux: bytes, data: st.DataObject
) -> None:
    signature = secret.sign(message, aux)
    parts = [bytearray(secret.public_key.raw), bytearray(message), bytearray(signature)]
    which = data.draw(st.integers(min_value=0, max_value=2), label="part")
    index = data.draw(st.integers(min_value=0, max_value=len(parts[which]) - 1), label="index")
    parts[which][index] ^= 1 << data.draw(st.integers(min_value=0, max_value=7), label="bit")
    assert verify_schnorr(bytes(parts[0]), bytes(parts[1]), bytes(parts[2])) is False


@given(public=st.binary(max_size=100), message=st.binary(max_size=100), sig=st.binary(max_size=200))
def test_verify_garbage_bytes_is_false(public: bytes, message: bytes, sig: bytes) -> None:
    assert verify_schnorr(public, message, sig) is False


@pytest.mark.parametrize(
    ("public", "message", "signature"),
    [
        pytest.param(b"", b"", b"", id="empty"),
        pytest.param(bytes(32), bytes(32), bytes(64), id="zeros"),
        pytest.param(bytes(31), bytes(32), bytes(64), id="short-key"),
        pytest.param(bytes(33), bytes(32), bytes(64), id="long-key"),
        pytest.param(b"\x02" + bytes(32), bytes(32), bytes(64), id="compressed-key"),
        pytest.param(bytes(32), bytes(31), bytes(64), id="short-message"),
        pytest.param(bytes(32), bytes(32), bytes(63), id="short-sig"),
        pytest.param(bytes(32), bytes(32), bytes(65), id="long-sig"),
    ],
)
def test_verify_malformed_bytes_is_false(public: bytes, message: bytes, signature: bytes) -> None:
    assert verify_schnorr(public, message, signature) is False


VALID_PUBLIC = secret_from_int(3).public_key.raw


@pytest.mark.parametrize(
    ("public", "message", "signature"),
    [
        pytest.param(None, bytes(32), bytes(64), id="none-key"),
        pytest.param(7, bytes(32), bytes(64), id="int-key"),
        pytest.param("a" * 32, bytes(32), bytes(64), id="str-key"),
        pytest.param(bytearray(VALID_PUBLIC), bytes(32), bytes(64), id="bytearray-key"),
        pytest.param(VALID_PUBLIC, None, bytes(64), id="none-message"),
        pytest.param(VALID_PUBLIC, bytes(32), "a" * 64, id="str-sig"),
        pytest.param(VALID_PUBLIC, bytes(32), bytearray(64), id="bytearray-sig"),
    ],
)
def test_verify_non_bytes_is_false(public: Any, message: Any, signature: Any) -> None:
    assert verify_schnorr(public, message, signature) is False


@pytest.mark.parametrize(
    ("message", "aux"),
    [(bytes(31), bytes(32)), (bytes(33), bytes(32)), (bytes(32), bytes(31)), (b"", b"")],
)
def test_sign_rejects_wrong_lengths(message: bytes, aux: bytes) -> None:
    with pytest.raises(LocalProtocolError):
        secret_from_int(1).sign(message, aux)


# --- secret keys --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [0, CURVE_ORDER, CURVE_ORDER + 1, 2**256 - 1],
    ids=["zero", "n", "n+1", "max"],
)
def test_secret_key_out_of_range(value: int) -> None:
    with pytest.raises(LocalProtocolError):
        SecretKey(value.to_bytes(32, "big"))
    with pytest.raises(LocalProtocolError):
        SecretKey.from_hex(f"{value:064x}")


@pytest.mark.parametrize("value", [1, 2, CURVE_ORDER - 1], ids=["one", "two", "n-1"])
def test_secret_key_range_edges_are_accepted(value: int) -> None:
    key = secret_from_int(value)
    assert key.to_bytes() == value.to_bytes(32, "big")
    assert key.public_key.is_valid()


def test_one_and_n_minus_one_share_an_x_only_key() -> None:
    one, minus_one = secret_from_int(1), secret_from_int(CURVE_ORDER - 1)
    assert one.public_key == minus_one.public_key
    assert one.public_key.hex == "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
    assert one != minus_one


@pytest.mark.parametrize(
    "raw", [bytes(31), bytes(33), b"", bytearray(31) + b"\x01", "01" * 32, None]
)
def test_secret_key_rejects_bad_types_and_lengths(raw: Any) -> None:
    with pytest.raises(LocalProtocolError):
        SecretKey(raw)


@pytest.mark.parametrize("text", ["", "zz" * 32, "01" * 31, "01" * 33, "0" * 63])
def test_secret_key_from_hex_rejects(text: str) -> None:
    with pytest.raises(LocalProtocolError):
        SecretKey.from_hex(text)


def test_secret_key_repr_shows_no_secret() -> None:
    secret_hex = "b7e151628aed2a6abf7158809cf4f3c762e7160f38b4da56a784d9045190cfef"
    key = SecretKey.from_hex(secret_hex)
    public = "dff1d77f2a671c5f36183726db2341be58feae1da2deced843240f7b502ba659"
    assert repr(key) == f"SecretKey(public={public})"
    assert str(key) == repr(key)
    assert secret_hex not in repr(key)
    assert secret_hex.upper() not in repr(key)
    assert repr(key.public_key) == f"PublicKey({public})"


@given(secret=secrets)
def test_secret_key_repr_never_contains_the_secret(secret: SecretKey) -> None:
    assert secret.to_bytes().hex() not in repr(secret)
    assert secret.to_bytes().hex() not in f"{secret!s} {[secret]}"


def test_generate_skips_invalid_scalars() -> None:
    draws = iter([bytes(32), CURVE_ORDER.to_bytes(32, "big"), b"\xff" * 32, bytes(31) + b"\x05"])
    key = SecretKey.generate(lambda n: next(draws))
    assert key == secret_from_int(5)


def test_generate_is_deterministic_for_a_seeded_rng() -> None:
    first = SecretKey.generate(random.Random(7).randbytes)
    second = SecretKey.generate(random.Random(7).randbytes)
    assert first == second
    assert hash(first) == hash(second)


def test_equality_and_hash() -> None:
    a, b = secret_from_int(11), secret_from_int(11)
    assert a == b
    assert {a: 1}[b] == 1
    assert a != secret_from_int(12)
    assert a != a.to_bytes()
    assert a.public_key == PublicKey(a.public_key.raw)
    assert a.public_key != a.public_key.raw
    assert len({a.public_key, b.public_key, secret_from_int(12).public_key}) == 2


# --- ECDH ---------------------------------------------------------------------------------------


@settings(max_examples=50)
@given(a=secrets, b=secrets)
def test_shared_x_is_symmetric(a: SecretKey, b: SecretKey) -> None:
    assert a.shared_x(b.public_key) == b.shared_x(a.public_key)
    assert len(a.shared_x(b.public_key)) == 32


def test_shared_x_known_answer() -> None:
    # 2·(3·G) has the x coordinate of 6·G.
    assert secret_from_int(2).shared_x(secret_from_int(3).public_key) == (
        secret_from_int(6).public_key.raw
    )


@given(x=st.integers(min_value=0, max_value=2**256 - 1))
def test_shared_x_rejects_points_off_the_curve(x: int) -> None:
    peer = PublicKey(x.to_bytes(32, "big"))
    assert peer.is_valid() is lift_x_exists(x)
    if lift_x_exists(x):
        assert len(secret_from_int(5).shared_x(peer)) == 32
    else:
        with pytest.raises(DecodeError):
            secret_from_int(5).shared_x(peer)


@pytest.mark.parametrize(
    "x", [0, 5, FIELD_PRIME, FIELD_PRIME + 1, 2**256 - 1], ids=["0", "5", "p", "p+1", "max"]
)
def test_shared_x_rejects_known_invalid_x(x: int) -> None:
    assert not lift_x_exists(x)
    with pytest.raises(DecodeError):
        secret_from_int(5).shared_x(PublicKey(x.to_bytes(32, "big")))


# --- tweak_add ----------------------------------------------------------------------------------


@settings(max_examples=50)
@given(a=secrets, t=st.integers(min_value=0, max_value=CURVE_ORDER - 1))
def test_tweak_add_is_addition_mod_n(a: SecretKey, t: int) -> None:
    total = (int.from_bytes(a.to_bytes(), "big") + t) % CURVE_ORDER
    if total == 0:
        with pytest.raises(LocalProtocolError):
            a.tweak_add(t.to_bytes(32, "big"))
    else:
        assert a.tweak_add(t.to_bytes(32, "big")) == secret_from_int(total)


def test_tweak_add_edges() -> None:
    key = secret_from_int(10)
    assert key.tweak_add(bytes(32)) == key
    assert key.tweak_add((CURVE_ORDER - 9).to_bytes(32, "big")) == secret_from_int(1)
    original = key.to_bytes()
    key.tweak_add((5).to_bytes(32, "big"))
    assert key.to_bytes() == original  # a new key; the old one is unchanged


@pytest.mark.parametrize(
    "tweak",
    [
        pytest.param((CURVE_ORDER - 10).to_bytes(32, "big"), id="sum-is-zero"),
        pytest.param(CURVE_ORDER.to_bytes(32, "big"), id="n"),
        pytest.param(b"\xff" * 32, id="max"),
        pytest.param(bytes(31), id="short"),
        pytest.param(bytes(33), id="long"),
        pytest.param(b"", id="empty"),
    ],
)
def test_tweak_add_rejects(tweak: bytes) -> None:
    with pytest.raises(LocalProtocolError):
        secret_from_int(10).tweak_add(tweak)


# --- public keys --------------------------------------------------------------------------------


def test_public_key_from_hex_accepts_both_cases() -> None:
    text = secret_from_int(3).public_key.hex
    assert PublicKey.from_hex(text) == PublicKey.from_hex(text.upper())
    assert PublicKey.from_hex(text).hex == text


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("00" * 31, id="short"),
        pytest.param("00" * 33, id="long"),
        pytest.param("0" * 63, id="odd"),
        pytest.param("zz" * 32, id="not-hex"),
        pytest.param("0x" + "00" * 31, id="0x-prefix"),
        pytest.param("00 " * 21 + "0", id="spaces"),
        pytest.param("\u0660" * 64, id="arabic-digits"),
        pytest.param(None, id="none"),
        pytest.param(b"00" * 32, id="bytes"),
        pytest.param(0, id="int"),
    ],
)
def test_public_key_from_hex_errors(text: Any) -> None:
    with pytest.raises(DecodeError):
        PublicKey.from_hex(text)


@pytest.mark.parametrize("raw", [bytes(31), bytes(33), b"", bytearray(32), "00" * 16, None])
def test_public_key_rejects_bad_raw(raw: Any) -> None:
    with pytest.raises(DecodeError):
        PublicKey(raw)
