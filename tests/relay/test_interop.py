"""Interop with rust-nostr (nostr-sdk), over real sockets on 127.0.0.1, both directions.

1. Their client (``nostr_sdk.Client``) against our relay process: publishing, every filter
   type, live subscriptions, replaceable and addressable events, COUNT, and NIP-42: the
   client authenticates by itself (``ClientBuilder.authenticator``) and only the gift
   wraps' recipient gets them.
2. Our client (:class:`RelayConnection`) against their in-process relay
   (``nostr_sdk.LocalRelay``): publishing, duplicates, every filter type, live
   subscriptions, COUNT and NIP-42 (our AUTH event accepted by another implementation).

Events come from both signers (our ``sign_event`` and their ``EventBuilder``) and are
checked on arrival by the receiving side's code: ``verify_event`` for us,
``Event.verify`` for them.

nostr-sdk's async API runs on a Rust runtime and calls back into Python for the
authenticator and Python-side signers; those callbacks need the running loop, which
:func:`run` hands to ``uniffi_set_event_loop`` for each test (and takes back after).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
from collections.abc import AsyncIterator, Awaitable
from datetime import timedelta
from typing import Any

import aiohttp
import nostr_sdk as sdk
import pytest

from tests.relay.conftest import RelayProcess, make_event, new_key
from tests.sdk_client import SdkListener
from xchat.core.events import verify_event
from xchat.core.identity import Identity
from xchat.core.nip17 import wrap_rumor
from xchat.crypto import nip44
from xchat.crypto.keys import PublicKey, SecretKey
from xchat.node.relay_client import RelayConnection, RelayError
from xchat.wire.event import Event, Rumor, event_from_json

WAIT = timedelta(seconds=5)  # every nostr-sdk network wait is bounded by this
QUIET = 0.3  # seconds to watch for something that must not arrive


def run(coro: Awaitable[Any]) -> Any:
    async def scenario() -> Any:
        sdk.uniffi_set_event_loop(asyncio.get_running_loop())  # type: ignore[arg-type]
        try:
            return await asyncio.wait_for(coro, 30)
        finally:
            sdk.uniffi_set_event_loop(None)  # type: ignore[arg-type]

    return asyncio.run(scenario())


# -- converting and checking events across the two implementations ---------------------


def ours(event: sdk.Event) -> Event:
    """Their event as ours, its id and signature checked by our code."""
    parsed = event_from_json(event.as_json())  # checks the id
    verify_event(parsed)
    return parsed


def theirs(event: Event) -> sdk.Event:
    """Our event as theirs, its id and signature checked by their code."""
    parsed = sdk.Event.from_json(event.to_json().decode())
    assert parsed.verify()
    assert parsed.id().to_hex() == event.id
    return parsed


def keys_of(key: SecretKey) -> sdk.Keys:
    """The same key on their side, so both implementations can sign as one author."""
    return sdk.Keys.parse(key.to_bytes().hex())


def sdk_event(
    keys: sdk.Keys,
    kind: int = 1,
    content: str = "hello",
    tags: list[list[str]] | None = None,
    created_at: int | None = None,
) -> Event:
    """An event signed by nostr-sdk's EventBuilder, returned as ours (checked)."""
    builder = sdk.EventBuilder(sdk.Kind(kind), content).tags(
        [sdk.Tag.parse(tag) for tag in tags or []]
    )
    if created_at is not None:
        builder = builder.custom_created_at(sdk.Timestamp.from_secs(created_at))
    return ours(builder.finalize(keys))


def hex_of(keys: sdk.Keys) -> str:
    return keys.public_key().to_hex()


# -- their client ---------------------------------------------------------------------


