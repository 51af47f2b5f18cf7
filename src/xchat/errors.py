"""Every error X Chat raises on purpose.

Callers catch these, never bare ``ValueError`` or library exceptions: code that reads
input from a peer, a relay or a user translates whatever went wrong into one of them.
Messages never contain plaintext, secret keys, recovery words or contacts' keys.

The tree follows h11's split between "we misused the API" and "the other side sent
something bad", with a few leaves where callers react differently::

    XChatError
    ├── LocalProtocolError          our caller misused an API (wrong state, bad argument)
    │   └── InvalidInput            a person's input is not what was expected; the
    │                               message says what was expected
    ├── RemoteProtocolError         a peer or relay sent something we cannot accept
    │   ├── DecodeError             malformed: not JSON, wrong types, bad length or
    │   │                           checksum, over a size limit, unknown version
    │   ├── InvalidSignature        well-formed, but an id, signature or device
    │   │                           certificate does not verify
    │   └── DecryptionError         authentication or decryption failed (NIP-44 MAC,
    │       │                       Olm), or the message is not for any key we hold
    │       └── ReplayError         already processed: a duplicate or replay
    └── KeystoreError               the local keystore cannot be created or opened
        ├── WrongPassphrase         the passphrase does not open the keystore
        └── KeystoreCorrupt         the file is damaged, truncated or of an unknown format

A remote error leaves every piece of local state as it was: sessions, mailboxes and
stores are only updated after a message has been authenticated.
"""

from __future__ import annotations

__all__ = [
    "DecodeError",
    "DecryptionError",
    "InvalidInput",
    "InvalidSignature",
    "KeystoreCorrupt",
    "KeystoreError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "ReplayError",
    "WrongPassphrase",
    "XChatError",
]


class XChatError(Exception):
    """Root of every error X Chat raises on purpose."""


class LocalProtocolError(XChatError):
    """Our caller used an API wrongly: a bad argument or an operation in the wrong state."""


class InvalidInput(LocalProtocolError):
    """A person typed or passed something that is not what was expected.

    The message is a sentence for that person: what was wrong and what was expected.
    """


class RemoteProtocolError(XChatError):
    """A peer or a relay sent something we cannot accept."""


class DecodeError(RemoteProtocolError):
    """Input does not parse or validate: bad JSON, types, lengths, checksums, versions."""


class InvalidSignature(RemoteProtocolError):
    """An event id, a BIP-340 signature or a device certificate does not verify."""


class DecryptionError(RemoteProtocolError):
    """A ciphertext does not authenticate, or is addressed to no key or session we hold."""


class ReplayError(DecryptionError):
    """The message was processed before: a duplicate delivery or a replay."""


class KeystoreError(XChatError):
    """The local keystore cannot be created or opened."""


class WrongPassphrase(KeystoreError):
    """The passphrase given does not open the keystore."""


class KeystoreCorrupt(KeystoreError):
    """The keystore file is damaged, truncated, or in a format this version cannot read."""
