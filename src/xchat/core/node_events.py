"""What the node's rules tell the world: typed events, one class per kind of change.

The core's rules return these (never JSON, never strings with a meaning); the node
forwards them to its subscribers and ``xchat.node.api.views`` turns each into the local
API's JSON (docs/api.md, "Stream"). Events name what changed, with the new value, so a
subscriber never has to ask the store again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from xchat.model import Contact, Message, MessageState

__all__ = [
    "ContactChanged",
    "DeviceAdded",
    "ForwardSecrecyUpgraded",
    "MessageChanged",
    "NodeEvent",
    "ReadMarked",
    "RelayChanged",
    "RelayWarning",
    "StateChanged",
]


@dataclass(frozen=True, slots=True)
class MessageChanged:
    """A message was stored or changed (edited, deleted, reacted to)."""

    message: Message


@dataclass(frozen=True, slots=True)
class StateChanged:
    """An outgoing message moved to ``state``."""

    message_id: str
    state: MessageState
    detail: str


@dataclass(frozen=True, slots=True)
class ContactChanged:
    contact: Contact


@dataclass(frozen=True, slots=True)
class ForwardSecrecyUpgraded:
    """A NIP-17 contact sent an X Chat (forward-secret) message: from now on theirs is."""

    contact: Contact


@dataclass(frozen=True, slots=True)
class DeviceAdded:
    """A contact has a device we did not know (they may have a new computer)."""

    pubkey: str
    device_id: str


@dataclass(frozen=True, slots=True)
class ReadMarked:
    """Incoming messages of a conversation were marked read."""

    conversation: str
    ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RelayChanged:
    """A relay's health changed (its JSON view: ``RelayHealth.to_json()``)."""

    relay: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RelayWarning:
    """A relay refused or limits something the user should know about."""

    relay: str
    warning: str


NodeEvent = (
    MessageChanged
    | StateChanged
    | ContactChanged
    | ForwardSecrecyUpgraded
    | DeviceAdded
    | ReadMarked
    | RelayChanged
    | RelayWarning
)
