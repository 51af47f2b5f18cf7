"""The sans-I/O NIP-01 client protocol (xchat.wire.client): every path in memory, then one
session against a real ``xchat relay`` over a raw WebSocket."""

from __future__ import annotations

import asyncio
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, get_args

import aiohttp
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.relay.conftest import RelayProcess, make_event, new_key, relay, relay_factory
from tests.wire.test_filter import json_values
from xchat.core.envelope import gift_wrap
from xchat.core.events import sign_event
from xchat.crypto.keys import SecretKey
from xchat.errors import LocalProtocolError
from xchat.wire import client as c
from xchat.wire import messages as m
from xchat.wire.event import Event
from xchat.wire.kinds import KIND_AUTH, KIND_GIFT_WRAP

__all__ = ["relay", "relay_factory"]  # the real-relay fixtures, for the last test

URL = "wss://relay.example"
KEY = new_key()


def event(content: str = "hello") -> Event:
    return make_event(KEY, content=content, created_at=1_700_000_000)


def ok(event_id: str, accepted: bool, message: str = "") -> str:
    return m.ok_message(event_id, accepted, message)


def signer(key: SecretKey) -> Any:
    def sign(template: c.AuthTemplate) -> Event:
        return sign_event(
            key,
            kind=template.kind,
            tags=template.tags,
            content=template.content,
            created_at=template.created_at,
            rng=os.urandom,
        )

    return sign


# --- publishing --------------------------------------------------------------------------------


def test_send_event_is_an_event_message_and_its_ok_answers_it_with_the_prefix_split_off() -> None:
    proto = c.ClientProtocol(URL)
    accepted, refused, duplicate = event("a"), event("b"), event("c")
    assert orjson.loads(proto.send_event(accepted)) == ["EVENT", accepted.to_dict()]
    proto.send_event(refused)
    proto.send_event(duplicate)
    assert proto.pending(accepted.id)
    assert proto.receive_text(ok(accepted.id, True)) == [
        c.PublishAnswered(accepted.id, True, "", "")
    ]
    assert proto.receive_text(ok(refused.id, False, "blocked: not on the list")) == [
        c.PublishAnswered(refused.id, False, "blocked", "blocked: not on the list")
    ]
    assert proto.receive_text(ok(duplicate.id, True, "duplicate: already have it")) == [
        c.PublishAnswered(duplicate.id, True, "duplicate", "duplicate: already have it")
    ]
    assert not proto.pending(accepted.id)
    assert (proto.malformed, proto.unexpected) == (0, 0)


def test_an_ok_for_an_unknown_id_or_a_second_ok_is_unexpected_and_counted() -> None:
    proto = c.ClientProtocol(URL)
    sent, stranger = event("a"), event("b")
    proto.send_event(sent)
    assert proto.receive_text(ok(stranger.id, True)) == [
        c.Unexpected("OK", stranger.id, "no event with this id awaits an answer")
    ]
    assert proto.pending(sent.id)  # still waiting for its own
    assert isinstance(proto.receive_text(ok(sent.id, True))[0], c.PublishAnswered)
    assert isinstance(proto.receive_text(ok(sent.id, True))[0], c.Unexpected)
    assert proto.unexpected == 2


def test_the_same_event_sent_twice_waits_for_one_ok() -> None:
    proto = c.ClientProtocol(URL)
    e = event()
    assert proto.send_event(e) == proto.send_event(e)
    assert isinstance(proto.receive_text(ok(e.id, True))[0], c.PublishAnswered)
    assert isinstance(proto.receive_text(ok(e.id, True))[0], c.Unexpected)


def test_a_forgotten_publish_gets_its_late_ok_as_unexpected() -> None:
    proto = c.ClientProtocol(URL)
    e = event()
    proto.send_event(e)
    proto.forget(e.id)
    assert not proto.pending(e.id)
    assert isinstance(proto.receive_text(ok(e.id, False, "error: slow"))[0], c.Unexpected)


# --- subscriptions -----------------------------------------------------------------------------


