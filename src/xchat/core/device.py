"""Devices: Olm accounts certified by the identity key, and the bundles that announce them.

Every install of X Chat is a device with its own vodozemac account (Curve25519 and
Ed25519 keys). The identity key certifies each device with a BIP-340 signature, and the
device counter-signs with its Ed25519 key, so a device belongs to exactly one identity
and an identity cannot claim someone else's device. A device bundle is an addressable
Nostr event (kind 30443, ``d`` = device id) signed by the identity: the certificate,
signed one-time keys and a fallback key, from which anyone can open an Olm session.

Spec: docs/protocol.md ("Devices and bundles").
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from xchat.core.events import sign_event, verify_event
from xchat.core.identity import Identity, parse_public_key
from xchat.crypto.aead import RecordKey
from xchat.crypto.kdf import derive_key
from xchat.crypto.keys import PublicKey, Rng
from xchat.crypto.olm import OlmAccount, check_curve25519, check_ed25519, verify_ed25519
from xchat.errors import DecodeError, InvalidSignature, LocalProtocolError
from xchat.wire.b64 import b64decode
from xchat.wire.event import Event
from xchat.wire.kinds import KIND_DEVICE_BUNDLE

__all__ = [
    "BUNDLE_VERSION",
    "CERT_VERSION",
    "KIND_DEVICE_BUNDLE",
    "DeviceBundle",
    "DeviceCertificate",
    "LocalDevice",
]

CERT_VERSION: Final = 1
BUNDLE_VERSION: Final = 1
#: One-time keys published per bundle, and the most a bundle may carry.
DEFAULT_ONE_TIME_KEYS: Final = 20
MAX_BUNDLE_KEYS: Final = 100
_CERT_CONTEXT: Final = b"xchat-device-cert/v1\x00"
_OTK_CONTEXT: Final = b"xchat-one-time-key/v1\x00"
_DEVICE_RECORD_VERSION: Final = 1


def _cert_message(identity: PublicKey, curve25519: str, ed25519: str, created_at: int) -> bytes:
    return (
        _CERT_CONTEXT
        + identity.raw
        + b64decode(curve25519)
        + b64decode(ed25519)
        + created_at.to_bytes(8, "big")
    )


def _otk_message(device_ed25519: str, key_id: str, key: str) -> bytes:
    return _OTK_CONTEXT + b64decode(device_ed25519) + key_id.encode() + b"\x00" + b64decode(key)


@dataclass(frozen=True, slots=True)
class DeviceCertificate:
    """Binds a device's Olm keys to an identity, signed both ways.

    ``signature`` is the identity's BIP-340 signature over sha256 of the certificate
    message; ``device_signature`` is the device's Ed25519 signature over the message.
    """

    identity: PublicKey
    curve25519: str
    ed25519: str
    created_at: int
    signature: str
    device_signature: str

    @property
    def device_id(self) -> str:
        """The device's Ed25519 key, which names it in bundles and the UI."""
        return self.ed25519

    @classmethod
    def issue(
        cls, identity: Identity, account: OlmAccount, created_at: int, rng: Rng
    ) -> DeviceCertificate:
        message = _cert_message(
            identity.public_key, account.curve25519, account.ed25519, created_at
        )
        signature = identity.secret.sign(hashlib.sha256(message).digest(), rng(32)).hex()
        return cls(
            identity.public_key,
            account.curve25519,
            account.ed25519,
            created_at,
            signature,
            account.sign(message),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "v": CERT_VERSION,
            "identity": self.identity.hex,
            "curve25519": self.curve25519,
            "ed25519": self.ed25519,
            "created_at": self.created_at,
            "sig": self.signature,
            "device_sig": self.device_signature,
        }

    @classmethod
    def from_json(cls, obj: object) -> DeviceCertificate:
        """Parse and verify a certificate from a peer (DecodeError / InvalidSignature)."""
        if not isinstance(obj, dict) or obj.get("v") != CERT_VERSION:
            raise DecodeError("a device certificate is a version 1 JSON object")
        if set(obj) != {
            "v",
            "identity",
            "curve25519",
            "ed25519",
            "created_at",
            "sig",
            "device_sig",
        }:
            raise DecodeError("device certificate fields are not as specified")
        identity_hex, curve, ed = obj["identity"], obj["curve25519"], obj["ed25519"]
        created_at, sig, device_sig = obj["created_at"], obj["sig"], obj["device_sig"]
        if (
            not isinstance(identity_hex, str)
            or not isinstance(curve, str)
            or not isinstance(ed, str)
        ):
            raise DecodeError("device certificate keys must be strings")
        if type(created_at) is not int or not 0 <= created_at < 2**40:
            raise DecodeError("device certificate created_at must be a timestamp")
        if not isinstance(sig, str) or not isinstance(device_sig, str):
            raise DecodeError("device certificate signatures must be strings")
        identity = parse_public_key(PublicKey.from_hex(identity_hex).raw)
        check_curve25519(curve)
        check_ed25519(ed)
        cert = cls(identity, curve, ed, created_at, sig, device_sig)
        cert.verify()
        return cert

    def verify(self) -> None:
        message = _cert_message(self.identity, self.curve25519, self.ed25519, self.created_at)
        try:
            signature = bytes.fromhex(self.signature)
        except ValueError:
            raise DecodeError("device certificate signature is not hex") from None
        if not self.identity.verify(hashlib.sha256(message).digest(), signature):
            raise InvalidSignature("device certificate is not signed by its identity")
        if not verify_ed25519(self.ed25519, message, self.device_signature):
            raise InvalidSignature("device certificate is not signed by its device")


