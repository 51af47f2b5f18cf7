"""The schedule of lookups for contacts' bundles (sans-I/O): quick at first, then at
most every LOOKUP_MAX seconds."""

from __future__ import annotations

from xchat.node.lookups import LOOKUP_MAX, LOOKUP_START, LookupSchedule


def test_lookups_back_off_from_seconds_to_the_maximum() -> None:
    schedule = LookupSchedule()
    schedule.watch("bob", since=1000, now=1000)
    times = []
    now = 1000.0
    for _ in range(20):
        next_at = schedule.next_at("bob")
        assert next_at is not None
        assert schedule.due(next_at - 0.01) == []
        now = next_at
        assert schedule.due(now) == ["bob"]
        times.append(now - 1000)
        schedule.checked("bob", now)
    gaps = [b - a for a, b in zip([0.0, *times], times, strict=False)]
    assert gaps[0] == LOOKUP_START
    assert gaps[:5] == [2, 2, 4, 8, 16]
    assert max(gaps) == LOOKUP_MAX
    assert gaps[-1] == LOOKUP_MAX


def test_a_contact_added_long_ago_waits_the_maximum_and_forget_stops() -> None:
    schedule = LookupSchedule()
    schedule.watch("old", since=0, now=100_000)
    assert schedule.next_at("old") == 100_000 + LOOKUP_MAX
    schedule.watch("old", since=0, now=100_001)  # watching again changes nothing
    assert schedule.next_at("old") == 100_000 + LOOKUP_MAX
    schedule.watch("old", since=100_002, now=100_002)  # added again: quick again
    assert schedule.next_at("old") == 100_002 + LOOKUP_START
    schedule.forget("old")
    assert "old" not in schedule
    assert schedule.due(10**9) == []