def test_a_subscription_goes_stored_then_live_and_a_second_eose_is_unexpected() -> None:
    proto = c.ClientProtocol(URL)
    stored, live = event("stored"), event("live")
    assert orjson.loads(proto.subscribe("s", [{"kinds": [1]}])) == ["REQ", "s", {"kinds": [1]}]
    assert proto.state("s") is c.SubState.STORED
    assert proto.receive_text(m.event_message("s", stored.to_json().decode())) == [
        c.EventReceived("s", stored, stored=True)
    ]
    assert proto.receive_text(m.eose_message("s")) == [c.EndOfStored("s")]
    assert proto.state("s") is c.SubState.LIVE
    assert proto.receive_text(m.event_message("s", live.to_json().decode())) == [
        c.EventReceived("s", live, stored=False)
    ]
    assert proto.receive_text(m.eose_message("s")) == [c.Unexpected("EOSE", "s", "a second EOSE")]
    assert proto.state("s") is c.SubState.LIVE
    assert proto.unexpected == 1


def test_closed_after_eose_is_complete_and_closed_before_it_is_a_refusal() -> None:
    proto = c.ClientProtocol(URL)
    proto.subscribe("done", [{"ids": ["00" * 32]}])
    proto.subscribe("refused", [{"kinds": [KIND_GIFT_WRAP]}])
    proto.receive_text(m.eose_message("done"))
    assert proto.receive_text(m.closed_message("done", "")) == [
        c.SubscriptionClosed("done", "", "", complete=True)
    ]
    text = "auth-required: we only serve gift wraps to their recipient"
    assert proto.receive_text(m.closed_message("refused", text)) == [
        c.SubscriptionClosed("refused", "auth-required", text, complete=False)
    ]
    assert proto.state("refused") is None
    # the relay ended it: anything more for it answers nothing we asked
    [unexpected] = proto.receive_text(m.event_message("refused", event().to_json().decode()))
    assert unexpected == c.Unexpected("EVENT", "refused", "no such subscription")


def test_messages_for_a_subscription_we_never_opened_are_unexpected() -> None:
    proto = c.ClientProtocol(URL)
    for text in (
        m.event_message("nope", event().to_json().decode()),
        m.eose_message("nope"),
        m.closed_message("nope", "error: whatever"),
        m.count_message("nope", 3),
    ):
        [got] = proto.receive_text(text)
        assert isinstance(got, c.Unexpected), got
        assert got.ref == "nope"
    assert proto.unexpected == 4


def test_messages_in_flight_after_our_close_are_dropped_as_late() -> None:
    proto = c.ClientProtocol(URL)
    proto.subscribe("s", [{"kinds": [1]}])
    assert orjson.loads(proto.close("s")) == ["CLOSE", "s"]
    assert proto.state("s") is None
    assert proto.receive_text(m.event_message("s", event().to_json().decode())) == []
    assert proto.receive_text(m.eose_message("s")) == []
    assert proto.receive_text(m.closed_message("s", "")) == []  # the relay confirms
    assert (proto.late, proto.unexpected) == (3, 0)
    # after the confirmation the id is forgotten: more is unexpected
    assert isinstance(proto.receive_text(m.eose_message("s"))[0], c.Unexpected)


def test_only_the_newest_closed_ids_are_remembered() -> None:
    proto = c.ClientProtocol(URL)
    for i in range(c.MAX_CLOSING + 1):
        proto.subscribe(f"s{i}", [{"kinds": [1]}])
        proto.close(f"s{i}")
    assert isinstance(proto.receive_text(m.eose_message("s0"))[0], c.Unexpected)
    assert proto.receive_text(m.eose_message(f"s{c.MAX_CLOSING}")) == []


def test_a_req_with_an_open_id_replaces_the_subscription() -> None:
    proto = c.ClientProtocol(URL)
    proto.subscribe("s", [{"kinds": [1]}])
    proto.receive_text(m.eose_message("s"))
    proto.subscribe("s", [{"kinds": [7]}])
    assert proto.state("s") is c.SubState.STORED
    assert proto.receive_text(m.eose_message("s")) == [c.EndOfStored("s")]
    # and a closed id may be opened again: its messages are no longer late
    proto.close("s")
    proto.subscribe("s", [{"kinds": [1]}])
    assert proto.receive_text(m.eose_message("s")) == [c.EndOfStored("s")]
    assert proto.late == 0