class TheirClient(SdkListener):
    """A nostr-sdk Client on one relay, with every relay message it got (as JSON)."""

    async def send(self, event: Event) -> sdk.SendEventOutput:
        """Publish one of our events through their client; the relay must accept it."""
        output = await self.client.send_event(theirs(event), ok_timeout=WAIT)
        assert output.id.to_hex() == event.id
        assert output.success == [self.url], output.failed
        assert output.failed == {}
        return output

    async def fetch(self, *filters: sdk.Filter, timeout: timedelta = WAIT) -> list[Event]:
        """Stored events (until EOSE, CLOSED or ``timeout``), checked by both sides."""
        target = sdk.ReqTarget.single(self.url, list(filters))
        found = await self.client.fetch_events(target, timeout)
        for event in found:
            assert event.verify()
        return [ours(event) for event in found]


@contextlib.asynccontextmanager
async def their_client(url: str, auth_as: sdk.Keys | None = None) -> AsyncIterator[TheirClient]:
    """Connected; with ``auth_as`` it answers the relay's AUTH challenge (NIP-42) itself,
    and this waits until the relay accepted that."""
    builder = sdk.ClientBuilder()
    if auth_as is not None:
        builder = builder.authenticator(sdk.SignerAuthenticator(auth_as))
    them = TheirClient(builder.build(), url)
    try:
        await them.client.add_relay(them.url)
        await them.client.connect(WAIT)
        relay = await them.client.relay(them.url)
        assert relay is not None
        assert relay.status() == sdk.RelayStatus.CONNECTED
        if auth_as is not None:
            # Our relay challenges on connect; theirs answers right away.
            challenge = await them.wait_for_message(lambda m: m[0] == "AUTH")
            assert isinstance(challenge[1], str)
            ok = await them.wait_for_message(lambda m: m[0] == "OK")
            assert ok[2] is True, ok
        yield them
    finally:
        await them.close()


# -- their relay ----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def their_relay(
    nip42: sdk.LocalRelayBuilderNip42Mode | None = None, auth_dm: bool = False
) -> AsyncIterator[str]:
    """A LocalRelay on 127.0.0.1: no ``.port()`` given, so the OS picks a free one; no
    ``.database()`` given, so events live in memory. Yields its ``ws://`` URL."""
    builder = sdk.LocalRelayBuilder().addr("127.0.0.1")
    if nip42 is not None:
        builder = builder.nip42(sdk.LocalRelayBuilderNip42(mode=nip42))
    if auth_dm:
        builder = builder.auth_dm(True)
    relay = builder.build()
    await relay.run()
    try:
        yield str(await relay.url())
    finally:
        relay.shutdown()


async def query_checked(conn: RelayConnection, filters: list[dict[str, Any]]) -> list[Event]:
    """Our query, each event's signature checked by our code."""
    found = await conn.query(filters, timeout=5)
    for event in found:
        verify_event(event)
    return found


# -- a set of events from both signers --------------------------------------------------


@dataclasses.dataclass
class Corpus:
    """alice signs with our code, bob with nostr-sdk's; they tag each other."""

    alice: SecretKey
    bob: sdk.Keys
    now: int
    events: dict[str, Event]

    @property
    def authors(self) -> list[str]:
        return [self.alice.public_key.hex, hex_of(self.bob)]


def corpus() -> Corpus:
    alice, bob = new_key(), sdk.Keys.generate()
    now = int(time.time())
    a1 = make_event(alice, kind=1, content="a1", created_at=now - 40, tags=[["t", "x"]])
    b1 = sdk_event(bob, kind=1, content="b1", created_at=now - 30, tags=[["t", "y"]])
    a2 = make_event(
        alice,
        kind=7,
        content="a2",
        created_at=now - 20,
        tags=[["e", b1.id], ["p", hex_of(bob)]],
    )
    b2 = sdk_event(
        bob,
        kind=1,
        content="b2",
        created_at=now - 10,
        tags=[["e", a1.id], ["p", alice.public_key.hex], ["t", "x"]],
    )
    return Corpus(alice, bob, now, {e.content: e for e in (a1, b1, a2, b2)})


# == 1. their client, our relay ==========================================================


