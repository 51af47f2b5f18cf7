"""The keystore file: round trips, every tampered field, hostile files and the v1 fixture."""

from __future__ import annotations

import base64
import contextlib
import json
import random
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from argon2.low_level import Type, hash_secret_raw
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xchat.crypto import keystore
from xchat.crypto.keystore import KdfParams, open_keystore, seal_keystore
from xchat.errors import InvalidInput, KeystoreCorrupt, KeystoreError, WrongPassphrase

FIXTURE = Path(__file__).parent.parent / "fixtures" / "keystore-v1.json"
FIXTURE_PASSPHRASE = "correct horse battery staple"
FIXTURE_PLAINTEXT = bytes(range(32))

#: Cheap Argon2id parameters (about 10 ms) for every test but the ones about the defaults.
FAST = KdfParams(time_cost=1, memory_kib=8192, parallelism=1)
PASSPHRASE = "hunter2 but longer"
PLAINTEXT = b"identity key and recovery phrase: PLAINTEXT-MARKER-7f3a"

KEYSTORE_ERRORS = (WrongPassphrase, KeystoreCorrupt)


def rng(seed: int = 1) -> Any:
    return random.Random(seed).randbytes


def sealed(plaintext: bytes = PLAINTEXT, passphrase: str = PASSPHRASE) -> bytes:
    return seal_keystore(plaintext, passphrase, rng(), FAST)


SEALED = sealed()
DOCUMENT: dict[str, Any] = json.loads(SEALED)


def with_field(path: tuple[str, ...], value: Any) -> bytes:
    """The sealed document with one field (``("kdf", "salt")``) replaced, or deleted if ...."""
    document = json.loads(SEALED)
    target = document
    for key in path[:-1]:
        target = target[key]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return json.dumps(document).encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def flip_b64(text: str, index: int = 0) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[index] ^= 0x01
    return b64(bytes(raw))


# --- round trips --------------------------------------------------------------------------------


def test_round_trip() -> None:
    assert open_keystore(SEALED, PASSPHRASE) == PLAINTEXT


@pytest.mark.parametrize("plaintext", [b"", b"\x00", bytes(range(256)) * 40])
def test_round_trip_sizes(plaintext: bytes) -> None:
    assert open_keystore(sealed(plaintext), PASSPHRASE) == plaintext


@settings(max_examples=10, deadline=None)
@given(plaintext=st.binary(max_size=300), passphrase=st.text(min_size=1, max_size=40))
def test_round_trip_any_plaintext_and_passphrase(plaintext: bytes, passphrase: str) -> None:
    try:
        passphrase.encode("utf-8")
    except UnicodeEncodeError:
        return  # lone surrogates: not something a person can type
    data = seal_keystore(plaintext, passphrase, rng(), FAST)
    assert open_keystore(data, passphrase) == plaintext


def test_round_trip_with_default_params() -> None:
    data = seal_keystore(PLAINTEXT, PASSPHRASE, rng())
    kdf = json.loads(data)["kdf"]
    assert (kdf["time_cost"], kdf["memory_kib"], kdf["parallelism"]) == (3, 131072, 4)
    assert KdfParams() == keystore.DEFAULT_KDF
    assert open_keystore(data, PASSPHRASE) == PLAINTEXT


def test_document_layout() -> None:
    expected = {
        "format": "xchat-keystore",
        "version": 1,
        "kdf": {
            "algorithm": "argon2id",
            "salt": DOCUMENT["kdf"]["salt"],
            "time_cost": 1,
            "memory_kib": 8192,
            "parallelism": 1,
        },
        "cipher": {"algorithm": "chacha20-poly1305", "nonce": DOCUMENT["cipher"]["nonce"]},
        "ciphertext": DOCUMENT["ciphertext"],
    }
    assert json.loads(SEALED) == expected
    assert len(base64.b64decode(DOCUMENT["kdf"]["salt"])) == 16
    assert len(base64.b64decode(DOCUMENT["cipher"]["nonce"])) == 12
    assert len(base64.b64decode(DOCUMENT["ciphertext"])) == len(PLAINTEXT) + 16
    assert SEALED.endswith(b"}\n")


