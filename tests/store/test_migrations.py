"""Released migration steps are never edited: each one's fingerprint is pinned here.

A new step is added to its list and its fingerprint to PINNED below, in the same change.
If a test here fails for a step already in PINNED, the change edited a released step:
undo the edit and add a new step instead (existing databases have run the old one).
"""

from __future__ import annotations

import pytest

from xchat.errors import LocalProtocolError
from xchat.store.migrations import (
    NODE_MIGRATIONS,
    POSTGRES_MIGRATIONS,
    SQLITE_MIGRATIONS,
    Migration,
    fingerprint,
    pending,
    step_list,
)

LISTS = {
    "node": NODE_MIGRATIONS,
    "relay-sqlite": SQLITE_MIGRATIONS,
    "relay-postgres": POSTGRES_MIGRATIONS,
}

#: (database, step) -> fingerprint(step), as released.
PINNED = {
    ("node", 1): "d5e3ec168cdbc5f18368479e3ccd7ad27f607e073194a1a1f44d3ac9cecc827e",
    ("node", 2): "41f8c8c211dfab55ec054a148cf6997ce6d24a9f1438137eccb99665dd44d075",
    # issue 10: conversations with ids and members, outbox job kinds
    ("node", 3): "f05c366fdfc56e1e59f162da8db0d22b95b498d9666fac663483ff6818d45450",
    ("relay-sqlite", 0): "1b8f684b0f2503b2b2f7287d6580abd999f09a75bfb4c5f13d560baa7adac309",
    ("relay-sqlite", 1): "57e0cd859bec5e8e35b1686bfe0e9050d892c3e50bc48f24058b929984f828a2",
    ("relay-postgres", 0): "2605e9a569afc9faac709f88a9d83aa3080652c2391536b6c4151bf2c9d2df07",
    ("relay-postgres", 1): "a098141f7992a18921c8b6591982090bd35343887da15744b593aea61755af95",
}

STEPS = [(name, step) for name, steps in LISTS.items() for step in steps]


@pytest.mark.parametrize(("name", "step"), STEPS, ids=[f"{n}-{s.version}" for n, s in STEPS])
def test_released_steps_are_unchanged(name: str, step: Migration) -> None:
    pinned = PINNED.get((name, step.version))
    assert pinned is not None, f"step {step.version} of {name} is new: pin its fingerprint"
    assert fingerprint(step) == pinned, f"released step {step.version} of {name} was edited"


def test_no_released_step_was_removed() -> None:
    present = {(name, step.version) for name, step in STEPS}
    assert set(PINNED) <= present


def test_fingerprint_covers_number_summary_and_sql() -> None:
    step = NODE_MIGRATIONS[0]
    for changed in (
        Migration(step.version + 1, step.summary, step.statements),
        Migration(step.version, step.summary + ".", step.statements),
        Migration(step.version, step.summary, (*step.statements[:-1], step.statements[-1] + " ")),
        Migration(step.version, step.summary, step.statements[:-1]),
    ):
        assert fingerprint(changed) != fingerprint(step)


def test_step_lists_are_numbered_in_order() -> None:
    assert [s.version for s in NODE_MIGRATIONS] == list(range(1, len(NODE_MIGRATIONS) + 1))
    assert [s.version for s in SQLITE_MIGRATIONS] == list(range(len(SQLITE_MIGRATIONS)))
    one = Migration(1, "one", ())
    with pytest.raises(AssertionError):
        step_list(0, (one,))
    assert step_list(1, (one,)) == (one,)


def test_pending_and_newer_databases() -> None:
    assert pending(-1, SQLITE_MIGRATIONS) == list(SQLITE_MIGRATIONS)
    assert pending(0, NODE_MIGRATIONS) == list(NODE_MIGRATIONS)
    assert pending(NODE_MIGRATIONS[-1].version, NODE_MIGRATIONS) == []
    with pytest.raises(LocalProtocolError, match="newer than this X Chat"):
        pending(SQLITE_MIGRATIONS[-1].version + 1, SQLITE_MIGRATIONS)
