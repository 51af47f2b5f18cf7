"""How values are stored in the node database: JSON lists and dicts, enums, checks.

Lists (relays, accepted) and dicts (reactions) are JSON text, booleans 0/1, states
their enum's value. A stored value that does not decode is a damaged row
(:class:`~xchat.errors.KeystoreCorrupt`); a value that cannot be stored is
:class:`~xchat.errors.InvalidInput`.
"""

# Every SQL text in this module is assembled from this package's constants (column lists,
# placeholders); values are always bound, never formatted in.

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any, TypeVar

import orjson

from xchat.errors import InvalidInput, KeystoreCorrupt

_E = TypeVar("_E", bound=StrEnum)


def _check_choice(value: str, allowed: Sequence[str], what: str) -> None:
    if value not in allowed:
        raise InvalidInput(f"{what} must be one of: {', '.join(allowed)}")


def _check_limit(limit: int) -> None:
    if limit < 0:
        raise InvalidInput("a limit cannot be negative")


def _dump_strings(values: list[str], what: str) -> str:
    if not all(isinstance(value, str) for value in values):
        raise InvalidInput(f"{what} must be a list of strings")
    return orjson.dumps(list(values)).decode()


def _dump_reactions(reactions: dict[str, str] | None) -> str | None:
    if reactions is None:
        return None
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in reactions.items()):
        raise InvalidInput("reactions must map pubkeys to emoji strings")
    return orjson.dumps(reactions).decode()


def _load_json(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise KeystoreCorrupt("a row of the node database is damaged") from None


def _load_strings(text: str) -> list[str]:
    value = _load_json(text)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise KeystoreCorrupt("a row of the node database is damaged")
    return value


def _load_reactions(text: str | None) -> dict[str, str] | None:
    if text is None:
        return None
    value = _load_json(text)
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise KeystoreCorrupt("a row of the node database is damaged")
    return value


def _contains(body: object, needle: object) -> int:
    """SQL ``xchat_contains(body, needle)``: needle (already case-folded) in the body."""
    return int(isinstance(body, str) and isinstance(needle, str) and needle in body.casefold())


def _enum(kind: type[_E], value: str) -> _E:
    try:
        return kind(value)
    except ValueError:
        raise KeystoreCorrupt("a row of the node database is damaged") from None