def test_salt_and_nonce_come_from_the_rng() -> None:
    assert sealed() == SEALED  # same rng, same file
    other = seal_keystore(PLAINTEXT, PASSPHRASE, rng(2), FAST)
    assert json.loads(other)["kdf"]["salt"] != DOCUMENT["kdf"]["salt"]
    assert json.loads(other)["ciphertext"] != DOCUMENT["ciphertext"]


def test_file_contains_no_plaintext() -> None:
    for encoding in (
        PLAINTEXT,
        PLAINTEXT.hex().encode(),
        base64.b64encode(PLAINTEXT),
        b"PLAINTEXT-MARKER",
        PASSPHRASE.encode(),
    ):
        assert encoding not in SEALED


# --- passphrases --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "wrong", ["", " " + PASSPHRASE, PASSPHRASE + " ", PASSPHRASE.upper(), PASSPHRASE[:-1], "x"]
)
def test_wrong_passphrase(wrong: str) -> None:
    with pytest.raises(WrongPassphrase) as info:
        open_keystore(SEALED, wrong)
    assert PASSPHRASE not in str(info.value)
    assert info.value.__cause__ is None


def test_empty_passphrase_is_refused() -> None:
    with pytest.raises(InvalidInput, match="must not be empty"):
        seal_keystore(PLAINTEXT, "", rng(), FAST)


def test_nfkc_normalization() -> None:
    composed = "caf\u00e9 au lait"
    decomposed = "cafe\u0301 au lait"
    assert composed != decomposed
    data = seal_keystore(PLAINTEXT, composed, rng(), FAST)
    assert open_keystore(data, decomposed) == PLAINTEXT
    data = seal_keystore(PLAINTEXT, decomposed, rng(), FAST)
    assert open_keystore(data, composed) == PLAINTEXT
    # NFKC also folds compatibility characters: the "ﬁ" ligature is "fi".
    data = seal_keystore(PLAINTEXT, "\ufb01ve", rng(), FAST)
    assert open_keystore(data, "five") == PLAINTEXT
    with pytest.raises(WrongPassphrase):
        open_keystore(data, "Five")


# --- tampering ----------------------------------------------------------------------------------

