"""NIP-01/42/45 messages: round trips, every malformed case, fuzzing, and rust-nostr interop."""

from __future__ import annotations

import json
import string
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.wire.test_filter import filter_dicts, filters, hex64, json_values, kinds, timestamps
from xchat.errors import DecodeError, LocalProtocolError
from xchat.wire import messages as m
from xchat.wire.event import Event, EventLimits, compute_id, parse_event
from xchat.wire.filter import Filter, FilterLimits, parse_filter
from xchat.wire.messages import MessageError, MessageLimits, OkPrefix

PUBKEY = "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
SIG = "ab" * 64  # signatures are not checked by the codec

try:
    import nostr_sdk as _sdk

    SDK_KEYS = _sdk.Keys.generate()
except ImportError:  # pragma: no cover
    SDK_KEYS = None


def event_dict(**fields: Any) -> dict[str, Any]:
    """A well-formed event object (id computed unless given), fields overridden."""
    obj: dict[str, Any] = {
        "pubkey": PUBKEY,
        "created_at": 1_700_000_000,
        "kind": 1,
        "tags": [["p", PUBKEY]],
        "content": "hello",
        "sig": SIG,
    }
    obj |= {k: v for k, v in fields.items() if k != "id"}
    obj["id"] = (
        fields.get("id")
        or compute_id(
            obj["pubkey"], obj["created_at"], obj["kind"], obj["tags"], obj["content"]
        ).hex()
    )
    return obj


EVENT = event_dict()
EVENT_ID = EVENT["id"]


def dumps(value: object) -> str:
    return orjson.dumps(value).decode()


# --- strategies ---------------------------------------------------------------------------------

text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
sub_ids = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=64)
tag_lists = st.lists(st.lists(text, min_size=1, max_size=4), max_size=5)


@st.composite
def events(draw: st.DrawFn) -> Event:
    pubkey, created_at, kind = draw(hex64), draw(timestamps), draw(kinds)
    tags, content = draw(tag_lists), draw(text)
    event_id = compute_id(pubkey, created_at, kind, tags, content).hex()
    sig = draw(st.binary(min_size=64, max_size=64)).hex()
    return Event(event_id, pubkey, created_at, kind, tags, content, sig)


filter_tuples = st.lists(filters, min_size=1, max_size=10).map(tuple)


# --- client to relay ----------------------------------------------------------------------------


@given(event=events(), as_bytes=st.booleans())
def test_event_round_trip(event: Event, as_bytes: bool) -> None:
    data = m.publish_message(event)
    message = m.parse_client_message(data.encode() if as_bytes else data)
    assert isinstance(message, m.ClientEvent)
    assert message.event == event
    assert message.json == event.to_json().decode()
    assert parse_event(orjson.loads(message.json)) == event


@given(event=events())
def test_auth_round_trip(event: Event) -> None:
    message = m.parse_client_message(m.auth_message(event))
    assert message == m.ClientAuth(event, event.to_json().decode())


@given(sub_id=sub_ids, fs=filter_tuples, as_dicts=st.booleans())
def test_req_and_count_round_trip(sub_id: str, fs: tuple[Filter, ...], as_dicts: bool) -> None:
    given_filters = [f.to_json() for f in fs] if as_dicts else list(fs)
    assert m.parse_client_message(m.req_message(sub_id, given_filters)) == m.ClientReq(sub_id, fs)
    count = m.parse_client_message(m.count_request(sub_id, given_filters))
    assert count == m.ClientCount(sub_id, fs)


@given(sub_id=sub_ids)
def test_close_round_trip(sub_id: str) -> None:
    assert m.parse_client_message(m.close_message(sub_id)) == m.ClientClose(sub_id)
    assert m.parse_client_message(m.close_message(sub_id).encode()) == m.ClientClose(sub_id)


def test_spec_examples_parse() -> None:
    # NIP-42's flow and NIP-45's examples, as written (with spaces).
    pk = PUBKEY
    assert m.parse_client_message('["REQ", "sub_1", {"kinds": [4]}]') == m.ClientReq(
        "sub_1", (Filter(kinds=frozenset({4})),)
    )
    count = m.parse_client_message(f'["COUNT", "q", {{"kinds": [1, 7], "authors": ["{pk}"]}}]')
    assert count == m.ClientCount("q", (Filter(kinds=frozenset({1, 7}), authors=frozenset({pk})),))
    assert m.parse_relay_message('["COUNT", "q", {"count": 5}]') == m.RelayCount("q", 5)
    approx = m.parse_relay_message('["COUNT", "q", {"count": 93412452, "approximate": true}]')
    assert approx == m.RelayCount("q", 93412452, approximate=True)
    hll = m.parse_relay_message('["COUNT", "q", {"count": 16578, "hll": "0607"}]')
    assert hll == m.RelayCount("q", 16578)
    assert m.parse_relay_message('["AUTH", "challengestringhere"]') == m.RelayAuth(
        "challengestringhere"
    )


def test_pretty_printed_messages_parse() -> None:
    data = json.dumps(["EVENT", EVENT], indent=4, ensure_ascii=True)
    message = m.parse_client_message("\n \t" + data + "\r\n")
    assert isinstance(message, m.ClientEvent)
    assert message.event == parse_event(EVENT)
    assert message.json == dumps(EVENT)  # compact, the client's key order