@dataclass(frozen=True, slots=True)
class DeviceBundle:
    """A peer device's certificate and the keys to open an Olm session with it."""

    certificate: DeviceCertificate
    one_time_keys: dict[str, str] = field(hash=False)
    fallback_key: tuple[str, str] | None
    published_at: int

    @classmethod
    def from_event(cls, event: Event) -> DeviceBundle:
        """Verify a bundle event from a relay; DecodeError or InvalidSignature if it is bad."""
        if event.kind != KIND_DEVICE_BUNDLE:
            raise DecodeError("not a device bundle event")
        verify_event(event)
        try:
            content = orjson.loads(event.content)
        except orjson.JSONDecodeError:
            raise DecodeError("device bundle content is not JSON") from None
        if not isinstance(content, dict) or content.get("v") != BUNDLE_VERSION:
            raise DecodeError("device bundle content is not a version 1 object")
        cert = DeviceCertificate.from_json(content.get("cert"))
        if cert.identity.hex != event.pubkey:
            raise InvalidSignature("device bundle and certificate name different identities")
        if event.first_tag("d") != cert.device_id:
            raise DecodeError("device bundle d tag is not the device id")
        keys = content.get("one_time_keys", {})
        if not isinstance(keys, dict) or len(keys) > MAX_BUNDLE_KEYS:
            raise DecodeError(f"a bundle carries at most {MAX_BUNDLE_KEYS} one-time keys")
        one_time: dict[str, str] = {}
        for key_id, entry in keys.items():
            one_time[key_id] = cls._signed_key(cert, key_id, entry)
        fallback = None
        if (entry := content.get("fallback_key")) is not None:
            if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
                raise DecodeError("bundle fallback key must be an object with an id")
            fallback = (entry["id"], cls._signed_key(cert, entry["id"], entry))
        if not one_time and fallback is None:
            raise DecodeError("device bundle has no keys to open a session with")
        return cls(cert, one_time, fallback, event.created_at)

    @staticmethod
    def _signed_key(cert: DeviceCertificate, key_id: object, entry: object) -> str:
        if not isinstance(key_id, str) or not 0 < len(key_id) <= 64:
            raise DecodeError("one-time key ids are short strings")
        key = entry.get("key") if isinstance(entry, dict) else None
        sig = entry.get("sig") if isinstance(entry, dict) else None
        if not isinstance(key, str):
            raise DecodeError("a bundle key is an object with key and sig")
        check_curve25519(key)
        if not isinstance(sig, str) or not verify_ed25519(
            cert.ed25519, _otk_message(cert.ed25519, key_id, key), sig
        ):
            raise InvalidSignature("a one-time key in the bundle is not signed by its device")
        return key

    def choose_key(self, rng: Rng, exclude: frozenset[str] = frozenset()) -> str:
        """A one-time key at random, skipping ``exclude``; the fallback key when none is left."""
        candidates = sorted(k for k_id, k in self.one_time_keys.items() if k_id not in exclude)
        if candidates:
            return candidates[int.from_bytes(rng(4), "big") % len(candidates)]
        if self.fallback_key is None:
            raise LocalProtocolError("this bundle has no unused keys left")
        return self.fallback_key[1]