def test_their_client_publishes_and_queries_with_every_filter_type(relay: RelayProcess) -> None:
    c = corpus()
    alice_pk = sdk.PublicKey.parse(c.alice.public_key.hex)
    bob_pk = c.bob.public_key()
    ev = c.events

    async def scenario() -> None:
        async with their_client(relay.url) as them:
            for event in ev.values():
                await them.send(event)
            await them.send(ev["a1"])  # a duplicate is still a success ("duplicate:")
            await them.wait_for_message(
                lambda m: m[:3] == ["OK", ev["a1"].id, True] and m[3].startswith("duplicate:")
            )

            mine = sdk.Filter().authors([alice_pk, bob_pk])

            async def contents(*filters: sdk.Filter) -> set[str]:
                return {e.content for e in await them.fetch(*filters)}

            everything = await them.fetch(mine)
            assert {e.id: e for e in everything} == {e.id: e for e in ev.values()}
            assert await contents(sdk.Filter().ids([sdk.EventId.parse(ev["b1"].id)])) == {"b1"}
            assert await contents(sdk.Filter().author(alice_pk)) == {"a1", "a2"}
            assert await contents(mine.kind(sdk.Kind(7))) == {"a2"}
            assert await contents(mine.kinds([sdk.Kind(1)])) == {"a1", "b1", "b2"}
            assert await contents(sdk.Filter().event(sdk.EventId.parse(ev["b1"].id))) == {"a2"}
            assert await contents(sdk.Filter().event(sdk.EventId.parse(ev["a1"].id))) == {"b2"}
            assert await contents(sdk.Filter().pubkey(bob_pk)) == {"a2"}
            assert await contents(sdk.Filter().pubkey(alice_pk)) == {"b2"}
            t = sdk.SingleLetterTag.from_byte(ord("t"))
            assert await contents(mine.custom_tags(t, ["x"])) == {"a1", "b2"}
            assert await contents(mine.custom_tag(t, "y")) == {"b1"}
            assert await contents(mine.hashtag("y")) == {"b1"}
            assert await contents(mine.since(sdk.Timestamp.from_secs(c.now - 20))) == {"a2", "b2"}
            assert await contents(mine.until(sdk.Timestamp.from_secs(c.now - 30))) == {"a1", "b1"}
            window = mine.since(sdk.Timestamp.from_secs(c.now - 30)).until(
                sdk.Timestamp.from_secs(c.now - 20)
            )
            assert await contents(window) == {"b1", "a2"}
            assert await contents(mine.limit(2)) == {"a2", "b2"}  # the newest two
            assert await contents(mine.kind(sdk.Kind(7)), mine.hashtag("y")) == {"a2", "b1"}
            assert await contents(mine.kind(sdk.Kind(30023))) == set()

            relay_handle = await them.client.relay(them.url)
            assert relay_handle is not None
            assert await relay_handle.count_events(mine, WAIT) == 4  # NIP-45
            assert await relay_handle.count_events(mine.kind(sdk.Kind(1)), WAIT) == 3

        # and what their client published reads back through ours, checked by our code
        async with await RelayConnection.connect(relay.url) as conn:
            found = await query_checked(conn, [{"authors": [hex_of(c.bob)]}])
            assert {e.id for e in found} == {ev["b1"].id, ev["b2"].id}

    run(scenario())