def test_stored_json_is_compact_and_exact() -> None:
    # Key order as the client sent it; whitespace and escapes normalised.
    reordered = dict(reversed(list(EVENT.items())))
    escaped = json.dumps(["EVENT", reordered], ensure_ascii=True).replace("hello", "h\\u0065llo")
    message = m.parse_client_message(escaped)
    assert isinstance(message, m.ClientEvent)
    assert message.json == dumps(reordered)
    assert list(orjson.loads(message.json)) == list(reordered)


def test_stored_json_drops_extra_fields_and_duplicate_keys() -> None:
    extra = m.parse_client_message(dumps(["EVENT", dict(EVENT, seen_on=["wss://x"], id2=1)]))
    assert isinstance(extra, m.ClientEvent)
    assert orjson.loads(extra.json) == EVENT
    assert "seen_on" not in extra.json
    # {"content": "evil", ..., "content": "hello"}: orjson keeps the last, as checked; a
    # parser keeping the first would see other content under the same id, so never store it.
    body = dumps(EVENT)[1:]
    duplicate = '["EVENT",{"content":"evil",' + body + "]"
    message = m.parse_client_message(duplicate)
    assert isinstance(message, m.ClientEvent)
    assert "evil" not in message.json
    assert orjson.loads(message.json) == EVENT


def test_client_messages_do_not_parse_as_relay_messages() -> None:
    event = parse_event(EVENT)
    for data in (m.req_message("s", [{}]), m.close_message("s"), m.publish_message(event)):
        with pytest.raises(MessageError):
            m.parse_relay_message(data)
    # AUTH and COUNT exist both ways, in different shapes.
    with pytest.raises(MessageError, match="challenge must be a string"):
        m.parse_relay_message(m.auth_message(event))
    with pytest.raises(MessageError, match="COUNT result"):
        m.parse_relay_message(m.count_request("s", [{"kinds": [1]}]))


# --- relay to client ----------------------------------------------------------------------------


@given(sub_id=sub_ids, event=events())
def test_relay_event_round_trip(sub_id: str, event: Event) -> None:
    stored = m.parse_client_message(m.publish_message(event))
    assert isinstance(stored, m.ClientEvent)
    data = m.event_message(sub_id, stored.json)
    assert m.parse_relay_message(data) == m.RelayEvent(sub_id, event)
    assert orjson.loads(data) == ["EVENT", sub_id, event.to_dict()]


@given(event_id=hex64, accepted=st.booleans(), message=text)
def test_ok_round_trip(event_id: str, accepted: bool, message: str) -> None:
    data = m.ok_message(event_id, accepted, message)
    assert m.parse_relay_message(data) == m.RelayOk(event_id, accepted, message)
    assert m.parse_relay_message(data.encode()) == m.RelayOk(event_id, accepted, message)


@given(sub_id=sub_ids, message=text, count=st.integers(0, 2**63), approximate=st.booleans())
def test_other_relay_messages_round_trip(
    sub_id: str, message: str, count: int, approximate: bool
) -> None:
    assert m.parse_relay_message(m.eose_message(sub_id)) == m.RelayEose(sub_id)
    assert m.parse_relay_message(m.closed_message(sub_id, message)) == m.RelayClosed(
        sub_id, message
    )
    assert m.parse_relay_message(m.notice_message(message)) == m.RelayNotice(message)
    assert m.parse_relay_message(m.auth_challenge_message(message)) == m.RelayAuth(message)
    counted = m.parse_relay_message(m.count_message(sub_id, count, approximate))
    assert counted == m.RelayCount(sub_id, count, approximate)


def test_relay_message_text() -> None:
    assert m.eose_message("s") == '["EOSE","s"]'
    assert m.ok_message(EVENT_ID, True, "") == f'["OK","{EVENT_ID}",true,""]'
    assert m.closed_message("s", "error: x") == '["CLOSED","s","error: x"]'
    assert m.notice_message('a "quote"') == '["NOTICE","a \\"quote\\""]'
    assert m.auth_challenge_message("c") == '["AUTH","c"]'
    assert m.count_message("s", 3) == '["COUNT","s",{"count":3}]'
    assert m.count_message("s", 3, True) == '["COUNT","s",{"count":3,"approximate":true}]'
    assert m.event_message('s"]', "{}") == '["EVENT","s\\"]",{}]'


def test_relay_messages_do_not_parse_as_client_messages() -> None:
    for data in (m.eose_message("s"), m.ok_message(EVENT_ID, True, ""), m.notice_message("x")):
        with pytest.raises(MessageError, match="unknown message type"):
            m.parse_client_message(data)
    with pytest.raises(MessageError, match="2 elements") as info:
        m.parse_client_message(m.event_message("s", dumps(EVENT)))
    assert info.value.verb == "EVENT"
    with pytest.raises(MessageError, match="event object"):
        m.parse_client_message(m.auth_challenge_message("c"))
    with pytest.raises(MessageError, match="unsupported filter field 'count'"):
        m.parse_client_message(m.count_message("s", 1))


# --- malformed client messages ------------------------------------------------------------------

