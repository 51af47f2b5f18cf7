"""NIP-01 events: ids against the spec and rust-nostr, strict field validation, rumors."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xchat.errors import DecodeError, InvalidSignature, LocalProtocolError
from xchat.wire.event import (
    MAX_CREATED_AT,
    Event,
    EventLimits,
    Rumor,
    compute_id,
    event_from_json,
    is_hex,
    parse_event,
    parse_rumor,
)

REMOTE_ERRORS = (DecodeError, InvalidSignature)
PUBKEY = "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
SIG = "ab" * 64  # parse_event does not check signatures (tests/core/test_events.py does)
FIELDS = ("id", "pubkey", "created_at", "kind", "tags", "content", "sig")

try:
    import nostr_sdk as _sdk

    SDK_KEYS = _sdk.Keys.generate()
except ImportError:  # pragma: no cover
    SDK_KEYS = None


def spec_id(pubkey: str, created_at: int, kind: int, tags: list[list[str]], content: str) -> str:
    """NIP-01's serialization with the stdlib: compact, UTF-8, JSON's mandatory escapes only."""
    text = json.dumps(
        [0, pubkey, created_at, kind, tags, content], separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(text.encode()).hexdigest()


def event_dict(**fields: Any) -> dict[str, Any]:
    """A well-formed event (id computed), with ``fields`` overriding any part of it."""
    base: dict[str, Any] = {
        "pubkey": PUBKEY,
        "created_at": 1_700_000_000,
        "kind": 1,
        "tags": [["e", "5c83da77af1dec6d7289834998ad7aafbd9e2191396d75ec3cc27f5a77226f36"]],
        "content": "hello",
        "sig": SIG,
    }
    base.update({k: v for k, v in fields.items() if k != "id"})
    if "id" in fields:
        base["id"] = fields["id"]
        return base
    try:
        base["id"] = spec_id(
            base["pubkey"], base["created_at"], base["kind"], base["tags"], base["content"]
        )
    except (TypeError, ValueError):  # fields no JSON serializer takes: any id will do
        base["id"] = "00" * 32
    return base


def without(field: str) -> dict[str, Any]:
    event = event_dict()
    del event[field]
    return event


# --- ids ----------------------------------------------------------------------------------------


def test_known_id() -> None:
    event = parse_event(event_dict())
    assert event.id == spec_id(PUBKEY, 1_700_000_000, 1, event.tags, "hello")
    assert compute_id(PUBKEY, 1_700_000_000, 1, event.tags, "hello").hex() == event.id


@pytest.mark.parametrize(
    "content",
    [
        "",
        'quote " backslash \\ slash /',
        "controls \n \r \t \b \f \x00 \x01 \x1f",
        "del \x7f and line separators \u2028 \u2029",
        "non-ascii é 漢字 😀",
        "</script><!--",
    ],
)
def test_id_escaping_follows_nip01(content: str) -> None:
    expected = spec_id(PUBKEY, 0, 1, [["t", content]], content)
    assert compute_id(PUBKEY, 0, 1, [["t", content]], content).hex() == expected
    event = event_dict(created_at=0, content=content, tags=[["t", content]])
    assert parse_event(event).id == expected


text_no_surrogates = st.text(st.characters(exclude_categories=["Cs"]), max_size=60)
tag_lists = st.lists(st.lists(text_no_surrogates, min_size=1, max_size=4), max_size=5)
# rust-nostr's Tag.parse needs a non-empty tag name.
sdk_tag_lists = st.lists(
    st.builds(
        lambda name, values: [name, *values],
        st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=10),
        st.lists(text_no_surrogates, max_size=3),
    ),
    max_size=5,
)
hex64 = st.binary(min_size=32, max_size=32).map(bytes.hex)
created = st.integers(min_value=0, max_value=MAX_CREATED_AT)
kinds = st.integers(min_value=0, max_value=65535)


@given(pubkey=hex64, created_at=created, kind=kinds, tags=tag_lists, content=text_no_surrogates)
def test_id_matches_the_spec(
    pubkey: str, created_at: int, kind: int, tags: list[list[str]], content: str
) -> None:
    expected = spec_id(pubkey, created_at, kind, tags, content)
    assert compute_id(pubkey, created_at, kind, tags, content).hex() == expected
    obj = {"id": expected, "pubkey": pubkey, "created_at": created_at, "kind": kind}
    obj |= {"tags": tags, "content": content, "sig": SIG}
    event = parse_event(obj)
    assert event.to_dict() == obj
    assert parse_event(orjson.loads(event.to_json())) == event
    assert event_from_json(event.to_json()) == event
    assert event_from_json(event.to_json().decode()) == event


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    created_at=st.integers(min_value=0, max_value=2**32),
    kind=kinds,
    tags=sdk_tag_lists,
    content=text_no_surrogates,
)
def test_ids_agree_with_nostr_sdk(
    created_at: int, kind: int, tags: list[list[str]], content: str
) -> None:
    sdk = pytest.importorskip("nostr_sdk")
    keys = SDK_KEYS
    builder = sdk.EventBuilder(sdk.Kind(kind), content).tags([sdk.Tag.parse(t) for t in tags])
    theirs = builder.custom_created_at(sdk.Timestamp.from_secs(created_at)).finalize(keys)
    event = event_from_json(theirs.as_json())
    assert event.id == theirs.id().to_hex()
    assert event.pubkey == keys.public_key().to_hex()
    assert event.content == content
    assert event.kind == kind
    assert event.created_at == created_at
    assert event.sig == theirs.signature()
    # And rust-nostr accepts the id of what we serialize back.
    assert sdk.Event.from_json(event.to_json().decode()).verify_id()


def test_wrong_id_is_an_invalid_signature() -> None:
    good = event_dict()
    for field, value in (("content", "hellO"), ("kind", 2), ("created_at", 1), ("tags", [])):
        tampered = dict(good, **{field: value})
        with pytest.raises(InvalidSignature, match="id does not match"):
            parse_event(tampered)
    with pytest.raises(InvalidSignature):
        parse_event(dict(good, id="00" * 32))


# --- malformed fields ---------------------------------------------------------------------------

MALFORMED = [
    *[pytest.param(without(field), id=f"missing-{field}") for field in FIELDS],
    pytest.param(event_dict(id="AB" * 32), id="id-uppercase"),
    pytest.param(event_dict(id="ab" * 31), id="id-short"),
    pytest.param(event_dict(id="ab" * 33), id="id-long"),
    pytest.param(event_dict(id="zz" * 32), id="id-not-hex"),
    pytest.param(event_dict(id=" " + "ab" * 31 + "a"), id="id-space"),
    pytest.param(event_dict(id=12), id="id-int"),
    pytest.param(event_dict(id=None), id="id-null"),
    pytest.param(event_dict(id=["ab" * 32]), id="id-list"),
    pytest.param(event_dict(sig="AB" * 64), id="sig-uppercase"),
    pytest.param(event_dict(sig="ab" * 63), id="sig-short"),
    pytest.param(event_dict(sig="ab" * 65), id="sig-long"),
    pytest.param(event_dict(sig="gg" * 64), id="sig-not-hex"),
    pytest.param(event_dict(sig=None), id="sig-null"),
    pytest.param(event_dict(sig=b"\xab" * 64), id="sig-bytes"),
    pytest.param(event_dict(pubkey=PUBKEY.upper()), id="pubkey-uppercase"),
    pytest.param(event_dict(pubkey=PUBKEY[:-2]), id="pubkey-short"),
    pytest.param(event_dict(pubkey=PUBKEY + "00"), id="pubkey-long"),
    pytest.param(event_dict(pubkey="npub1" + PUBKEY[5:]), id="pubkey-npub"),
    pytest.param(event_dict(pubkey=int(PUBKEY, 16)), id="pubkey-int"),
    pytest.param(event_dict(pubkey="\u0660" * 64), id="pubkey-arabic-digits"),
    pytest.param(event_dict(created_at=True), id="created_at-bool"),
    pytest.param(event_dict(created_at=1_700_000_000.0), id="created_at-float"),
    pytest.param(event_dict(created_at=-1), id="created_at-negative"),
    pytest.param(event_dict(created_at=MAX_CREATED_AT + 1), id="created_at-huge"),
    pytest.param(event_dict(created_at=2**64), id="created_at-u64"),
    pytest.param(event_dict(created_at="1700000000"), id="created_at-str"),
    pytest.param(event_dict(created_at=None), id="created_at-null"),
    pytest.param(event_dict(kind=False), id="kind-bool"),
    pytest.param(event_dict(kind=1.0), id="kind-float"),
    pytest.param(event_dict(kind=-1), id="kind-negative"),
    pytest.param(event_dict(kind=65536), id="kind-huge"),
    pytest.param(event_dict(kind="1"), id="kind-str"),
    pytest.param(event_dict(kind=None), id="kind-null"),
    pytest.param(event_dict(tags={}), id="tags-object"),
    pytest.param(event_dict(tags="e"), id="tags-str"),
    pytest.param(event_dict(tags=None), id="tags-null"),
    pytest.param(event_dict(tags=(("e", "x"),)), id="tags-tuple"),
    pytest.param(event_dict(tags=["e"]), id="tag-str"),
    pytest.param(event_dict(tags=[("e", "x")]), id="tag-tuple"),
    pytest.param(event_dict(tags=[["e", 1]]), id="tag-value-int"),
    pytest.param(event_dict(tags=[["e", None]]), id="tag-value-null"),
    pytest.param(event_dict(tags=[["e", ["x"]]]), id="tag-value-list"),
    pytest.param(event_dict(tags=[["e", True]]), id="tag-value-bool"),
    pytest.param(event_dict(tags=[["t"]] * 2001), id="tags-too-many"),
    pytest.param(event_dict(tags=[["t"] * 65]), id="tag-too-many-values"),
    pytest.param(event_dict(tags=[["t", "a" * 4097]]), id="tag-value-too-long"),
    pytest.param(event_dict(content=None), id="content-null"),
    pytest.param(event_dict(content=5), id="content-int"),
    pytest.param(event_dict(content=b"hello"), id="content-bytes"),
    pytest.param(event_dict(content=["hello"]), id="content-list"),
    pytest.param(event_dict(content="a" * (256 * 1024 + 1)), id="content-too-long"),
    pytest.param(event_dict(content="é" * (128 * 1024 + 1)), id="content-too-many-bytes"),
    pytest.param(event_dict(content="😀" * (64 * 1024 + 1)), id="content-4-byte-chars"),
    pytest.param(event_dict(content="\ud800"), id="content-lone-surrogate"),
    pytest.param(event_dict(tags=[["t", "\udfff"]]), id="tag-lone-surrogate"),
    pytest.param([], id="not-an-object-list"),
    pytest.param("{}", id="not-an-object-str"),
    pytest.param(None, id="not-an-object-null"),
]


@pytest.mark.parametrize("obj", MALFORMED)
def test_malformed_is_a_decode_error(obj: Any) -> None:
    with pytest.raises(DecodeError):
        parse_event(obj)


def test_missing_field_is_named() -> None:
    with pytest.raises(DecodeError, match="missing the field 'sig'"):
        parse_event(without("sig"))


def test_bool_is_not_an_int() -> None:
    # True == 1 in Python, so an id computed over kind 1 would otherwise match kind true.
    good = event_dict(kind=1)
    with pytest.raises(DecodeError, match="kind"):
        parse_event(dict(good, kind=True))


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"content": "a" * (256 * 1024)}, id="content-at-limit"),
        pytest.param({"content": "é" * (128 * 1024)}, id="content-bytes-at-limit"),
        pytest.param({"tags": [["t"]] * 2000}, id="tags-at-limit"),
        pytest.param({"tags": [["t"] * 64]}, id="tag-values-at-limit"),
        pytest.param({"tags": [["t", "a" * 4096]]}, id="tag-value-at-limit"),
        pytest.param({"tags": [[]]}, id="empty-tag"),
        pytest.param({"tags": []}, id="no-tags"),
        pytest.param({"created_at": 0, "kind": 0}, id="zeros"),
        pytest.param({"created_at": MAX_CREATED_AT, "kind": 65535}, id="maxima"),
    ],
)
def test_limits_are_inclusive(fields: dict[str, Any]) -> None:
    obj = event_dict(**fields)
    assert parse_event(obj).to_dict() == obj


def test_tag_value_limit_counts_bytes() -> None:
    with pytest.raises(DecodeError):
        parse_event(event_dict(tags=[["t", "é" * 4096]]))


def test_custom_limits() -> None:
    limits = EventLimits(max_content_bytes=10, max_tags=2, max_tag_values=3, max_tag_value_bytes=4)
    parse_event(event_dict(content="a" * 10, tags=[["abcd"] * 3] * 2), limits)
    for fields in (
        {"content": "a" * 11},
        {"content": "é" * 6},
        {"tags": [["t"]] * 3},
        {"tags": [["t"] * 4]},
        {"tags": [["abcde"]]},
    ):
        with pytest.raises(DecodeError):
            parse_event(event_dict(**fields), limits)


@pytest.mark.parametrize(
    "data",
    [b"", b"{", b"null", b"[]", b"\xff\xfe", "{'id': 1}", b'{"id": NaN}', None, 5],
)
def test_event_from_json_rejects(data: Any) -> None:
    with pytest.raises(DecodeError):
        event_from_json(data)


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | hex64
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


@settings(max_examples=300)
@given(obj=st.dictionaries(st.sampled_from([*FIELDS, "extra"]), json_values) | json_values)
def test_arbitrary_objects_raise_only_remote_errors(obj: Any) -> None:
    with pytest.raises(REMOTE_ERRORS):
        parse_event(obj)
    with pytest.raises(REMOTE_ERRORS):
        parse_rumor(obj)


@settings(max_examples=300)
@given(field=st.sampled_from(FIELDS), value=json_values)
def test_one_field_replaced_raises_only_remote_errors(field: str, value: Any) -> None:
    obj = event_dict()
    original = copy.deepcopy(obj)
    obj[field] = value
    if json.dumps(obj) == json.dumps(original):
        return
    with pytest.raises(REMOTE_ERRORS):
        parse_event(obj)


@given(data=st.binary(max_size=200) | st.text(max_size=200))
def test_event_from_json_garbage(data: bytes | str) -> None:
    with pytest.raises(REMOTE_ERRORS):
        event_from_json(data)


def test_extra_fields_are_ignored() -> None:
    obj = event_dict()
    event = parse_event(dict(obj, relay="wss://x", seen=True))
    assert event.to_dict() == obj


# --- helpers ------------------------------------------------------------------------------------


def test_tag_accessors() -> None:
    event = parse_event(event_dict(tags=[["p", "a"], ["e"], ["p", "b", "relay"], ["d", "x"]]))
    assert event.tag_values("p") == ["a", "b"]
    assert event.tag_values("e") == []
    assert event.first_tag("p") == "a"
    assert event.first_tag("d") == "x"
    assert event.first_tag("e") is None
    assert event.first_tag("q") is None


@pytest.mark.parametrize(
    ("text", "length", "expected"),
    [
        ("ab" * 32, 64, True),
        ("AB" * 32, 64, False),
        ("ab" * 32, 63, False),
        ("", 0, True),
        ("g", 1, False),
        (b"ab", 2, False),
        (None, 0, False),
    ],
)
def test_is_hex(text: Any, length: int, expected: bool) -> None:
    assert is_hex(text, length) is expected


# --- rumors -------------------------------------------------------------------------------------


def test_rumor_round_trip() -> None:
    rumor = Rumor.create(PUBKEY, 1_700_000_000, 14, [["p", PUBKEY]], "hi there")
    assert rumor.id == spec_id(PUBKEY, 1_700_000_000, 14, [["p", PUBKEY]], "hi there")
    assert "sig" not in rumor.to_dict()
    assert parse_rumor(rumor.to_dict()) == rumor
    assert parse_rumor(orjson.loads(rumor.to_json())) == rumor
    assert rumor.tag_values("p") == [PUBKEY]
    without_id = rumor.to_dict()
    del without_id["id"]
    assert parse_rumor(without_id) == rumor


@given(pubkey=hex64, created_at=created, kind=kinds, tags=tag_lists, content=text_no_surrogates)
def test_rumor_round_trip_any(
    pubkey: str, created_at: int, kind: int, tags: list[list[str]], content: str
) -> None:
    rumor = Rumor.create(pubkey, created_at, kind, tags, content)
    assert parse_rumor(orjson.loads(rumor.to_json())) == rumor


def test_rumor_with_wrong_id() -> None:
    obj = Rumor.create(PUBKEY, 1, 14, [], "hi").to_dict()
    with pytest.raises(InvalidSignature):
        parse_rumor(dict(obj, content="ho"))
    with pytest.raises(InvalidSignature):
        parse_rumor(dict(obj, id="00" * 32))


def test_signed_rumor_is_refused() -> None:
    obj = Rumor.create(PUBKEY, 1, 14, [], "hi").to_dict()
    with pytest.raises(DecodeError, match="must not be signed"):
        parse_rumor(dict(obj, sig=SIG))


@pytest.mark.parametrize(
    "fields",
    [
        {"pubkey": PUBKEY.upper()},
        {"created_at": -1},
        {"created_at": True},
        {"kind": 65536},
        {"tags": [[1]]},
        {"content": None},
    ],
)
def test_rumor_create_rejects(fields: dict[str, Any]) -> None:
    args: dict[str, Any] = {
        "pubkey": PUBKEY,
        "created_at": 1,
        "kind": 14,
        "tags": [],
        "content": "hi",
    }
    args.update(fields)
    with pytest.raises(LocalProtocolError):
        Rumor.create(**args)
    obj = dict(args, id="00" * 32)
    with pytest.raises(DecodeError):
        parse_rumor(obj)


def test_rumor_missing_field() -> None:
    obj = Rumor.create(PUBKEY, 1, 14, [], "hi").to_dict()
    for field in ("pubkey", "created_at", "kind", "tags", "content"):
        broken = dict(obj)
        del broken[field]
        with pytest.raises(DecodeError, match=f"missing the field '{field}'"):
            parse_rumor(broken)


def test_event_is_immutable() -> None:
    event = parse_event(event_dict())
    with pytest.raises(AttributeError):
        event.content = "changed"  # type: ignore[misc]
    assert isinstance(event, Event)