def test_their_live_subscription_gets_events_published_afterwards(relay: RelayProcess) -> None:
    alice, bob = new_key(), sdk.Keys.generate()
    authors = [sdk.PublicKey.parse(alice.public_key.hex), bob.public_key()]

    async def scenario() -> None:
        async with (
            their_client(relay.url) as listener,
            their_client(relay.url) as writer,
            await RelayConnection.connect(relay.url) as conn,
        ):
            sub = await listener.client.subscribe(
                sdk.ReqTarget.single(listener.url, [sdk.Filter().authors(authors)])
            )
            assert sub.success == [listener.url]
            await listener.wait_for_message(lambda m: m[0] == "EOSE" and m[1] == sub.id)
            ours_live = await conn.subscribe([{"authors": [hex_of(bob)]}])
            await asyncio.wait_for(ours_live.eose.wait(), 5)

            from_us = make_event(alice, content="live from X Chat")
            assert (await conn.publish(from_us)).accepted
            got = await asyncio.wait_for(listener.new_events.get(), 5)
            assert got.verify()
            assert ours(got) == from_us

            from_them = sdk_event(bob, content="live from rust-nostr")
            await writer.send(from_them)
            got = await asyncio.wait_for(listener.new_events.get(), 5)
            assert ours(got) == from_them
            # ... and our own live subscription got theirs too
            mine = await asyncio.wait_for(ours_live.events.get(), 5)
            verify_event(mine)
            assert mine == from_them

            await listener.client.unsubscribe(sub.id)
            await writer.send(sdk_event(bob, content="after CLOSE"))
            await asyncio.sleep(QUIET)
            assert listener.new_events.empty()

    run(scenario())


def test_their_client_sees_replaceable_and_addressable_semantics(relay: RelayProcess) -> None:
    key = new_key()
    keys = keys_of(key)  # one author, both signers
    author = keys.public_key()
    now = int(time.time())

    async def scenario() -> None:
        async with their_client(relay.url) as them:
            new = make_event(key, kind=0, content='{"name":"new"}', created_at=now - 5)
            old = sdk_event(keys, kind=0, content='{"name":"old"}', created_at=now - 10)
            await them.send(new)
            await them.send(old)  # accepted as a duplicate: a newer version is stored
            ok = await them.wait_for_message(lambda m: m[0] == "OK" and m[1] == old.id)
            assert ok[3].startswith("duplicate:")
            profile = await them.fetch(sdk.Filter().author(author).kind(sdk.Kind(0)))
            assert profile == [new]
            newer = sdk_event(keys, kind=0, content='{"name":"newer"}', created_at=now - 1)
            await them.send(newer)
            assert await them.fetch(sdk.Filter().author(author).kind(sdk.Kind(0))) == [newer]

            a1 = sdk_event(keys, kind=30000, content="a1", tags=[["d", "a"]], created_at=now - 3)
            b1 = make_event(key, kind=30000, content="b1", tags=[["d", "b"]], created_at=now - 2)
            a2 = make_event(key, kind=30000, content="a2", tags=[["d", "a"]], created_at=now - 1)
            for event in (a1, b1, a2):
                await them.send(event)
            lists = sdk.Filter().author(author).kind(sdk.Kind(30000))
            assert {e.content for e in await them.fetch(lists)} == {"a2", "b1"}
            assert await them.fetch(lists.identifier("a")) == [a2]  # "#d"
            assert await them.fetch(lists.identifier("b")) == [b1]

    run(scenario())