TAMPERED = [
    # Changing what the AEAD authenticates, or the key: the passphrase no longer opens it.
    pytest.param(("kdf", "salt"), flip_b64(DOCUMENT["kdf"]["salt"]), WrongPassphrase, id="salt"),
    pytest.param(("kdf", "time_cost"), 2, WrongPassphrase, id="time_cost"),
    pytest.param(("kdf", "memory_kib"), 8193, WrongPassphrase, id="memory_kib"),
    pytest.param(("kdf", "parallelism"), 2, WrongPassphrase, id="parallelism"),
    pytest.param(
        ("cipher", "nonce"), flip_b64(DOCUMENT["cipher"]["nonce"]), WrongPassphrase, id="nonce"
    ),
    pytest.param(
        ("ciphertext",), flip_b64(DOCUMENT["ciphertext"]), WrongPassphrase, id="ciphertext"
    ),
    pytest.param(("ciphertext",), flip_b64(DOCUMENT["ciphertext"], -1), WrongPassphrase, id="tag"),
    pytest.param(
        ("ciphertext",),
        b64(base64.b64decode(DOCUMENT["ciphertext"])[:-1]),
        WrongPassphrase,
        id="ciphertext-short",
    ),
    pytest.param(
        ("ciphertext",),
        b64(base64.b64decode(DOCUMENT["ciphertext"]) + b"\x00"),
        WrongPassphrase,
        id="ciphertext-long",
    ),
    # Malformed or unknown: the file is corrupt, whatever the passphrase.
    pytest.param(("format",), "xchat-keystore2", KeystoreCorrupt, id="format"),
    pytest.param(("format",), ..., KeystoreCorrupt, id="format-missing"),
    pytest.param(("version",), 2, KeystoreCorrupt, id="version-2"),
    pytest.param(("version",), 0, KeystoreCorrupt, id="version-0"),
    pytest.param(("version",), "1", KeystoreCorrupt, id="version-str"),
    pytest.param(("version",), None, KeystoreCorrupt, id="version-null"),
    pytest.param(("version",), ..., KeystoreCorrupt, id="version-missing"),
    pytest.param(("kdf", "algorithm"), "argon2i", KeystoreCorrupt, id="kdf-algorithm"),
    pytest.param(("kdf", "algorithm"), ..., KeystoreCorrupt, id="kdf-algorithm-missing"),
    pytest.param(("cipher", "algorithm"), "aes-256-gcm", KeystoreCorrupt, id="cipher-algorithm"),
    pytest.param(("kdf",), "argon2id", KeystoreCorrupt, id="kdf-not-object"),
    pytest.param(("kdf",), ..., KeystoreCorrupt, id="kdf-missing"),
    pytest.param(("cipher",), [], KeystoreCorrupt, id="cipher-not-object"),
    pytest.param(("kdf", "salt"), b64(bytes(15)), KeystoreCorrupt, id="salt-short"),
    pytest.param(("kdf", "salt"), b64(bytes(17)), KeystoreCorrupt, id="salt-long"),
    pytest.param(("kdf", "salt"), "not base64!", KeystoreCorrupt, id="salt-not-b64"),
    pytest.param(("kdf", "salt"), 5, KeystoreCorrupt, id="salt-int"),
    pytest.param(("kdf", "salt"), ..., KeystoreCorrupt, id="salt-missing"),
    pytest.param(("cipher", "nonce"), b64(bytes(24)), KeystoreCorrupt, id="nonce-long"),
    pytest.param(
        ("cipher", "nonce"), DOCUMENT["cipher"]["nonce"] + "\n", KeystoreCorrupt, id="nonce-newline"
    ),
    pytest.param(("cipher", "nonce"), "é" * 16, KeystoreCorrupt, id="nonce-non-ascii"),
    pytest.param(("ciphertext",), b64(bytes(15)), KeystoreCorrupt, id="ciphertext-under-tag"),
    pytest.param(("ciphertext",), "", KeystoreCorrupt, id="ciphertext-empty"),
    pytest.param(("ciphertext",), None, KeystoreCorrupt, id="ciphertext-null"),
    pytest.param(("ciphertext",), ..., KeystoreCorrupt, id="ciphertext-missing"),
    pytest.param(
        ("ciphertext",), DOCUMENT["ciphertext"][:-2], KeystoreCorrupt, id="ciphertext-bad-padding"
    ),
    pytest.param(("kdf", "time_cost"), True, KeystoreCorrupt, id="time_cost-bool"),
    pytest.param(("kdf", "time_cost"), 1.0, KeystoreCorrupt, id="time_cost-float"),
    pytest.param(("kdf", "time_cost"), "1", KeystoreCorrupt, id="time_cost-str"),
    pytest.param(("kdf", "memory_kib"), None, KeystoreCorrupt, id="memory_kib-null"),
    pytest.param(("kdf", "parallelism"), ..., KeystoreCorrupt, id="parallelism-missing"),
]


@pytest.mark.parametrize(("path", "value", "expected"), TAMPERED)
def test_tampered_field(path: tuple[str, ...], value: Any, expected: type[Exception]) -> None:
    with pytest.raises(KEYSTORE_ERRORS) as info:
        open_keystore(with_field(path, value), PASSPHRASE)
    assert type(info.value) is expected
    assert info.value.__cause__ is None


@pytest.mark.parametrize("version", [True, 1.0], ids=["true", "1.0"])
def test_non_integer_version_is_corrupt(version: Any) -> None:
    with pytest.raises(KeystoreCorrupt):
        open_keystore(with_field(("version",), version), PASSPHRASE)


