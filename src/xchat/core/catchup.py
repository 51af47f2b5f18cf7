"""Reading a relay's stored events page by page, by count and by size (sans-I/O).

Theory of operation. A relay answers a filter with at most its own limit of stored
events, newest ``created_at`` first (NIP-01), and some relays drop a connection whose
answer grows too large (``xchat relay`` before streaming: once 8 MiB wait to be sent).
:class:`CatchUp` turns one REQ's filters into a sequence of pages; the caller sends
:meth:`CatchUp.request`, feeds what came back to :meth:`CatchUp.page` (saying whether the
page was complete, that is, ended with ``EOSE``), delivers the events it returns (each
stored event once per catch-up), and repeats until :attr:`CatchUp.done`.

Per filter it keeps ``until`` (the next page ends there, inclusive) and ``limit``:

* **Paging.** After a complete page, ``until`` becomes the oldest ``created_at`` of the
  filter's events on it (inclusive: a second shared by two pages is asked for again,
  and what was delivered already is dropped). A page whose events all lie in the
  second ``until`` names moves ``until`` one second back once it brings nothing new;
  an empty page ends the filter.
* **Size.** After every complete page, ``limit`` is set so that the next page holds
  about :data:`PAGE_BYTES` (shared among the filters still paging), from the mean size
  of the filter's events on that page, between 1 and :data:`MAX_LIMIT`; but always one
  more than the events of the second ``until`` names already delivered, or the page
  could bring nothing new.
* **Crowded seconds.** More events of one second than :data:`MAX_LIMIT`, or than a
  relay's own limit, cannot be paged past by ``until`` (a limit of NIP-01 paging; gift
  wraps spread over 172,801 seconds): that second is left once no page brings more.
* **Dropped connections.** After an incomplete page (the connection dropped before
  ``EOSE``), the events that came are delivered, the byte target is halved (down to
  :data:`MIN_PAGE_BYTES`: the relay drops pages that large, so later pages aim lower),
  every active filter's ``limit`` is halved (and capped by the size estimate of what
  came), and ``until`` is kept: the caller reconnects and resumes with :meth:`request`,
  not from scratch. The caller may start its next catch-up of the same relay with the
  lowered target (:attr:`page_bytes`).

Termination: every complete page either lowers a filter's ``until`` (bounded below by
its ``since``, or 0), or delivers new events of the second ``until`` names (at most
:data:`MAX_LIMIT` of them before that second is left), or ends the filter: paging ends
after finitely many complete pages whatever the relay answers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from xchat.wire.event import Event
from xchat.wire.filter import Filter, parse_filter

__all__ = ["FIRST_LIMIT", "MAX_LIMIT", "PAGE_BYTES", "CatchUp", "event_size"]

#: Bytes one page should hold (all its filters together): well under the 8 MiB at which
#: ``xchat relay`` used to drop a connection, and a few seconds of a slow link.
PAGE_BYTES: Final = 1024 * 1024
#: The smallest page target after halvings (one large gift wrap is ~88 KB).
MIN_PAGE_BYTES: Final = 16 * 1024
#: The largest ``limit`` asked for (``xchat relay``'s own).
MAX_LIMIT: Final = 500
#: The ``limit`` of a first page, before any size is known (~1 MiB of typical wraps).
FIRST_LIMIT: Final = 250
#: What an event costs on the wire besides its content (id, keys, signature, tags, JSON).
_OVERHEAD: Final = 400


def event_size(event: Event) -> int:
    """About how many bytes ``event`` takes in an EVENT message."""
    return len(event.content) + _OVERHEAD + sum(len(v) + 4 for tag in event.tags for v in tag)


@dataclass(slots=True)
class _Paging:
    base: dict[str, Any]
    parsed: Filter
    limit: int
    until: int | None = None
    done: bool = False
    #: How many events of each second were delivered (a page ending at ``until`` must
    #: be larger than those of that second already had, to bring anything new).
    seconds: Counter[int] = field(default_factory=Counter)

    def floor(self, max_limit: int) -> int:
        """The smallest useful limit: one more than the events of ``until`` delivered."""
        return min(max_limit, 1 + (self.seconds[self.until] if self.until is not None else 0))

    @property
    def since(self) -> int:
        return self.parsed.since or 0

    def request(self) -> dict[str, Any]:
        out = {**self.base, "limit": self.limit}
        if self.until is not None:
            out["until"] = self.until
        return out

    def in_range(self, event: Event) -> bool:
        return self.parsed.matches(event) and (self.until is None or event.created_at <= self.until)


@dataclass
class CatchUp:
    """See the module docstring. ``filters`` carry ``since`` (or read everything)."""

    filters: list[dict[str, Any]]
    page_bytes: int = PAGE_BYTES
    max_limit: int = MAX_LIMIT
    first_limit: int = FIRST_LIMIT
    pages: int = 0  #: complete pages so far
    drops: int = 0  #: incomplete pages (connections dropped mid-answer)
    _paging: list[_Paging] = field(default_factory=list)
    _got: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        scaled = self.first_limit * self.page_bytes // PAGE_BYTES  # a smaller target
        limit = max(1, min(self.first_limit, scaled, self.max_limit))
        for f in self.filters:
            base = {k: v for k, v in f.items() if k not in ("limit", "until")}
            self._paging.append(_Paging(base, parse_filter(base), limit))

    @property
    def done(self) -> bool:
        return all(p.done for p in self._paging)

    def limits(self) -> list[int]:
        """The limit each filter still paging will ask for next."""
        return [p.limit for p in self._paging if not p.done]

    def request(self) -> list[dict[str, Any]]:
        """The filters of the next page (only those still paging); [] when done."""
        return [p.request() for p in self._paging if not p.done]

    def _share(self) -> int:
        active = sum(not p.done for p in self._paging)
        return max(1, self.page_bytes // max(1, active))

    def _fit(self, events: Iterable[Event]) -> int | None:
        """The limit that makes a page of such events about one share of PAGE_BYTES."""
        sizes = [event_size(e) for e in events]
        if not sizes:
            return None
        mean = max(1, sum(sizes) // len(sizes))
        return max(1, min(self.max_limit, self._share() // mean))

    def _step(self, p: _Paging, mine: list[Event], fresh: set[str]) -> None:
        """Move one filter after a complete page that brought it ``mine``."""
        if not mine:
            p.done = True  # nothing left at or before until: all read
            return
        until = p.until
        below = [e.created_at for e in mine if until is None or e.created_at < until]
        if below or until is None:
            until = min(below)
        elif not any(e.id in fresh for e in mine) or p.seconds[until] >= self.max_limit:
            until -= 1  # all of that second that the relay gives is in
        # else: new events of the second until names: ask for it again, larger
        p.until = until
        if until < p.since:
            p.done = True

    def page(self, events: list[Event], *, complete: bool) -> list[Event]:
        """Take what the relay sent for the last :meth:`request`; returns the events new
        to this catch-up, to deliver. ``complete``: the page ended with EOSE."""
        new = []
        for event in events:
            if event.id not in self._got:
                self._got.add(event.id)
                new.append(event)
        active = [p for p in self._paging if not p.done]
        for p in active:
            for event in new:
                if p.parsed.matches(event):
                    p.seconds[event.created_at] += 1
        if not complete:
            self.drops += 1
            # the relay drops pages of this size: aim lower from now on
            self.page_bytes = max(MIN_PAGE_BYTES, self.page_bytes // 2)
            for p in active:
                fit = self._fit(e for e in events if p.parsed.matches(e))
                p.limit = max(p.floor(self.max_limit), min(p.limit // 2, fit or p.limit))
            return new
        self.pages += 1
        fresh = {e.id for e in new}
        for p in active:
            mine = [e for e in events if p.in_range(e)]
            self._step(p, mine, fresh)
            if not p.done:
                p.limit = max(p.floor(self.max_limit), self._fit(mine) or p.limit)
        return new
