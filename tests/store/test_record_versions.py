"""Every stored record kind is read through a version dispatch.

Session records, device records and keystores each carry a version, and each reader
picks its loader by that version: the released version (the tests/fixtures files) opens
and writes back the same bytes, and an unknown version is a clear DecodeError or
KeystoreCorrupt, never a KeyError or a wrong object. The node database's schema version
is dispatched by the migration steps (tests/store/test_node_fixtures.py).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest

from xchat.core.device import LocalDevice
from xchat.core.session import Session
from xchat.crypto.aead import RecordKey
from xchat.crypto.kdf import derive_key
from xchat.crypto.keystore import open_keystore
from xchat.errors import DecodeError, KeystoreCorrupt
from xchat.home import Home, Unlocked

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PASSPHRASE = "correct horse battery staple"
SESSION_ID = "KBYBopvWlnJubNv7Ps9AInaMhwoSLeOPHIMQWL0+xy0"
SESSION_FILE = FIXTURES / "home-v1" / f"session-{SESSION_ID.replace('/', '_')}.bin"


@pytest.fixture(scope="module")
def unlocked(tmp_path_factory: pytest.TempPathFactory) -> Unlocked:
    copy = tmp_path_factory.mktemp("home") / "home-v1"
    shutil.copytree(FIXTURES / "home-v1", copy)
    return Home(copy).unlock(PASSPHRASE)


def session_key(unlocked: Unlocked) -> RecordKey:
    return RecordKey(derive_key(unlocked.storage_key, "xchat/record/session/v1"))


def device_key(unlocked: Unlocked) -> RecordKey:
    return RecordKey(derive_key(unlocked.storage_key, "xchat/record/device/v1"))


SESSION_AAD = b"xchat/session/" + SESSION_ID.encode()
DEVICE_AAD = b"xchat/device"


def test_v1_records_write_back_the_same_plaintext(unlocked: Unlocked) -> None:
    """Loading a v1 record and saving it again gives the same record (a new nonce
    only): the dispatch changed no stored byte."""
    data = SESSION_FILE.read_bytes()
    session = Session.from_record(data, SESSION_ID, unlocked.storage_key)
    again = session.to_record(unlocked.storage_key, os.urandom)
    key = session_key(unlocked)
    assert key.open(again, SESSION_AAD) == key.open(data, SESSION_AAD)
    device_data = (FIXTURES / "home-v1" / "device.bin").read_bytes()
    device = LocalDevice.from_record(unlocked.identity, device_data, unlocked.storage_key)
    key = device_key(unlocked)
    saved = device.to_record(unlocked.storage_key, os.urandom)
    assert orjson.loads(key.open(saved, DEVICE_AAD)) == orjson.loads(
        key.open(device_data, DEVICE_AAD)
    )


@pytest.mark.parametrize("version", [0, 2, 99, "1", True, None])
def test_unknown_session_record_version(unlocked: Unlocked, version: Any) -> None:
    key = session_key(unlocked)
    record = orjson.loads(key.open(SESSION_FILE.read_bytes(), SESSION_AAD))
    record["v"] = version
    sealed = key.seal(orjson.dumps(record), SESSION_AAD, os.urandom)
    with pytest.raises(DecodeError, match=r"session record has an unknown version .*reads 1\)"):
        Session.from_record(sealed, SESSION_ID, unlocked.storage_key)
    not_object = key.seal(b"[1]", SESSION_AAD, os.urandom)
    with pytest.raises(DecodeError, match="not a JSON object"):
        Session.from_record(not_object, SESSION_ID, unlocked.storage_key)


@pytest.mark.parametrize("version", [0, 2, "1", True])
def test_unknown_device_record_version(unlocked: Unlocked, version: Any) -> None:
    key = device_key(unlocked)
    record = orjson.loads(key.open((FIXTURES / "home-v1" / "device.bin").read_bytes(), DEVICE_AAD))
    record["v"] = version
    sealed = key.seal(orjson.dumps(record), DEVICE_AAD, os.urandom)
    with pytest.raises(DecodeError, match=r"device record has an unknown version .*reads 1\)"):
        LocalDevice.from_record(unlocked.identity, sealed, unlocked.storage_key)


@pytest.mark.parametrize("version", [0, 2, "1", True, None])
def test_unknown_keystore_version(version: Any) -> None:
    document = orjson.loads((FIXTURES / "keystore-v1.json").read_bytes())
    assert open_keystore(orjson.dumps(document), PASSPHRASE) == bytes(range(32))
    document["version"] = version
    with pytest.raises(KeystoreCorrupt, match="is not one this X Chat can read"):
        open_keystore(orjson.dumps(document), PASSPHRASE)
