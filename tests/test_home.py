"""The home folder: created private, opened with the passphrase, and its v1 format pinned."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from tests.conftest import SeededRng
from xchat.core.identity import Identity
from xchat.core.session import Session
from xchat.crypto.keystore import KdfParams
from xchat.errors import InvalidInput, KeystoreCorrupt, KeystoreError, WrongPassphrase
from xchat.home import Home, default_home

FAST = KdfParams(time_cost=1, memory_kib=8192, parallelism=1)
FIXTURE = Path(__file__).parent / "fixtures" / "home-v1"


def test_create_and_unlock(tmp_path: Path) -> None:
    home = Home(tmp_path / "h")
    identity = Identity.generate(SeededRng("home"))
    created = home.create(
        identity, "a good passphrase", 1_800_000_000, os.urandom, ("wss://r.example",), kdf=FAST
    )
    assert home.permissions_ok()
    assert stat.S_IMODE(home.path.stat().st_mode) == 0o700
    unlocked = home.unlock("a good passphrase")
    assert unlocked.identity == identity
    assert unlocked.identity.phrase == identity.phrase
    assert unlocked.storage_key == created.storage_key
    assert unlocked.device.certificate == created.device.certificate
    assert home.card().relays == ("wss://r.example",)
    assert identity.npub not in repr(unlocked.storage_key)
    assert "storage" not in repr(unlocked)


def test_nothing_secret_is_written_in_clear(tmp_path: Path) -> None:
    home = Home(tmp_path / "h")
    identity = Identity.generate(SeededRng("clear"))
    created = home.create(identity, "a good passphrase", 1_800_000_000, os.urandom, kdf=FAST)
    assert identity.phrase is not None
    secrets = [
        identity.secret.to_bytes().hex(),
        identity.nsec(),
        created.storage_key.hex(),
        *identity.phrase.split(),
    ]
    for path in home.path.iterdir():
        data = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data, (path.name, "leaks a secret")
        assert identity.secret.to_bytes() not in data


def test_wrong_passphrase_and_missing_home(tmp_path: Path) -> None:
    home = Home(tmp_path / "h")
    home.create(Identity.generate(SeededRng("w")), "a good passphrase", 1, os.urandom, kdf=FAST)
    with pytest.raises(WrongPassphrase):
        home.unlock("not the passphrase")
    with pytest.raises(KeystoreError, match="xchat init"):
        Home(tmp_path / "none").unlock("whatever1")
    with pytest.raises(KeystoreError, match="xchat init"):
        Home(tmp_path / "none").card()


def test_refuses_to_overwrite_and_short_passphrases(tmp_path: Path) -> None:
    home = Home(tmp_path / "h")
    with pytest.raises(InvalidInput, match="at least 8"):
        home.create(Identity.generate(SeededRng("s")), "short", 1, os.urandom, kdf=FAST)
    assert not home.exists()
    home.create(Identity.generate(SeededRng("a")), "a good passphrase", 1, os.urandom, kdf=FAST)
    with pytest.raises(InvalidInput, match="already exists"):
        home.create(Identity.generate(SeededRng("b")), "a good passphrase", 1, os.urandom, kdf=FAST)


def test_change_passphrase(tmp_path: Path) -> None:
    home = Home(tmp_path / "h")
    identity = Identity.generate(SeededRng("c"))
    home.create(identity, "first passphrase", 1, os.urandom, kdf=FAST)
    with pytest.raises(WrongPassphrase):
        home.change_passphrase("wrong one!", "second passphrase", os.urandom, kdf=FAST)
    home.change_passphrase("first passphrase", "second passphrase", os.urandom, kdf=FAST)
    with pytest.raises(WrongPassphrase):
        home.unlock("first passphrase")
    assert home.unlock("second passphrase").identity == identity


def test_damaged_files_are_reported_not_crashed_on(tmp_path: Path) -> None:
    home = Home(tmp_path / "h")
    home.create(Identity.generate(SeededRng("d")), "a good passphrase", 1, os.urandom, kdf=FAST)
    home.keystore_path.write_bytes(home.keystore_path.read_bytes()[:40])
    with pytest.raises(KeystoreCorrupt):
        home.unlock("a good passphrase")
    home.profile_path.write_text("{not json")
    with pytest.raises(KeystoreCorrupt):
        home.card()


def test_default_home_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XCHAT_HOME", str(tmp_path / "env"))
    assert default_home(str(tmp_path / "flag")) == tmp_path / "flag"
    assert default_home(None) == tmp_path / "env"
    monkeypatch.delenv("XCHAT_HOME")
    assert "xchat" in str(default_home(None))


def test_the_v1_home_format_still_opens(tmp_path: Path) -> None:
    # tests/fixtures/make_home_v1.py wrote this once; every later version must read it.
    copy = tmp_path / "home-v1"
    shutil.copytree(FIXTURE, copy)
    home = Home(copy)
    unlocked = home.unlock("correct horse battery staple")
    assert (
        unlocked.identity.npub == "npub1zutzeysacnf9rru6zqwmxd54mud0k44tst6l70ja5mhv8jjumytsd2x7nu"
    )
    assert home.card().relays == ("wss://relay.example.com",)
    [record] = copy.glob("session-*.bin")
    session_id = record.stem.removeprefix("session-").replace("_", "/")
    session = Session.from_record(record.read_bytes(), session_id, unlocked.storage_key)
    assert session.session_id == session_id
    assert session.peer.identity.hex == (
        "d41b22899549e1f3d335a31002cfd382174006e166d3e658e3a5eecdb6463573"
    )
