"""The migration mechanism shared by every X Chat database: numbered steps of SQL.

A database records the last step applied (the node database in ``PRAGMA user_version``,
the relay's event database in its ``meta`` table). Opening a database applies the steps
above its version, in order and all in one transaction, so a fresh database and an old
one take the same path to the current schema and an interrupted upgrade leaves the old
version intact. A database newer than the code is refused with a clear error.

A step is never edited once released: a change of schema is a new step.
tests/store/test_migrations.py pins a fingerprint of every step (:func:`fingerprint`:
its number, summary and SQL), so editing a released one fails the tests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson

from xchat.errors import LocalProtocolError, XChatError

__all__ = ["Migration", "fingerprint", "pending", "step_list"]


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: the SQL that takes a database from ``version - 1`` to ``version``."""

    version: int
    summary: str
    statements: tuple[str, ...]


def step_list(first: int, steps: tuple[Migration, ...]) -> tuple[Migration, ...]:
    """``steps`` checked to be numbered ``first, first + 1, ...`` in order."""
    if [step.version for step in steps] != list(range(first, first + len(steps))):
        raise AssertionError(f"migration versions must be {first}, {first + 1}, ... in order")
    return steps


def _newer(current: int, latest: int) -> XChatError:
    return LocalProtocolError(
        f"the event database has schema version {current}, newer than this X Chat "
        f"understands ({latest}); upgrade X Chat to open it"
    )


def pending(
    current: int,
    steps: Sequence[Migration],
    newer: Callable[[int, int], XChatError] = _newer,
) -> list[Migration]:
    """The steps to apply to a database at version ``current``, in order.

    Raises ``newer(current, latest)`` (by default a LocalProtocolError naming the event
    database) if the database is newer than the last step.
    """
    latest = steps[-1].version
    if current > latest:
        raise newer(current, latest)
    return [step for step in steps if step.version > current]


def fingerprint(step: Migration) -> str:
    """SHA-256 (hex) of a step's number, summary and statements, exactly as written."""
    text = orjson.dumps([step.version, step.summary, list(step.statements)])
    return hashlib.sha256(text).hexdigest()
