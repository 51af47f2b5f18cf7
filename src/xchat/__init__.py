"""X Chat: end-to-end encrypted messaging over untrusted Nostr relays, with keys as identities."""

__version__ = "0.1.0"