BAD_ID_EVENT = dict(EVENT, content="tampered")
ELEVEN = [{}] * 11
SUB64 = "s" * 64

# (message, reason, verb, sub_id, event_id)
MALFORMED_CLIENT: list[tuple[Any, str, str | None, str | None, str | None]] = [
    (b"", "not valid JSON", None, None, None),
    (b"[", "not valid JSON", None, None, None),
    ("['CLOSE', 's']", "not valid JSON", None, None, None),
    (b'["CLOSE","s"] x', "not valid JSON", None, None, None),
    (b'\xef\xbb\xbf["CLOSE","s"]', "not valid JSON", None, None, None),
    (b'["CLOSE","\xff"]', "not valid JSON", None, None, None),
    ('["CLOSE","\ud800"]', "not valid JSON", None, None, None),
    ('["CLOSE","\\ud800"]', "not valid JSON", None, None, None),
    ("[NaN]", "not valid JSON", None, None, None),
    ("{}", "non-empty JSON array", None, None, None),
    ("null", "non-empty JSON array", None, None, None),
    ('"EVENT"', "non-empty JSON array", None, None, None),
    ("[]", "non-empty JSON array", None, None, None),
    ('["FOO"]', "unknown message type", None, None, None),
    ('["event",{}]', "unknown message type", None, None, None),
    ('["NEG-OPEN","s",{},"00"]', "NIP-77", "NEG-OPEN", "s", None),
    ('[1,"s"]', "unknown message type", None, None, None),
    ('[null,"s"]', "unknown message type", None, None, None),
    ('[["REQ"],"s"]', "unknown message type", None, None, None),
    ('[{"EVENT":1}]', "unknown message type", None, None, None),
    ('["EVENT"]', "2 elements", "EVENT", None, None),
    (["EVENT", EVENT, EVENT], "2 elements", "EVENT", None, EVENT_ID),
    (["EVENT", "s", EVENT], "2 elements", "EVENT", None, None),
    (["EVENT", BAD_ID_EVENT], "id does not match", "EVENT", None, EVENT_ID),
    (["EVENT", dict(EVENT, id="00" * 32)], "id does not match", "EVENT", None, "00" * 32),
    (["EVENT", {k: v for k, v in EVENT.items() if k != "sig"}], "'sig'", "EVENT", None, EVENT_ID),
    (["EVENT", dict(EVENT, sig="AB" * 64)], "sig must be", "EVENT", None, EVENT_ID),
    (["EVENT", dict(EVENT, kind=True)], "kind", "EVENT", None, EVENT_ID),
    (["EVENT", dict(EVENT, id=EVENT_ID.upper())], "id must be", "EVENT", None, EVENT_ID.upper()),
    (["EVENT", dict(EVENT, id="abc")], "id must be", "EVENT", None, "abc"),
    (["EVENT", dict(EVENT, id="")], "id must be", "EVENT", None, None),
    (["EVENT", dict(EVENT, id=5)], "id must be", "EVENT", None, None),
    (["EVENT", dict(EVENT, id="x" * 10_000)], "id must be", "EVENT", None, None),
    (["EVENT", "not an event"], "JSON object", "EVENT", None, None),
    (["EVENT", [EVENT]], "JSON object", "EVENT", None, None),
    (["EVENT", None], "JSON object", "EVENT", None, None),
    ('["REQ"]', "needs a subscription id", "REQ", None, None),
    ('["REQ",""]', "subscription id must be", "REQ", "", None),
    ('["REQ",5,{}]', "subscription id must be", "REQ", None, None),
    ('["REQ",null,{}]', "subscription id must be", "REQ", None, None),
    ('["REQ",["s"],{}]', "subscription id must be", "REQ", None, None),
    (["REQ", SUB64 + "s", {}], "subscription id must be", "REQ", SUB64 + "s", None),
    ('["REQ","s"]', "at least one filter", "REQ", "s", None),
    (["REQ", "s", *ELEVEN], "more than 10 filters", "REQ", "s", None),
    (["REQ", SUB64, {}, {"kinds": 1}], "kinds must be a list", "REQ", SUB64, None),
    ('["REQ","s",{"search":"x"}]', "unsupported filter field", "REQ", "s", None),
    ('["REQ","s",{"ids":["abc"]}]', "64 lowercase hex", "REQ", "s", None),
    ('["REQ","s",[]]', "a filter must be a JSON object", "REQ", "s", None),
    ('["REQ","s",null]', "a filter must be a JSON object", "REQ", "s", None),
    ('["REQ","s","{}"]', "a filter must be a JSON object", "REQ", "s", None),
    ('["COUNT"]', "needs a subscription id", "COUNT", None, None),
    ('["COUNT",""]', "subscription id must be", "COUNT", "", None),
    ('["COUNT","q"]', "at least one filter", "COUNT", "q", None),
    (["COUNT", "q", *ELEVEN], "more than 10 filters", "COUNT", "q", None),
    ('["COUNT","q",{"limit":true}]', "limit must be an integer", "COUNT", "q", None),
    ('["COUNT","q",{"count":1}]', "unsupported filter field", "COUNT", "q", None),
    ('["CLOSE"]', "needs a subscription id", "CLOSE", None, None),
    ('["CLOSE",""]', "subscription id must be", "CLOSE", None, None),
    ('["CLOSE",1]', "subscription id must be", "CLOSE", None, None),
    ('["CLOSE","s","t"]', "2 elements", "CLOSE", "s", None),
    ('["CLOSE","s",{}]', "2 elements", "CLOSE", "s", None),
    ('["AUTH"]', "2 elements", "AUTH", None, None),
    ('["AUTH","challenge"]', "must carry an event object", "AUTH", None, None),
    ('["AUTH",null]', "must carry an event object", "AUTH", None, None),
    (["AUTH", EVENT, "x"], "2 elements", "AUTH", None, EVENT_ID),
    (["AUTH", BAD_ID_EVENT], "id does not match", "AUTH", None, EVENT_ID),
    (["AUTH", dict(EVENT, tags=None)], "tags", "AUTH", None, EVENT_ID),
]


