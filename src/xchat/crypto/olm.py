"""Olm accounts and sessions from vodozemac, behind a small typed surface.

vodozemac (Matrix's audited Rust implementation of the Olm double ratchet) does all
the cryptography. This module translates its exceptions into X Chat's error tree,
exchanges keys as unpadded base64 strings (vodozemac's own encoding) and keeps its
objects out of ``xchat.core``. A failed decryption leaves a vodozemac session exactly
as it was: vodozemac derives new chain keys on a copy and commits them only after the
message authenticates.

Randomness: vodozemac draws key material from the operating system's RNG itself; it
takes no RNG argument, so Olm is the one place our sans-I/O core cannot be replayed
from a seed. Test vectors therefore treat Olm ciphertexts as opaque inputs.

Spec: https://gitlab.matrix.org/matrix-org/olm/-/blob/master/docs/olm.md
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import vodozemac

from xchat.errors import DecodeError, DecryptionError, LocalProtocolError

__all__ = [
    "MESSAGE_NORMAL",
    "MESSAGE_PRE_KEY",
    "OlmAccount",
    "OlmMessage",
    "OlmSession",
    "verify_ed25519",
]

MESSAGE_PRE_KEY: Final = 0
MESSAGE_NORMAL: Final = 1
#: Largest Olm message we accept (a NIP-44 plaintext is at most 65535 bytes anyway).
MAX_MESSAGE_BYTES: Final = 65535


@dataclass(frozen=True, slots=True)
class OlmMessage:
    """An Olm message: type 0 (pre-key, opens a session) or 1 (normal), and its bytes."""

    type: int
    body: bytes

    def __post_init__(self) -> None:
        if self.type not in (MESSAGE_PRE_KEY, MESSAGE_NORMAL):
            raise DecodeError("an Olm message has type 0 or 1")
        if not self.body or len(self.body) > MAX_MESSAGE_BYTES:
            raise DecodeError("an Olm message body is 1 to 65535 bytes")

    def chain_position(self) -> tuple[bytes, int] | None:
        """The ratchet key and chain index in the message's clear header, or None.

        Only for putting messages of one chain in order before decrypting them
        (vodozemac keeps a bounded number of skipped message keys, so a long chain
        received backwards would lose its oldest messages). Never used for trust: the
        values are unauthenticated until decryption succeeds.

        Format (libolm/vodozemac, version 3): a version byte, then protobuf fields;
        a normal message has field 1 = ratchet key (bytes) and field 2 = chain index
        (varint); a pre-key message carries the normal message as field 4.
        """
        body = self.body
        if self.type == MESSAGE_PRE_KEY:
            fields = _protobuf_fields(body)
            inner = fields.get(4) if fields is not None else None
            if not isinstance(inner, bytes):
                return None
            body = inner
        fields = _protobuf_fields(body, mac_bytes=8)
        if fields is None:
            return None
        ratchet, index = fields.get(1), fields.get(2)
        if not isinstance(ratchet, bytes) or not isinstance(index, int):
            return None
        return ratchet, index

    def _native(self) -> vodozemac.AnyOlmMessage:
        try:
            return vodozemac.AnyOlmMessage.from_parts(self.type, self.body)
        except (vodozemac.DecodeException, ValueError):
            raise DecodeError("the Olm message does not decode") from None


def _varint(data: bytes, pos: int) -> tuple[int, int] | None:
    value, shift = 0, 0
    while pos < len(data) and shift <= 63:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    return None


def _protobuf_fields(data: bytes, mac_bytes: int = 0) -> dict[int, bytes | int] | None:
    """Fields of an Olm message after its version byte (None if it does not parse)."""
    if len(data) < 1 + mac_bytes or data[0] != 3:
        return None
    end = len(data) - mac_bytes
    pos = 1
    fields: dict[int, bytes | int] = {}
    while pos < end:
        tag = _varint(data, pos)
        if tag is None:
            return None
        key, pos = tag
        number, wire = key >> 3, key & 7
        value = _varint(data, pos)
        if value is None:
            return None
        if wire == 0:
            fields[number], pos = value
        elif wire == 2:
            length, pos = value
            if pos + length > end:
                return None
            fields[number], pos = data[pos : pos + length], pos + length
        else:
            return None
    return fields


def _check_unpadded(b64: object, what: str) -> None:
    # vodozemac also accepts "=" padding; refusing it keeps one text form per key.
    if not isinstance(b64, str) or len(b64) != 43 or "=" in b64:
        raise DecodeError(f"not {what} public key in unpadded base64")


def _curve_key(b64: str) -> vodozemac.Curve25519PublicKey:
    _check_unpadded(b64, "a Curve25519")
    try:
        return vodozemac.Curve25519PublicKey.from_base64(b64)
    except (vodozemac.KeyException, ValueError, TypeError):
        raise DecodeError("not a Curve25519 public key in unpadded base64") from None


def verify_ed25519(public_key: str, message: bytes, signature: str) -> bool:
    """Check an Ed25519 signature (keys and signatures in unpadded base64)."""
    try:
        key = vodozemac.Ed25519PublicKey.from_base64(public_key)
        sig = vodozemac.Ed25519Signature.from_base64(signature)
        key.verify_signature(message, sig)
    except (vodozemac.KeyException, vodozemac.SignatureException, ValueError, TypeError):
        return False
    return True


def check_curve25519(public_key: str) -> None:
    """Raise DecodeError unless ``public_key`` is a Curve25519 key in unpadded base64."""
    _curve_key(public_key)


def check_ed25519(public_key: str) -> None:
    """Raise DecodeError unless ``public_key`` is an Ed25519 key in unpadded base64."""
    _check_unpadded(public_key, "an Ed25519")
    try:
        vodozemac.Ed25519PublicKey.from_base64(public_key)
    except (vodozemac.KeyException, ValueError, TypeError):
        raise DecodeError("not an Ed25519 public key in unpadded base64") from None


class OlmSession:
    """One end of an Olm double ratchet with one peer device. ``repr()`` shows only its id."""

    __slots__ = ("_session",)

    def __init__(self, session: vodozemac.Session) -> None:
        self._session = session

    @property
    def session_id(self) -> str:
        return self._session.session_id

    def encrypt(self, plaintext: bytes) -> OlmMessage:
        message_type, body = self._session.encrypt(plaintext).to_parts()
        return OlmMessage(message_type, body)

    def decrypt(self, message: OlmMessage) -> bytes:
        """The plaintext; DecryptionError (state unchanged) if it does not authenticate."""
        try:
            return self._session.decrypt(message._native())
        except vodozemac.DecodeException:
            raise DecodeError("the Olm message does not decode") from None
        except (vodozemac.OlmDecryptionException, ValueError):
            raise DecryptionError("the Olm message does not decrypt in this session") from None

    def matches(self, message: OlmMessage) -> bool:
        """True if ``message`` is a pre-key message that created this very session."""
        if message.type != MESSAGE_PRE_KEY:
            return False
        pre_key = message._native().to_pre_key()
        return pre_key is not None and self._session.session_matches(pre_key)

    def pickle(self, key: bytes) -> str:
        """vodozemac's encrypted pickle of the session under a 32-byte key."""
        return self._session.pickle(key)

    @classmethod
    def from_pickle(cls, pickle: str, key: bytes) -> OlmSession:
        try:
            return cls(vodozemac.Session.from_pickle(pickle, key))
        except (vodozemac.PickleException, ValueError, TypeError):
            raise DecryptionError("the stored Olm session does not open under this key") from None

    def __repr__(self) -> str:
        return f"OlmSession(id={self.session_id})"


