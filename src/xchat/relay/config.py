"""Relay configuration: every limit explicit, with safe defaults, reported in NIP-11.

A config file is TOML with two optional tables, ``[relay]`` and ``[limits]``, whose keys
are the field names below; command-line flags override the file::

    [relay]
    host = "0.0.0.0"
    port = 7447
    public_url = "wss://relay.example.com"
    db = "postgresql://relay@127.0.0.1/relay"
    name = "my relay"

    [limits]
    max_subscriptions = 50
    events_per_second = 20.0
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import platformdirs

from xchat.errors import InvalidInput
from xchat.wire.relay_url import normalize_relay_url

__all__ = ["DEFAULT_PORT", "RelayConfig", "RelayLimits", "default_db_path", "load_config"]

#: The port `xchat relay` listens on unless told otherwise ("NOSTR" has no digits; 7447
#: is what several local Nostr relays use, and is free of well-known services).
DEFAULT_PORT: Final = 7447
DAY: Final = 24 * 3600


@dataclass(frozen=True, slots=True)
class RelayLimits:
    """Bounds on what one client can make the relay do. All are enforced and published."""

    #: WebSocket message size. Larger messages get an error notice; messages over four
    #: times this close the connection (1009), as WebSocket specifies.
    max_message_bytes: int = 256 * 1024
    #: Event content length in characters, as NIP-11's ``max_content_length`` counts (a
    #: gift wrap of the largest NIP-44 payload is ~87.5 Ki characters of base64).
    max_content_length: int = 128 * 1024
    max_event_tags: int = 2000
    max_subscriptions: int = 20
    max_filters: int = 10
    max_filter_values: int = 1000
    #: Largest ``limit`` honoured, and the number returned when a filter has none.
    max_limit: int = 500
    default_limit: int = 500
    max_sub_id_length: int = 64
    #: EVENT messages per second (sustained) and burst, per connection and per IP.
    events_per_second: float = 50.0
    events_burst: int = 200
    ip_events_per_second: float = 200.0
    ip_events_burst: int = 800
    #: Open connections from one IP address, counted when the TCP connection is accepted
    #: (before any byte is read), WebSocket or not.
    max_connections_per_ip: int = 200
    #: Open connections in all; kept below the open-file limit at start.
    max_connections: int = 10_000
    #: Seconds from accept for the request line and headers, and for the WebSocket to be
    #: open (or the HTTP answer sent); a connection that misses either is closed.
    header_timeout: float = 10.0
    handshake_timeout: float = 15.0
    #: Seconds of silence after which the relay pings a WebSocket client; without an
    #: answer within half of it, the connection is closed.
    idle_timeout: float = 60.0
    #: Keys one connection may authenticate as (NIP-42), and AUTH messages per second
    #: (sustained) and burst per connection.
    max_auth_keys: int = 10_000
    auth_per_second: float = 100.0
    auth_burst: int = 10_000
    #: How far in the future ``created_at`` may be (seconds); events older are fine.
    max_future_seconds: int = 15 * 60
    #: NIP-13 proof of work required of every event (leading zero bits of the id); 0 = off.
    min_pow_difficulty: int = 0
    #: Bytes queued for one client before it is considered too slow and disconnected.
    max_send_queue_bytes: int = 8 * 1024 * 1024
    #: Seconds a client may go without reading anything while the relay has data for it
    #: (the socket's buffers full) before it is disconnected.
    write_timeout: float = 30.0
    #: Stored results of a REQ: JSON loaded from the store per batch (exceeded by less
    #: than one event) and events per batch; a batch is loaded only while fewer than
    #: ``query_window_bytes`` wait to be sent to the client.
    query_batch_bytes: int = 512 * 1024
    query_batch_events: int = 100
    query_window_bytes: int = 1024 * 1024
    #: Store reads (query pages, loads, counts) running at once, for all connections;
    #: REQs served from the store at once by one connection (the others wait their turn).
    max_concurrent_queries: int = 8
    max_queries_per_connection: int = 2
    #: Events received and not yet answered (being verified or committed), for all
    #: connections, by number and by bytes of JSON (exceeded by less than one event).
    #: At either bound a connection's next EVENT waits, and its reading pauses, for up
    #: to ``ingest_wait`` seconds; then it is refused ``OK false "rate-limited: ..."``.
    max_ingest_events: int = 8192
    max_ingest_bytes: int = 16 * 1024 * 1024
    ingest_wait: float = 10.0

    def check(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value < 0 or (value == 0 and f.name != "min_pow_difficulty"):
                raise InvalidInput(f"limit {f.name} must be positive, not {value}")
        if self.default_limit > self.max_limit:
            raise InvalidInput("default_limit must not exceed max_limit")


def default_db_path() -> Path:
    return Path(platformdirs.user_data_dir("xchat", appauthor=False)) / "relay" / "relay.sqlite3"


@dataclass(frozen=True, slots=True)
class RelayConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    #: A SQLite file path, or a ``postgresql://`` URL.
    db: str = field(default_factory=lambda: str(default_db_path()))
    #: The URL(s) clients reach this relay at (``wss://relay.example.com``), normalized;
    #: the only ones a NIP-42 ``relay`` tag may name. Empty: the address it listens on.
    public_url: tuple[str, ...] = ()
    name: str = "xchat relay"
    description: str = "A Nostr relay run with X Chat. Stores only what clients publish."
    contact: str = ""
    #: Serve gift wraps (kind 1059) only to connections authenticated (NIP-42) as their
    #: ``p``-tagged recipient.
    protect_gift_wraps: bool = True
    #: Gift wraps received longer ago than this are purged (seconds).
    gift_wrap_retention: int = 30 * DAY
    #: How often expired events and old gift wraps are purged (seconds).
    purge_interval: int = 600
    #: Largest batch committed at once, and the longest a batch waits to fill (seconds).
    batch_max_events: int = 2048
    batch_max_delay: float = 0.002
    limits: RelayLimits = field(default_factory=RelayLimits)

    def check(self) -> None:
        if not 0 <= self.port <= 65535:
            raise InvalidInput(f"the port must be 0 to 65535, not {self.port}")
        if self.gift_wrap_retention <= 0 or self.purge_interval <= 0:
            raise InvalidInput("gift_wrap_retention and purge_interval must be positive")
        self.limits.check()
        if self.limits.header_timeout > self.limits.handshake_timeout:
            raise InvalidInput("header_timeout must not exceed handshake_timeout")


def _public_urls(value: Any, where: str) -> tuple[str, ...]:
    """``public_url``: one URL or a list of them, each normalized (wire/relay_url)."""
    urls = [value] if isinstance(value, str) else value
    if not isinstance(urls, list | tuple) or not all(isinstance(u, str) for u in urls):
        raise InvalidInput(f"setting 'public_url' in [{where}] must be a URL or a list of URLs")
    return tuple(dict.fromkeys(normalize_relay_url(u) for u in urls))


def _typed(cls: type[Any], values: dict[str, Any], where: str) -> dict[str, Any]:
    known = {f.name: f for f in dataclasses.fields(cls)}
    out: dict[str, Any] = {}
    for key, given in values.items():
        value = given
        if key not in known or key == "limits":
            raise InvalidInput(f"unknown setting {key!r} in [{where}]")
        if key == "public_url":
            out[key] = _public_urls(value, where)
            continue
        default = getattr(cls(), key)
        expected = type(default) if default is not None else str
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not expected:
            raise InvalidInput(
                f"setting {key!r} in [{where}] must be a {expected.__name__}, not {value!r}"
            )
        out[key] = value
    return out


def load_config(path: str | Path | None = None, **overrides: Any) -> RelayConfig:
    """The configuration from a TOML file (if given) with non-None ``overrides`` applied."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise InvalidInput(f"cannot read the config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise InvalidInput(f"the config file {path} is not valid TOML: {exc}") from None
    unknown = set(data) - {"relay", "limits"}
    if unknown:
        raise InvalidInput(f"unknown table(s) in the config file: {', '.join(sorted(unknown))}")
    relay = _typed(RelayConfig, data.get("relay", {}), "relay")
    limits_table = dict(data.get("limits", {}))
    if "max_content_bytes" in limits_table:  # its name until it counted characters
        old = limits_table.pop("max_content_bytes")
        limits_table.setdefault("max_content_length", old)
    limits = RelayLimits(**_typed(RelayLimits, limits_table, "limits"))
    relay.update({k: v for k, v in overrides.items() if v is not None})
    if overrides.get("public_url"):
        relay["public_url"] = _public_urls(overrides["public_url"], "relay")
    config = RelayConfig(limits=limits, **relay)
    config.check()
    return config
