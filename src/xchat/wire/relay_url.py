"""Relay addresses: ``ws://`` or ``wss://`` URLs, normalized so that equal relays compare equal."""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit, urlunsplit

from xchat.errors import InvalidInput

__all__ = ["MAX_URL_LENGTH", "normalize_relay_url"]

MAX_URL_LENGTH: Final = 255


def normalize_relay_url(url: str) -> str:
    """Lowercase scheme and host, no default port, no trailing slash, no fragment.

    Raises :class:`InvalidInput` (with what was expected) for anything that is not a
    WebSocket URL with a host.
    """
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH or not url.isascii():
        raise InvalidInput(
            "a relay address is a ws:// or wss:// URL of at most 255 ASCII characters"
        )
    text = url.strip()
    if any(c.isspace() or not c.isprintable() for c in text):
        raise InvalidInput("a relay address must not contain spaces or control characters")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise InvalidInput(f"{url!r} is not a valid relay URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("ws", "wss") or not parts.hostname:
        raise InvalidInput(f"{url!r} is not a relay address: expected ws://host or wss://host")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("a relay address must not contain a user name or password")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    default = 443 if scheme == "wss" else 80
    netloc = host if port in (None, default) else f"{host}:{port}"
    path = parts.path.rstrip("/")
    return urlunsplit((scheme, netloc, path, parts.query, ""))