#: The most expensive parameters accepted: Argon2id with them takes minutes and 4 GiB.
COSTLIEST = {"time_cost": 64, "memory_kib": 4 * 1024 * 1024, "parallelism": 16}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("time_cost", 0),
        ("time_cost", 65),
        ("time_cost", 2**31),
        ("time_cost", -1),
        ("memory_kib", 8191),
        ("memory_kib", 4 * 1024 * 1024 + 1),
        ("memory_kib", 2**40),
        ("parallelism", 0),
        ("parallelism", 17),
        ("parallelism", 2**40),
    ],
)
def test_params_outside_bounds_are_refused_before_argon2(field: str, value: int) -> None:
    # The other two parameters are at their costliest accepted values, so had Argon2id run
    # first this would take minutes (or fail inside argon2 with another exception).
    document = json.loads(SEALED)
    document["kdf"].update(COSTLIEST)
    document["kdf"][field] = value
    started = time.monotonic()
    with pytest.raises(KeystoreCorrupt, match="outside the accepted range"):
        open_keystore(json.dumps(document).encode(), PASSPHRASE)
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    "params",
    [
        KdfParams(0, 8192, 1),
        KdfParams(65, 8192, 1),
        KdfParams(1, 8191, 1),
        KdfParams(1, 4 * 1024 * 1024 + 1, 1),
        KdfParams(1, 8192, 0),
        KdfParams(1, 8192, 17),
    ],
)
def test_seal_refuses_params_outside_bounds(params: KdfParams) -> None:
    with pytest.raises(KeystoreCorrupt):
        seal_keystore(PLAINTEXT, PASSPHRASE, rng(), params)


def test_params_at_the_bounds_are_accepted() -> None:
    KdfParams(1, 8 * 1024, 1).check()
    KdfParams(64, 4 * 1024 * 1024, 16).check()
    # Parallelism 16 at the smallest memory is still a valid Argon2id instance.
    data = seal_keystore(PLAINTEXT, PASSPHRASE, rng(), KdfParams(1, 8192, 16))
    assert open_keystore(data, PASSPHRASE) == PLAINTEXT


def test_params_are_bound_to_the_ciphertext() -> None:
    """Lowering the cost in the header does not give an attacker a cheaper file."""
    strong = seal_keystore(PLAINTEXT, PASSPHRASE, rng(), KdfParams(2, 8192, 1))
    document = json.loads(strong)
    document["kdf"]["time_cost"] = 1
    with pytest.raises(WrongPassphrase):
        open_keystore(json.dumps(document).encode(), PASSPHRASE)


def test_swapped_ciphertexts_do_not_open() -> None:
    other = json.loads(seal_keystore(b"another secret", PASSPHRASE, rng(9), FAST))
    with pytest.raises(WrongPassphrase):
        open_keystore(with_field(("ciphertext",), other["ciphertext"]), PASSPHRASE)


# --- hostile files ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00",
        b"null",
        b"[]",
        b"{}",
        b'"xchat-keystore"',
        b"\xff\xfe{}",
        b'{"format": "xchat-keystore"}',
        b'{"format": "xchat-keystore", "version": 1}',
        b'{"format": "xchat-keystore", "version": 1, "kdf": {}, "cipher": {}}',
        SEALED[: len(SEALED) // 2],
        SEALED[:-3],
        SEALED.replace(b"{", b"[", 1),
        SEALED.replace(b'"time_cost": 1', b'"time_cost": 100000000000000000000000'),
        SEALED.replace(b'"time_cost": 1', b'"time_cost": 1e0'),
        SEALED + b"{}",
    ],
)
def test_garbage_files_are_corrupt(data: bytes) -> None:
    with pytest.raises(KeystoreCorrupt):
        open_keystore(data, PASSPHRASE)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=600))
