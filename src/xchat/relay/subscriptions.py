"""Live subscriptions and the index that finds which ones a new event matches.

Matching every new event against every open filter costs O(subscriptions); with
thousands of subscribers that alone would cap fan-out. Instead each filter is filed
under its most selective field (ids, then ``#p``/``#e`` and other tags, then authors,
then kinds; a filter with none of them is a catch-all), and a new event looks up only
the buckets its own id, tags, author and kind name. Candidates are then checked with
the full filter, once per subscription.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from xchat.wire.event import Event
from xchat.wire.filter import Filter

__all__ = ["Subscription", "SubscriptionIndex"]


class Subscription:
    """One REQ of one connection: its id and filters. ``owner`` is the connection."""

    __slots__ = ("filters", "owner", "sub_id")

    def __init__(self, owner: Any, sub_id: str, filters: tuple[Filter, ...]) -> None:
        self.owner = owner
        self.sub_id = sub_id
        self.filters = filters

    def matches(self, event: Event) -> bool:
        return any(f.matches(event) for f in self.filters)


def _keys(f: Filter) -> list[tuple[str, object]]:
    """The index keys one filter is filed under (all values of its best field)."""
    if f.ids is not None:
        return [("id", v) for v in f.ids]
    for name in ("p", "e", *sorted(n for n in f.tags if n not in "pe")):
        if name in f.tags:
            return [(f"#{name}", v) for v in f.tags[name]]
    if f.authors is not None:
        return [("author", v) for v in f.authors]
    if f.kinds is not None:
        return [("kind", v) for v in f.kinds]
    return [("*", None)]


class SubscriptionIndex:
    """All live subscriptions of the relay, indexed for fan-out."""

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, object], dict[int, Subscription]] = {}
        self._filed: dict[int, list[tuple[str, object]]] = {}
        self.count = 0

    def add(self, sub: Subscription) -> None:
        keys = {k for f in sub.filters if not f.is_empty() for k in _keys(f)}
        self._filed[id(sub)] = list(keys)
        for key in keys:
            self._buckets.setdefault(key, {})[id(sub)] = sub
        self.count += 1

    def remove(self, sub: Subscription) -> None:
        keys = self._filed.pop(id(sub), None)
        if keys is None:
            return
        for key in keys:
            bucket = self._buckets.get(key)
            if bucket is not None:
                bucket.pop(id(sub), None)
                if not bucket:
                    del self._buckets[key]
        self.count -= 1

    def matching(self, event: Event) -> Iterator[Subscription]:
        """Each subscription with a filter matching ``event``, once."""
        buckets = self._buckets
        found: dict[int, Subscription] = {}
        lookups: list[tuple[str, object]] = [
            ("*", None),
            ("id", event.id),
            ("author", event.pubkey),
            ("kind", event.kind),
        ]
        lookups.extend((f"#{t[0]}", t[1]) for t in event.tags if len(t) >= 2 and len(t[0]) == 1)
        for key in lookups:
            bucket = buckets.get(key)
            if bucket:
                found.update(bucket)
        for sub in found.values():
            if sub.matches(event):
                yield sub
