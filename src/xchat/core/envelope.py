"""Gift wraps (NIP-59 kind 1059): the only thing a relay ever sees of a message.

The outer event is signed by a key used once, dated up to two days in the past, tagged
with one recipient key (an identity key for a first contact, a rotating mailbox key
after that) and its content is NIP-44 ciphertext of a plaintext padded with trailing
spaces (valid JSON whitespace) to one of a few bucket sizes. A relay learns the bucket,
the recipient key and the time it received the event, nothing else.

Randomness is drawn from ``rng`` in a fixed order, so a seeded rng reproduces an
envelope byte for byte (tests/vectors/envelope.json): the one-time key (32 bytes,
redrawn while not a valid scalar), the NIP-44 nonce (32), the time offset (4, big
endian, modulo 172801 seconds), the BIP-340 auxiliary randomness (32).

Spec: NIP-59, NIP-44; docs/protocol.md ("Envelopes").
"""

from __future__ import annotations

from typing import Final

from xchat.core.events import sign_event, verify_event
from xchat.crypto import nip44
from xchat.crypto.keys import PublicKey, Rng, SecretKey
from xchat.errors import DecodeError, DecryptionError, LocalProtocolError
from xchat.wire.event import Event
from xchat.wire.kinds import KIND_GIFT_WRAP

__all__ = [
    "BUCKETS",
    "KIND_GIFT_WRAP",
    "MAX_TIME_SPREAD",
    "gift_wrap",
    "pad_to_bucket",
    "random_past_time",
    "recipient_of",
    "unwrap",
]

#: Plaintext sizes after padding: few, so that sizes say little. Every size but the
#: last (NIP-44's maximum) is a power of two, which NIP-44 pads to itself. A text
#: message of up to about 800 characters, with certificate and Olm header, fits 2048.
BUCKETS: Final = (2048, 8192, 32768, 65535)
#: created_at is drawn uniformly from [now - MAX_TIME_SPREAD, now].
MAX_TIME_SPREAD: Final = 2 * 24 * 3600


def pad_to_bucket(plaintext: bytes) -> bytes:
    """``plaintext`` followed by spaces up to the smallest bucket that holds it."""
    for size in BUCKETS:
        if len(plaintext) <= size:
            return plaintext + b" " * (size - len(plaintext))
    raise LocalProtocolError(f"an envelope holds at most {BUCKETS[-1]} bytes")


def random_past_time(now: int, rng: Rng) -> int:
    """A timestamp drawn from the two days before ``now`` (NIP-59 time obfuscation)."""
    return max(0, now - int.from_bytes(rng(4), "big") % (MAX_TIME_SPREAD + 1))


def gift_wrap(plaintext: bytes, recipient: PublicKey, now: int, rng: Rng) -> Event:
    """Pad, encrypt to ``recipient`` under a fresh one-time key, and sign as that key."""
    one_time = SecretKey.generate(rng)
    conversation_key = nip44.conversation_key(one_time, recipient)
    content = nip44.encrypt_bytes(pad_to_bucket(plaintext), conversation_key, rng(32))
    return sign_event(
        one_time,
        kind=KIND_GIFT_WRAP,
        tags=[["p", recipient.hex]],
        content=content,
        created_at=random_past_time(now, rng),
        rng=rng,
        one_time=True,
    )


def recipient_of(event: Event) -> str:
    """The hex key a gift wrap is addressed to (its single ``p`` tag)."""
    if event.kind != KIND_GIFT_WRAP:
        raise DecodeError("not a gift wrap")
    recipients = event.tag_values("p")
    if len(recipients) != 1:
        raise DecodeError("a gift wrap names exactly one recipient")
    return recipients[0]


def unwrap(event: Event, recipient: SecretKey) -> bytes:
    """Verify a gift wrap addressed to ``recipient`` and return the padded plaintext."""
    if recipient_of(event) != recipient.public_key.hex:
        raise DecryptionError("the gift wrap is addressed to another key")
    one_time = PublicKey.from_hex(event.pubkey)
    verify_event(event, one_time)
    conversation_key = nip44.conversation_key(recipient, one_time)
    return nip44.decrypt_bytes(event.content, conversation_key)