def test_arbitrary_bytes_are_corrupt(data: bytes) -> None:
    with pytest.raises(KeystoreCorrupt):
        open_keystore(data, PASSPHRASE)


@settings(max_examples=200, deadline=None)
@given(length=st.integers(min_value=0, max_value=len(SEALED.rstrip()) - 1))
def test_every_truncation_is_corrupt(length: int) -> None:
    with pytest.raises(KeystoreCorrupt):
        open_keystore(SEALED[:length], PASSPHRASE)


@settings(max_examples=100, deadline=None)
@given(
    path=st.sampled_from(
        [
            ("format",),
            ("version",),
            ("kdf",),
            ("kdf", "algorithm"),
            ("kdf", "salt"),
            ("kdf", "time_cost"),
            ("kdf", "memory_kib"),
            ("kdf", "parallelism"),
            ("cipher",),
            ("cipher", "algorithm"),
            ("cipher", "nonce"),
            ("ciphertext",),
        ]
    ),
    value=json_values,
)
def test_any_field_replaced_raises_only_keystore_errors(path: tuple[str, ...], value: Any) -> None:
    data = with_field(path, value)
    if json.loads(data) == DOCUMENT:
        return  # equal in Python (true == 1 == 1.0): see test_non_integer_version_is_corrupt
    with pytest.raises(KEYSTORE_ERRORS):
        open_keystore(data, PASSPHRASE)


@settings(max_examples=150, deadline=None)
@given(index=st.integers(min_value=0, max_value=len(SEALED) - 1), byte=st.integers(0, 255))
def test_any_changed_byte_raises_only_keystore_errors(index: int, byte: int) -> None:
    data = bytearray(SEALED)
    data[index] = byte
    with contextlib.suppress(*KEYSTORE_ERRORS):
        # A few changes leave the document equivalent (whitespace, non-canonical base64 bits).
        assert open_keystore(bytes(data), PASSPHRASE) == PLAINTEXT


def test_errors_are_keystore_errors() -> None:
    assert issubclass(WrongPassphrase, KeystoreError)
    assert issubclass(KeystoreCorrupt, KeystoreError)


# --- the released v1 format ---------------------------------------------------------------------


def test_v1_fixture_opens() -> None:
    data = FIXTURE.read_bytes()
    assert open_keystore(data, FIXTURE_PASSPHRASE) == FIXTURE_PLAINTEXT
    document = orjson.loads(data)
    assert document["format"] == "xchat-keystore"
    assert document["version"] == 1
    assert document["kdf"]["time_cost"] == 3
    assert document["kdf"]["memory_kib"] == 131072
    assert document["kdf"]["parallelism"] == 4


def test_v1_fixture_matches_the_documented_format() -> None:
    """Decrypt the fixture with the libraries directly, as the module docstring describes."""
    document = json.loads(FIXTURE.read_bytes())
    kdf, cipher = document["kdf"], document["cipher"]
    salt = base64.b64decode(kdf["salt"])
    key = hash_secret_raw(
        FIXTURE_PASSPHRASE.encode(),
        salt,
        time_cost=kdf["time_cost"],
        memory_cost=kdf["memory_kib"],
        parallelism=kdf["parallelism"],
        hash_len=32,
        type=Type.ID,
    )
    aad = (
        b"xchat-keystore/v1"
        + salt
        + kdf["time_cost"].to_bytes(4, "big")
        + kdf["memory_kib"].to_bytes(4, "big")
        + kdf["parallelism"].to_bytes(4, "big")
    )
    plaintext = ChaCha20Poly1305(key).decrypt(
        base64.b64decode(cipher["nonce"]), base64.b64decode(document["ciphertext"]), aad
    )
    assert plaintext == FIXTURE_PLAINTEXT


def test_v1_fixture_wrong_passphrase() -> None:
    with pytest.raises(WrongPassphrase):
        open_keystore(FIXTURE.read_bytes(), FIXTURE_PASSPHRASE.replace(" ", "-"))