def test_our_own_mistakes_raise_local_errors_and_change_nothing() -> None:
    proto = c.ClientProtocol(URL)
    with pytest.raises(LocalProtocolError):
        proto.subscribe("", [{"kinds": [1]}])
    with pytest.raises(LocalProtocolError):
        proto.subscribe("x" * 65, [{"kinds": [1]}])
    with pytest.raises(LocalProtocolError):
        proto.subscribe("s", [])
    assert proto.state("s") is None
    proto.subscribe("s", [{"kinds": [1]}])
    with pytest.raises(LocalProtocolError):
        proto.count("s", [{"kinds": [1]}])
    proto.count("n", [{"kinds": [1]}])
    with pytest.raises(LocalProtocolError):
        proto.subscribe("n", [{"kinds": [1]}])
    with pytest.raises(LocalProtocolError):
        proto.auth_template(1_700_000_000)  # no challenge yet


# --- COUNT and NOTICE --------------------------------------------------------------------------


def test_count_is_answered_refused_or_unexpected() -> None:
    proto = c.ClientProtocol(URL)
    assert orjson.loads(proto.count("n1", [{"kinds": [1]}])) == ["COUNT", "n1", {"kinds": [1]}]
    proto.count("n2", [{"kinds": [1]}])
    proto.count("n3", [{"kinds": [1]}])
    assert proto.receive_text(m.count_message("n1", 42, approximate=True)) == [
        c.CountReceived("n1", 42, approximate=True)
    ]
    assert proto.receive_text(m.closed_message("n2", "unsupported: no COUNT here")) == [
        c.CountRefused("n2", "unsupported", "unsupported: no COUNT here")
    ]
    proto.forget_count("n3")
    assert isinstance(proto.receive_text(m.count_message("n3", 1))[0], c.Unexpected)
    assert isinstance(proto.receive_text(m.count_message("n1", 1))[0], c.Unexpected)


def test_notices_are_cut_and_only_the_newest_kept() -> None:
    proto = c.ClientProtocol(URL)
    assert proto.receive_text(m.notice_message("x" * 10_000)) == [
        c.NoticeReceived("x" * c.NOTICE_CHARS)
    ]
    for i in range(c.MAX_NOTICES + 5):
        proto.receive_text(m.notice_message(f"n{i}"))
    assert len(proto.notices) == c.MAX_NOTICES
    assert proto.notices[-1] == f"n{c.MAX_NOTICES + 4}"


# --- AUTH --------------------------------------------------------------------------------------


def test_auth_answers_the_challenge_with_a_kind_22242_event_dated_now() -> None:
    proto = c.ClientProtocol(URL)
    assert proto.receive_text(m.auth_challenge_message("c1")) == [c.AuthChallenge("c1", False)]
    seen: list[c.AuthTemplate] = []

    def sign(template: c.AuthTemplate) -> Event:
        seen.append(template)
        return signer(KEY)(template)

    text = proto.auth(sign, now=1_700_000_123)
    tags = [["relay", URL], ["challenge", "c1"]]
    assert seen == [c.AuthTemplate(KIND_AUTH, 1_700_000_123, tags, "")]
    verb, sent = orjson.loads(text)
    assert verb == "AUTH"
    assert sent["kind"] == KIND_AUTH
    assert sent["created_at"] == 1_700_000_123
    assert proto.pending(sent["id"])
    assert proto.receive_text(ok(sent["id"], True)) == [
        c.AuthAnswered(sent["id"], KEY.public_key.hex, True, "", "")
    ]
    assert proto.authenticated == {KEY.public_key.hex}


def test_a_refused_auth_authenticates_nobody_and_a_new_challenge_asks_again() -> None:
    proto = c.ClientProtocol(URL)
    other = new_key()
    proto.receive_text(m.auth_challenge_message("c1"))
    yes = orjson.loads(proto.auth(signer(KEY), now=1))[1]["id"]
    no = orjson.loads(proto.auth(signer(other), now=1))[1]["id"]
    proto.receive_text(ok(yes, True))
    [refused] = proto.receive_text(ok(no, False, "restricted: not for you"))
    assert refused == c.AuthAnswered(no, other.public_key.hex, False, "restricted", refused.message)
    assert proto.authenticated == {KEY.public_key.hex}
    # the same challenge again changes nothing; a different one empties the answers
    assert proto.receive_text(m.auth_challenge_message("c1")) == [c.AuthChallenge("c1", False)]
    assert proto.authenticated == {KEY.public_key.hex}
    assert proto.receive_text(m.auth_challenge_message("c2")) == [c.AuthChallenge("c2", True)]
    assert proto.authenticated == set()
    assert proto.challenge == "c2"
    assert proto.auth_template(5).tags == [["relay", URL], ["challenge", "c2"]]


