"""NIP-01 filters: strict parsing, limits, and matching against a reference and rust-nostr."""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xchat.errors import DecodeError
from xchat.wire.event import MAX_CREATED_AT, Event, parse_event
from xchat.wire.filter import Filter, FilterLimits, matches_any, parse_filter

HEX_A = "a" * 64
HEX_B = "b" * 64
PUBKEY = "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"

try:
    import nostr_sdk as _sdk

    SDK_KEYS = [_sdk.Keys.generate() for _ in range(2)]
except ImportError:  # pragma: no cover
    SDK_KEYS = []

# --- strategies (also used by test_messages.py) -------------------------------------------------

hex64 = st.binary(min_size=32, max_size=32).map(bytes.hex)
text_no_surrogates = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
timestamps = st.integers(min_value=0, max_value=MAX_CREATED_AT)
kinds = st.integers(min_value=0, max_value=65535)
tag_letters = st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


@st.composite
def filter_dicts(draw: st.DrawFn, max_values: int = 4) -> dict[str, Any]:
    """Any valid filter object: every field optional, lists possibly empty."""
    obj: dict[str, Any] = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "ids": st.lists(hex64, max_size=max_values),
                "authors": st.lists(hex64, max_size=max_values),
                "kinds": st.lists(kinds, max_size=max_values),
                "since": timestamps,
                "until": timestamps,
                "limit": st.integers(min_value=0, max_value=2**31),
            },
        )
    )
    for letter in draw(st.lists(tag_letters, max_size=3, unique=True)):
        values = hex64 if letter in "ep" else text_no_surrogates
        obj["#" + letter] = draw(st.lists(values, max_size=max_values))
    return obj


filters = filter_dicts().map(parse_filter)


# --- parsing ------------------------------------------------------------------------------------


def test_full_filter() -> None:
    obj = {
        "ids": [HEX_A, HEX_A, HEX_B],
        "authors": [PUBKEY],
        "kinds": [1, 0, 1],
        "#e": [HEX_B],
        "#p": [PUBKEY],
        "#t": ["nostr", ""],
        "#E": ["not hex: only #e and #p are"],
        "since": 0,
        "until": MAX_CREATED_AT,
        "limit": 2**31,
    }
    f = parse_filter(obj)
    assert f == Filter(
        ids=frozenset({HEX_A, HEX_B}),
        authors=frozenset({PUBKEY}),
        kinds=frozenset({0, 1}),
        tags={
            "e": frozenset({HEX_B}),
            "p": frozenset({PUBKEY}),
            "t": frozenset({"nostr", ""}),
            "E": frozenset({"not hex: only #e and #p are"}),
        },
        since=0,
        until=MAX_CREATED_AT,
        limit=2**31,
    )
    assert not f.is_empty()
    assert f.to_json() == {
        "ids": [HEX_A, HEX_B],
        "authors": [PUBKEY],
        "kinds": [0, 1],
        "#E": ["not hex: only #e and #p are"],
        "#e": [HEX_B],
        "#p": [PUBKEY],
        "#t": ["", "nostr"],
        "since": 0,
        "until": MAX_CREATED_AT,
        "limit": 2**31,
    }


def test_empty_filter_matches_everything() -> None:
    f = parse_filter({})
    assert f == Filter()
    assert not f.is_empty()
    assert f.to_json() == {}
    assert f.matches(Event(HEX_A, PUBKEY, 0, 0, [], "", "00" * 64))


@pytest.mark.parametrize(
    "key",
    ["search", "#", "#ab", "#1", "#é", "#-", "e", "&e", "ids ", "IDS", "Kinds", "", "#e ", "##"],
)
def test_unknown_fields_are_refused(key: str) -> None:
    with pytest.raises(DecodeError, match="unsupported filter field"):
        parse_filter({key: []})


def test_unknown_field_is_quoted_short() -> None:
    with pytest.raises(DecodeError) as info:
        parse_filter({"x" * 1000: 1})
    assert len(str(info.value)) < 60


BAD_HEX = [
    HEX_A.upper(),
    HEX_A[:-1],
    HEX_A + "a",
    "g" * 64,
    " " + HEX_A[1:],
    "\u0660" * 64,  # Arabic-Indic digits
    "npub1" + HEX_A[5:],
    "",
    1,
    None,
    True,
    [HEX_A],
]