def as_data(message: Any) -> str | bytes:
    return message if isinstance(message, str | bytes) else dumps(message)


@pytest.mark.parametrize(
    ("message", "reason", "verb", "sub_id", "event_id"),
    [pytest.param(*case, id=f"{i}-{str(case[0])[:30]}") for i, case in enumerate(MALFORMED_CLIENT)],
)
def test_malformed_client_messages(
    message: Any, reason: str, verb: str | None, sub_id: str | None, event_id: str | None
) -> None:
    with pytest.raises(MessageError, match=reason) as info:
        m.parse_client_message(as_data(message))
    exc = info.value
    assert isinstance(exc, DecodeError)
    assert (exc.verb, exc.sub_id, exc.event_id) == (verb, sub_id, event_id)
    assert str(exc) == exc.reason
    assert len(exc.reason) < 120
    check_error(exc)  # always a well-formed answer


def test_error_replies() -> None:
    def reply_to(data: Any) -> m.RelayMessage:
        with pytest.raises(MessageError) as info:
            m.parse_client_message(as_data(data))
        return m.parse_relay_message(info.value.reply())

    assert reply_to(["EVENT", BAD_ID_EVENT]) == m.RelayOk(
        EVENT_ID, False, "invalid: event id does not match its content"
    )
    assert reply_to(["AUTH", BAD_ID_EVENT]) == m.RelayOk(
        EVENT_ID, False, "invalid: event id does not match its content"
    )
    assert reply_to('["REQ","s"]') == m.RelayClosed(
        "s", "invalid: REQ message needs at least one filter"
    )
    assert reply_to('["COUNT","s",1]') == m.RelayClosed(
        "s", "invalid: a filter must be a JSON object"
    )
    assert reply_to(["EVENT", "junk"]) == m.RelayNotice("invalid: an event must be a JSON object")
    assert reply_to('["CLOSE","s",1]') == m.RelayNotice(
        "invalid: CLOSE message must have 2 elements"
    )
    assert reply_to("[") == m.RelayNotice("invalid: message is not valid JSON")


def test_message_size_is_checked_before_parsing() -> None:
    limits = MessageLimits(max_message_bytes=100)
    at_limit = '["CLOSE","' + "s" * 64 + '"]'
    at_limit = at_limit.replace('["', '[ "', 100 - len(at_limit))
    at_limit += " " * (100 - len(at_limit))
    assert len(at_limit) == 100
    assert m.parse_client_message(at_limit, limits) == m.ClientClose("s" * 64)
    assert m.parse_client_message(at_limit.encode(), limits) == m.ClientClose("s" * 64)
    notice = '["NOTICE","a' + "é" * 43 + '"]'  # 57 characters, 100 bytes
    assert m.parse_relay_message(notice, limits) == m.RelayNotice("a" + "é" * 43)
    for data in (
        at_limit + " ",
        (at_limit + " ").encode(),
        "[" * 101,  # would be a nesting error if it were parsed
        '["NOTICE","' + "é" * 45 + '"]',  # 58 characters, 103 bytes
        '["NOTICE","' + "😀" * 23 + '"]',  # 36 characters, 105 bytes
    ):
        for parse in (m.parse_client_message, m.parse_relay_message):
            with pytest.raises(MessageError, match="larger than 100 bytes"):
                parse(data, limits)
    # The default is 256 KiB.
    assert m.DEFAULT_MESSAGE_LIMITS.max_message_bytes == 256 * 1024
    with pytest.raises(MessageError, match="larger than 262144 bytes"):
        m.parse_client_message("[" + " " * 262144 + "]")


def test_limits_are_applied() -> None:
    limits = MessageLimits(
        max_filters_per_req=2,
        max_sub_id_length=3,
        event_limits=EventLimits(max_content_bytes=4),
        filter_limits=FilterLimits(max_values=1),
    )
    assert m.parse_client_message('["REQ","abc",{},{}]', limits) == m.ClientReq(
        "abc", (Filter(), Filter())
    )
    cases = [
        ('["REQ","abc",{},{},{}]', "more than 2 filters"),
        ('["REQ","abcd",{}]', "at most 3 characters"),
        ('["CLOSE","abcd"]', "at most 3 characters"),
        ('["REQ","abc",{"kinds":[1,2]}]', "more than 1 values"),
        (dumps(["EVENT", event_dict(content="hello")]), "content is over"),
    ]
    for data, reason in cases:
        with pytest.raises(MessageError, match=reason):
            m.parse_client_message(data, limits)
    with pytest.raises(MessageError, match="at most 3 characters"):
        m.parse_relay_message('["EOSE","abcd"]', limits)