def test_auth_before_subscribing() -> None:
    proto = c.ClientProtocol(URL)
    proto.receive_text(m.auth_challenge_message("c1"))
    auth_id = orjson.loads(proto.auth(signer(KEY), now=1))[1]["id"]
    proto.receive_text(ok(auth_id, True))
    proto.subscribe("s", [{"kinds": [KIND_GIFT_WRAP], "#p": [KEY.public_key.hex]}])
    wrap = event("wrap")
    assert proto.receive_text(m.event_message("s", wrap.to_json().decode())) == [
        c.EventReceived("s", wrap, stored=True)
    ]
    assert proto.receive_text(m.eose_message("s")) == [c.EndOfStored("s")]


def test_auth_after_subscribing_a_refusal_with_a_challenge_then_the_req_again() -> None:
    """A relay that challenges on demand (rust-nostr's): CLOSED auth-required, AUTH, REQ."""
    proto = c.ClientProtocol(URL)
    proto.subscribe("s", [{"kinds": [KIND_GIFT_WRAP]}])
    got = proto.receive_text(m.closed_message("s", "auth-required: who are you?"))
    got += proto.receive_text(m.auth_challenge_message("late"))
    assert got == [
        c.SubscriptionClosed("s", "auth-required", "auth-required: who are you?", complete=False),
        c.AuthChallenge("late", False),
    ]
    auth_id = orjson.loads(proto.auth(signer(KEY), now=1))[1]["id"]
    assert isinstance(proto.receive_text(ok(auth_id, True))[0], c.AuthAnswered)
    proto.subscribe("s", [{"kinds": [KIND_GIFT_WRAP]}])
    assert proto.receive_text(m.eose_message("s")) == [c.EndOfStored("s")]
    # a challenge while subscribed leaves the subscription as it was
    proto.receive_text(m.auth_challenge_message("again"))
    assert proto.state("s") is c.SubState.LIVE


def test_auth_event_sends_what_it_is_given_and_an_auth_ok_is_not_a_publish() -> None:
    proto = c.ClientProtocol(URL)
    wrong = make_event(KEY, kind=1, content="not an AUTH")
    assert orjson.loads(proto.auth_event(wrong)) == ["AUTH", wrong.to_dict()]
    [answer] = proto.receive_text(ok(wrong.id, False, "invalid: not kind 22242"))
    assert isinstance(answer, c.AuthAnswered)
    assert answer.prefix == "invalid"
    assert proto.authenticated == set()


# --- garbage and the end -----------------------------------------------------------------------

GARBAGE = [
    "",
    "not json",
    "{}",
    "[]",
    "null",
    '["UNKNOWN", 1]',
    "[1, 2]",
    '["OK"]',
    '["OK", "zz", true, ""]',
    '["OK", "' + "a" * 64 + '", "yes", ""]',
    '["OK", "' + "a" * 64 + '", true]',
    '["EVENT", "s", {}]',
    '["EVENT", "s"]',
    '["EOSE"]',
    '["EOSE", 5]',
    '["CLOSED", "s"]',
    '["COUNT", "s", {"count": -1}]',
    '["COUNT", "s", 3]',
    '["AUTH", 5]',
    '["NOTICE"]',
    '["NOTICE", ["x"]]',
    '["EOSE", "' + "s" * 65 + '"]',
    '["NOTICE", "' + "x" * (300 * 1024) + '"]',
]


def test_garbage_is_a_malformed_event_counted_and_changes_no_state() -> None:
    proto = c.ClientProtocol(URL)
    e = event()
    proto.send_event(e)
    proto.subscribe("s", [{"kinds": [1]}])
    tampered = orjson.loads(e.to_json().decode())
    tampered["content"] = "changed"  # the id no longer matches
    cases = [*GARBAGE, m.event_message("s", orjson.dumps(tampered).decode()), b"\xff\xfe"]
    for text in cases:
        [got] = proto.receive_text(text)
        assert isinstance(got, c.Malformed), text[:40]
        assert got.reason
    assert proto.malformed == len(cases)
    assert proto.pending(e.id)
    assert proto.state("s") is c.SubState.STORED
    assert isinstance(proto.receive_text(ok(e.id, True))[0], c.PublishAnswered)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.binary(), json_values.map(json.dumps)))
