"""HKDF subkeys and mailbox keys, checked against RFC 5869 written out with stdlib HMAC."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import coincurve
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xchat.crypto import kdf
from xchat.crypto.keys import CURVE_ORDER
from xchat.errors import LocalProtocolError

VECTORS_PATH = Path(__file__).parent.parent / "vectors" / "mailbox.json"
MAILBOX: dict[str, Any] = json.loads(VECTORS_PATH.read_bytes())

seeds = st.binary(min_size=32, max_size=32)
epochs = st.integers(min_value=0, max_value=2**64 - 1)


def rfc5869(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """HKDF-SHA256 (RFC 5869 section 2) from hmac and hashlib only."""
    prk = hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()
    okm, block = b"", b""
    for counter in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
    return okm[:length]


def spec_mailbox_key(seed: bytes, epoch: int) -> bytes:
    """docs/protocol.md, "Mailbox keys", written independently of xchat.crypto.kdf."""
    for counter in range(256):
        info = epoch.to_bytes(8, "big") + counter.to_bytes(1, "big")
        candidate = rfc5869(seed, b"xchat-mailbox/v1", info)
        if 0 < int.from_bytes(candidate, "big") < CURVE_ORDER:
            return candidate
    raise AssertionError("no valid scalar")  # pragma: no cover


# --- HKDF ---------------------------------------------------------------------------------------


def test_hkdf_rfc5869_test_case_1() -> None:
    ikm = bytes.fromhex("0b" * 22)
    salt = bytes.fromhex("000102030405060708090a0b0c")
    info = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9")
    okm = "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    assert kdf.hkdf_sha256(ikm, salt=salt, info=info, length=42).hex() == okm
    assert rfc5869(ikm, salt, info, 42).hex() == okm


def test_hkdf_rfc5869_test_case_3_no_salt() -> None:
    ikm = bytes.fromhex("0b" * 22)
    okm = "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    assert kdf.hkdf_sha256(ikm, salt=None, info=b"", length=42).hex() == okm
    assert rfc5869(ikm, b"", b"", 42).hex() == okm


@given(ikm=st.binary(max_size=80), salt=st.binary(max_size=40), info=st.binary(max_size=40))
def test_hkdf_matches_the_rfc(ikm: bytes, salt: bytes, info: bytes) -> None:
    assert kdf.hkdf_sha256(ikm, salt=salt or None, info=info) == rfc5869(ikm, salt, info)


# --- derive_key ---------------------------------------------------------------------------------

ROOT = bytes(range(32))


def test_derive_key_is_hkdf_with_the_purpose_as_info() -> None:
    assert kdf.derive_key(ROOT, "xchat/store") == rfc5869(ROOT, b"", b"xchat/store")
    assert kdf.derive_key(ROOT, "xchat/store", 64) == rfc5869(ROOT, b"", b"xchat/store", 64)


def test_derive_key_separates_purposes() -> None:
    purposes = ["xchat/store", "xchat/olm-pickle", "xchat/store/", "xchat/Store", "", "é"]
    derived = [kdf.derive_key(ROOT, p) for p in purposes]
    assert len(set(derived)) == len(purposes)
    assert all(len(d) == 32 for d in derived)


@given(root=seeds, a=st.text(max_size=30), b=st.text(max_size=30))
def test_derive_key_distinct_purposes_distinct_keys(root: bytes, a: str, b: str) -> None:
    try:
        a.encode(), b.encode()
    except UnicodeEncodeError:
        return
    assert (kdf.derive_key(root, a) == kdf.derive_key(root, b)) == (a == b)


def test_derive_key_separates_roots() -> None:
    assert kdf.derive_key(ROOT, "xchat/store") != kdf.derive_key(bytes(32), "xchat/store")
    assert kdf.derive_key(ROOT, "xchat/store") != ROOT


def test_derive_key_length_is_a_prefix() -> None:
    # HKDF output of length 16 is the first half of length 32: a caller must not rely on
    # length alone to separate keys, the purpose string has to differ.
    assert kdf.derive_key(ROOT, "p", 16) == kdf.derive_key(ROOT, "p")[:16]


@pytest.mark.parametrize("root", [b"", bytes(16), bytes(31), bytes(33), bytes(64)])
def test_derive_key_root_length(root: bytes) -> None:
    with pytest.raises(LocalProtocolError):
        kdf.derive_key(root, "xchat/store")


# --- mailbox keys -------------------------------------------------------------------------------


def test_mailbox_vectors_file() -> None:
    assert kdf.MAILBOX_SALT == b"xchat-mailbox/v1"
    assert 'salt=\\"xchat-mailbox/v1\\"' in json.dumps(MAILBOX["source"])
    assert len(MAILBOX["vectors"]) >= 4


@pytest.mark.parametrize(
    "vector", MAILBOX["vectors"], ids=lambda v: f"{v['seed'][:8]}-epoch{v['epoch']}"
)
def test_mailbox_key_vectors(vector: dict[str, Any]) -> None:
    seed, epoch = bytes.fromhex(vector["seed"]), vector["epoch"]
    # The vector agrees with the written spec, computed without xchat.crypto.kdf ...
    secret = spec_mailbox_key(seed, epoch)
    assert secret.hex() == vector["secret_key"]
    assert coincurve.PrivateKey(secret).public_key_xonly.format().hex() == vector["public_key"]
    # ... and with the implementation.
    key = kdf.mailbox_key(seed, epoch)
    assert key.to_bytes().hex() == vector["secret_key"]
    assert key.public_key.hex == vector["public_key"]


@settings(max_examples=50)
@given(seed=seeds, epoch=epochs)
def test_mailbox_key_matches_the_spec(seed: bytes, epoch: int) -> None:
    assert kdf.mailbox_key(seed, epoch).to_bytes() == spec_mailbox_key(seed, epoch)


def test_mailbox_keys_rotate_per_epoch_and_seed() -> None:
    seed = bytes(range(32))
    keys = {kdf.mailbox_key(seed, epoch).public_key for epoch in range(50)}
    keys |= {kdf.mailbox_key(bytes(32), epoch).public_key for epoch in range(50)}
    assert len(keys) == 100


@pytest.mark.parametrize(
    ("seed", "epoch"),
    [
        (bytes(31), 0),
        (bytes(33), 0),
        (b"", 0),
        (bytes(32), -1),
        (bytes(32), 2**64),
        (bytes(32), 2**80),
    ],
)
def test_mailbox_key_arguments(seed: bytes, epoch: int) -> None:
    with pytest.raises(LocalProtocolError):
        kdf.mailbox_key(seed, epoch)