class LocalDevice:
    """This install's identity and Olm account. ``repr()`` shows public keys only.

    Not thread-safe: the node owns one and drives it from one task.
    """

    __slots__ = ("account", "certificate", "identity")

    def __init__(self, identity: Identity, account: OlmAccount, certificate: DeviceCertificate):
        if (
            certificate.identity != identity.public_key
            or certificate.curve25519 != account.curve25519
        ):
            raise LocalProtocolError("the certificate does not belong to this identity and account")
        self.identity = identity
        self.account = account
        self.certificate = certificate

    @classmethod
    def create(cls, identity: Identity, now: int, rng: Rng) -> LocalDevice:
        account = OlmAccount()
        return cls(identity, account, DeviceCertificate.issue(identity, account, now, rng))

    def bundle_event(
        self,
        now: int,
        rng: Rng,
        one_time_keys: int = DEFAULT_ONE_TIME_KEYS,
        max_content: int | None = None,
        max_message: int | None = None,
    ) -> Event:
        """A fresh bundle: new one-time keys and a new fallback key, signed by the identity.

        It carries ``one_time_keys`` keys, or fewer so that its content has at most
        ``max_content`` characters and its ``EVENT`` message at most ``max_message``
        bytes (a relay's NIP-11 limits); with no room for one, only the fallback key.
        The account changes (it now holds the new keys): save the device afterwards.
        """
        ed = self.account.ed25519
        fallback_id, fallback = self.account.new_fallback_key()
        base = {
            "v": BUNDLE_VERSION,
            "cert": self.certificate.to_json(),
            "one_time_keys": {},
            "fallback_key": {
                "id": fallback_id,
                "key": fallback,
                "sig": self.account.sign(_otk_message(ed, fallback_id, fallback)),
            },
        }

        def entries(keys: dict[str, str]) -> dict[str, dict[str, str]]:
            return {
                key_id: {"key": key, "sig": self.account.sign(_otk_message(ed, key_id, key))}
                for key_id, key in sorted(keys.items())
            }

        def fits(content: dict[str, Any]) -> bool:
            text = orjson.dumps(content)
            if max_content is not None and len(text) > max_content:
                return False
            # the EVENT message: the content escaped as a JSON string, plus the event's
            # other fields (id, pubkey, sig, the d tag, kind, created_at; 420 bytes)
            return max_message is None or len(orjson.dumps(text.decode())) + 420 <= max_message

        wanted = max(0, min(one_time_keys, MAX_BUNDLE_KEYS))
        chosen: dict[str, dict[str, str]] = {}
        if wanted:
            first = entries(self.account.new_one_time_keys(1))
            if fits({**base, "one_time_keys": first}):
                chosen = first
                one = len(orjson.dumps(first)) - 1  # one entry and its comma
                room = wanted - 1
                if max_content is not None:
                    used = len(orjson.dumps({**base, "one_time_keys": first}))
                    room = min(room, (max_content - used) // one)
                if room > 0:
                    chosen = {**chosen, **entries(self.account.new_one_time_keys(room))}
                while chosen and not fits({**base, "one_time_keys": chosen}):
                    chosen.pop(max(chosen))
        content = {**base, "one_time_keys": dict(sorted(chosen.items()))}
        return sign_event(
            self.identity.secret,
            kind=KIND_DEVICE_BUNDLE,
            tags=[["d", self.certificate.device_id]],
            content=orjson.dumps(content).decode(),
            created_at=now,
            rng=rng,
        )

    def to_record(self, storage_key: bytes, rng: Rng) -> bytes:
        """The device's state sealed for disk (the identity itself lives in the keystore)."""
        pickle_key = derive_key(storage_key, "xchat/olm-pickle/v1")
        record = {
            "v": _DEVICE_RECORD_VERSION,
            "account": self.account.pickle(pickle_key),
            "cert": self.certificate.to_json(),
        }
        sealer = RecordKey(derive_key(storage_key, "xchat/record/device/v1"))
        return sealer.seal(orjson.dumps(record), b"xchat/device", rng)

    @classmethod
    def from_record(cls, identity: Identity, data: bytes, storage_key: bytes) -> LocalDevice:
        """Open a sealed device record; DecryptionError if the key is wrong.

        The record's ``v`` picks its loader (:data:`_DEVICE_LOADERS`); a version this
        code does not know raises DecodeError ("the device record has an unknown
        version ...").
        """
        sealer = RecordKey(derive_key(storage_key, "xchat/record/device/v1"))
        record = orjson.loads(sealer.open(data, b"xchat/device"))
        if not isinstance(record, dict):
            raise DecodeError("the device record is not a JSON object")
        version = record.get("v")
        load = _DEVICE_LOADERS.get(version) if type(version) is int else None
        if load is None:
            raise DecodeError(
                f"the device record has an unknown version ({version!r}; this X Chat reads"
                f" {', '.join(map(str, _DEVICE_LOADERS))}): upgrade X Chat to open it"
            )
        return load(identity, record, storage_key)

    def __repr__(self) -> str:
        return f"LocalDevice({self.identity.npub}, device={self.certificate.device_id})"


def _load_device_v1(identity: Identity, record: dict[str, Any], storage_key: bytes) -> LocalDevice:
    """Version 1: ``{"v": 1, "account": <Olm account pickle>, "cert": <certificate>}``."""
    account = OlmAccount.from_pickle(
        record["account"], derive_key(storage_key, "xchat/olm-pickle/v1")
    )
    return LocalDevice(identity, account, DeviceCertificate.from_json(record["cert"]))


#: Device record version -> loader; old versions keep their loader (tests/fixtures/home-v1).
_DEVICE_LOADERS: Final[dict[int, Callable[[Identity, dict[str, Any], bytes], LocalDevice]]] = {
    1: _load_device_v1,
}
