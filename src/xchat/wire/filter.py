"""NIP-01 subscription filters: parsing untrusted filters and matching events against them.

A filter's lists are OR'ed inside a field and its fields AND'ed; several filters in one
REQ are OR'ed. ``ids``, ``authors``, ``#e`` and ``#p`` take exact 64-hex values (NIP-01
says so; prefixes are not supported). Parsing enforces :class:`FilterLimits`.

Spec: https://github.com/nostr-protocol/nips/blob/master/01.md#from-client-to-relay-sending-events-and-creating-subscriptions
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from xchat.errors import DecodeError
from xchat.wire.event import MAX_CREATED_AT, Event, is_hex

__all__ = ["Filter", "FilterLimits", "fields_match", "matches_any", "parse_filter"]

_HEX_TAGS: Final = frozenset("ep")
_TAG_NAMES: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


@dataclass(frozen=True, slots=True)
class FilterLimits:
    """Bounds on one filter from an untrusted client."""

    max_values: int = 1000  # values in any one list
    max_tag_value_bytes: int = 1024


DEFAULT_FILTER_LIMITS: Final = FilterLimits()


@dataclass(frozen=True, slots=True)
class Filter:
    """A parsed filter. ``None`` means the field was absent (matches everything)."""

    ids: frozenset[str] | None = None
    authors: frozenset[str] | None = None
    kinds: frozenset[int] | None = None
    tags: dict[str, frozenset[str]] = field(default_factory=dict, hash=False)
    since: int | None = None
    until: int | None = None
    limit: int | None = None

    def matches(self, event: Event) -> bool:
        return fields_match(
            event, self.ids, self.authors, self.kinds, self.tags.items(), self.since, self.until
        )

    def is_empty(self) -> bool:
        """True if no event can match: some list is empty, or since > until."""
        lists = (self.ids, self.authors, self.kinds, *self.tags.values())
        if any(values is not None and not values for values in lists):
            return True
        return self.since is not None and self.until is not None and self.since > self.until

    def to_json(self) -> dict[str, Any]:
        """The filter as JSON (sorted lists, so equal filters serialize equally)."""
        obj: dict[str, Any] = {}
        if self.ids is not None:
            obj["ids"] = sorted(self.ids)
        if self.authors is not None:
            obj["authors"] = sorted(self.authors)
        if self.kinds is not None:
            obj["kinds"] = sorted(self.kinds)
        for name in sorted(self.tags):
            obj[f"#{name}"] = sorted(self.tags[name])
        for key in ("since", "until", "limit"):
            if (value := getattr(self, key)) is not None:
                obj[key] = value
        return obj


def fields_match(
    event: Event,
    ids: Container[str] | None,
    authors: Container[str] | None,
    kinds: Container[int] | None,
    tags: Iterable[tuple[str, Container[str]]],
    since: int | None,
    until: int | None,
) -> bool:
    """NIP-01 matching on a filter's fields, in whatever containers hold them."""
    return (
        (ids is None or event.id in ids)
        and (kinds is None or event.kind in kinds)
        and (authors is None or event.pubkey in authors)
        and (since is None or event.created_at >= since)
        and (until is None or event.created_at <= until)
        and all(
            any(len(t) >= 2 and t[0] == name and t[1] in values for t in event.tags)
            for name, values in tags
        )
    )


def matches_any(filters: tuple[Filter, ...] | list[Filter], event: Event) -> bool:
    return any(f.matches(event) for f in filters)


def _int(value: object, name: str, high: int) -> int:
    if type(value) is not int or not 0 <= value <= high:
        raise DecodeError(f"filter {name} must be an integer from 0 to {high}")
    return value


def _list(value: object, name: str, limits: FilterLimits) -> list[object]:
    if type(value) is not list:
        raise DecodeError(f"filter {name} must be a list")
    if len(value) > limits.max_values:
        raise DecodeError(f"filter {name} has more than {limits.max_values} values")
    return value


def _hex_set(value: object, name: str, limits: FilterLimits) -> frozenset[str]:
    items = _list(value, name, limits)
    for item in items:
        if not is_hex(item, 64):
            raise DecodeError(f"filter {name} values must be 64 lowercase hex digits")
    return frozenset(items)  # type: ignore[arg-type]  # checked above


def _tag_values(key: str, value: object, limits: FilterLimits) -> frozenset[str]:
    if key[1] in _HEX_TAGS:
        return _hex_set(value, key, limits)
    items = _list(value, key, limits)
    high = limits.max_tag_value_bytes
    for item in items:
        if (
            type(item) is not str
            or len(item) > high
            or (len(item) * 4 > high and len(item.encode("utf-8", "surrogatepass")) > high)
        ):
            raise DecodeError(f"filter {key} values must be short strings")
    return frozenset(items)  # type: ignore[arg-type]  # checked above


def parse_filter(obj: object, limits: FilterLimits = DEFAULT_FILTER_LIMITS) -> Filter:
    """Validate a client's filter object; DecodeError says what is wrong.

    Unknown keys are refused (NIP-01 lets relays do so: a misspelt field would
    otherwise silently widen the subscription).
    """
    if type(obj) is not dict:
        raise DecodeError("a filter must be a JSON object")
    fields: dict[str, object] = {}
    tags: dict[str, frozenset[str]] = {}
    for key, value in obj.items():
        if key in ("ids", "authors"):
            fields[key] = _hex_set(value, key, limits)
        elif key == "kinds":
            fields[key] = frozenset(_int(k, key, 65535) for k in _list(value, key, limits))
        elif key in ("since", "until"):
            fields[key] = _int(value, key, MAX_CREATED_AT)
        elif key == "limit":
            fields[key] = _int(value, key, 2**31)
        elif type(key) is str and len(key) == 2 and key[0] == "#" and key[1] in _TAG_NAMES:
            tags[key[1]] = _tag_values(key, value, limits)
        else:
            raise DecodeError(f"unsupported filter field {str(key)[:20]!r}")
    return Filter(tags=tags, **fields)  # type: ignore[arg-type]  # types checked above
