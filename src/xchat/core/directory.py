"""The contact directory rules: what a lookup of a contact's published events means.

Sans-I/O: the node's driver queries relays for a contact's kind 10050 inbox relay
lists and kind 30443 device bundles (:func:`lookup_filters`), hands the events here,
opens sessions with the bundles it gets back, and writes the contact that
:func:`apply_lookup` updated. Nothing here trusts a relay: every event is checked.

Theory of operation:

* **Inbox relays** (:func:`inbox_relays`): of the lists (kind 10050) whose author is the
  contact and whose signature verifies, the newest (``created_at``, then id) wins; its
  ``relay`` tags are normalised (:func:`xchat.wire.relay_url.normalize_relay_url`),
  invalid ones skipped, duplicates dropped, and at most :data:`MAX_INBOX_RELAYS` kept. A
  forged list (anyone can hand a relay an event claiming the contact's key) is ignored,
  so it can neither hide the real list nor redirect their mail. No valid list: the
  contact keeps the relays known so far (their card's hints, or an earlier list).
* **Device bundles** (:func:`newest_bundles`): every bundle of the contact is verified
  (:meth:`xchat.core.device.DeviceBundle.from_event`: the event's signature, the
  certificate, each key's signature); invalid ones are ignored; per device the one
  published last is kept (on a tie, the first seen).
* **After a lookup** (:func:`apply_lookup`): the relays, when the lookup was done, and
  whether the contact is NIP-17 only: no bundle found and no device known.
* **Names and states**: :func:`check_name` (at most 64 printable characters, trimmed)
  and :func:`set_state` (accepted or blocked, along :data:`xchat.model.CONTACT_MOVES`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

import orjson

from xchat.core.device import DeviceBundle
from xchat.core.events import verify_event
from xchat.errors import InvalidInput, LocalProtocolError, RemoteProtocolError
from xchat.model import CONTACT_MOVES, Contact, ContactState, Device, may_move
from xchat.wire.event import Event
from xchat.wire.kinds import KIND_DEVICE_BUNDLE, KIND_INBOX_RELAYS
from xchat.wire.relay_url import normalize_relay_url

__all__ = [
    "MAX_INBOX_RELAYS",
    "MAX_NAME",
    "add_contact",
    "apply_lookup",
    "check_name",
    "device_of",
    "inbox_relays",
    "keep_looking",
    "lookup_filters",
    "newest_bundles",
    "set_state",
]

#: Relays of a contact's inbox relay list that are used (the first ones listed).
MAX_INBOX_RELAYS: Final = 10
#: A contact name has at most this many characters.
MAX_NAME: Final = 64
#: The states a user may give a contact (a request is only ever made by a message).
_SETTABLE: Final = (ContactState.ACCEPTED, ContactState.BLOCKED)


def lookup_filters(pubkey: str) -> list[dict[str, Any]]:
    """The relay query of a lookup: the contact's inbox relay lists and bundles."""
    return [{"kinds": [KIND_INBOX_RELAYS, KIND_DEVICE_BUNDLE], "authors": [pubkey]}]


def inbox_relays(events: Iterable[Event], pubkey: str) -> list[str]:
    """The relays of ``pubkey``'s newest validly signed inbox relay list (kind 10050);
    [] if there is none."""
    valid = []
    for event in events:
        if event.kind != KIND_INBOX_RELAYS or event.pubkey != pubkey:
            continue
        try:
            verify_event(event)
        except RemoteProtocolError:
            continue  # a forged list must not hide the real one
        valid.append(event)
    if not valid:
        return []
    newest = max(valid, key=lambda e: (e.created_at, e.id))
    listed: list[str] = []
    for value in newest.tag_values("relay"):
        try:
            url = normalize_relay_url(value)
        except InvalidInput:
            continue
        if url not in listed:
            listed.append(url)
    return listed[:MAX_INBOX_RELAYS]


def newest_bundles(events: Iterable[Event], pubkey: str) -> dict[str, DeviceBundle]:
    """``pubkey``'s valid device bundles, the newest per device id."""
    bundles: dict[str, DeviceBundle] = {}
    for event in events:
        if event.kind != KIND_DEVICE_BUNDLE or event.pubkey != pubkey:
            continue
        try:
            bundle = DeviceBundle.from_event(event)
        except RemoteProtocolError:
            continue
        known = bundles.get(bundle.certificate.device_id)
        if known is None or bundle.published_at > known.published_at:
            bundles[bundle.certificate.device_id] = bundle
    return bundles


def device_of(bundle: DeviceBundle, now: int) -> Device:
    """The device row a bundle describes (first seen ``now`` if it is new)."""
    cert = bundle.certificate
    return Device(
        cert.device_id,
        cert.identity.hex,
        cert.curve25519,
        orjson.dumps(cert.to_json()).decode(),
        now,
    )


def apply_lookup(
    contact: Contact, relays: Sequence[str], found_bundles: bool, have_devices: bool, now: int
) -> None:
    """Update ``contact`` after a lookup: ``relays`` from :func:`inbox_relays` (none:
    the known ones stay), checked ``now``, NIP-17 only if no bundle was found and no
    device of theirs is known."""
    if relays:
        contact.relays = list(relays)
    contact.bundle_checked_at = now
    contact.nip17_only = not found_bundles and not have_devices


def keep_looking(contact: Contact) -> bool:
    """Whether to go on looking for the bundles of ``contact`` (on the lookup schedule):
    an accepted contact we can reach only over NIP-17 so far."""
    return contact.nip17_only and contact.state is ContactState.ACCEPTED


def check_name(name: str) -> str:
    """A contact name, trimmed; InvalidInput if it is too long or not printable."""
    name = name.strip()
    if len(name) > MAX_NAME or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidInput(f"a contact name has at most {MAX_NAME} printable characters")
    return name


def set_state(contact: Contact, state: str) -> bool:
    """Give ``contact`` the state the user chose (accepted or blocked); True if it
    changed. InvalidInput for any other state."""
    if state not in _SETTABLE:
        raise InvalidInput("a contact's state can be set to accepted or blocked")
    target = ContactState(state)
    if target is contact.state:
        return False
    if not may_move(CONTACT_MOVES, contact.state, target):  # pragma: no cover - table
        raise LocalProtocolError(f"a contact cannot go from {contact.state} to {target}")
    contact.state = target
    return True


def add_contact(
    existing: Contact | None,
    pubkey: str,
    name: str | None,
    relays: Sequence[str],
    me: str,
    now: int,
) -> tuple[Contact, bool]:
    """The contact the user adds from an address (``pubkey`` and its relay hints), and
    whether they were an accepted contact already. Already accepted: nothing changes
    but the new hints (renaming is :func:`check_name` and an update, not an add). A
    message request or a blocked contact is accepted, and named if ``name`` is given."""
    if pubkey == me:
        raise InvalidInput("that is your own address")
    if name is not None:
        name = check_name(name)
    if existing is None:
        return Contact(pubkey, name, ContactState.ACCEPTED, list(relays), now), False
    contact = existing
    for url in relays:
        if url not in contact.relays:
            contact.relays.append(url)
    if contact.state is ContactState.ACCEPTED:
        return contact, True
    set_state(contact, ContactState.ACCEPTED)
    if name is not None:
        contact.name = name
    return contact, False
