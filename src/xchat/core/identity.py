"""Identities and contact cards: keys are the account, and a card is how you share one.

An identity is a secp256k1 key derived from a BIP-39 recovery phrase along the NIP-06
path ``m/44'/1237'/0'/0/0`` (or an imported Nostr secret key). The shareable address is
the ``npub``; a contact card is an ``nprofile`` with relay hints, shown as text, as a
``nostr:`` link (NIP-21) and as a QR code.

Specs: NIP-06, NIP-19, NIP-21.
"""

from __future__ import annotations

from dataclasses import dataclass

from xchat.crypto.hd import NOSTR_PATH, derive_path
from xchat.crypto.keys import PublicKey, Rng, SecretKey
from xchat.crypto.phrase import generate_phrase, normalize_phrase, phrase_to_seed
from xchat.errors import DecodeError, InvalidInput, LocalProtocolError
from xchat.wire import nip19
from xchat.wire.relay_url import normalize_relay_url

__all__ = ["ContactCard", "Identity", "parse_public_key"]

#: Relay hints carried in a card; more only make the QR code harder to scan.
MAX_CARD_RELAYS = 5


@dataclass(frozen=True, slots=True, repr=False)
class Identity:
    """A person's key; ``phrase`` is None for an imported ``nsec``. ``repr()`` shows the npub."""

    secret: SecretKey
    phrase: str | None = None

    @classmethod
    def generate(cls, rng: Rng, words: int = 12) -> Identity:
        """A new identity from a fresh BIP-39 phrase of 12 or 24 words."""
        if words not in (12, 24):
            raise InvalidInput("a new recovery phrase has 12 or 24 words")
        return cls.from_phrase(generate_phrase(rng, words))

    @classmethod
    def from_phrase(cls, text: str) -> Identity:
        """Restore from a typed phrase; InvalidInput names a bad word or a failed checksum."""
        phrase = normalize_phrase(text)
        return cls(derive_path(phrase_to_seed(phrase), NOSTR_PATH), phrase)

    @classmethod
    def from_nsec(cls, text: str) -> Identity:
        """Import an existing Nostr key (``nsec1…`` or 64 hex digits)."""
        text = text.strip()
        try:
            raw = bytes.fromhex(text) if len(text) == 64 else nip19.nsec_decode(text)
        except (ValueError, DecodeError):
            raise InvalidInput("expected a secret key as nsec1… or 64 hex digits") from None
        try:
            return cls(SecretKey(raw))
        except LocalProtocolError:
            raise InvalidInput("that secret key is out of range for secp256k1") from None

    @property
    def public_key(self) -> PublicKey:
        return self.secret.public_key

    @property
    def npub(self) -> str:
        return nip19.npub_encode(self.public_key.raw)

    def nsec(self) -> str:
        """The secret key as ``nsec1…``: for an explicit export by the user only."""
        return nip19.nsec_encode(self.secret.to_bytes())

    def card(self, relays: tuple[str, ...] = ()) -> ContactCard:
        return ContactCard.create(self.public_key, relays)

    def __repr__(self) -> str:
        return f"Identity({self.npub})"


def parse_public_key(raw: bytes) -> PublicKey:
    """A public key from 32 bytes, checked to be on the curve (DecodeError otherwise)."""
    key = PublicKey(raw)
    if not key.is_valid():
        raise DecodeError("that key is not a point on secp256k1")
    return key


@dataclass(frozen=True, slots=True)
class ContactCard:
    """Someone's public key and the relays where they read their mail."""

    public_key: PublicKey
    relays: tuple[str, ...] = ()

    @classmethod
    def create(cls, public_key: PublicKey, relays: tuple[str, ...] = ()) -> ContactCard:
        normalized: list[str] = []
        for url in relays:
            relay = normalize_relay_url(url)
            if relay not in normalized:
                normalized.append(relay)
        return cls(public_key, tuple(normalized[:MAX_CARD_RELAYS]))

    @classmethod
    def parse(cls, text: str) -> ContactCard:
        """Read an address a person pasted: ``npub1…``, ``nprofile1…``, with or without
        ``nostr:``, or 64 hex digits. Relay hints that are not ws(s) URLs are dropped.

        Raises InvalidInput with what was expected.
        """
        if not isinstance(text, str):
            raise InvalidInput("expected a contact address (npub1…, nprofile1… or nostr:…)")
        text = text.strip()
        try:
            if len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text):
                return cls(parse_public_key(bytes.fromhex(text)))
            kind, value = nip19.decode(text)
        except DecodeError as exc:
            raise InvalidInput(f"that is not a contact address: {exc}") from None
        raw: bytes
        hints: tuple[str, ...]
        if kind == "npub" and isinstance(value, bytes):
            raw, hints = value, ()
        elif kind == "nprofile" and isinstance(value, nip19.Profile):
            raw, hints = value.pubkey, value.relays
        else:
            raise InvalidInput(f"expected an npub1… or nprofile1… address, got {kind}1…")
        try:
            key = parse_public_key(raw)
        except DecodeError as exc:
            raise InvalidInput(f"that is not a contact address: {exc}") from None
        relays = []
        for url in hints:
            try:
                relays.append(normalize_relay_url(url))
            except InvalidInput:
                continue
        return cls.create(key, tuple(relays))

    @property
    def npub(self) -> str:
        return nip19.npub_encode(self.public_key.raw)

    @property
    def nprofile(self) -> str:
        return nip19.nprofile_encode(self.public_key.raw, self.relays)

    @property
    def uri(self) -> str:
        """The ``nostr:nprofile1…`` link (NIP-21), also the QR code's content."""
        return f"nostr:{self.nprofile}"
