"""BIP-32 private derivation and NIP-06 identities: the published vectors and the path parser."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xchat.core.identity import Identity
from xchat.crypto import hd
from xchat.crypto.keys import SecretKey
from xchat.errors import LocalProtocolError
from xchat.wire import nip19

VECTORS_DIR = Path(__file__).parent.parent / "vectors"
BIP32: list[dict[str, Any]] = json.loads((VECTORS_DIR / "bip32.json").read_bytes())["vectors"]
NIP06: list[dict[str, str]] = json.loads((VECTORS_DIR / "nip06.json").read_bytes())["vectors"]
BIP39 = json.loads((VECTORS_DIR / "bip39.json").read_bytes())

BIP32_CHAINS = [
    pytest.param(vector["seed"], chain, id=f"{vector['name'].split(' (')[0]}:{chain['path']}")
    for vector in BIP32
    for chain in vector["chains"]
]

_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def base58check_decode(text: str) -> bytes:
    number = 0
    for char in text:
        number = number * 58 + _BASE58.index(char)
    raw = number.to_bytes(82, "big")
    payload, checksum = raw[:-4], raw[-4:]
    assert hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4] == checksum
    return payload


def xprv_fields(xprv: str) -> tuple[bytes, bytes]:
    """(chain code, private key) of a serialized BIP-32 extended private key."""
    payload = base58check_decode(xprv)
    assert payload[:4] == bytes.fromhex("0488ade4")
    assert payload[45] == 0
    return payload[13:45], payload[46:]


# --- BIP-32 -------------------------------------------------------------------------------------


def test_bip32_vectors_name_their_source() -> None:
    source = json.loads((VECTORS_DIR / "bip32.json").read_bytes())["source"]
    assert "BIP-32" in source
    assert "Test Vectors" in source


@pytest.mark.parametrize(("seed", "chain"), BIP32_CHAINS)
def test_bip32_vectors(seed: str, chain: dict[str, str]) -> None:
    # The hex fields are the xprv's, decoded; check that the file agrees with itself.
    assert xprv_fields(chain["xprv"]) == (
        bytes.fromhex(chain["chain_code"]),
        bytes.fromhex(chain["private_key"]),
    )
    key = hd.derive_path(bytes.fromhex(seed), chain["path"])
    assert key.to_bytes().hex() == chain["private_key"]


@pytest.mark.parametrize("vector", BIP32, ids=lambda v: v["name"].split(" (")[0])
def test_bip32_master_key_and_chain_code(vector: dict[str, Any]) -> None:
    master = vector["chains"][0]
    assert master["path"] == "m"
    key, chain_code = hd.master_key(bytes.fromhex(vector["seed"]))
    assert key.to_bytes().hex() == master["private_key"]
    assert chain_code.hex() == master["chain_code"]


def test_leading_zero_master_key_is_kept() -> None:
    # BIP-32 test vector 3: the master key starts with a zero byte, which must not be dropped.
    seed = bytes.fromhex(BIP32[1]["seed"])
    key, _ = hd.master_key(seed)
    assert key.to_bytes()[0] == 0
    assert len(key.to_bytes()) == 32
    assert hd.derive_path(seed, "m/0H").to_bytes().hex() == BIP32[1]["chains"][1]["private_key"]


@pytest.mark.parametrize(
    "vector", BIP39["vectors"][:6], ids=lambda v: v["entropy"][:8] + str(len(v["entropy"]))
)
def test_master_key_of_trezor_seeds(vector: dict[str, str]) -> None:
    """Trezor's BIP-39 vectors also give the BIP-32 master key of each seed."""
    key, chain_code = hd.master_key(bytes.fromhex(vector["seed"]))
    assert (chain_code, key.to_bytes()) == xprv_fields(vector["xprv"])


@pytest.mark.parametrize("spelling", ["m/0'/1/2'", "m/0h/1/2h", "m/0H/1/2H", "m/0'/1/2H"])
def test_hardened_spellings_agree(spelling: str) -> None:
    seed = bytes.fromhex(BIP32[0]["seed"])
    assert hd.derive_path(seed, spelling).to_bytes().hex() == BIP32[0]["chains"][3]["private_key"]


@pytest.mark.parametrize("length", [0, 15, 65, 128])
def test_seed_length_bounds(length: int) -> None:
    with pytest.raises(LocalProtocolError):
        hd.master_key(bytes(length))
    with pytest.raises(LocalProtocolError):
        hd.derive_path(bytes(length), "m")


