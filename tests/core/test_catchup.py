"""Catch-up paging against a model relay: every stored event once, and always an end."""

from __future__ import annotations

import random
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xchat.core.catchup import MAX_LIMIT, CatchUp, event_size
from xchat.wire.event import Event

P1, P2 = "1" * 64, "2" * 64


def fake(n: int, created_at: int, p: str, size: int) -> Event:
    """An event as a page carries it (paging reads ids, times, tags and sizes only)."""
    return Event(
        id=f"{n:064x}",
        pubkey="0" * 64,
        created_at=created_at,
        kind=1059,
        tags=[["p", p]],
        content="x" * size,
        sig="0" * 128,
    )


@dataclass
class ModelRelay:
    """NIP-01 as relays do it: the newest ``min(limit, cap)`` matching events, here
    in random order and with duplicates; a connection dropped once an answer passes
    ``drop_bytes`` (today's ``xchat relay`` at 8 MiB), or at random. ``drop_bytes``
    must leave room for a page of every filter's busiest second, or nothing can pass."""

    events: list[Event]
    rng: random.Random
    caps: tuple[int, int]
    drop_bytes: int
    random_drops: int = 0  # how many more times to drop at random

    def answer(self, filters: list[dict[str, object]]) -> tuple[list[Event], bool]:
        page: dict[str, Event] = {}
        for f in filters:
            cap = self.rng.randint(*self.caps)
            limit = min(int(f["limit"]), cap)  # type: ignore[call-overload]
            keys = set(f["#p"])  # type: ignore[call-overload]
            since, until = int(f.get("since", 0)), f.get("until")  # type: ignore[call-overload]
            matching = [
                e
                for e in self.events
                if e.tags[0][1] in keys
                and e.created_at >= since
                and (until is None or e.created_at <= int(until))  # type: ignore[call-overload]
            ]
            matching.sort(key=lambda e: (-e.created_at, e.id))
            for e in matching[:limit]:
                page[e.id] = e
        sent = list(page.values())
        sent += self.rng.sample(sent, min(len(sent), self.rng.randint(0, 3)))  # duplicates
        self.rng.shuffle(sent)
        out, size = [], 0
        for e in sent:
            size += event_size(e)
            if size > self.drop_bytes:
                return out, False
            out.append(e)
        if self.random_drops and self.rng.random() < 0.3:
            self.random_drops -= 1
            return out[: self.rng.randint(0, len(out))], False
        return out, True


@st.composite
def backlogs(draw: st.DrawFn) -> tuple[list[Event], int]:
    """Events over a span of seconds, never more in one second than the smallest cap."""
    count = draw(st.integers(0, 300))
    span = draw(st.integers(1, 2000))
    per_second = draw(st.integers(1, 3))
    used: dict[int, int] = {}
    events = []
    rng = random.Random(draw(st.integers(0, 2**32)))
    for n in range(count):
        t = rng.randrange(span)
        if used.get(t, 0) >= per_second:
            continue
        used[t] = used.get(t, 0) + 1
        size = rng.choice([100, 2000, 9000, 60000])
        events.append(fake(n, 1_000_000 + t, rng.choice([P1, P2]), size))
    return events, per_second


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    backlogs(),
    st.integers(0, 2**32),
    st.integers(0, 5),
    st.sampled_from([1_000_000, 2_000_000, 8 * 1024 * 1024]),
    st.sampled_from([1_000, 30_000, 1024 * 1024]),
    st.booleans(),
)
def test_every_stored_event_arrives_exactly_once_and_paging_ends(
    backlog: tuple[list[Event], int],
    seed: int,
    random_drops: int,
    drop_bytes: int,
    page_bytes: int,
    since: bool,
) -> None:
    events, per_second = backlog
    rng = random.Random(seed)
    relay = ModelRelay(events, rng, (per_second, rng.choice([per_second, 10, 600])), drop_bytes)
    relay.random_drops = random_drops
    base = {"kinds": [1059]}
    if since:
        base["since"] = 1_000_000
    catch_up = CatchUp([{**base, "#p": [P1]}, {**base, "#p": [P2]}], page_bytes=page_bytes)
    delivered: list[str] = []
    for _ in range(5_000):
        if catch_up.done:
            break
        page, complete = relay.answer(catch_up.request())
        delivered += [e.id for e in catch_up.page(page, complete=complete)]
    assert catch_up.done, "paging did not end"
    assert len(delivered) == len(set(delivered)), "an event was delivered twice"
    assert set(delivered) == {e.id for e in events}, "a stored event was never delivered"


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 60))
def test_paging_ends_whatever_a_lying_relay_answers(seed: int, span: int) -> None:
    """A relay that invents events, ignores until and limit, and repeats itself: the
    catch-up still ends (until falls, or limit doubles, every complete page)."""
    rng = random.Random(seed)
    invented = iter(range(10**9))
    catch_up = CatchUp([{"kinds": [1059], "#p": [P1], "since": 1000}])
    pages = 0
    while not catch_up.done:
        pages += 1
        assert pages <= (span + 12) * (MAX_LIMIT + 1), "paging did not end"
        count = rng.randint(0, 20)
        page = [
            fake(next(invented), 1000 + rng.randrange(-5, span + 5), P1, rng.choice([10, 5000]))
            for _ in range(count)
        ]
        catch_up.page(page, complete=True)


def test_pages_shrink_to_the_byte_target_and_halve_after_a_drop() -> None:
    catch_up = CatchUp([{"kinds": [1059], "#p": [P1]}], page_bytes=1024 * 1024)
    big = [fake(n, 5000 - n, P1, 87_000) for n in range(20)]
    catch_up.page(big[:10], complete=True)
    (limit,) = catch_up.limits()
    assert limit * event_size(big[0]) <= 1024 * 1024 < (limit + 1) * event_size(big[0])
    before = catch_up.request()[0]["until"]
    catch_up.page(big[10:11], complete=False)  # dropped mid-answer
    assert catch_up.limits() == [limit // 2]
    assert catch_up.page_bytes == 512 * 1024  # aims lower from now on
    assert catch_up.request()[0]["until"] == before  # resumed, not restarted
    assert catch_up.drops == 1
    catch_up.page(big[11:13], complete=True)
    assert catch_up.limits()[0] * event_size(big[0]) <= 512 * 1024


def test_small_events_page_at_the_largest_limit() -> None:
    catch_up = CatchUp([{"kinds": [1059], "#p": [P1]}])
    catch_up.page([fake(n, 5000 - n, P1, 100) for n in range(250)], complete=True)
    assert catch_up.limits() == [MAX_LIMIT]
