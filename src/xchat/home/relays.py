"""The relays a new identity starts with: the documented default set, and the choice
made at setup until the node has saved it.

:data:`DEFAULT_RELAYS` are well-known public Nostr relays, offered at onboarding
(``xchat init`` and X Chat Web's setup), which the person may accept, edit or decline
(declined: only the relay on this computer). Each was chosen because its operator
documents that it serves NIP-17 gift wraps (kind 1059) and speaks NIP-42 AUTH, which
the node needs to read them; docs/cli.md says which relay accepts what, and why.
``XCHAT_DEFAULT_RELAYS`` (comma-separated URLs; empty: none) replaces the set, so
that tests point it at local relays and nothing in the test suite reaches the internet.

``xchat init`` has no node database to write into yet (it is opened by the node), so it
leaves the chosen relays in ``<home>/setup-relays.json`` (``{"v": 1, "relays": [...]}``,
owner-only); the node adds them to its saved inbox relays at its next start, exactly as
``xchat up --relay`` does, and then removes the file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Final

import orjson

from xchat.errors import InvalidInput, KeystoreCorrupt
from xchat.home import Home, write_private
from xchat.wire.relay_url import normalize_relay_url

__all__ = [
    "DEFAULT_RELAYS",
    "DEFAULT_RELAYS_ABOUT",
    "SETUP_RELAYS_FILE",
    "default_relays",
    "parse_relay_list",
    "read_setup_relays",
    "remove_setup_relays",
    "write_setup_relays",
]

#: Public relays that accept kind 1059 gift wraps for their recipients and NIP-42 AUTH
#: (see docs/cli.md, "Default relays", for the source of each claim).
DEFAULT_RELAYS: Final[tuple[str, ...]] = (
    "wss://relay.damus.io",
    "wss://nos.lol",
    "wss://relay.primal.net",
    "wss://auth.nostr1.com",
)

DEFAULT_RELAYS_ABOUT: Final = (
    "Public Nostr relays run by others. They carry your encrypted messages (gift wraps "
    "they cannot read) so that people on other computers can reach you; they see when "
    "you are online and how much you receive, never what is said or to whom."
)

SETUP_RELAYS_FILE: Final = "setup-relays.json"
_SETUP_RELAYS_VERSION: Final = 1


def parse_relay_list(text: str) -> tuple[str, ...]:
    """Comma-separated relay URLs (blanks ignored), normalised; InvalidInput if one is bad."""
    urls = [part.strip() for part in text.split(",")]
    return tuple(dict.fromkeys(normalize_relay_url(url) for url in urls if url))


def default_relays() -> tuple[str, ...]:
    """:data:`DEFAULT_RELAYS`, or ``XCHAT_DEFAULT_RELAYS`` when it is set (even empty)."""
    text = os.environ.get("XCHAT_DEFAULT_RELAYS")
    if text is None:
        return DEFAULT_RELAYS
    try:
        return parse_relay_list(text)
    except InvalidInput as exc:
        raise InvalidInput(f"XCHAT_DEFAULT_RELAYS: {exc}") from None


def write_setup_relays(home: Home, relays: Sequence[str]) -> None:
    """Leave the relays chosen at setup for the node's next start (nothing if none)."""
    if not relays:
        remove_setup_relays(home)
        return
    data = {"v": _SETUP_RELAYS_VERSION, "relays": [normalize_relay_url(r) for r in relays]}
    write_private(home.path / SETUP_RELAYS_FILE, orjson.dumps(data))


def read_setup_relays(home: Home) -> tuple[str, ...]:
    """The relays chosen at setup and not yet saved by the node (usually none)."""
    path = home.path / SETUP_RELAYS_FILE
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return ()
    except orjson.JSONDecodeError:
        raise KeystoreCorrupt(f"{path} is damaged; remove it and add relays again") from None
    if not isinstance(data, dict) or data.get("v") != _SETUP_RELAYS_VERSION:
        raise KeystoreCorrupt(f"{path} has an unknown format; remove it and add relays again")
    relays = data.get("relays")
    if not isinstance(relays, list) or not all(isinstance(r, str) for r in relays):
        raise KeystoreCorrupt(f"{path} has an unknown format; remove it and add relays again")
    return tuple(normalize_relay_url(r) for r in relays)


def remove_setup_relays(home: Home) -> None:
    (home.path / SETUP_RELAYS_FILE).unlink(missing_ok=True)