@pytest.mark.parametrize("data", [None, 5, ["CLOSE", "s"], bytearray(b'["CLOSE","s"]'), 1.5])
def test_non_text_input(data: Any) -> None:
    for parse in (m.parse_client_message, m.parse_relay_message):
        with pytest.raises(MessageError, match="must be text"):
            parse(data)


# --- malformed relay messages -------------------------------------------------------------------

MALFORMED_RELAY: list[tuple[Any, str, str | None, str | None, str | None]] = [
    ("[", "not valid JSON", None, None, None),
    ("[]", "non-empty JSON array", None, None, None),
    ('{"EVENT":1}', "non-empty JSON array", None, None, None),
    ('["REQ","s",{}]', "unknown message type", None, None, None),
    ('["CLOSE","s"]', "unknown message type", None, None, None),
    ('["ok","s"]', "unknown message type", None, None, None),
    ('[["OK"]]', "unknown message type", None, None, None),
    ('[{"a":1}]', "unknown message type", None, None, None),
    ('["EVENT"]', "needs a subscription id", "EVENT", None, None),
    (["EVENT", EVENT], "subscription id must be", "EVENT", None, None),
    (["EVENT", "s"], "3 elements", "EVENT", "s", None),
    (["EVENT", "s", EVENT, 1], "3 elements", "EVENT", "s", EVENT_ID),
    (["EVENT", "s", BAD_ID_EVENT], "id does not match", "EVENT", "s", EVENT_ID),
    (["EVENT", "s", dict(EVENT, created_at=-1)], "created_at", "EVENT", "s", EVENT_ID),
    (["EVENT", "s", "event"], "JSON object", "EVENT", "s", None),
    (["OK"], "4 elements", "OK", None, None),
    (["OK", EVENT_ID, True], "4 elements", "OK", None, EVENT_ID),
    (["OK", EVENT_ID, True, "", ""], "4 elements", "OK", None, EVENT_ID),
    (["OK", "abc", True, ""], "64 lowercase hex", "OK", None, None),
    (["OK", EVENT_ID.upper(), True, ""], "64 lowercase hex", "OK", None, None),
    (["OK", None, True, ""], "64 lowercase hex", "OK", None, None),
    (["OK", EVENT_ID, "true", ""], "true or false", "OK", None, EVENT_ID),
    (["OK", EVENT_ID, 1, ""], "true or false", "OK", None, EVENT_ID),
    (["OK", EVENT_ID, None, ""], "true or false", "OK", None, EVENT_ID),
    (["OK", EVENT_ID, False, None], "message must be a string", "OK", None, EVENT_ID),
    (["OK", EVENT_ID, False, 1], "message must be a string", "OK", None, EVENT_ID),
    (["EOSE"], "needs a subscription id", "EOSE", None, None),
    (["EOSE", ""], "subscription id must be", "EOSE", None, None),
    (["EOSE", "s", "t"], "2 elements", "EOSE", "s", None),
    (["CLOSED", "s"], "3 elements", "CLOSED", "s", None),
    (["CLOSED", "s", None], "message must be a string", "CLOSED", "s", None),
    (["CLOSED", 1, "error: x"], "subscription id must be", "CLOSED", None, None),
    (["NOTICE"], "2 elements", "NOTICE", None, None),
    (["NOTICE", "a", "b"], "2 elements", "NOTICE", None, None),
    (["NOTICE", 1], "message must be a string", "NOTICE", None, None),
    (["NOTICE", ["x"]], "message must be a string", "NOTICE", None, None),
    (["AUTH"], "2 elements", "AUTH", None, None),
    (["AUTH", EVENT], "challenge must be a string", "AUTH", None, None),
    (["AUTH", None], "challenge must be a string", "AUTH", None, None),
    (["COUNT", "q"], "3 elements", "COUNT", "q", None),
    (["COUNT", "q", {}], "COUNT result", "COUNT", "q", None),
    (["COUNT", "q", 5], "COUNT result", "COUNT", "q", None),
    (["COUNT", "q", {"count": -1}], "COUNT result", "COUNT", "q", None),
    (["COUNT", "q", {"count": True}], "COUNT result", "COUNT", "q", None),
    (["COUNT", "q", {"count": 1.5}], "COUNT result", "COUNT", "q", None),
    (["COUNT", "q", {"count": "1"}], "COUNT result", "COUNT", "q", None),
    (["COUNT", "q", {"count": 1, "approximate": "yes"}], "COUNT result", "COUNT", "q", None),
    ('["COUNT","q",{"count":18446744073709551616}]', "COUNT result", "COUNT", "q", None),
    (["COUNT", "q", {"count": 1}, {"count": 2}], "3 elements", "COUNT", "q", None),
]


