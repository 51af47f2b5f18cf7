"""A user's X Chat home: the folder that holds one identity on one device.

Layout (every file owner-only, the folder 0700)::

    keystore.json   identity key, recovery phrase and storage key, sealed under the
                    passphrase with Argon2id (xchat.crypto.keystore)
    device.bin      this device's Olm account and certificate, sealed under a key
                    derived from the storage key
    profile.json    public facts only: npub and relay hints, so that ``xchat card``
                    needs no passphrase

Writes are atomic (temporary file, fsync, rename): a crash leaves the old file or the
new one, never half of one. The folder is the platform's user data folder unless
``--home`` or ``XCHAT_HOME`` say otherwise.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson
import platformdirs

from xchat.core.device import LocalDevice
from xchat.core.identity import ContactCard, Identity
from xchat.crypto.keys import Rng, SecretKey
from xchat.crypto.keystore import DEFAULT_KDF, KdfParams, open_keystore, seal_keystore
from xchat.errors import InvalidInput, KeystoreCorrupt, KeystoreError
from xchat.wire.relay_url import normalize_relay_url

__all__ = [
    "MIN_PASSPHRASE_LENGTH",
    "RUNTIME_FILE",
    "Home",
    "Unlocked",
    "default_home",
    "read_runtime",
]

MIN_PASSPHRASE_LENGTH: Final = 8
_SECRETS_VERSION: Final = 1
_PROFILE_VERSION: Final = 1


def default_home(explicit: str | None = None) -> Path:
    """``--home``, else ``$XCHAT_HOME``, else the platform's user data folder."""
    if explicit:
        return Path(explicit).expanduser()
    if env := os.environ.get("XCHAT_HOME"):
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("xchat", appauthor=False))


def write_private(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``, readable by the owner only."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def check_passphrase(passphrase: str) -> None:
    """InvalidInput unless the passphrase is long enough to be worth Argon2id."""
    if len(passphrase) < MIN_PASSPHRASE_LENGTH:
        raise InvalidInput(f"the passphrase must have at least {MIN_PASSPHRASE_LENGTH} characters")


@dataclass(frozen=True, slots=True)
class Unlocked:
    """What the passphrase opens. ``repr()`` shows the npub only."""

    identity: Identity
    storage_key: bytes
    device: LocalDevice

    def __repr__(self) -> str:
        return f"Unlocked({self.identity.npub})"


class Home:
    """One identity's folder; see the module docstring for its files."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def keystore_path(self) -> Path:
        return self.path / "keystore.json"

    @property
    def device_path(self) -> Path:
        return self.path / "device.bin"

    @property
    def profile_path(self) -> Path:
        return self.path / "profile.json"

    def exists(self) -> bool:
        return self.keystore_path.exists()

    def create(
        self,
        identity: Identity,
        passphrase: str,
        now: int,
        rng: Rng,
        relays: tuple[str, ...] = (),
        kdf: KdfParams = DEFAULT_KDF,
    ) -> Unlocked:
        """Write a new home; refuses to overwrite an existing identity."""
        check_passphrase(passphrase)
        if self.exists():
            raise InvalidInput(
                f"an X Chat identity already exists in {self.path}; use another --home "
                "or remove that folder first"
            )
        hints = tuple(normalize_relay_url(r) for r in relays)
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.path, 0o700)
        storage_key = rng(32)
        device = LocalDevice.create(identity, now, rng)
        secrets = {
            "v": _SECRETS_VERSION,
            "identity": identity.secret.to_bytes().hex(),
            "phrase": identity.phrase,
            "storage_key": storage_key.hex(),
            "created_at": now,
        }
        # Device first, keystore last: a home with a keystore is always complete.
        write_private(self.device_path, device.to_record(storage_key, rng))
        self.write_profile(identity.card(hints))
        write_private(
            self.keystore_path, seal_keystore(orjson.dumps(secrets), passphrase, rng, kdf)
        )
        return Unlocked(identity, storage_key, device)

    def unlock(self, passphrase: str) -> Unlocked:
        """Open the keystore and the device; WrongPassphrase or KeystoreCorrupt on failure."""
        try:
            data = self.keystore_path.read_bytes()
        except FileNotFoundError:
            raise KeystoreError(
                f"no X Chat identity in {self.path}; create one with 'xchat init'"
            ) from None
        secrets = _parse_secrets(open_keystore(data, passphrase))
        identity = Identity(SecretKey(bytes.fromhex(secrets["identity"])), secrets["phrase"])
        storage_key = bytes.fromhex(secrets["storage_key"])
        try:
            device = LocalDevice.from_record(identity, self.device_path.read_bytes(), storage_key)
        except FileNotFoundError:
            raise KeystoreCorrupt(f"the device file {self.device_path} is missing") from None
        return Unlocked(identity, storage_key, device)

    def change_passphrase(self, old: str, new: str, rng: Rng, kdf: KdfParams = DEFAULT_KDF) -> None:
        """Re-seal the keystore under a new passphrase (WrongPassphrase if ``old`` is wrong)."""
        check_passphrase(new)
        plaintext = open_keystore(self.keystore_path.read_bytes(), old)
        write_private(self.keystore_path, seal_keystore(plaintext, new, rng, kdf))

    def save_device(self, unlocked: Unlocked, rng: Rng) -> None:
        write_private(self.device_path, unlocked.device.to_record(unlocked.storage_key, rng))

    def write_profile(self, card: ContactCard) -> None:
        profile = {"v": _PROFILE_VERSION, "npub": card.npub, "relays": list(card.relays)}
        write_private(self.profile_path, orjson.dumps(profile, option=orjson.OPT_INDENT_2))

    def card(self) -> ContactCard:
        """This identity's contact card, from the public profile (no passphrase needed)."""
        try:
            profile = orjson.loads(self.profile_path.read_bytes())
        except FileNotFoundError:
            raise KeystoreError(
                f"no X Chat identity in {self.path}; create one with 'xchat init'"
            ) from None
        except orjson.JSONDecodeError:
            raise KeystoreCorrupt(f"{self.profile_path} is damaged") from None
        if not isinstance(profile, dict) or profile.get("v") != _PROFILE_VERSION:
            raise KeystoreCorrupt(f"{self.profile_path} has an unknown format")
        card = ContactCard.parse(str(profile.get("npub", "")))
        return ContactCard.create(card.public_key, tuple(profile.get("relays", ())))

    def permissions_ok(self) -> bool:
        """True if no file of the home is readable or writable by group or others."""
        paths = [self.path, *(p for p in self.path.iterdir() if p.is_file())]
        return all(stat.S_IMODE(p.stat().st_mode) & 0o077 == 0 for p in paths)


def _parse_secrets(data: bytes) -> dict[str, Any]:
    try:
        secrets = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise KeystoreCorrupt("the keystore's contents are damaged") from None
    if (
        not isinstance(secrets, dict)
        or secrets.get("v") != _SECRETS_VERSION
        or not isinstance(secrets.get("identity"), str)
        or not isinstance(secrets.get("storage_key"), str)
        or not isinstance(secrets.get("phrase"), str | None)
    ):
        raise KeystoreCorrupt("the keystore's contents have an unknown format")
    return secrets


#: Written by a running node (its URL, API token and pid), read by the CLI to find it.
RUNTIME_FILE: Final = "node.json"


def read_runtime(home: Home) -> dict[str, Any] | None:
    """The running node's URL, token and pid, or None when no node runs for this home."""
    try:
        data = orjson.loads((home.path / RUNTIME_FILE).read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("url"), str):
        return None
    pid = data.get("pid")
    if isinstance(pid, int):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
    return data