@pytest.mark.parametrize("key", ["ids", "authors", "#e", "#p"])
@pytest.mark.parametrize("value", BAD_HEX)
def test_hex_fields_need_exact_lowercase_hex(key: str, value: object) -> None:
    with pytest.raises(DecodeError, match="64 lowercase hex"):
        parse_filter({key: [HEX_B, value]})


@pytest.mark.parametrize("key", ["ids", "authors", "kinds", "#e", "#t", "#Z"])
@pytest.mark.parametrize("value", ["abc", {}, None, 1, True, HEX_A])
def test_lists_must_be_lists(key: str, value: object) -> None:
    with pytest.raises(DecodeError, match="must be a list"):
        parse_filter({key: value})


@pytest.mark.parametrize(
    ("key", "item"), [("ids", HEX_A), ("authors", HEX_A), ("kinds", 1), ("#e", HEX_A), ("#t", "x")]
)
def test_huge_lists_are_refused(key: str, item: object) -> None:
    assert parse_filter({key: [item] * 1000}) is not None  # at the limit
    with pytest.raises(DecodeError, match="more than 1000 values"):
        parse_filter({key: [item] * 1001})
    with pytest.raises(DecodeError, match="more than 1000 values"):
        parse_filter({key: [item] * 100_000})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("kinds", [True]),
        ("kinds", [False]),
        ("since", True),
        ("until", False),
        ("limit", True),
        ("kinds", [-1]),
        ("since", -1),
        ("until", -1),
        ("limit", -1),
        ("kinds", [65536]),
        ("since", MAX_CREATED_AT + 1),
        ("until", 2**64),
        ("limit", 2**31 + 1),
        ("kinds", [1.0]),
        ("since", 1.5),
        ("limit", 10.0),
        ("kinds", ["1"]),
        ("since", "1700000000"),
        ("limit", None),
        ("until", [1]),
    ],
)
def test_integers_are_strict(key: str, value: object) -> None:
    # True == 1 in Python: a bool must not pass as kind 1 or as a timestamp.
    with pytest.raises(DecodeError, match=f"filter {key} must be an integer"):
        parse_filter({key: value})


@pytest.mark.parametrize("value", [1, None, ["x"], {"x": 1}, True])
def test_tag_values_must_be_strings(value: object) -> None:
    with pytest.raises(DecodeError, match="short strings"):
        parse_filter({"#t": ["ok", value]})


def test_tag_value_limit_counts_utf8_bytes() -> None:
    assert parse_filter({"#t": ["a" * 1024]}).tags["t"] == {"a" * 1024}
    assert parse_filter({"#t": ["é" * 512]}).tags["t"] == {"é" * 512}  # 1024 bytes
    assert parse_filter({"#t": ["😀" * 256]}).tags["t"] == {"😀" * 256}
    for value in ("a" * 1025, "é" * 513, "😀" * 257, "a" * 1_000_000):
        with pytest.raises(DecodeError, match="short strings"):
            parse_filter({"#t": [value]})


def test_custom_limits() -> None:
    limits = FilterLimits(max_values=2, max_tag_value_bytes=3)
    parse_filter({"kinds": [1, 2], "#t": ["abc", "é"]}, limits)
    for obj in ({"kinds": [1, 2, 3]}, {"#t": ["abcd"]}, {"#t": ["éé"]}, {"ids": [HEX_A] * 3}):
        with pytest.raises(DecodeError):
            parse_filter(obj, limits)


@pytest.mark.parametrize("obj", [[], "{}", None, 1, True, [{"kinds": [1]}], b"{}"])
def test_a_filter_is_an_object(obj: object) -> None:
    with pytest.raises(DecodeError, match="must be a JSON object"):
        parse_filter(obj)


def test_empty_lists_match_nothing() -> None:
    event = Event(HEX_A, PUBKEY, 10, 1, [["t", "x"], ["e", HEX_B]], "", "00" * 64)
    for key in ("ids", "authors", "kinds", "#t", "#e", "#q"):
        f = parse_filter({key: []})
        assert f.is_empty(), key
        assert not f.matches(event), key
        assert parse_filter(f.to_json()) == f


def test_since_after_until_is_empty() -> None:
    assert parse_filter({"since": 11, "until": 10}).is_empty()
    assert not parse_filter({"since": 10, "until": 10}).is_empty()
    assert not parse_filter({"since": 10}).is_empty()
    assert not parse_filter({"until": 0}).is_empty()
    event = Event(HEX_A, PUBKEY, 10, 1, [], "", "00" * 64)
    assert parse_filter({"since": 10, "until": 10}).matches(event)
    assert not parse_filter({"since": 11, "until": 10}).matches(event)
    assert not parse_filter({"since": 11}).matches(event)
    assert not parse_filter({"until": 9}).matches(event)


