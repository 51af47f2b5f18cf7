"""Hostile input over a real socket: the relay answers, stays up, and keeps serving."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import aiohttp
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.relay.conftest import RelayProcess, make_event, new_key
from tests.relay.test_protocol import run
from xchat.node.relay_client import RelayConnection

texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)  # JSON-encodable
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | texts,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(texts, children, max_size=5),
    max_leaves=20,
)
verbs = st.sampled_from(["EVENT", "REQ", "CLOSE", "AUTH", "COUNT", "NOTICE", "OK", "", "event"])
frames = st.one_of(
    st.text(max_size=200),
    st.builds(
        lambda v, rest: orjson.dumps([v, *rest]).decode(), verbs, st.lists(json_values, max_size=4)
    ),
    json_values.map(lambda v: orjson.dumps(v).decode()),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(frames, min_size=1, max_size=8))
def test_arbitrary_frames_never_break_the_relay(relay: RelayProcess, batch: list[str]) -> None:
    key = new_key()

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(relay.url) as ws:
            for frame in batch:
                await ws.send_str(frame)
            probe = make_event(key, content="still there?")
            await ws.send_str(orjson.dumps(["EVENT", probe.to_dict()]).decode())
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                msg = await ws.receive(10)
                assert msg.type == aiohttp.WSMsgType.TEXT, msg
                reply = orjson.loads(msg.data)
                assert isinstance(reply, list)
                assert reply[0] in ("AUTH", "NOTICE", "OK", "CLOSED", "EOSE", "EVENT", "COUNT")
                if reply[0] == "OK" and reply[1] == probe.id:
                    assert reply[2] is True
                    return
            raise AssertionError("the relay did not answer the probe")

    run(scenario())
    assert relay.process.poll() is None


def test_gift_wraps_are_purged_after_the_retention_period(relay_factory: Any) -> None:
    relay = relay_factory("[relay]\ngift_wrap_retention = 2\npurge_interval = 1\n")
    recipient = new_key()
    wrap = make_event(new_key(), kind=1059, content="x", tags=[["p", recipient.public_key.hex]])
    note = make_event(new_key(), content="not a gift wrap")

    async def scenario() -> None:
        async with await RelayConnection.connect(relay.url) as conn:
            assert (await conn.authenticate(recipient)).accepted
            assert (await conn.publish(wrap)).accepted
            assert (await conn.publish(note)).accepted
            wanted = [{"kinds": [1059], "#p": [recipient.public_key.hex]}]
            assert await conn.query(wanted) == [wrap]
            deadline = time.monotonic() + 10
            while await conn.query(wanted) and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
            assert await conn.query(wanted) == []
            assert await conn.query([{"ids": [note.id]}]) == [note]  # other kinds stay

    run(scenario())


# --- a property test of one connection's protocol ------------------------------------------

KEYS = [new_key() for _ in range(3)]  # authors and gift wrap recipients
SUB_IDS = ["a", "b", "c"]
PREFIXES = (
    "invalid:",
    "auth-required:",
    "blocked:",
    "rate-limited:",
    "duplicate:",
    "error:",
    "pow:",
    "restricted:",
)

ACTIONS = [
    *("event", "wrap", "bad_sig", "bad_id", "no_id", "req", "bad_req", "bad_sub"),
    *("count", "close", "auth", "bad_auth", "junk"),
]
hex_keys = st.sampled_from([k.public_key.hex for k in KEYS])
filter_objects = st.fixed_dictionaries(
    {},
    optional={
        "kinds": st.lists(st.sampled_from([1, 7, 1059]), min_size=1, max_size=2),
        "authors": st.lists(hex_keys, min_size=1, max_size=2),
        "#p": st.lists(hex_keys, min_size=1, max_size=2),
        "limit": st.integers(0, 5),
        "since": st.integers(0, 2**31),
    },
)
bad_filters = st.sampled_from(
    [{"kinds": ["x"]}, {"bogus": 1}, {"ids": ["abc"]}, {"limit": True}, [], "x"]
)


@st.composite
def actions(draw: st.DrawFn) -> tuple[Any, ...]:
    """One client message, described so the expected answer is known."""
    kind = draw(st.sampled_from(ACTIONS))
    author = draw(st.sampled_from(KEYS))
    recipient = draw(st.sampled_from(KEYS))
    sub = draw(st.sampled_from(SUB_IDS))
    if kind in ("event", "bad_sig", "bad_id", "no_id"):
        return (kind, make_event(author, kind=draw(st.sampled_from([1, 7])), content=draw(texts)))
    if kind == "wrap":
        return (kind, make_event(author, kind=1059, tags=[["p", recipient.public_key.hex]]))
    if kind in ("req", "count"):
        return (kind, sub, draw(st.lists(filter_objects, min_size=1, max_size=3)))
    if kind == "bad_req":
        return (kind, sub, [draw(bad_filters)])
    if kind == "bad_sub":
        return (
            kind,
            draw(st.sampled_from(["", "x" * 65])),
            draw(st.sampled_from(["REQ", "COUNT"])),
        )
    if kind in ("auth", "bad_auth"):
        return (kind, recipient)
    if kind == "close":
        return (kind, sub)
    return (kind, draw(st.sampled_from(["not json", "[]", '["HELLO"]', '["EVENT"]', "{}"])))


class Expected:
    """What one connection must answer: OKs by id, NOTICEs, and a final answer (EOSE or
    CLOSED; COUNT or CLOSED) per subscription id still open at the end."""

    def __init__(self) -> None:
        self.oks: dict[str, int] = {}
        self.notices = 0
        self.open: dict[str, str] = {}  # sub id -> "REQ" or "COUNT", awaiting an answer
        self.authed: set[str] = set()
        self.auth_ids: dict[str, str] = {}  # AUTH event id -> key

    def ok(self, event_id: str) -> None:
        self.oks[event_id] = self.oks.get(event_id, 0) + 1


def frame(action: tuple[Any, ...], challenge: str, url: str, expected: Expected) -> str:
    kind = action[0]
    dumps = lambda value: orjson.dumps(value).decode()  # noqa: E731
    if kind in ("event", "wrap", "bad_sig", "bad_id", "no_id"):
        event = action[1].to_dict()
        if kind == "bad_sig":
            event["sig"] = "00" * 64
        elif kind == "bad_id":
            event["id"] = event["id"][:10]
        elif kind == "no_id":
            del event["id"]
        if kind == "no_id":
            expected.notices += 1
        else:
            expected.ok(event["id"])
        return dumps(["EVENT", event])
    if kind in ("req", "count", "bad_req"):
        verb = "COUNT" if kind == "count" else "REQ"
        sub_id = action[1] if verb == "REQ" else "n" + action[1]
        expected.open[sub_id] = verb
        return dumps([verb, sub_id, *action[2]])
    if kind == "bad_sub":
        expected.open[action[1]] = action[2]
        return dumps([action[2], action[1], {}])
    if kind == "close":
        expected.open.pop(action[1], None)  # an answer may or may not have come before
        return dumps(["CLOSE", action[1]])
    if kind in ("auth", "bad_auth"):
        from xchat.core.events import sign_event

        key = action[1]
        tags = [["relay", url], ["challenge", challenge if kind == "auth" else "wrong"]]
        auth = sign_event(
            key, kind=22242, tags=tags, content="", created_at=int(time.time()), rng=os.urandom
        )
        expected.ok(auth.id)
        expected.auth_ids[auth.id] = key.public_key.hex
        return dumps(["AUTH", auth.to_dict()])
    expected.notices += 1
    return str(action[1])


def check_answer(reply: Any, expected: Expected, answered: set[str]) -> None:
    """Every answer is a documented message, about something this client sent."""
    assert isinstance(reply, list), reply
    assert reply, reply
    verb = reply[0]
    if verb == "OK":
        _, event_id, accepted, message = reply
        assert expected.oks.get(event_id, 0) > 0, reply
        expected.oks[event_id] -= 1
        assert accepted is True or message.startswith(PREFIXES), reply
        if event_id in expected.auth_ids and accepted:
            expected.authed.add(expected.auth_ids[event_id])
    elif verb == "NOTICE":
        assert reply[1].startswith("invalid:"), reply
        expected.notices -= 1
        assert expected.notices >= 0, reply
    elif verb in ("EOSE", "CLOSED", "COUNT"):
        sub_id = reply[1]
        answered.add(sub_id)
        expected.open.pop(sub_id, None)
        if verb == "CLOSED":
            assert reply[2].startswith(PREFIXES), reply
        if verb == "COUNT":
            assert type(reply[2]["count"]) is int, reply
    elif verb == "EVENT":
        event = reply[2]
        assert reply[1] in SUB_IDS, reply
        if event["kind"] == 1059:  # NIP-59: only to the recipient authenticated here
            assert any(t[0] == "p" and t[1] in expected.authed for t in event["tags"]), reply
    else:
        assert verb == "AUTH", reply


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(actions(), min_size=1, max_size=12))
def test_a_connection_answers_every_message_with_a_documented_reply(
    relay_factory: Any, batch: list[tuple[Any, ...]]
) -> None:
    relay = shared_relay(relay_factory)

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(relay.url) as ws:
            first = orjson.loads((await ws.receive(10)).data)
            assert first[0] == "AUTH"
            expected = Expected()
            answered: set[str] = set()
            for action in batch:
                await ws.send_str(frame(action, first[1], relay.url, expected))
            # then a probe: the connection still works and answers in full
            probe = make_event(new_key(), content="probe")
            expected.ok(probe.id)
            await ws.send_str(orjson.dumps(["EVENT", probe.to_dict()]).decode())
            async with asyncio.timeout(30):
                while any(expected.oks.values()) or expected.notices or expected.open:
                    msg = await ws.receive()
                    assert msg.type == aiohttp.WSMsgType.TEXT, (msg, batch)
                    check_answer(orjson.loads(msg.data), expected, answered)

    run(scenario())

    # the relay is up and serves another client
    async def other() -> bool:
        async with await RelayConnection.connect(relay.url) as conn:
            return (await conn.publish(make_event(new_key()))).accepted

    assert run(other())
    assert relay.process.poll() is None


def shared_relay(relay_factory: Any) -> RelayProcess:
    """One relay for all examples (started on the first), without rate limits."""
    relay = getattr(relay_factory, "shared", None)
    if relay is None:
        relay = relay_factory(
            "[limits]\nevents_per_second = 100000.0\nevents_burst = 100000\n"
            "ip_events_per_second = 100000.0\nip_events_burst = 100000\n"
        )
        relay_factory.shared = relay
    return relay  # type: ignore[no-any-return]
