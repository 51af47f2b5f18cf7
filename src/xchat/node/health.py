"""What the node knows about each relay, for the API and the UI (:class:`RelayHealth`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["RelayHealth"]


@dataclass
class RelayHealth:
    """What the node knows about one relay, for the API and the UI.

    ``state``: ``connecting`` (connecting, authenticating, catching up), ``connected``
    (subscribed and caught up; a relay only written to is ``connected`` once opened),
    ``disconnected`` (waiting ``next_retry_at`` to retry). ``failures`` counts failed
    connections since the last one that worked; ``received`` counts events the relay
    sent us, duplicates of other relays' included. ``warning`` says that the relay
    refused (or did not take) our device bundle or inbox relay list, and why; it is
    cleared once the relay accepts them. Times (``connected_since``, ``next_retry_at``)
    are Unix seconds from the pool's clock.
    """

    url: str
    reading: bool
    state: str = "connecting"  # connecting, connected, disconnected
    last_error: str = ""
    failures: int = 0
    accepted: int = 0
    refused: int = 0
    received: int = 0
    latency_ms: float | None = None
    connected_since: float | None = None
    next_retry_at: float | None = None
    warning: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "reading": self.reading,
            "state": self.state,
            "last_error": self.last_error,
            "failures": self.failures,
            "accepted": self.accepted,
            "refused": self.refused,
            "received": self.received,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
            "connected_since": self.connected_since,
            "next_retry_at": self.next_retry_at,
            "warning": self.warning,
        }