def test_nothing_a_relay_sends_raises(text: str | bytes) -> None:
    proto = c.ClientProtocol(URL)
    proto.subscribe("s", [{"kinds": [1]}])
    for got in proto.receive_text(text):
        assert isinstance(got, get_args(c.ClientEvent))


def test_connection_lost_ends_every_pending_request_and_forgets_the_challenge() -> None:
    proto = c.ClientProtocol(URL)
    e = event()
    proto.send_event(e)
    proto.receive_text(m.auth_challenge_message("c1"))
    auth_id = orjson.loads(proto.auth(signer(KEY), now=1))[1]["id"]
    proto.subscribe("stored", [{"kinds": [1]}])
    proto.subscribe("live", [{"kinds": [1]}])
    proto.receive_text(m.eose_message("live"))
    proto.count("n", [{"kinds": [1]}])
    got = proto.connection_lost()
    assert set(got) == {
        c.PublishFailed(e.id, c.LOST),
        c.PublishFailed(auth_id, c.LOST),
        c.SubscriptionClosed("stored", "error", c.LOST, complete=False, by_relay=False),
        c.SubscriptionClosed("live", "error", c.LOST, complete=True, by_relay=False),
        c.CountFailed("n", c.LOST),
    }
    assert proto.challenge is None
    assert proto.state("live") is None
    assert proto.connection_lost() == []
    assert isinstance(proto.receive_text(ok(e.id, True))[0], c.Unexpected)


# --- against a real relay ----------------------------------------------------------------------


def test_a_session_with_a_real_relay_over_a_raw_websocket(relay: RelayProcess) -> None:
    """The protocol alone (no RelayConnection) drives ``xchat relay``: AUTH on connect,
    a gift wrap published, refused to a stranger's REQ, served after AUTH."""
    recipient = new_key()
    wrap = gift_wrap(b"hi", recipient.public_key, int(time.time()), os.urandom)
    gift_filter = {"kinds": [KIND_GIFT_WRAP], "#p": [recipient.public_key.hex]}

    async def scenario() -> list[c.ClientEvent]:
        proto = c.ClientProtocol(relay.url)
        got: list[c.ClientEvent] = []
        async with aiohttp.ClientSession() as session, session.ws_connect(relay.url) as ws:

            async def until(kind: type[Any]) -> Any:
                while True:
                    msg = await ws.receive(10)
                    for ev in proto.receive_text(msg.data):
                        got.append(ev)
                        if isinstance(ev, kind):
                            return ev

            await until(c.AuthChallenge)
            await ws.send_str(proto.send_event(wrap))
            assert (await until(c.PublishAnswered)).accepted
            await ws.send_str(proto.subscribe("s", [gift_filter]))
            await until(c.SubscriptionClosed | c.EndOfStored)
            await ws.send_str(proto.auth(signer(recipient), now=int(time.time())))
            assert (await until(c.AuthAnswered)).accepted
            await ws.send_str(proto.subscribe("s", [gift_filter]))
            await until(c.EndOfStored)
        return got

    async def bounded() -> list[c.ClientEvent]:
        async with asyncio.timeout(60):
            return await scenario()

    # a thread of its own: earlier tests (Playwright's sync API) may leave an event loop
    # running in this one, where asyncio.run() refuses to start
    with ThreadPoolExecutor(1) as pool:
        got = pool.submit(asyncio.run, bounded()).result()
    refusal = next(ev for ev in got if isinstance(ev, (c.SubscriptionClosed, c.EndOfStored)))
    # a gift wrap is served only to its authenticated recipient
    assert isinstance(refusal, c.SubscriptionClosed), got
    assert refusal.prefix == "auth-required"
    received = [ev.event for ev in got if isinstance(ev, c.EventReceived)]
    assert received == [wrap]
    assert not any(isinstance(ev, (c.Malformed, c.Unexpected)) for ev in got), got