@pytest.mark.parametrize("length", [16, 32, 64])
def test_seed_lengths_accepted(length: int) -> None:
    key, chain_code = hd.master_key(bytes(length))
    assert isinstance(key, SecretKey)
    assert len(chain_code) == 32


@pytest.mark.parametrize(
    ("path", "indexes"),
    [
        ("m", []),
        ("m/0", [0]),
        ("m/0'", [hd.HARDENED]),
        ("m/44'/1237'/0'/0/0", [hd.HARDENED + 44, hd.HARDENED + 1237, hd.HARDENED, 0, 0]),
        ("m/2147483647", [hd.HARDENED - 1]),
        ("m/2147483647H", [2**32 - 1]),
        ("m/1000000000", [1000000000]),
    ],
)
def test_parse_path(path: str, indexes: list[int]) -> None:
    assert hd.parse_path(path) == indexes


@pytest.mark.parametrize(
    "path",
    [
        "",
        "M/0",
        "/0",
        "0/1",
        "m/",
        "m//0",
        "m/-1",
        "m/+1",
        "m/1.5",
        "m/x",
        "m/'",
        "m/0''",
        "m/0'h",
        "m/2147483648",
        "m/2147483648'",
        "m/ 1",
        "m/0x10",
    ],
)
def test_parse_path_rejects(path: str) -> None:
    with pytest.raises(LocalProtocolError):
        hd.parse_path(path)


def test_nostr_path_constant() -> None:
    assert hd.NOSTR_PATH == "m/44'/1237'/0'/0/0"


@settings(max_examples=20, deadline=None)
@given(
    seed=st.binary(min_size=16, max_size=64), path=st.lists(st.integers(0, 2**32 - 1), max_size=4)
)
def test_derivation_is_stepwise(seed: bytes, path: list[int]) -> None:
    """Deriving a path equals deriving its parent and then one more step."""
    text = "m" + "".join(f"/{i - hd.HARDENED}'" if i >= hd.HARDENED else f"/{i}" for i in path)
    assert hd.parse_path(text) == path
    key = hd.derive_path(seed, text)
    parent_key, chain = hd.master_key(seed)
    for index in path:
        parent_key, chain = hd._child(parent_key, chain, index)
    assert parent_key == key


# --- NIP-06 -------------------------------------------------------------------------------------


def test_nip06_vectors_name_their_source() -> None:
    assert "NIP-06" in json.loads((VECTORS_DIR / "nip06.json").read_bytes())["source"]
    assert len(NIP06) == 2


@pytest.mark.parametrize("vector", NIP06, ids=["12-words", "24-words"])
def test_nip06_vectors(vector: dict[str, str]) -> None:
    identity = Identity.from_phrase(vector["mnemonic"])
    assert identity.secret.to_bytes().hex() == vector["private_key"]
    assert identity.public_key.hex == vector["public_key"]
    assert identity.nsec() == vector["nsec"]
    assert identity.npub == vector["npub"]
    assert identity.phrase == vector["mnemonic"]
    assert nip19.nsec_decode(vector["nsec"]).hex() == vector["private_key"]
    assert nip19.npub_decode(vector["npub"]).hex() == vector["public_key"]
    assert repr(identity) == f"Identity({vector['npub']})"
    assert vector["private_key"] not in repr(identity)


@pytest.mark.parametrize("vector", NIP06, ids=["12-words", "24-words"])
def test_nip06_typed_sloppily(vector: dict[str, str]) -> None:
    typed = "  " + "   ".join(vector["mnemonic"].upper().split()) + "\n"
    assert Identity.from_phrase(typed).npub == vector["npub"]


@pytest.mark.parametrize("vector", NIP06, ids=["12-words", "24-words"])
def test_nip06_agrees_with_nostr_sdk(vector: dict[str, str]) -> None:
    sdk = pytest.importorskip("nostr_sdk")
    keys = sdk.Keys.from_mnemonic(vector["mnemonic"], None, 0)
    assert keys.secret_key().to_hex() == vector["private_key"]
    assert keys.public_key().to_bech32() == vector["npub"]


@pytest.mark.parametrize("path", ["m/²", "m/٣", "m/1'/٣'"], ids=["superscript", "arabic", "mixed"])
def test_parse_path_rejects_non_ascii_digits(path: str) -> None:
    with pytest.raises(LocalProtocolError):
        hd.parse_path(path)