@pytest.mark.parametrize(
    ("message", "reason", "verb", "sub_id", "event_id"),
    [pytest.param(*case, id=f"{i}-{str(case[0])[:30]}") for i, case in enumerate(MALFORMED_RELAY)],
)
def test_malformed_relay_messages(
    message: Any, reason: str, verb: str | None, sub_id: str | None, event_id: str | None
) -> None:
    with pytest.raises(MessageError, match=reason) as info:
        m.parse_relay_message(as_data(message))
    exc = info.value
    assert (exc.verb, exc.sub_id, exc.event_id) == (verb, sub_id, event_id)


# --- writing client messages --------------------------------------------------------------------


@pytest.mark.parametrize("sub_id", ["", "s" * 65, None, 1, b"s"])
def test_client_writers_check_sub_ids(sub_id: Any) -> None:
    for write in (
        lambda: m.req_message(sub_id, [{}]),
        lambda: m.count_request(sub_id, [{}]),
        lambda: m.close_message(sub_id),
    ):
        with pytest.raises(LocalProtocolError, match="subscription id"):
            write()


@pytest.mark.parametrize("fs", [[], (), {}, "kinds", Filter(), [Filter(), "x"], [None], [[1]]])
def test_client_writers_check_filters(fs: Any) -> None:
    for write in (m.req_message, m.count_request):
        with pytest.raises(LocalProtocolError, match="filter"):
            write("s", fs)


def test_writers_refuse_what_json_cannot_carry() -> None:
    with pytest.raises(LocalProtocolError):
        m.req_message("s", [{"kinds": {1}}])
    with pytest.raises(LocalProtocolError):
        m.notice_message("\ud800")
    with pytest.raises(LocalProtocolError):
        m.eose_message("\udfff")


def test_req_message_sends_dicts_as_given() -> None:
    # Other relays' extensions (NIP-50 search) may be asked for; our parser refuses them.
    data = m.req_message("s", [{"search": "x"}, Filter(kinds=frozenset({2, 1}))])
    assert data == '["REQ","s",{"search":"x"},{"kinds":[1,2]}]'
    with pytest.raises(MessageError, match="unsupported filter field"):
        m.parse_client_message(data)


# --- prefixes -----------------------------------------------------------------------------------


def test_ok_prefixes() -> None:
    assert [p.value for p in OkPrefix] == [
        "duplicate",
        "pow",
        "blocked",
        "rate-limited",
        "invalid",
        "restricted",
        "mute",
        "error",
        "auth-required",
        "unsupported",
    ]
    text = m.prefixed(OkPrefix.AUTH_REQUIRED, "we can't serve DMs to unauthenticated users")
    assert text == "auth-required: we can't serve DMs to unauthenticated users"
    assert m.prefixed(OkPrefix.RATE_LIMITED, "slow down") == "rate-limited: slow down"
    assert m.split_prefixed(text) == (
        "auth-required",
        "we can't serve DMs to unauthenticated users",
    )
    assert m.split_prefixed("duplicate:already") == ("duplicate", "already")
    assert m.split_prefixed("") == ("", "")
    assert m.split_prefixed("no prefix here") == ("", "no prefix here")
    assert m.split_prefixed("two words: x") == ("", "two words: x")
    assert m.split_prefixed(": x") == ("", ": x")
    assert m.ok_message(EVENT_ID, False, m.prefixed(OkPrefix.POW, "difficulty 26 < 30")).endswith(
        'false,"pow: difficulty 26 < 30"]'
    )


@given(prefix=st.sampled_from(list(OkPrefix)), human=text)
def test_prefixed_splits_back(prefix: OkPrefix, human: str) -> None:
    assert m.split_prefixed(m.prefixed(prefix, human)) == (prefix.value, human)


# --- fuzzing ------------------------------------------------------------------------------------

PARSERS: list[Callable[[Any], object]] = [m.parse_client_message, m.parse_relay_message]
CLIENT_TYPES = (m.ClientEvent, m.ClientReq, m.ClientClose, m.ClientAuth, m.ClientCount)
RELAY_TYPES = (
    m.RelayEvent,
    m.RelayOk,
    m.RelayEose,
    m.RelayClosed,
    m.RelayNotice,
    m.RelayAuth,
    m.RelayCount,
)


def parse_anything(data: Any) -> None:
    """Both parsers: a message of their own kind, or MessageError, nothing else."""
    for parse, types in (
        (m.parse_client_message, CLIENT_TYPES),
        (m.parse_relay_message, RELAY_TYPES),
    ):
        try:
            result = parse(data)
        except MessageError as exc:
            check_error(exc)
        else:
            assert isinstance(result, types)


