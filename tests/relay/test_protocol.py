"""NIP-01 and friends against a real relay process, through our client and raw sockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest

from tests.relay.conftest import RelayProcess, make_event, new_key
from xchat.node.relay_client import RelayConnection, RelayError
from xchat.wire.event import Event


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))  # type: ignore[arg-type]


async def raw(
    relay: RelayProcess, *messages: Any, expect: int = 1, timeout: float = 5
) -> list[Any]:
    """Send raw frames (str, or JSON-able objects) and collect ``expect`` replies."""
    async with aiohttp.ClientSession() as session, session.ws_connect(relay.url) as ws:
        replies: list[Any] = []
        first = await ws.receive(timeout)  # the AUTH challenge
        assert orjson.loads(first.data)[0] == "AUTH"
        for message in messages:
            await ws.send_str(
                message if isinstance(message, str) else orjson.dumps(message).decode()
            )
        while len(replies) < expect:
            msg = await ws.receive(timeout)
            if msg.type != aiohttp.WSMsgType.TEXT:
                replies.append(msg.type)
                break
            replies.append(orjson.loads(msg.data))
        return replies


def with_client(relay: RelayProcess, body: Callable[[RelayConnection], Awaitable[Any]]) -> Any:
    async def scenario() -> Any:
        async with await RelayConnection.connect(relay.url) as conn:
            return await body(conn)

    return run(scenario())


def test_publish_query_duplicate(relay: RelayProcess) -> None:
    key = new_key()
    event = make_event(key, content="first")

    async def body(conn: RelayConnection) -> None:
        assert (await conn.publish(event)).accepted
        again = await conn.publish(event)
        assert again.accepted
        assert again.message.startswith("duplicate:")
        found = await conn.query([{"ids": [event.id]}])
        assert [e.id for e in found] == [event.id]
        assert found[0] == event

    with_client(relay, body)


def test_every_filter_type_and_ordering(relay: RelayProcess) -> None:
    alice, bob = new_key(), new_key()
    now = int(time.time())
    events = [
        make_event(alice, kind=1, content="a1", created_at=now - 30, tags=[["t", "x"]]),
        make_event(
            alice,
            kind=7,
            content="a2",
            created_at=now - 20,
            tags=[["e", "ab" * 32], ["p", bob.public_key.hex]],
        ),
        make_event(bob, kind=1, content="b1", created_at=now - 10, tags=[["t", "y"]]),
        make_event(bob, kind=1, content="b2", created_at=now - 10),
    ]

    async def body(conn: RelayConnection) -> None:
        results = await conn.publish_many(events)
        assert all(r.accepted for r in results)
        ours = {"authors": [alice.public_key.hex, bob.public_key.hex]}

        async def ids(**filters: Any) -> list[str]:
            return [e.content for e in await conn.query([{**ours, **filters}])]

        newest_first = await ids()
        assert newest_first[:2] == sorted(
            ["b1", "b2"], key=lambda c: next(e.id for e in events if e.content == c)
        )  # ties: lowest id first
        assert newest_first[2:] == ["a2", "a1"]
        assert await ids(ids=[events[0].id]) == ["a1"]
        assert set(await ids(authors=[alice.public_key.hex])) == {"a1", "a2"}
        assert await ids(kinds=[7]) == ["a2"]
        assert await ids(**{"#t": ["x"]}) == ["a1"]
        assert await ids(**{"#e": ["ab" * 32]}) == ["a2"]
        assert await ids(**{"#p": [bob.public_key.hex]}) == ["a2"]
        assert set(await ids(since=now - 10)) == {"b1", "b2"}
        assert await ids(until=now - 25) == ["a1"]
        assert len(await ids(limit=2)) == 2
        assert await ids(kinds=[]) == []
        both = await conn.query([{**ours, "kinds": [7]}, {**ours, "#t": ["y"]}])
        assert {e.content for e in both} == {"a2", "b1"}
        assert await conn.count([ours]) == 4
        assert await conn.count([{**ours, "kinds": [1]}]) == 3

    with_client(relay, body)


def test_live_subscription_and_close(relay: RelayProcess) -> None:
    key = new_key()

    async def scenario() -> None:
        async with (
            await RelayConnection.connect(relay.url) as listener,
            await RelayConnection.connect(relay.url) as writer,
        ):
            sub = await listener.subscribe([{"authors": [key.public_key.hex]}])
            await asyncio.wait_for(sub.eose.wait(), 5)
            event = make_event(key, content="live")
            assert (await writer.publish(event)).accepted
            got = await asyncio.wait_for(sub.events.get(), 5)
            assert got == event
            await listener.unsubscribe(sub)
            assert (await writer.publish(make_event(key, content="after close"))).accepted
            await asyncio.sleep(0.2)
            assert sub.events.empty()

    run(scenario())


def test_replaceable_addressable_and_ephemeral(relay: RelayProcess) -> None:
    key = new_key()
    start = int(time.time())

    async def scenario() -> None:
        async with (
            await RelayConnection.connect(relay.url) as conn,
            await RelayConnection.connect(relay.url) as listener,
        ):
            me = key.public_key.hex
            now = start
            old = make_event(key, kind=0, content="old", created_at=now - 10)
            new = make_event(key, kind=0, content="new", created_at=now - 5)
            assert (await conn.publish(new)).accepted
            late = await conn.publish(old)  # older than what is stored
            assert late.accepted
            assert [e.content for e in await conn.query([{"authors": [me], "kinds": [0]}])] == [
                "new"
            ]
            for d, content in (("a", "a1"), ("b", "b1"), ("a", "a2")):
                assert (
                    await conn.publish(
                        make_event(
                            key, kind=30000, content=content, tags=[["d", d]], created_at=now
                        )
                    )
                ).accepted
                now += 1
            addressable = await conn.query([{"authors": [me], "kinds": [30000]}])
            assert sorted(e.content for e in addressable) == ["a2", "b1"]
            sub = await listener.subscribe([{"authors": [me], "kinds": [20001]}])
            await asyncio.wait_for(sub.eose.wait(), 5)
            ephemeral = make_event(key, kind=20001, content="now or never")
            assert (await conn.publish(ephemeral)).accepted
            assert await asyncio.wait_for(sub.events.get(), 5) == ephemeral
            assert await conn.query([{"authors": [me], "kinds": [20001]}]) == []

    run(scenario())


def test_deletion_requests(relay: RelayProcess) -> None:
    alice, mallory = new_key(), new_key()

    async def body(conn: RelayConnection) -> None:
        target = make_event(alice, content="regret")
        assert (await conn.publish(target)).accepted
        forged = make_event(mallory, kind=5, tags=[["e", target.id]])
        assert (await conn.publish(forged)).accepted
        assert await conn.query([{"ids": [target.id]}]) == [target]  # not hers to delete
        deletion = make_event(alice, kind=5, tags=[["e", target.id]])
        assert (await conn.publish(deletion)).accepted
        assert await conn.query([{"ids": [target.id]}]) == []
        again = await conn.publish(target)
        assert not again.accepted
        assert again.message.startswith("blocked:")

    with_client(relay, body)


def test_expiration(relay: RelayProcess) -> None:
    key = new_key()
    now = int(time.time())

    async def body(conn: RelayConnection) -> None:
        expired = make_event(key, tags=[["expiration", str(now - 1)]])
        refused = await conn.publish(expired)
        assert not refused.accepted
        assert refused.message.startswith("invalid:")
        soon = make_event(key, content="soon gone", tags=[["expiration", str(now + 2)]])
        assert (await conn.publish(soon)).accepted
        assert await conn.query([{"ids": [soon.id]}]) == [soon]
        await asyncio.sleep(3.1)
        assert await conn.query([{"ids": [soon.id]}]) == []

    with_client(relay, body)


def test_invalid_events_are_refused_with_reasons(relay: RelayProcess) -> None:
    key = new_key()
    signed = [make_event(key, content=str(i)) for i in range(3)]
    bad_sig = {**signed[0].to_dict(), "sig": "00" * 64}
    bad_id = {**signed[1].to_dict(), "content": "changed"}
    future = make_event(key, created_at=int(time.time()) + 3600)
    replies = run(
        raw(relay, ["EVENT", bad_sig], ["EVENT", bad_id], ["EVENT", future.to_dict()], expect=3)
    )
    by_id = {reply[1]: reply for reply in replies}
    for event in (signed[0], signed[1], future):
        assert by_id[event.id][:3] == ["OK", event.id, False]
    assert by_id[signed[0].id][3].startswith("invalid:")
    assert "signature" in by_id[signed[0].id][3]
    assert by_id[signed[1].id][3].startswith("invalid:")
    assert by_id[future.id][3].startswith("invalid:")
    assert "future" in by_id[future.id][3]


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "{}",
        "[]",
        '["HELLO"]',
        '["EVENT"]',
        '["EVENT", 5]',
        '["REQ"]',
        '["CLOSE"]',
        '["AUTH", "x"]',
        "[" * 10000,
        '"\\ud800"',
    ],
)
def test_malformed_messages_get_a_notice_and_the_connection_stays_usable(
    relay: RelayProcess, frame: str
) -> None:
    event = make_event(new_key())
    replies = run(raw(relay, frame, ["EVENT", event.to_dict()], expect=2))
    assert replies[0][0] in ("NOTICE", "OK", "CLOSED")
    if replies[0][0] == "OK":
        assert replies[0][2] is False
    assert replies[1] == ["OK", event.id, True, ""]


def test_req_errors_are_closed_with_reasons(relay: RelayProcess) -> None:
    replies = run(
        raw(
            relay,
            ["REQ", "s1", {"kinds": ["x"]}],
            ["REQ", "s2", {"bogus": 1}],
            ["REQ", "x" * 65, {}],
            expect=3,
        )
    )
    assert replies[0][:2] == ["CLOSED", "s1"]
    assert replies[0][2].startswith("invalid:")
    assert replies[1][:2] == ["CLOSED", "s2"]
    assert replies[2][0] in ("NOTICE", "CLOSED")


def test_negentropy_is_refused_with_neg_err(relay: RelayProcess) -> None:
    """NIP-77 clients (nostr-sdk's gossip) probe with NEG-OPEN and wait for NEG-MSG or
    NEG-ERR: the refusal ends their wait at once."""
    replies = run(raw(relay, ["NEG-OPEN", "n1", {"kinds": [1]}, "6100"], expect=1))
    assert replies[0][:2] == ["NEG-ERR", "n1"]
    assert replies[0][2].startswith("blocked:")


def test_oversized_messages(relay_factory: Any) -> None:
    relay = relay_factory("[limits]\nmax_message_bytes = 10000\n")
    event = make_event(new_key())
    big = make_event(new_key(), content="x" * 20000)
    replies = run(raw(relay, ["EVENT", big.to_dict()], ["EVENT", event.to_dict()], expect=2))
    assert replies[0][0] in ("NOTICE", "OK")
    assert replies[1] == ["OK", event.id, True, ""]
    huge = "x" * 50000  # over four times the limit: WebSocket says close (1009)
    closed = run(raw(relay, huge, expect=1))
    assert closed[0] in (
        aiohttp.WSMsgType.CLOSE,
        aiohttp.WSMsgType.CLOSED,
        aiohttp.WSMsgType.CLOSING,
    )


def test_subscription_and_filter_limits(relay_factory: Any) -> None:
    relay = relay_factory("[limits]\nmax_subscriptions = 2\nmax_filters = 2\n")

    async def body(conn: RelayConnection) -> None:
        await conn.query([{"kinds": [1]}, {"kinds": [2]}])
        with pytest.raises(RelayError):
            await conn.query([{"kinds": [1]}, {"kinds": [2]}, {"kinds": [3]}])
        one = await conn.subscribe([{"kinds": [1]}])
        two = await conn.subscribe([{"kinds": [1]}])
        three = await conn.subscribe([{"kinds": [1]}])
        await asyncio.wait_for(three.eose.wait(), 5)
        assert three.closed is not None
        assert three.closed.startswith("blocked:")
        await conn.unsubscribe(one)
        four = await conn.subscribe([{"kinds": [1]}])
        await asyncio.wait_for(four.eose.wait(), 5)
        assert four.closed is None
        del two

    with_client(relay, body)


def test_rate_limits(relay_factory: Any) -> None:
    relay = relay_factory("[limits]\nevents_per_second = 1.0\nevents_burst = 5\n")
    key = new_key()

    async def body(conn: RelayConnection) -> None:
        results = await conn.publish_many([make_event(key, content=str(i)) for i in range(12)])
        accepted = [r for r in results if r.accepted]
        limited = [r for r in results if not r.accepted]
        assert 5 <= len(accepted) <= 7
        assert limited
        assert all(r.message.startswith("rate-limited:") for r in limited)

    with_client(relay, body)


def test_connections_per_ip(relay_factory: Any) -> None:
    relay = relay_factory("[limits]\nmax_connections_per_ip = 2\n")

    async def scenario() -> None:
        async with (
            await RelayConnection.connect(relay.url),
            await RelayConnection.connect(relay.url),
        ):
            with pytest.raises(RelayError):
                await RelayConnection.connect(relay.url)
        # closed again: a new one is welcome
        async with await RelayConnection.connect(relay.url) as conn:
            assert (await conn.publish(make_event(new_key()))).accepted

    run(scenario())


def test_proof_of_work_minimum(relay_factory: Any) -> None:
    relay = relay_factory("[limits]\nmin_pow_difficulty = 8\n")
    key = new_key()

    def mined() -> Event:
        nonce = 0
        while True:
            event = make_event(key, tags=[["nonce", str(nonce), "8"]])
            if event.id.startswith("00"):
                return event
            nonce += 1

    async def body(conn: RelayConnection) -> None:
        weak = make_event(key, content="no work")
        while weak.id.startswith("00"):
            weak = make_event(key, content="no work " + weak.id)
        refused = await conn.publish(weak)
        assert not refused.accepted
        assert refused.message.startswith("pow:")
        assert (await conn.publish(mined())).accepted

    with_client(relay, body)


def test_nip11_document(relay: RelayProcess) -> None:
    async def scenario() -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(relay.http_url, headers={"Accept": "application/nostr+json"}) as response,
        ):
            assert response.status == 200
            assert response.headers["Access-Control-Allow-Origin"] == "*"
            return orjson.loads(await response.read())  # type: ignore[no-any-return]

    info = run(scenario())
    assert {1, 9, 11, 40, 42, 45, 59, 70} <= set(info["supported_nips"])
    assert info["limitation"]["max_subscriptions"] == 20
    assert info["limitation"]["max_message_length"] > 0
    assert info["retention"][0]["kinds"] == [1059]
    assert info["xchat_limits"]["gift_wraps_only_to_recipient"] is True


def test_gift_wraps_only_for_their_authenticated_recipient(relay: RelayProcess) -> None:
    recipient, other, sender = new_key(), new_key(), new_key()
    wrap = make_event(sender, kind=1059, content="opaque", tags=[["p", recipient.public_key.hex]])
    wanted = [{"kinds": [1059], "#p": [recipient.public_key.hex]}]

    async def scenario() -> None:
        async with (
            await RelayConnection.connect(relay.url) as anyone,
            await RelayConnection.connect(relay.url) as stranger,
            await RelayConnection.connect(relay.url) as owner,
        ):
            assert (await anyone.publish(wrap)).accepted
            with pytest.raises(RelayError, match="auth-required"):
                await anyone.query(wanted)
            assert (await stranger.authenticate(other)).accepted
            with pytest.raises(RelayError, match="auth-required"):
                await stranger.query(wanted)
            # Asking for everything never includes someone else's gift wraps.
            everything = await stranger.query([{"authors": [sender.public_key.hex]}])
            assert everything == []
            with pytest.raises(RelayError, match="auth-required"):
                await anyone.count([{"#p": [recipient.public_key.hex]}])
            assert (await owner.authenticate(other)).accepted  # several keys per connection
            assert (await owner.authenticate(recipient)).accepted
            assert await owner.query(wanted) == [wrap]
            assert await owner.count(wanted) == 1
            # Live: only the recipient's connection gets new wraps.
            live = await owner.subscribe(wanted)
            spy = await stranger.subscribe([{"authors": [sender.public_key.hex]}])
            await asyncio.wait_for(live.eose.wait(), 5)
            await asyncio.wait_for(spy.eose.wait(), 5)
            assert live.events.get_nowait() == wrap  # the stored one, before EOSE
            second = make_event(
                sender, kind=1059, content="2", tags=[["p", recipient.public_key.hex]]
            )
            assert (await anyone.publish(second)).accepted
            assert await asyncio.wait_for(live.events.get(), 5) == second
            await asyncio.sleep(0.2)
            assert spy.events.empty()

    run(scenario())


def test_auth_is_checked(relay: RelayProcess) -> None:
    from xchat.core.events import sign_event

    key = new_key()

    async def scenario() -> None:
        async with await RelayConnection.connect(relay.url) as conn:
            challenge = await conn.challenge()
            now = int(time.time())
            cases = [
                ([["relay", relay.url], ["challenge", "wrong"]], now, 22242),
                ([["relay", "ws://elsewhere.example"], ["challenge", challenge]], now, 22242),
                ([["relay", relay.url], ["challenge", challenge]], now - 3600, 22242),
                ([["relay", relay.url], ["challenge", challenge]], now, 1),
            ]
            for tags, created_at, kind in cases:
                event = sign_event(
                    key,
                    kind=kind,
                    tags=tags,
                    content="",
                    created_at=created_at,
                    rng=__import__("os").urandom,
                )
                result = await conn.send_auth(event, 5)
                assert not result.accepted, tags
                assert result.message.startswith("invalid:")
            assert (await conn.authenticate(key)).accepted

    run(scenario())


def test_protected_events_need_their_author_authenticated(relay: RelayProcess) -> None:
    key = new_key()
    protected = make_event(key, content="only me", tags=[["-"]])

    async def body(conn: RelayConnection) -> None:
        refused = await conn.publish(protected)
        assert not refused.accepted
        assert refused.message.startswith("auth-required:")
        assert (await conn.authenticate(key)).accepted
        assert (await conn.publish(protected)).accepted

    with_client(relay, body)


def test_no_filter_counts_or_returns_someone_elses_gift_wraps(relay: RelayProcess) -> None:
    """Whatever the filter (no kinds, no #p, ids, a limit), a gift wrap is counted and
    returned only on a connection authenticated as its recipient."""
    recipient, other, sender = new_key(), new_key(), new_key()
    now = int(time.time())
    note = make_event(sender, kind=1, content="public", created_at=now - 10)
    wrap = make_event(
        sender, kind=1059, content="opaque", tags=[["p", recipient.public_key.hex]], created_at=now
    )
    by_sender = {"authors": [sender.public_key.hex]}

    async def scenario() -> None:
        async with (
            await RelayConnection.connect(relay.url) as anyone,
            await RelayConnection.connect(relay.url) as stranger,
            await RelayConnection.connect(relay.url) as owner,
        ):
            assert (await anyone.publish(note)).accepted
            assert (await anyone.publish(wrap)).accepted
            assert (await stranger.authenticate(other)).accepted
            assert (await owner.authenticate(recipient)).accepted
            for conn in (anyone, stranger):
                assert await conn.count([{}]) == await owner.count([{}]) - 1
                assert await conn.count([by_sender]) == 1
                assert await conn.count([{"ids": [wrap.id]}]) == 0
                assert await conn.query([by_sender]) == [note]
                assert await conn.query([{"ids": [wrap.id]}]) == []
                # the wrap is the newest: it must not take the only place of a limit
                assert await conn.query([{**by_sender, "limit": 1}]) == [note]
            assert await owner.count([by_sender]) == 2
            assert await owner.query([{**by_sender, "limit": 1}]) == [wrap]
            assert await owner.query([by_sender]) == [wrap, note]

    run(scenario())


def test_content_length_is_counted_in_characters(relay_factory: Any) -> None:
    """NIP-11 max_content_length counts characters; max_message_length counts bytes."""
    relay = relay_factory("[limits]\nmax_content_length = 100\nmax_message_bytes = 2000\n")
    key = new_key()
    two_byte = make_event(key, content="é" * 100)  # 100 characters, 200 bytes
    too_long = make_event(key, content="a" * 101)
    # 1,300 characters of message, over 2,000 bytes of UTF-8: over max_message_length
    wide = make_event(key, content="é" * 900)

    async def body(conn: RelayConnection) -> None:
        assert (await conn.publish(two_byte)).accepted
        refused = await conn.publish(too_long)
        assert not refused.accepted
        assert refused.message == "invalid: content is longer than 100 characters"

    with_client(relay, body)
    replies = run(raw(relay, ["EVENT", wide.to_dict()], expect=1))
    assert replies[0][0] == "NOTICE"
    assert replies[0][1] == "invalid: message is larger than 2000 bytes"
    info = run(nip11(relay))
    assert info["limitation"]["max_content_length"] == 100
    assert info["limitation"]["max_message_length"] == 2000


async def nip11(relay: RelayProcess) -> dict[str, Any]:
    headers = {"Accept": "application/nostr+json"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(relay.http_url, headers=headers) as r,
    ):
        return orjson.loads(await r.read())  # type: ignore[no-any-return]


def test_an_event_with_a_malformed_id_gets_ok_false(relay: RelayProcess) -> None:
    event = make_event(new_key()).to_dict()
    upper = {**event, "id": event["id"].upper()}
    short = {**event, "id": "abc"}
    no_id = {k: v for k, v in event.items() if k != "id"}
    number = {**event, "id": 7}
    replies = run(
        raw(
            relay,
            ["EVENT", upper],
            ["EVENT", short],
            ["EVENT", no_id],
            ["EVENT", number],
            ["EVENT", {**short, "sig": 5}],
            expect=5,
        )
    )
    for reply, sent in zip(replies[:2], (upper, short), strict=True):
        assert reply[:3] == ["OK", sent["id"], False]
        assert reply[3].startswith("invalid: ")
    # no id string to echo: a NOTICE is the only answer NIP-01 allows
    for reply in replies[2:4]:
        assert reply[0] == "NOTICE"
        assert reply[1].startswith("invalid: ")
    assert replies[4][:3] == ["OK", "abc", False]


def test_a_bad_subscription_id_gets_closed(relay: RelayProcess) -> None:
    long_id = "x" * 65
    replies = run(
        raw(
            relay,
            ["REQ", "", {}],
            ["REQ", long_id, {}],
            ["COUNT", "", {}],
            ["COUNT", long_id, {}],
            ["REQ", 5, {}],
            ["CLOSE", ""],
            expect=6,
        )
    )
    for reply, sub_id in zip(replies[:4], ["", long_id, "", long_id], strict=True):
        assert reply[:2] == ["CLOSED", sub_id]
        assert reply[2].startswith("invalid: subscription id must be")
    # not a string, or a CLOSE (which has no answer of its own): a NOTICE
    assert [r[0] for r in replies[4:]] == ["NOTICE", "NOTICE"]
