"""Signing and verifying Nostr events: the wire format joined with BIP-340 keys.

Spec: https://github.com/nostr-protocol/nips/blob/master/01.md#events-and-signatures
"""

from __future__ import annotations

from xchat.crypto.keys import PublicKey, Rng, SecretKey
from xchat.errors import DecodeError, InvalidSignature, LocalProtocolError
from xchat.wire.event import Event, check_fields, compute_id

__all__ = ["sign_event", "verify_event"]


def sign_event(
    secret: SecretKey,
    *,
    kind: int,
    tags: list[list[str]],
    content: str,
    created_at: int,
    rng: Rng,
    one_time: bool = False,
) -> Event:
    """Build and sign an event; ``one_time`` keys skip the sign-then-verify fault check.

    Draws 32 bytes of BIP-340 auxiliary randomness from ``rng``.
    """
    pubkey = secret.public_key.hex
    try:
        check_fields(pubkey, created_at, kind, tags, content)
        digest = compute_id(pubkey, created_at, kind, tags, content)
    except DecodeError as exc:
        raise LocalProtocolError(str(exc)) from None
    sig = secret.sign(digest, rng(32), check=not one_time)
    return Event(digest.hex(), pubkey, created_at, kind, tags, content, sig.hex())


def verify_event(event: Event, author: PublicKey | None = None) -> None:
    """Raise :class:`InvalidSignature` unless the event's signature is valid.

    ``event`` came from :func:`xchat.wire.event.parse_event`, which already checked the id.
    ``author`` may pass the already-built key of ``event.pubkey`` so that it is parsed once.
    """
    key = author if author is not None else PublicKey.from_hex(event.pubkey)
    if not key.verify(bytes.fromhex(event.id), bytes.fromhex(event.sig)):
        raise InvalidSignature("event signature does not verify")