def test_their_client_authenticates_and_only_the_recipient_gets_gift_wraps(
    relay: RelayProcess,
) -> None:
    recipient, stranger, sender = sdk.Keys.generate(), sdk.Keys.generate(), sdk.Keys.generate()
    our_sender = Identity(new_key())
    now = int(time.time())
    from_them = ours(sdk.nip17_make_private_msg(sender, recipient.public_key(), "from rust-nostr"))
    rumor = Rumor.create(
        our_sender.secret.public_key.hex, now, 14, [["p", hex_of(recipient)]], "from X Chat"
    )
    from_us = wrap_rumor(
        our_sender,
        PublicKey.from_hex(hex_of(recipient)),
        rumor,
        now,
        os.urandom,
        nip44.ConversationKeyCache(),
    )
    wraps = sdk.Filter().kind(sdk.Kind(1059)).pubkey(recipient.public_key())
    by_id = sdk.Filter().ids([sdk.EventId.parse(from_them.id), sdk.EventId.parse(from_us.id)])

    async def scenario() -> None:
        async with await RelayConnection.connect(relay.url) as anyone:
            assert (await anyone.publish(from_us)).accepted
        async with their_client(relay.url) as unauthenticated:
            await unauthenticated.send(from_them)  # anyone may deliver mail
            assert await unauthenticated.fetch(wraps) == []
            await unauthenticated.wait_for_message(
                lambda m: m[0] == "CLOSED" and m[2].startswith("auth-required:")
            )

        async with (
            their_client(relay.url, auth_as=recipient) as owner,
            their_client(relay.url, auth_as=stranger) as other,
        ):
            got = await owner.fetch(wraps)
            assert {e.id for e in got} == {from_them.id, from_us.id}
            opened = {e.id: sdk.UnwrappedGift.from_gift_wrap(recipient, theirs(e)) for e in got}
            assert opened[from_them.id].rumor().content() == "from rust-nostr"
            assert opened[from_them.id].sender() == sender.public_key()
            assert opened[from_us.id].rumor().content() == "from X Chat"
            assert opened[from_us.id].rumor().id().to_hex() == rumor.id
            assert opened[from_us.id].sender().to_hex() == our_sender.secret.public_key.hex
            assert {e.id for e in await owner.fetch(by_id)} == {from_them.id, from_us.id}

            # Authenticated, but as someone else: refused, and never served by id either.
            # (After an auth-required CLOSED, a client that has an authenticator waits for
            # a new authentication to send the REQ again; our relay challenges once per
            # connection, so that fetch ends only at its timeout: keep it short.)
            assert await other.fetch(wraps, timeout=timedelta(seconds=1)) == []
            await other.wait_for_message(
                lambda m: m[0] == "CLOSED" and m[2].startswith("auth-required:")
            )
            assert await other.fetch(by_id) == []

            # Live: a new wrap reaches the recipient's subscription.
            sub = await owner.client.subscribe(sdk.ReqTarget.single(owner.url, [wraps]))
            await owner.wait_for_message(lambda m: m[0] == "EOSE" and m[1] == sub.id)
            while not owner.new_events.empty():  # the stored ones, already seen above
                owner.new_events.get_nowait()
            later = ours(sdk.nip17_make_private_msg(sender, recipient.public_key(), "later"))
            async with await RelayConnection.connect(relay.url) as anyone:
                assert (await anyone.publish(later)).accepted
            got_live = await asyncio.wait_for(owner.new_events.get(), 5)
            assert got_live.id().to_hex() == later.id

    run(scenario())


def test_their_parser_reads_our_nip11_document(relay: RelayProcess) -> None:
    async def fetch() -> str:
        async with (
            aiohttp.ClientSession() as session,
            session.get(relay.http_url, headers={"Accept": "application/nostr+json"}) as response,
        ):
            assert response.status == 200
            return await response.text()

    info = sdk.RelayInformationDocument.from_json(run(fetch()))
    assert {1, 11, 42, 45, 59} <= set(info.supported_nips() or [])
    limitation = info.limitation()
    assert limitation is not None
    assert limitation.max_subscriptions == 20
    assert limitation.auth_required is False


# == 2. our client, their relay ==========================================================