def check_error(exc: MessageError) -> None:
    assert type(exc) is MessageError
    assert isinstance(exc.reason, str)
    verbs = {"EVENT", "REQ", "CLOSE", "AUTH", "COUNT", "OK", "EOSE", "CLOSED", "NOTICE"}
    assert exc.verb is None or exc.verb in verbs | {"NEG-OPEN"}
    assert exc.sub_id is None or 1 <= len(exc.sub_id) <= 64 or exc.verb in ("REQ", "COUNT")
    assert exc.event_id is None or 1 <= len(exc.event_id) <= 64
    text = "invalid: " + exc.reason
    if exc.verb == "NEG-OPEN" and exc.sub_id is not None:  # NIP-77's NEG-ERR
        assert orjson.loads(exc.reply()) == ["NEG-ERR", exc.sub_id, "blocked: " + exc.reason]
    elif exc.verb in ("EVENT", "AUTH") and exc.event_id is not None:
        # the id as sent, well-formed or not: what the client matches the OK with
        assert orjson.loads(exc.reply()) == ["OK", exc.event_id, False, text]
    elif exc.verb in ("REQ", "COUNT") and exc.sub_id is not None:
        assert orjson.loads(exc.reply()) == ["CLOSED", exc.sub_id, text]
    else:
        assert isinstance(m.parse_relay_message(exc.reply()), RELAY_TYPES)


@settings(max_examples=300)
@given(data=st.binary(max_size=300) | st.text(max_size=300))
def test_fuzz_arbitrary_input(data: bytes | str) -> None:
    parse_anything(data)


def _dumpable(value: object) -> bool:
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError:
        return False
    return True


VERBS = ["EVENT", "REQ", "CLOSE", "AUTH", "COUNT", "OK", "EOSE", "CLOSED", "NOTICE", "NEG-OPEN"]
# orjson writes integers of at most 64 bits; json_values draws up to 2**70.
safe_values = json_values.filter(_dumpable)
elements = (
    safe_values
    | st.sampled_from(VERBS)
    | sub_ids
    | hex64
    | st.builds(lambda: dict(EVENT))
    | st.builds(lambda: dict(BAD_ID_EVENT))
    | events().map(Event.to_dict)
    | filter_dicts(max_values=2)
    | st.dictionaries(st.sampled_from(list(EVENT)), safe_values)
    | st.fixed_dictionaries({"count": safe_values})
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    verb=st.sampled_from(VERBS) | safe_values,
    rest=st.lists(elements, max_size=5),
    as_bytes=st.booleans(),
)
def test_fuzz_message_shaped_input(verb: Any, rest: list[Any], as_bytes: bool) -> None:
    data = orjson.dumps([verb, *rest])
    parse_anything(data if as_bytes else data.decode())


def mutate(data: str, draw: st.DataObject) -> str:
    op = draw.draw(st.sampled_from(["flip", "insert", "delete"]))
    i = draw.draw(st.integers(min_value=0, max_value=len(data) - 1))
    char = draw.draw(st.sampled_from(string.printable + "é\x00\u2028"))
    if op == "flip":
        return data[:i] + char + data[i + 1 :]
    if op == "insert":
        return data[:i] + char + data[i:]
    return data[:i] + data[i + 1 :]


VALID = [
    m.publish_message(parse_event(EVENT)),
    m.auth_message(parse_event(EVENT)),
    '["REQ","s",{"kinds":[1],"#p":["' + PUBKEY + '"],"since":5},{}]',
    '["COUNT","s",{"#t":["x"]}]',
    '["CLOSE","s"]',
    m.event_message("s", dumps(EVENT)),
    m.ok_message(EVENT_ID, True, "duplicate: have it"),
    '["EOSE","s"]',
    '["CLOSED","s","error: x"]',
    '["NOTICE","x"]',
    '["AUTH","c"]',
    '["COUNT","s",{"count":5,"approximate":false}]',
]


@settings(max_examples=300)
@given(valid=st.sampled_from(VALID), draw=st.data(), times=st.integers(1, 3))
def test_fuzz_mutated_messages(valid: str, draw: st.DataObject, times: int) -> None:
    data = valid
    for _ in range(times):
        data = mutate(data, draw) or " "
    parse_anything(data)


@pytest.mark.parametrize("data", VALID)
def test_valid_fuzz_seeds_parse(data: str) -> None:
    parsers = (m.parse_client_message, m.parse_relay_message)
    assert any(_parses(parse, data) for parse in parsers)


def _parses(parse: Callable[[str], object], data: str) -> bool:
    try:
        parse(data)
    except MessageError:
        return False
    return True


def test_deep_nesting_is_an_error() -> None:
    for data in ("[" * 5000 + "]" * 5000, '["REQ","s",' + '{"a":' * 3000 + "1" + "}" * 3000 + "]"):
        parse_anything(data)


# --- rust-nostr interop -------------------------------------------------------------------------

sdk_tags = st.lists(
    st.builds(
        lambda name, values: [name, *values],
        st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=8),
        st.lists(text, max_size=3),
    ),
    max_size=4,
)


