"""Hostile input over a real socket: the relay answers, stays up, and keeps serving."""

from __future__ import annotations

import asyncio
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
