"""The default set of public relays offered at onboarding (docs/relays.md)."""

from __future__ import annotations

import os
from typing import Final

__all__ = ["DEFAULT_RELAYS", "default_relays"]

DEFAULT_RELAYS: Final = (
    "wss://relay.damus.io",
    "wss://nos.lol",
    "wss://relay.primal.net",
)


def default_relays() -> tuple[str, ...]:
    """The set offered; ``XCHAT_DEFAULT_RELAYS`` (comma-separated, may be empty)
    replaces it (tests point it at local relays)."""
    text = os.environ.get("XCHAT_DEFAULT_RELAYS")
    if text is None:
        return DEFAULT_RELAYS
    return tuple(url.strip() for url in text.split(",") if url.strip())
