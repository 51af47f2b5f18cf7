"""Every Nostr event kind X Chat reads or writes, defined once (NIP numbers beside)."""

from __future__ import annotations

from typing import Final

__all__ = [
    "KIND_AUTH",
    "KIND_CHAT",
    "KIND_DELETION",
    "KIND_DEVICE_BUNDLE",
    "KIND_FILE",
    "KIND_FOLLOWS",
    "KIND_GIFT_WRAP",
    "KIND_INBOX_RELAYS",
    "KIND_METADATA",
    "KIND_REACTION",
    "KIND_SEAL",
]

KIND_METADATA: Final = 0  # NIP-01 user metadata (replaceable)
KIND_FOLLOWS: Final = 3  # NIP-02 follow list (replaceable)
KIND_DELETION: Final = 5  # NIP-09 deletion request (NIP-17: a deleted message)
KIND_REACTION: Final = 7  # NIP-25 reaction
KIND_SEAL: Final = 13  # NIP-59 seal
KIND_CHAT: Final = 14  # NIP-17 chat message
KIND_FILE: Final = 15  # NIP-17 file message
KIND_GIFT_WRAP: Final = 1059  # NIP-59 gift wrap
KIND_INBOX_RELAYS: Final = 10050  # NIP-17 relays to send someone's messages to
KIND_AUTH: Final = 22242  # NIP-42 authentication
KIND_DEVICE_BUNDLE: Final = 30443  # X Chat device bundle (addressable, d = device id)