class OlmAccount:
    """A device's long-term Olm keys, one-time keys and fallback key.

    ``repr()`` shows only the public identity keys.
    """

    __slots__ = ("_account",)

    def __init__(self, account: vodozemac.Account | None = None) -> None:
        self._account = account if account is not None else vodozemac.Account()

    @property
    def curve25519(self) -> str:
        return self._account.curve25519_key.to_base64()

    @property
    def ed25519(self) -> str:
        return self._account.ed25519_key.to_base64()

    @property
    def max_one_time_keys(self) -> int:
        return self._account.max_number_of_one_time_keys

    def sign(self, message: bytes) -> str:
        """Ed25519 signature by the device key, unpadded base64."""
        return self._account.sign(message).to_base64()

    def new_one_time_keys(self, count: int) -> dict[str, str]:
        """Generate ``count`` one-time keys and return them (id -> key) for publishing."""
        if not 0 < count <= self.max_one_time_keys:
            raise LocalProtocolError("one-time key count out of range")
        self._account.generate_one_time_keys(count)
        keys = {key_id: key.to_base64() for key_id, key in self._account.one_time_keys.items()}
        self._account.mark_keys_as_published()
        return keys

    def new_fallback_key(self) -> tuple[str, str]:
        """Generate a fallback key (used when one-time keys run out) and return (id, key)."""
        # Both exist at run time but are missing from vodozemac 0.10's type stubs.
        self._account.generate_fallback_key()  # type: ignore[attr-defined]
        fallback: dict[str, vodozemac.Curve25519PublicKey] = self._account.fallback_key  # type: ignore[attr-defined]
        key_id, key = next(iter(fallback.items()))
        self._account.mark_keys_as_published()
        return key_id, key.to_base64()

    def outbound(self, identity_key: str, one_time_key: str) -> OlmSession:
        """Start a session to a peer device from its Curve25519 identity and one-time key."""
        try:
            session = self._account.create_outbound_session(
                _curve_key(identity_key), _curve_key(one_time_key)
            )
        except vodozemac.SessionCreationException:
            # e.g. an all-zero key: the Diffie-Hellman exchange would not be contributory
            raise DecodeError("the peer's device keys cannot start a session") from None
        return OlmSession(session)

    def inbound(self, sender_key: str, message: OlmMessage) -> tuple[OlmSession, bytes]:
        """Accept a pre-key message: the new session and the first plaintext.

        Consumes the one-time key it used, so the same pre-key message cannot open a
        second session (unless it used the fallback key: callers keep session ids).
        """
        if message.type != MESSAGE_PRE_KEY:
            raise DecryptionError("a session can only be opened by a pre-key message")
        pre_key = message._native().to_pre_key()
        if pre_key is None:  # pragma: no cover - type 0 always converts
            raise DecodeError("not a pre-key message")
        try:
            session, plaintext = self._account.create_inbound_session(
                _curve_key(sender_key), pre_key
            )
        except vodozemac.SessionCreationException:
            raise DecryptionError(
                "the pre-key message does not open a session (unknown or used one-time key)"
            ) from None
        except (vodozemac.DecodeException, ValueError):
            raise DecodeError("the pre-key message does not decode") from None
        return OlmSession(session), plaintext

    @staticmethod
    def pre_key_session_id(message: OlmMessage) -> str:
        """The id of the session a pre-key message opens (for replay checks)."""
        pre_key = message._native().to_pre_key()
        if pre_key is None:
            raise DecodeError("not a pre-key message")
        return pre_key.session_id()

    def pickle(self, key: bytes) -> str:
        return self._account.pickle(key)

    @classmethod
    def from_pickle(cls, pickle: str, key: bytes) -> OlmAccount:
        try:
            return cls(vodozemac.Account.from_pickle(pickle, key))
        except (vodozemac.PickleException, ValueError, TypeError):
            raise DecryptionError("the stored Olm account does not open under this key") from None

    def __repr__(self) -> str:
        return f"OlmAccount(curve25519={self.curve25519}, ed25519={self.ed25519})"