def sdk_event(sdk: Any, kind: int, content: str, tags: list[list[str]], created_at: int) -> Any:
    builder = sdk.EventBuilder(sdk.Kind(kind), content).tags([sdk.Tag.parse(t) for t in tags])
    return builder.custom_created_at(sdk.Timestamp.from_secs(created_at)).finalize(SDK_KEYS)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=kinds,
    content=text,
    tags=sdk_tags,
    created_at=st.integers(0, 2**32),
    sub_id=sub_ids,
    message=text,
)
def test_nostr_sdk_messages_parse_with_ours(
    kind: int, content: str, tags: list[list[str]], created_at: int, sub_id: str, message: str
) -> None:
    sdk = pytest.importorskip("nostr_sdk")
    theirs = sdk_event(sdk, kind, content, tags, created_at)
    event = parse_event(orjson.loads(theirs.as_json()))
    assert event.id == theirs.id().to_hex()

    published = m.parse_client_message(sdk.ClientMessage.event(theirs).as_json())
    assert published == m.ClientEvent(event, event.to_json().decode())
    auth = m.parse_client_message(sdk.ClientMessage.auth(theirs).as_json())
    assert auth == m.ClientAuth(event, event.to_json().decode())
    assert m.parse_client_message(sdk.ClientMessage.close(sub_id).as_json()) == m.ClientClose(
        sub_id
    )
    sdk_filter = (
        sdk.Filter()
        .kinds([sdk.Kind(kind)])
        .authors([SDK_KEYS.public_key()])
        .events([theirs.id()])
        .hashtags(["nostr"])
        .since(sdk.Timestamp.from_secs(created_at))
        .limit(10)
    )
    expected = Filter(
        kinds=frozenset({kind}),
        authors=frozenset({event.pubkey}),
        tags={"e": frozenset({event.id}), "t": frozenset({"nostr"})},
        since=created_at,
        limit=10,
    )
    req = m.parse_client_message(sdk.ClientMessage.req(sub_id, sdk_filter).as_json())
    assert req == m.ClientReq(sub_id, (expected,))
    count = m.parse_client_message(sdk.ClientMessage.count(sub_id, sdk_filter).as_json())
    assert count == m.ClientCount(sub_id, (expected,))
    assert expected.matches(event) is sdk_filter.match_event(theirs) is False  # no such tags

    relay = sdk.RelayMessage
    assert m.parse_relay_message(relay.event(sub_id, theirs).as_json()) == m.RelayEvent(
        sub_id, event
    )
    ok = relay.ok(theirs.id(), False, message).as_json()
    assert m.parse_relay_message(ok) == m.RelayOk(event.id, False, message)
    assert m.parse_relay_message(relay.eose(sub_id).as_json()) == m.RelayEose(sub_id)
    closed = relay.closed(sub_id, message).as_json()
    assert m.parse_relay_message(closed) == m.RelayClosed(sub_id, message)
    assert m.parse_relay_message(relay.notice(message).as_json()) == m.RelayNotice(message)
    assert m.parse_relay_message(relay.auth(message).as_json()) == m.RelayAuth(message)
    counted = relay.count(sub_id, created_at).as_json()
    assert m.parse_relay_message(counted) == m.RelayCount(sub_id, created_at)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=kinds,
    content=text,
    tags=sdk_tags,
    created_at=st.integers(0, 2**32),
    sub_id=sub_ids,
    message=text,
    fs=st.lists(
        filter_dicts(max_values=2).filter(lambda f: not parse_filter(f).is_empty()),
        min_size=1,
        max_size=3,
    ),
)
def test_our_messages_parse_with_nostr_sdk(
    kind: int,
    content: str,
    tags: list[list[str]],
    created_at: int,
    sub_id: str,
    message: str,
    fs: list[dict[str, Any]],
) -> None:
    sdk = pytest.importorskip("nostr_sdk")
    theirs = sdk_event(sdk, kind, content, tags, created_at)
    event = parse_event(orjson.loads(theirs.as_json()))
    stored = m.parse_client_message(m.publish_message(event))
    assert isinstance(stored, m.ClientEvent)
    client, relay = sdk.ClientMessage.from_json, sdk.RelayMessage.from_json

    published = client(m.publish_message(event)).as_enum()
    assert published.is_event_msg()
    assert published.event.id() == theirs.id()
    assert published.event.verify()
    assert client(m.auth_message(event)).as_enum().event.id() == theirs.id()
    assert client(m.close_message(sub_id)).as_enum().subscription_id == sub_id
    parsed = [parse_filter(f) for f in fs]
    req = client(m.req_message(sub_id, parsed)).as_enum()
    assert req.is_req()
    assert req.subscription_id == sub_id
    back = [parse_filter(orjson.loads(f.as_json())) for f in req.filters]
    assert back == parsed
    # rust-nostr's COUNT takes a single filter.
    count = client(m.count_request(sub_id, parsed[:1])).as_enum()
    assert count.is_count()
    assert parse_filter(orjson.loads(count.filter.as_json())) == parsed[0]

    delivered = relay(m.event_message(sub_id, stored.json)).as_enum()
    assert delivered.is_event_msg()
    assert delivered.subscription_id == sub_id
    assert delivered.event.id() == theirs.id()
    assert delivered.event.verify()
    ok = relay(m.ok_message(event.id, True, message)).as_enum()
    assert (ok.event_id.to_hex(), ok.status, ok.message) == (event.id, True, message)
    assert relay(m.eose_message(sub_id)).as_enum().subscription_id == sub_id
    closed = relay(m.closed_message(sub_id, message)).as_enum()
    assert (closed.subscription_id, closed.message) == (sub_id, message)
    assert relay(m.notice_message(message)).as_enum().message == message
    assert relay(m.auth_challenge_message(message)).as_enum().challenge == message
    counted = relay(m.count_message(sub_id, created_at)).as_enum()
    assert (counted.subscription_id, counted.count) == (sub_id, created_at)
