"""Mailboxes: rotating recipient keys so that relays cannot link a conversation over time.

Theory of operation. Each side of a session picks a random 32-byte *receive seed* and
sends it to the other inside the Olm channel (the ``mbx`` field of a frame). Mail for
that side is then addressed to ``mailbox_key(seed, epoch)`` where ``epoch`` is the
sender's clock divided into days, so the recipient key a relay sees changes every day
and per conversation, and is unlinkable to the identity without the seed. Until a
sender has learned the peer's seed (the very first messages of a conversation) it
addresses the peer's identity key: the only time a relay sees an identity as recipient.

Seeds rotate: after :data:`SEED_LIFETIME` a side draws a new seed and announces it
until the peer has used it; the old seed keeps receiving for :data:`RETIRED_GRACE`
(longer than relays keep gift wraps) and is then forgotten.

State per seed::

    current --(rotate)--> retired --(RETIRED_GRACE elapsed)--> dropped

Spec: docs/protocol.md ("Mailbox keys").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from xchat.crypto.kdf import mailbox_key
from xchat.crypto.keys import SecretKey

__all__ = [
    "EPOCH_SECONDS",
    "LIVE_LOOKBACK",
    "RETIRED_GRACE",
    "SEED_LIFETIME",
    "MailboxSeed",
    "epoch_of",
    "epoch_window",
    "mailbox_key",
]

EPOCH_SECONDS: Final = 24 * 3600
#: Epochs behind the current one that a live node reads (clock skew, late delivery).
LIVE_LOOKBACK: Final = 2
SEED_LIFETIME: Final = 30 * EPOCH_SECONDS
RETIRED_GRACE: Final = 35 * EPOCH_SECONDS


def epoch_of(now: int) -> int:
    return max(0, now) // EPOCH_SECONDS


def epoch_window(now: int, lookback: int = LIVE_LOOKBACK) -> range:
    """Epochs a reader must watch: ``lookback`` days back to one day ahead (clock skew)."""
    current = epoch_of(now)
    return range(max(0, current - lookback), current + 2)


@dataclass(slots=True)
class MailboxSeed:
    """A receive seed with its life cycle; ``retired_at`` is None while current."""

    seed: bytes
    created_at: int
    retired_at: int | None = None

    def alive(self, now: int) -> bool:
        return self.retired_at is None or now - self.retired_at < RETIRED_GRACE

    def key(self, epoch: int) -> SecretKey:
        return mailbox_key(self.seed, epoch)

    def __repr__(self) -> str:
        return f"MailboxSeed(created_at={self.created_at}, retired_at={self.retired_at})"
