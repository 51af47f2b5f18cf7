"""Holding back envelopes that are far ahead in their Olm chain (sans-I/O rules).

Theory of operation. An Olm ratchet keeps at most :data:`SKIPPED_KEYS` keys of skipped
messages per receiving chain (vodozemac's bound): opening message ``i`` of a chain
while more than that many messages below ``i`` are still missing makes the ratchet
forget the oldest keys, and those messages can never be decrypted. Relays return gift
wraps in the random order of their ``created_at``, so a backlog arrives in any chain
order. :class:`HoldBack` tracks, per chain (by the ratchet key of the Olm header), one
past the highest index opened (``next``) and the indices below it still missing, and
answers three questions:

* **Open now?** An envelope opens at once when opening it leaves its chain with at
  most :data:`SKIPPED_KEYS` missing messages below it (in order, or a few out of order).
* **Hold?** Otherwise it is *held*: not opened, not marked seen, kept (the node also
  writes it to its database, so a restart keeps it). It opens as soon as the missing
  ones arrive, in chain order. Held envelopes are bounded by :data:`MAX_HELD_BYTES`
  (their JSON size); one that does not fit is *deferred*: neither held nor seen, so the
  next re-read of the relays fetches it again, once room was made.
* **Give up?** Only on evidence, given by the caller as ``give_up_before``: a held
  envelope held before that time is opened anyway (the node passes the time since which
  every reading relay has completed a catch-up, capped by a grace period: the missing
  envelopes are on no relay). The messages missing below it are then counted as lost
  (:attr:`Decision.lost`) and no longer waited for: the node shows them to the user.

Chain progress is state to persist (:meth:`HoldBack.take_changed`, restored with
:meth:`HoldBack.restore`): after a restart, a chain already opened up to index 500 must
not look 500 messages behind.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

import orjson

from xchat.errors import DecodeError

__all__ = ["MAX_HELD_BYTES", "SKIPPED_KEYS", "ChainState", "Decision", "HoldBack"]

#: Skipped message keys a ratchet chain keeps (vodozemac's ``MAX_MESSAGE_KEYS``).
SKIPPED_KEYS: Final = 40
#: Held envelopes at most, in bytes of their JSON (in memory and in the database).
MAX_HELD_BYTES: Final = 64 * 1024 * 1024
#: Chains whose progress is tracked (least recently used forgotten first).
MAX_CHAINS: Final = 4096

T = TypeVar("T")
Position = tuple[bytes, int]  # (ratchet key, chain index)


@dataclass(slots=True)
class ChainState:
    """What was opened of one ratchet chain: one past the highest index, and the indices
    below it not opened yet whose keys the ratchet still keeps (at most SKIPPED_KEYS)."""

    next: int = 0
    missing: set[int] = field(default_factory=set)

    def skipped_after(self, index: int) -> int:
        """Missing messages below the highest index once ``index`` is opened."""
        if index < self.next:
            return len(self.missing) - (index in self.missing)
        return len(self.missing) + index - self.next

    def opened(self, index: int) -> None:
        if index < self.next:
            self.missing.discard(index)
            return
        self.missing.update(range(max(self.next, index - SKIPPED_KEYS), index))
        self.next = index + 1
        while len(self.missing) > SKIPPED_KEYS:  # the ratchet forgets its oldest keys
            self.missing.discard(min(self.missing))

    def to_json(self) -> bytes:
        return orjson.dumps({"next": self.next, "missing": sorted(self.missing)})

    @classmethod
    def from_json(cls, data: bytes | str) -> ChainState:
        try:
            obj = orjson.loads(data)
            state = cls(int(obj["next"]), {int(i) for i in obj["missing"]})
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise DecodeError("a stored chain state is damaged") from None
        if state.next < 0 or any(not 0 <= i < state.next for i in state.missing):
            raise DecodeError("a stored chain state is out of range")
        return state


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one envelope: ``"open"``, ``"hold"`` or ``"defer"``; ``lost`` is
    how many messages below it are given up (only when a held one opens on evidence)."""

    action: str
    lost: int = 0


@dataclass(slots=True)
class _Held(Generic[T]):
    value: T
    position: Position
    since: int
    size: int


class HoldBack(Generic[T]):
    """See the module docstring. ``T`` is whatever the caller holds (an envelope)."""

    def __init__(self, max_bytes: int = MAX_HELD_BYTES) -> None:
        self.max_bytes = max_bytes
        self._chains: OrderedDict[bytes, ChainState] = OrderedDict()
        self._held: dict[str, _Held[T]] = {}
        self._bytes = 0
        self._changed: set[bytes] = set()

    # -- chain progress ------------------------------------------------------------

    def restore(self, chains: dict[bytes, ChainState]) -> None:
        for ratchet, state in chains.items():
            self._chains[ratchet] = state
        while len(self._chains) > MAX_CHAINS:
            self._chains.popitem(last=False)

    def take_changed(self) -> dict[bytes, ChainState]:
        """The chains whose progress changed since the last call (to persist)."""
        changed = {r: self._chains[r] for r in self._changed if r in self._chains}
        self._changed.clear()
        return changed

    def chain(self, ratchet: bytes) -> ChainState:
        return self._chains.get(ratchet) or ChainState()

    def knows(self, ratchet: bytes) -> bool:
        """Whether anything of this chain was opened (and its progress kept)."""
        return ratchet in self._chains

    def _far_ahead(self, position: Position) -> bool:
        return self.chain(position[0]).skipped_after(position[1]) > SKIPPED_KEYS

    def opened(self, position: Position, *, give_up: bool = False) -> int:
        """Record that the message at ``position`` opened; the number of messages below
        it given up on (``give_up``: the caller opened it on evidence)."""
        ratchet, index = position
        state = self._chains.get(ratchet)
        if state is None:
            state = self._chains[ratchet] = ChainState()
            if len(self._chains) > MAX_CHAINS:
                self._chains.popitem(last=False)
        else:
            self._chains.move_to_end(ratchet)
        lost = 0
        if give_up:
            lost = state.skipped_after(index)
            state.missing.clear()
            state.next = max(state.next, index + 1)
        else:
            state.opened(index)
        self._changed.add(ratchet)
        return lost

    # -- held envelopes -----------------------------------------------------------------

    @property
    def count(self) -> int:
        return len(self._held)

    @property
    def bytes(self) -> int:
        return self._bytes

    def __contains__(self, key: str) -> bool:
        return key in self._held

    def oldest_since(self) -> int | None:
        return min((h.since for h in self._held.values()), default=None)

    def decide(
        self, position: Position, since: int, size: int, give_up_before: int | None
    ) -> Decision:
        """Open, hold or defer an envelope at ``position``, held since ``since``
        (now, for a new one) and ``size`` bytes; it is not held by this call."""
        if not self._far_ahead(position):
            return Decision("open")
        if give_up_before is not None and since < give_up_before:
            return Decision("open", self.chain(position[0]).skipped_after(position[1]))
        if self._bytes + size > self.max_bytes:
            return Decision("defer")
        return Decision("hold")

    def hold(self, key: str, value: T, position: Position, since: int, size: int) -> None:
        if key in self._held:
            return
        self._held[key] = _Held(value, position, since, size)
        self._bytes += size

    def take(self) -> list[tuple[str, T, Position, int, int]]:
        """Every held envelope (key, value, position, since, size), releasing them: the
        caller decides again and holds those that still wait."""
        held = [(k, h.value, h.position, h.since, h.size) for k, h in self._held.items()]
        self._held.clear()
        self._bytes = 0
        return held