def test_our_client_publishes_and_queries_their_relay_with_every_filter_type() -> None:
    c = corpus()
    ev = c.events
    alice, bob = c.alice.public_key.hex, hex_of(c.bob)

    async def scenario() -> None:
        async with their_relay() as url, await RelayConnection.connect(url) as conn:
            results = await conn.publish_many(list(ev.values()))
            assert all(r.accepted for r in results), results
            again = await conn.publish(ev["b1"])
            assert again.accepted
            assert again.message.startswith("duplicate:")
            forged = dataclasses.replace(ev["a1"], sig="00" * 64)
            refused = await conn.publish(forged)  # they check our signatures
            assert not refused.accepted
            assert refused.message.startswith("invalid:")

            mine: dict[str, Any] = {"authors": c.authors}

            async def contents(*filters: dict[str, Any]) -> set[str]:
                return {e.content for e in await query_checked(conn, list(filters))}

            everything = await query_checked(conn, [mine])
            assert {e.id: e for e in everything} == {e.id: e for e in ev.values()}
            # (LocalRelay ends an ids-only REQ with CLOSED once all ids were found.)
            assert await contents({"ids": [ev["b1"].id]}) == {"b1"}
            assert await contents({"ids": [ev["b1"].id, ev["a2"].id]}) == {"b1", "a2"}
            assert await contents({"authors": [alice]}) == {"a1", "a2"}
            assert await contents({**mine, "kinds": [7]}) == {"a2"}
            assert await contents({"#e": [ev["b1"].id]}) == {"a2"}
            assert await contents({"#e": [ev["a1"].id]}) == {"b2"}
            assert await contents({"#p": [bob]}) == {"a2"}
            assert await contents({"#p": [alice]}) == {"b2"}
            assert await contents({**mine, "#t": ["x"]}) == {"a1", "b2"}
            assert await contents({**mine, "#t": ["y"]}) == {"b1"}
            assert await contents({**mine, "since": c.now - 20}) == {"a2", "b2"}
            assert await contents({**mine, "until": c.now - 30}) == {"a1", "b1"}
            assert await contents({**mine, "since": c.now - 30, "until": c.now - 20}) == {
                "b1",
                "a2",
            }
            newest = await query_checked(conn, [{**mine, "limit": 2}])
            assert [e.content for e in newest] == ["b2", "a2"]  # newest first
            assert await contents({**mine, "kinds": [7]}, {**mine, "#t": ["y"]}) == {"a2", "b1"}
            assert await contents({**mine, "kinds": [30023]}) == set()
            # LocalRelay supports NIP-45 COUNT.
            assert await conn.count([mine]) == 4
            assert await conn.count([{**mine, "kinds": [1]}]) == 3

    run(scenario())


def test_our_live_subscription_on_their_relay() -> None:
    alice, bob = new_key(), sdk.Keys.generate()

    async def scenario() -> None:
        async with (
            their_relay() as url,
            await RelayConnection.connect(url) as listener,
            await RelayConnection.connect(url) as writer,
            their_client(url) as them,
        ):
            sub = await listener.subscribe([{"authors": [alice.public_key.hex, hex_of(bob)]}])
            await asyncio.wait_for(sub.eose.wait(), 5)
            assert sub.closed is None

            from_us = make_event(alice, content="live from X Chat")
            assert (await writer.publish(from_us)).accepted
            got = await asyncio.wait_for(sub.events.get(), 5)
            verify_event(got)
            assert got == from_us

            from_them = sdk_event(bob, content="live from rust-nostr")
            await them.send(from_them)
            got = await asyncio.wait_for(sub.events.get(), 5)
            verify_event(got)
            assert got == from_them
            # their client reads ours from their relay too
            assert await them.fetch(sdk.Filter().id(sdk.EventId.parse(from_us.id))) == [from_us]

            await listener.unsubscribe(sub)
            assert (await writer.publish(make_event(alice, content="after CLOSE"))).accepted
            await asyncio.sleep(QUIET)
            assert sub.events.empty()

    run(scenario())