def test_limit_does_not_affect_matching() -> None:
    event = Event(HEX_A, PUBKEY, 10, 1, [], "", "00" * 64)
    assert parse_filter({"limit": 0}).matches(event)


def test_filters_are_hashable_values() -> None:
    one = parse_filter({"kinds": [1, 2], "#t": ["x"]})
    two = parse_filter(orjson.loads(b'{"#t":["x","x"],"kinds":[2,1,2]}'))
    assert one == two
    assert hash(one) == hash(two)
    assert one.to_json() == two.to_json()


@given(filter_dicts())
def test_to_json_round_trips(obj: dict[str, Any]) -> None:
    f = parse_filter(obj)
    data = f.to_json()
    assert parse_filter(data) == f
    assert parse_filter(orjson.loads(orjson.dumps(data))) == f
    assert {k: sorted(set(v)) if isinstance(v, list) else v for k, v in obj.items()} == data


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=10)
    | hex64
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=10,
)
filter_keys = st.sampled_from(
    ["ids", "authors", "kinds", "since", "until", "limit", "#e", "#p", "#t", "#E", "search"]
)


@settings(max_examples=300)
@given(st.dictionaries(filter_keys | st.text(max_size=3), json_values) | json_values)
def test_arbitrary_objects_raise_only_decode_error(obj: Any) -> None:
    with contextlib.suppress(DecodeError):
        f = parse_filter(obj)
        assert parse_filter(f.to_json()) == f


# --- matching -----------------------------------------------------------------------------------

# Small pools, so that events and filters often agree and often do not.
ID_POOL = [HEX_A, HEX_B, "c" * 64]
PUBKEY_POOL = [PUBKEY, "d" * 64]
WORD_POOL = ["x", "y", "", "X"]
TAG_NAMES = ["e", "p", "t", "a", "T", "ee", ""]


def pool_for(name: str) -> list[str]:
    return {"e": ID_POOL, "p": PUBKEY_POOL}.get(name, WORD_POOL)


@st.composite
def pool_tags(draw: st.DrawFn) -> list[str]:
    name = draw(st.sampled_from(TAG_NAMES))
    shape = draw(st.sampled_from(["empty", "name-only", "value", "value-and-more"]))
    if shape == "empty":
        return []
    if shape == "name-only":
        return [name]
    value = draw(st.sampled_from(pool_for(name[:1])))
    if shape == "value":
        return [name, value]
    return [name, value, *draw(st.lists(st.sampled_from(WORD_POOL + ID_POOL), max_size=2))]


pool_events = st.builds(
    Event,
    id=st.sampled_from(ID_POOL),
    pubkey=st.sampled_from(PUBKEY_POOL),
    created_at=st.integers(min_value=0, max_value=6),
    kind=st.integers(min_value=0, max_value=3),
    tags=st.lists(pool_tags(), max_size=4),
    content=st.just(""),
    sig=st.just("00" * 64),
)


@st.composite
def pool_filters(draw: st.DrawFn, min_values: int = 0) -> dict[str, Any]:
    """Up to three conditions (more would rarely all hold) over the pools."""

    def pooled(pool: list[Any], size: int = 3) -> st.SearchStrategy[list[Any]]:
        return st.lists(st.sampled_from(pool), min_size=min_values, max_size=size)

    fields: dict[str, st.SearchStrategy[Any]] = {
        "ids": pooled(ID_POOL),
        "authors": pooled(PUBKEY_POOL, 2),
        "kinds": pooled([0, 1, 2, 3]),
        "since": st.integers(0, 6),
        "until": st.integers(0, 6),
        "limit": st.integers(0, 5),
        **{"#" + name: pooled(pool_for(name)) for name in "eptaT"},
    }
    keys = draw(st.lists(st.sampled_from(list(fields)), min_size=1, max_size=3, unique=True))
    return {key: draw(fields[key]) for key in keys}


def reference_matches(obj: dict[str, Any], event: Event) -> bool:
    """NIP-01 read literally: every condition present must hold."""
    for key, value in obj.items():
        if key == "ids":
            ok = event.id in value
        elif key == "authors":
            ok = event.pubkey in value
        elif key == "kinds":
            ok = event.kind in value
        elif key == "since":
            ok = event.created_at >= value
        elif key == "until":
            ok = event.created_at <= value
        elif key == "limit":
            ok = True
        else:
            name = key[1:]
            event_values = [tag[1] for tag in event.tags if len(tag) > 1 and tag[0] == name]
            ok = any(v in value for v in event_values)
        if not ok:
            return False
    return True


