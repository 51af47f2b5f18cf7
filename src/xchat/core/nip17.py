"""NIP-17 private messages, for conversations with people on other Nostr clients.

These are not forward-secret: a rumor (unsigned event) is sealed (kind 13, signed by
the sender, NIP-44 to the recipient's identity key) and gift-wrapped. Anyone who later
obtains the recipient's identity key can read them. X Chat produces and reads them for
interoperability and marks them as such; X Chat-to-X Chat traffic uses Olm sessions.

Mapping to application messages: kind 14 is a text, or a reply when it has an ``e``
tag; kind 7 is a reaction; kind 5 deletes the message its ``e`` tag names. Edits and
receipts have no NIP-17 form and are refused when sending. A kind 15 (a file message
of another client) becomes a :class:`FileNotice`: a text that says a file came, which
X Chat cannot show yet. A rumor for several people (a group message: more than one
``p`` tag besides its author) is refused with :class:`GroupMessage`: groups are not
supported yet, and it must never be filed into a one-to-one conversation.

Spec: NIP-17, NIP-59, NIP-44, NIP-25, NIP-09.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

import orjson

from xchat.core.envelope import gift_wrap, random_past_time
from xchat.core.events import sign_event, verify_event
from xchat.core.identity import Identity
from xchat.core.message import AppMessage, Delete, Reaction, Reply, Text
from xchat.crypto import nip44
from xchat.crypto.keys import PublicKey, Rng, SecretKey
from xchat.errors import DecodeError, InvalidSignature, LocalProtocolError
from xchat.wire.event import Event, Rumor, parse_event, parse_rumor
from xchat.wire.kinds import KIND_CHAT, KIND_DELETION, KIND_FILE, KIND_REACTION, KIND_SEAL

__all__ = [
    "FILE_NOTE",
    "KIND_CHAT",
    "KIND_DELETION",
    "KIND_FILE",
    "KIND_REACTION",
    "KIND_SEAL",
    "FileNotice",
    "GroupMessage",
    "check_recipients",
    "make_rumor",
    "message_from_rumor",
    "open_seal",
    "wrap_rumor",
]

#: What X Chat says of a file message from another app.
FILE_NOTE: Final = "files from other apps are not supported yet"


class GroupMessage(DecodeError):
    """A NIP-17 rumor addressed to several people: groups are not supported yet."""


@dataclass(frozen=True, slots=True)
class FileNotice(Text):
    """A NIP-17 file message (kind 15) from another client, shown as a text saying so
    (its ``body`` names the file's type). Received only: never sent, never in a frame."""

    type: ClassVar[str] = "file"


def check_recipients(rumor: Rumor, me: str) -> str:
    """The one other party of a one-to-one rumor: its single recipient if ``me`` wrote
    it (a copy of our own message), else its author, who must have addressed it to
    ``me``. GroupMessage for a rumor to several people, DecodeError for one to nobody
    or to someone else."""
    others = set(rumor.tag_values("p")) - {rumor.pubkey}
    if len(others) > 1:
        raise GroupMessage("NIP-17 group messages are not supported yet")
    if rumor.pubkey == me:
        if not others:
            raise DecodeError("a copy of our own message names no recipient")
        return next(iter(others))
    if others != {me}:
        raise DecodeError("the NIP-17 message is not addressed to us")
    return rumor.pubkey


def make_rumor(message: AppMessage, sender: PublicKey, recipient: PublicKey) -> Rumor:
    """The NIP-17 rumor for an application message; its id becomes the message id."""
    created_at = message.sent_at // 1000
    p_tag = ["p", recipient.hex]
    if isinstance(message, Text):
        return Rumor.create(sender.hex, created_at, KIND_CHAT, [p_tag], message.body)
    if isinstance(message, Reply):
        tags = [p_tag, ["e", message.reply_to, "", "reply"]]
        return Rumor.create(sender.hex, created_at, KIND_CHAT, tags, message.body)
    if isinstance(message, Reaction):
        tags = [p_tag, ["e", message.target], ["k", str(KIND_CHAT)]]
        return Rumor.create(sender.hex, created_at, KIND_REACTION, tags, message.emoji or "-")
    if isinstance(message, Delete):
        tags = [p_tag, ["e", message.target]]
        return Rumor.create(sender.hex, created_at, KIND_DELETION, tags, "")
    raise LocalProtocolError(f"{message.type} messages cannot be sent to NIP-17 contacts")


def wrap_rumor(
    sender: Identity,
    recipient: PublicKey,
    rumor: Rumor,
    now: int,
    rng: Rng,
    keys: nip44.ConversationKeyCache,
) -> Event:
    """Seal ``rumor`` as ``sender`` and gift-wrap it to ``recipient`` (or to ourselves)."""
    content = nip44.encrypt_bytes(rumor.to_json(), keys.get(sender.secret, recipient), rng(32))
    seal = sign_event(
        sender.secret,
        kind=KIND_SEAL,
        tags=[],
        content=content,
        created_at=random_past_time(now, rng),
        rng=rng,
    )
    return gift_wrap(seal.to_json(), recipient, now, rng)


def open_seal(inner: bytes, recipient: SecretKey, keys: nip44.ConversationKeyCache) -> Rumor:
    """Verify a seal from an unwrapped gift wrap and return its rumor.

    The rumor must claim the seal's signer as author (NIP-17: otherwise anyone could
    impersonate anyone). Raises DecodeError, InvalidSignature or DecryptionError.
    """
    try:
        seal = parse_event(orjson.loads(inner))
    except orjson.JSONDecodeError:
        raise DecodeError("the gift wrap does not hold a JSON seal") from None
    if seal.kind != KIND_SEAL:
        raise DecodeError("the gift wrap does not hold a seal (kind 13)")
    verify_event(seal)
    sender = PublicKey.from_hex(seal.pubkey)
    plaintext = nip44.decrypt_bytes(seal.content, keys.get(recipient, sender))
    try:
        rumor = parse_rumor(orjson.loads(plaintext))
    except orjson.JSONDecodeError:
        raise DecodeError("the seal does not hold a JSON rumor") from None
    if rumor.pubkey != seal.pubkey:
        raise InvalidSignature("the rumor names another author than the seal's signer")
    return rumor


def message_from_rumor(rumor: Rumor) -> AppMessage:
    """The application message a rumor carries (DecodeError for kinds we do not show)."""
    sent_at = rumor.created_at * 1000
    targets = rumor.tag_values("e")
    if rumor.kind == KIND_CHAT:
        if targets:
            return _peer(lambda: Reply(rumor.id, sent_at, rumor.content, targets[0]))
        return _peer(lambda: Text(rumor.id, sent_at, rumor.content))
    if rumor.kind == KIND_REACTION and targets:
        emoji = "" if rumor.content == "-" else rumor.content
        return _peer(lambda: Reaction(rumor.id, sent_at, targets[-1], emoji))
    if rumor.kind == KIND_DELETION and targets:
        return _peer(lambda: Delete(rumor.id, sent_at, targets[0]))
    if rumor.kind == KIND_FILE:
        kind = next(iter(rumor.tag_values("file-type")), "")
        kind = kind if 0 < len(kind) <= 100 and kind.isprintable() else "unknown type"
        return _peer(lambda: FileNotice(rumor.id, sent_at, f"A file ({kind}) from another app"))
    raise DecodeError(f"NIP-17 rumors of kind {rumor.kind} are not supported")


def _peer(build: object) -> AppMessage:
    """Run a constructor on peer data, reporting invalid fields as DecodeError."""
    try:
        return build()  # type: ignore[operator, no-any-return]
    except LocalProtocolError as exc:
        raise DecodeError(str(exc)) from None
