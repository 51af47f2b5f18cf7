"""When to look again for the device bundles of contacts who have none yet.

Theory of operation. A contact without any X Chat device bundle is written to as plain
NIP-17 (not forward-secret). That is right for someone on another Nostr app, but it is
also what happens when their X Chat has not published its bundle yet (added before
their node first ran, or their relays refused the bundle). So the node keeps looking:
the interval between two lookups of a contact is the time since it started looking
for them, at least :data:`LOOKUP_START` and at most :data:`LOOKUP_MAX` seconds: checks
2, 4, 8, 16 … seconds after the contact was added, then every five minutes for as long
as they have none. A bundle found upgrades the conversation to Olm at once (the node
emits ``forward_secrecy`` on the stream). The schedule is kept in memory; at start
each such contact is scheduled by the time since it was added (one added long ago:
``LOOKUP_MAX`` from then).

Sans-I/O: times are passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["LOOKUP_MAX", "LOOKUP_START", "LookupSchedule"]

#: The first lookup again after adding a contact without a bundle (seconds).
LOOKUP_START: Final = 2.0
#: The longest interval between two lookups of one contact (seconds).
LOOKUP_MAX: Final = 300.0


@dataclass(slots=True)
class _Watch:
    since: float  # when we started looking (the contact was added, accepted, or started)
    next_at: float


class LookupSchedule:
    """Contacts to look up again, and when."""

    def __init__(self) -> None:
        self._watches: dict[str, _Watch] = {}

    def watch(self, pubkey: str, since: float, now: float) -> None:
        """Look for ``pubkey``'s bundle from now on (again from the start if ``since``
        is now); a contact already watched keeps its schedule unless ``since`` is newer."""
        known = self._watches.get(pubkey)
        if known is not None and known.since >= since:
            return
        self._watches[pubkey] = _Watch(since, now + self._interval(since, now))

    def forget(self, pubkey: str) -> None:
        self._watches.pop(pubkey, None)

    def due(self, now: float) -> list[str]:
        """The contacts to look up now, longest waiting first."""
        due = [(w.next_at, pubkey) for pubkey, w in self._watches.items() if w.next_at <= now]
        return [pubkey for _, pubkey in sorted(due)]

    def checked(self, pubkey: str, now: float) -> None:
        """A lookup of ``pubkey`` found no bundle: schedule the next one."""
        watch = self._watches.get(pubkey)
        if watch is not None:
            watch.next_at = now + self._interval(watch.since, now)

    def next_at(self, pubkey: str) -> float | None:
        watch = self._watches.get(pubkey)
        return None if watch is None else watch.next_at

    def __contains__(self, pubkey: object) -> bool:
        return pubkey in self._watches

    @staticmethod
    def _interval(since: float, now: float) -> float:
        return min(LOOKUP_MAX, max(LOOKUP_START, now - since))