@settings(max_examples=400)
@given(obj=pool_filters(), event=pool_events)
def test_matches_agrees_with_reference(obj: dict[str, Any], event: Event) -> None:
    f = parse_filter(obj)
    assert f.matches(event) is reference_matches(obj, event)
    if f.is_empty():
        assert not f.matches(event)


@given(objs=st.lists(pool_filters(), max_size=3), event=pool_events)
def test_matches_any_is_or(objs: list[dict[str, Any]], event: Event) -> None:
    parsed = [parse_filter(obj) for obj in objs]
    expected = any(reference_matches(obj, event) for obj in objs)
    assert matches_any(parsed, event) is expected
    assert matches_any(tuple(parsed), event) is expected


def test_tag_matching_uses_the_first_value_only() -> None:
    event = Event(HEX_A, PUBKEY, 0, 1, [["t", "x", "y"], ["e"], ["p", "z", PUBKEY]], "", "0" * 128)
    assert parse_filter({"#t": ["x"]}).matches(event)
    assert not parse_filter({"#t": ["y"]}).matches(event)
    assert not parse_filter({"#p": [PUBKEY]}).matches(event)
    assert not parse_filter({"#e": [HEX_A]}).matches(event)
    # Tag names are case-sensitive, and conditions on two tags must both hold.
    assert not parse_filter({"#T": ["x"]}).matches(event)
    assert not parse_filter({"#t": ["x"], "#q": ["x"]}).matches(event)


# --- rust-nostr agrees --------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=pool_filters(min_values=1), event=pool_events, key=st.integers(0, 1), own=st.booleans())
def test_matches_agrees_with_nostr_sdk(
    obj: dict[str, Any], event: Event, key: int, own: bool
) -> None:
    # rust-nostr treats an empty list as absent, where we match nothing (NIP-01 requires
    # lists to be non-empty), so both sides get non-empty lists here.
    sdk = pytest.importorskip("nostr_sdk")
    tags = [sdk.Tag.parse(t) for t in event.tags if t and t[0]]
    signed = (
        sdk.EventBuilder(sdk.Kind(event.kind), "")
        .tags(tags)
        .custom_created_at(sdk.Timestamp.from_secs(event.created_at))
        .finalize(SDK_KEYS[key])
    )
    ours = parse_event(orjson.loads(signed.as_json()))
    if own:  # let ids and authors name the signed event
        for field, value in (("ids", ours.id), ("authors", ours.pubkey)):
            if field in obj:
                obj[field] = [*obj[field], value]
    f = parse_filter(obj)
    theirs = sdk.Filter.from_json(orjson.dumps(f.to_json()).decode())
    expected = reference_matches(obj, ours)
    assert f.matches(ours) is expected
    assert theirs.match_event(signed) is expected


def test_nostr_sdk_filters_parse() -> None:
    sdk = pytest.importorskip("nostr_sdk")
    keys = SDK_KEYS[0]
    event_id = sdk.EventId.parse(HEX_A)
    theirs = (
        sdk.Filter()
        .ids([event_id])
        .authors([keys.public_key()])
        .kinds([sdk.Kind(1), sdk.Kind(30023)])
        .since(sdk.Timestamp.from_secs(5))
        .until(sdk.Timestamp.from_secs(10))
        .limit(7)
        .hashtags(["nostr"])
        .pubkeys([keys.public_key()])
        .events([event_id])
        .identifier("d-tag")
    )
    f = parse_filter(orjson.loads(theirs.as_json()))
    pk = keys.public_key().to_hex()
    assert f == Filter(
        ids=frozenset({HEX_A}),
        authors=frozenset({pk}),
        kinds=frozenset({1, 30023}),
        tags={
            "t": frozenset({"nostr"}),
            "p": frozenset({pk}),
            "e": frozenset({HEX_A}),
            "d": frozenset({"d-tag"}),
        },
        since=5,
        until=10,
        limit=7,
    )
    # And theirs reads ours back to the same filter.
    back = sdk.Filter.from_json(orjson.dumps(f.to_json()).decode())
    assert parse_filter(orjson.loads(back.as_json())) == f
