"""Live subscriptions and the index that finds which ones a new event matches.

Matching every new event against every open filter costs O(subscriptions); with
thousands of subscribers that alone would cap fan-out. Instead each filter is filed
under its most selective field (ids, then ``#p``/``#e`` and other tags, then authors,
then kinds; a filter with none of them is a catch-all), and a new event looks up only
the buckets its own id, tags, author and kind name. Candidates are then checked with
the full filter, once per subscription.

Memory matters as much as speed here: a relay holds one subscription per idle client,
tens of thousands of them. Filters are kept in a compact form (small value sets as
tuples, tags as a tuple of pairs), and a bucket with a single subscriber holds it
directly rather than in a dict.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any, Final

from xchat.wire.event import Event
from xchat.wire.filter import Filter, fields_match

__all__ = ["CompactFilter", "Subscription", "SubscriptionIndex"]

_SMALL: Final = 8  # sets up to this size are stored as tuples (membership is as fast)
Values = tuple[Any, ...] | frozenset[Any]


_SHARED: dict[tuple[Any, ...], tuple[Any, ...]] = {}


def _values(values: frozenset[Any] | None) -> Values | None:
    if values is None or len(values) > _SMALL:
        return values
    small = tuple(sorted(values))
    if small and all(type(v) is int for v in small):  # kinds: share the common ones
        if len(_SHARED) > 4096:
            _SHARED.clear()
        return _SHARED.setdefault(small, small)
    return small


class CompactFilter:
    """A :class:`Filter` without ``limit`` (which only applies to the stored query)."""

    __slots__ = ("authors", "ids", "kinds", "since", "tags", "until")

    def __init__(self, f: Filter) -> None:
        self.ids = _values(f.ids)
        self.authors = _values(f.authors)
        self.kinds = _values(f.kinds)
        self.tags: tuple[tuple[str, Values], ...] = tuple(
            (name, _values(values) or ()) for name, values in sorted(f.tags.items())
        )
        self.since = f.since
        self.until = f.until

    def matches(self, event: Event) -> bool:
        return fields_match(
            event, self.ids, self.authors, self.kinds, self.tags, self.since, self.until
        )

    def is_empty(self) -> bool:
        lists = (self.ids, self.authors, self.kinds, *(v for _, v in self.tags))
        if any(values is not None and not values for values in lists):
            return True
        return self.since is not None and self.until is not None and self.since > self.until

    def index_keys(self) -> list[tuple[str, object]]:
        """The index keys this filter is filed under (all values of its best field)."""
        if self.ids is not None:
            return [("id", v) for v in self.ids]
        tags = dict(self.tags)
        for name in ("p", "e", *(n for n, _ in self.tags if n not in "pe")):
            if name in tags:
                return [(f"#{name}", v) for v in tags[name]]
        if self.authors is not None:
            return [("author", v) for v in self.authors]
        if self.kinds is not None:
            return [("kind", v) for v in self.kinds]
        return [("*", None)]


class Subscription:
    """One REQ of one connection: its id and filters. ``owner`` is the connection.

    ``query`` keeps the filters as sent (with their limits) and ``stream`` the task
    sending stored results, until that is done (:mod:`xchat.relay.query`).
    """

    __slots__ = ("filters", "indexed", "owner", "query", "stream", "sub_id")

    def __init__(self, owner: Any, sub_id: str, filters: tuple[Filter, ...]) -> None:
        self.owner = owner
        self.sub_id = sub_id
        self.filters = tuple(CompactFilter(f) for f in filters)
        self.indexed = False
        self.query: tuple[Filter, ...] = filters
        self.stream: asyncio.Task[None] | None = None

    def matches(self, event: Event) -> bool:
        return any(f.matches(event) for f in self.filters)

    def index_keys(self) -> set[tuple[str, object]]:
        return {k for f in self.filters if not f.is_empty() for k in f.index_keys()}


Bucket = Subscription | dict[int, Subscription]


class SubscriptionIndex:
    """All live subscriptions of the relay, indexed for fan-out.

    ``field -> value -> subscribers``: the values are the filter's own strings, so the
    index adds no key objects per subscription; a value with one subscriber holds it
    directly, several share a dict by ``id()``.
    """

    def __init__(self) -> None:
        self._fields: dict[str, dict[object, Bucket]] = {}
        self.count = 0

    def add(self, sub: Subscription) -> None:
        if sub.indexed:
            return
        for field_name, value in sub.index_keys():
            values = self._fields.setdefault(field_name, {})
            present = values.get(value)
            if present is None:
                values[value] = sub
            elif isinstance(present, dict):
                present[id(sub)] = sub
            else:
                values[value] = {id(present): present, id(sub): sub}
        sub.indexed = True
        self.count += 1

    def remove(self, sub: Subscription) -> None:
        if not sub.indexed:
            return
        for field_name, value in sub.index_keys():
            values = self._fields.get(field_name)
            present = None if values is None else values.get(value)
            if present is None or values is None:
                continue
            if present is sub:
                del values[value]
            elif isinstance(present, dict):
                present.pop(id(sub), None)
                if len(present) == 1:
                    values[value] = next(iter(present.values()))
        sub.indexed = False
        self.count -= 1

    def matching(self, event: Event) -> Iterator[Subscription]:
        """Each subscription with a filter matching ``event``, once."""
        fields = self._fields
        found: dict[int, Subscription] = {}

        def collect(field_name: str, value: object) -> None:
            values = fields.get(field_name)
            present = None if values is None else values.get(value)
            if present is None:
                return
            if isinstance(present, dict):
                found.update(present)
            else:
                found[id(present)] = present

        collect("*", None)
        collect("id", event.id)
        collect("author", event.pubkey)
        collect("kind", event.kind)
        for t in event.tags:
            if len(t) >= 2 and len(t[0]) == 1:
                collect("#" + t[0], t[1])
        for sub in found.values():
            if sub.matches(event):
                yield sub
