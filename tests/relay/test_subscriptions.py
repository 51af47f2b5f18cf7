"""The fan-out index finds exactly the subscriptions a brute-force match would."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from xchat.relay.subscriptions import Subscription, SubscriptionIndex
from xchat.wire.event import Event
from xchat.wire.filter import Filter

HEX = [c * 64 for c in "0123456789abcdef"]
values = st.sampled_from(HEX[:4])
words = st.sampled_from(["a", "b", "c"])


def sets(strategy: st.SearchStrategy[object]) -> st.SearchStrategy[frozenset[object] | None]:
    return st.none() | st.frozensets(strategy, max_size=3)


filters = st.builds(
    Filter,
    ids=sets(values),
    authors=sets(values),
    kinds=sets(st.integers(0, 3)),
    tags=st.dictionaries(
        st.sampled_from(["p", "e", "t"]),
        st.frozensets(values | words, min_size=1, max_size=2),
        max_size=2,
    ),
    since=st.none() | st.integers(0, 10),
    until=st.none() | st.integers(0, 10),
)
events = st.builds(
    lambda i, a, k, tags, t: Event(i, a, t, k, tags, "", "0" * 128),
    values,
    values,
    st.integers(0, 3),
    st.lists(
        st.tuples(st.sampled_from(["p", "e", "t", "x"]), values | words).map(list), max_size=3
    ),
    st.integers(0, 10),
)


@settings(max_examples=300)
@given(st.lists(st.lists(filters, min_size=1, max_size=3), max_size=12), events, st.data())
def test_index_matches_brute_force(
    requests: list[list[Filter]], event: Event, data: st.DataObject
) -> None:
    index = SubscriptionIndex()
    subs = [Subscription(None, f"s{i}", tuple(fs)) for i, fs in enumerate(requests)]
    for sub in subs:
        index.add(sub)
    removed = {i for i in range(len(subs)) if data.draw(st.booleans())}
    for i in removed:
        index.remove(subs[i])
    if subs and 0 in removed:
        index.remove(subs[0])  # removing twice is harmless
    live = [s for i, s in enumerate(subs) if i not in removed]
    expected = {id(s) for s in live if any(f.matches(event) for f in requests[subs.index(s)])}
    assert {id(s) for s in index.matching(event)} == expected
    assert index.count == len(live)
    for sub in live:
        index.remove(sub)
    assert index.count == 0
    assert all(not values for values in index._fields.values())