def test_their_relay_keeps_the_newest_replaceable_and_addressable_events() -> None:
    key = new_key()
    keys = keys_of(key)
    me = key.public_key.hex
    now = int(time.time())

    async def scenario() -> None:
        async with their_relay() as url, await RelayConnection.connect(url) as conn:
            new = sdk_event(keys, kind=0, content='{"name":"new"}', created_at=now - 5)
            old = make_event(key, kind=0, content='{"name":"old"}', created_at=now - 10)
            assert (await conn.publish(new)).accepted
            # Relays answer a stale replaceable event differently: ours with "OK true
            # duplicate:", LocalRelay with "OK false". Either way it is not stored.
            await conn.publish(old)
            assert await query_checked(conn, [{"authors": [me], "kinds": [0]}]) == [new]
            a1 = make_event(key, kind=30000, content="a1", tags=[["d", "a"]], created_at=now - 3)
            b1 = sdk_event(keys, kind=30000, content="b1", tags=[["d", "b"]], created_at=now - 2)
            a2 = sdk_event(keys, kind=30000, content="a2", tags=[["d", "a"]], created_at=now - 1)
            assert all(r.accepted for r in await conn.publish_many([a1, b1, a2]))
            lists = {"authors": [me], "kinds": [30000]}
            assert {e.content for e in await query_checked(conn, [lists])} == {"a2", "b1"}
            assert await query_checked(conn, [{**lists, "#d": ["a"]}]) == [a2]

    run(scenario())


@pytest.mark.parametrize(
    "mode",
    [
        sdk.LocalRelayBuilderNip42Mode.READ,
        sdk.LocalRelayBuilderNip42Mode.WRITE,
        sdk.LocalRelayBuilderNip42Mode.BOTH,
    ],
    ids=["read", "write", "both"],
)
def test_our_auth_is_accepted_by_their_relay(mode: sdk.LocalRelayBuilderNip42Mode) -> None:
    key = new_key()
    event = sdk_event(keys_of(key), content="needs auth")
    write_needs_auth = mode is not sdk.LocalRelayBuilderNip42Mode.READ
    read_needs_auth = mode is not sdk.LocalRelayBuilderNip42Mode.WRITE

    async def scenario() -> None:
        async with their_relay(nip42=mode) as url, await RelayConnection.connect(url) as conn:
            before = await conn.publish(event)
            assert before.accepted is not write_needs_auth
            if write_needs_auth:
                assert before.message.startswith("auth-required:")
            if read_needs_auth:
                with pytest.raises(RelayError, match=r"^auth-required:"):
                    await conn.query([{"ids": [event.id]}], timeout=5)
            else:
                assert await conn.query([{"ids": [event.id]}], timeout=5) == []
            # LocalRelay sends its challenge with the first refusal; we sign it.
            result = await conn.authenticate(key, timeout=5)
            assert result.accepted, result.message
            assert (await conn.publish(event)).accepted
            assert await query_checked(conn, [{"ids": [event.id]}]) == [event]
            assert await conn.count([{"ids": [event.id]}]) == 1

    run(scenario())


def test_their_relay_serves_gift_wraps_to_our_authenticated_recipient() -> None:
    """LocalRelay's ``auth_dm`` is the same rule as ours: gift wraps only to their #p."""
    recipient, other, sender = new_key(), new_key(), sdk.Keys.generate()
    wrap = ours(
        sdk.nip17_make_private_msg(
            sender, sdk.PublicKey.parse(recipient.public_key.hex), "for your eyes"
        )
    )
    wanted = [{"kinds": [1059], "#p": [recipient.public_key.hex]}]

    async def scenario() -> None:
        async with (
            their_relay(auth_dm=True) as url,
            await RelayConnection.connect(url) as owner,
            await RelayConnection.connect(url) as stranger,
        ):
            assert (await stranger.publish(wrap)).accepted
            with pytest.raises(RelayError, match=r"^auth-required:"):
                await stranger.query(wanted, timeout=5)
            assert (await stranger.authenticate(other, timeout=5)).accepted
            # Authenticated as someone else: still refused (LocalRelay says "error: ...").
            with pytest.raises(RelayError):
                await stranger.query(wanted, timeout=5)
            with pytest.raises(RelayError, match=r"^auth-required:"):
                await owner.query(wanted, timeout=5)
            assert (await owner.authenticate(recipient, timeout=5)).accepted
            assert await query_checked(owner, wanted) == [wrap]

    run(scenario())
