"""Contacts and our lists on relays, with real relays and nodes: which connection carries
what, bundles that fit relays' limits and are replenished, refusals shown, relays that
never answer, and contacts upgraded to forward secrecy when their keys appear."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.node.faulty_relay import FaultyRelay
from tests.node.nodes import NodeProcess, StreamRecorder, run_cli, wait_for
from tests.relay.conftest import RelayProcess
from xchat.core.channel import Channel
from xchat.core.device import DeviceBundle, LocalDevice
from xchat.core.identity import ContactCard, Identity
from xchat.core.message import Text, new_message_id
from xchat.crypto.keys import PublicKey
from xchat.node.relay_client import RelayConnection
from xchat.wire.event import Event
from xchat.wire.kinds import KIND_DEVICE_BUNDLE

FAST = {"XCHAT_PUBLISH_TIMEOUT": "3", "XCHAT_RESYNC_INTERVAL": "3"}
GIFT_WRAP = 1059


def _query(url: str, filters: list[dict[str, Any]]) -> list[Event]:
    async def run() -> list[Event]:
        async with await RelayConnection.connect(url) as conn:
            return await conn.query(filters, 10)

    return asyncio.run(run())


def _publish(url: str, events: list[Event]) -> None:
    async def run() -> None:
        async with await RelayConnection.connect(url) as conn:
            for event in events:
                assert (await conn.publish(event, 10)).accepted

    asyncio.run(run())


def _bundle(url: str, pubkey: str) -> Event | None:
    found = _query(url, [{"kinds": [KIND_DEVICE_BUNDLE], "authors": [pubkey]}])
    return max(found, key=lambda e: e.created_at) if found else None


def _bodies(node: NodeProcess, peer: NodeProcess) -> list[str]:
    return [m["body"] for m in node.messages(peer.pubkey)]


# -- item: the sending connection does not name the sender ---------------------------------


def test_no_connection_carries_both_identity_signed_events_and_gift_wraps(
    node_factory: Callable[..., NodeProcess],
    relays: Callable[..., RelayProcess],
    faulty_relays: Callable[..., FaultyRelay],
) -> None:
    first = faulty_relays(relays().url)
    second = faulty_relays(relays().url)
    alice = node_factory((first.url,), env=FAST)
    bob = node_factory((first.url,), env=FAST)
    alice.add(bob, name="Bob")
    bob.add(alice, name="Alice")
    for i in range(3):
        alice.send(bob.pubkey, f"from alice {i}")
        bob.send(alice.pubkey, f"from bob {i}")
    wait_for(lambda: len(bob.messages(alice.pubkey)) == 6, what="six messages at bob")
    # republishing: a relay added (list and bundle again, to both), a restart
    alice.call("POST", "/api/relays", {"url": second.url})
    wait_for(lambda: _bundle(second.url, alice.pubkey), what="alice's bundle on the new relay")
    bob.stop()
    bob.start()
    bob.call("POST", "/api/contacts", {"address": alice.card()})  # a lookup again
    alice.send(bob.pubkey, "after the restart")
    bob.send(alice.pubkey, "back again")
    wait_for(lambda: "back again" in _bodies(alice, bob), what="the last message at alice")
    wait_for(lambda: "after the restart" in _bodies(bob, alice), what="the last message at bob")

    identities = {alice.pubkey, bob.pubkey}
    records = first.connections() + second.connections()
    carried = [(kind, author) for record in records for kind, author in record["events"]]
    # the run really published both kinds, and looked people up
    assert any(kind == GIFT_WRAP for kind, _ in carried)
    assert {(KIND_DEVICE_BUNDLE, alice.pubkey), (10050, alice.pubkey)} <= set(carried)
    assert {(KIND_DEVICE_BUNDLE, bob.pubkey), (10050, bob.pubkey)} <= set(carried)
    assert any(set(record["req_authors"]) & identities for record in records)
    for record in records:
        if not any(kind == GIFT_WRAP for kind, _ in record["events"]):
            continue
        named = [e for e in record["events"] if e[0] != GIFT_WRAP or e[1] in identities]
        assert not named, f"a gift-wrap connection carried identity-signed events: {record}"
        assert not record["auths"], f"a gift-wrap connection authenticated: {record}"
        assert not record["req_authors"], f"a gift-wrap connection looked people up: {record}"
    # each identity-signed event went over a connection of its own
    for record in records:
        signed = [e for e in record["events"] if e[1] in identities]
        assert len(signed) <= 1, record


# -- item: bundles that fit, replenished, refusals shown -------------------------------------


def test_bundles_fit_relay_limits(
    node_factory: Callable[..., NodeProcess],
    relays: Callable[..., RelayProcess],
    faulty_relays: Callable[..., FaultyRelay],
) -> None:
    strict = relays("[limits]\nmax_content_length = 4096\n")
    alice = node_factory((strict.url,))
    event = wait_for(lambda: _bundle(strict.url, alice.pubkey), what="alice's bundle")
    assert len(event.content) <= 4096
    assert len(DeviceBundle.from_event(event).one_time_keys) >= 10
    assert alice.status()["warnings"] == []
    # a relay that publishes no limits (the proxy answers no NIP-11): 4 KB by default
    roomy = relays()
    hidden = faulty_relays(roomy.url)
    bob = node_factory((hidden.url,))
    event = wait_for(lambda: _bundle(roomy.url, bob.pubkey), what="bob's bundle")
    assert len(event.content) < 4096
    # a relay that publishes a large limit gets the configured 50 keys
    carol = node_factory((roomy.url,))
    event = wait_for(lambda: _bundle(roomy.url, carol.pubkey), what="carol's bundle")
    assert len(DeviceBundle.from_event(event).one_time_keys) == 50


def test_one_time_keys_are_replenished_as_they_are_used(
    node_factory: Callable[..., NodeProcess], relays: Callable[..., RelayProcess]
) -> None:
    relay = relays("[limits]\nmax_content_length = 4096\n")
    alice = node_factory((relay.url,))
    first = DeviceBundle.from_event(
        wait_for(lambda: _bundle(relay.url, alice.pubkey), what="alice's bundle")
    )
    count = len(first.one_time_keys)
    used = count // 2
    # strangers (real devices, in this process) each open a session with one key
    wraps = []
    now = int(time.time())
    for key_id in sorted(first.one_time_keys)[:used]:
        identity = Identity.generate(os.urandom)
        channel = Channel(LocalDevice.create(identity, now, os.urandom))
        one_key = dataclasses.replace(first, one_time_keys={key_id: first.one_time_keys[key_id]})
        session = channel.open_session(one_key, now, os.urandom)
        text = Text(new_message_id(os.urandom), time.time_ns() // 1_000_000, "hello")
        wraps.append(channel.seal(session, text, now, os.urandom))
    _publish(relay.url, wraps)
    wait_for(lambda: alice.status()["sessions"] == used, what="sessions opened at alice")

    def replenished() -> DeviceBundle | None:
        event = _bundle(relay.url, alice.pubkey)
        bundle = DeviceBundle.from_event(event) if event is not None else None
        return bundle if bundle is not None and bundle.published_at > first.published_at else None

    second = wait_for(replenished, what="a new bundle once half the keys were used")
    assert len(second.one_time_keys) == count
    assert not set(second.one_time_keys.values()) & set(first.one_time_keys.values())


def test_a_refused_bundle_is_a_visible_warning(
    node_factory: Callable[..., NodeProcess],
    relays: Callable[..., RelayProcess],
    faulty_relays: Callable[..., FaultyRelay],
) -> None:
    # a relay that refuses content over 2000 bytes and hides it (no NIP-11 through the
    # proxy): the node's 4 KB default bundle is refused there, accepted by the other
    small = faulty_relays(relays("[limits]\nmax_content_length = 2000\n").url)
    good = relays()
    alice = node_factory((small.url, good.url))
    warnings = wait_for(lambda: alice.status()["warnings"], what="a warning")
    assert len(warnings) == 1
    assert small.url in warnings[0]
    assert "device bundle" in warnings[0]
    health = {r["url"]: r for r in alice.call("GET", "/api/relays")["health"]}
    assert "device bundle" in health[small.url]["warning"]
    assert health[good.url]["warning"] == ""
    status = run_cli(alice, "status")
    assert "Warning:" in status.stdout
    assert "device bundle" in status.stdout
    listed = run_cli(alice, "relays")
    assert "warning:" in listed.stdout
    assert "device bundle" in listed.stdout
    with StreamRecorder(alice) as stream:
        alice.call("POST", "/api/relays", {"url": relays().url})  # publishes both again
        event = wait_for(lambda: stream.of_type("warning"), what="a warning on the stream")[0]
    assert event["relay"] == small.url
    assert "device bundle" in event["warning"]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never answers anything."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    server.close()


def test_start_does_not_wait_for_a_relay_that_never_answers(
    node_factory: Callable[..., NodeProcess],
    relays: Callable[..., RelayProcess],
    silent_port: int,
) -> None:
    good = relays()
    # with a publish timeout of ten minutes, a start that waited for the silent relay
    # would not print its login URL within NodeProcess.start's 60 s
    slow = {"XCHAT_PUBLISH_TIMEOUT": "600"}
    alice = node_factory((f"ws://127.0.0.1:{silent_port}", good.url), env=slow)
    bob = node_factory((good.url,))
    assert alice.add(bob, name="Bob")["forward_secret"] is True
    bob.add(alice, name="Alice")
    alice.send(bob.pubkey, "over the relay that works")
    bob.send(alice.pubkey, "and back")
    wait_for(lambda: "over the relay that works" in _bodies(bob, alice), what="at bob")
    wait_for(lambda: "and back" in _bodies(alice, bob), what="at alice")


# -- item: no silent downgrade -----------------------------------------------------------------


def test_a_contact_whose_node_comes_later_is_upgraded_to_forward_secrecy(
    node_factory: Callable[..., NodeProcess], relays: Callable[..., RelayProcess]
) -> None:
    relay = relays()
    alice = node_factory((relay.url,))
    bob = node_factory((relay.url,), start=False)  # has never run: no bundle anywhere
    card = ContactCard.create(PublicKey.from_hex(bob.pubkey), (relay.url,)).nprofile
    with StreamRecorder(alice) as stream:
        added = alice.call("POST", "/api/contacts", {"address": card, "name": "Bob"})
        assert added["forward_secret"] is False
        assert added["not_forward_secret_reason"] == "no_keys"
        assert added["next_keys_check_at"] is not None
        shown = run_cli(alice, "contacts")
        assert "Bob's app has not published its X Chat keys yet" in shown.stdout
        assert "keeps looking" in shown.stdout
        early = alice.send(bob.pubkey, "before your node ran")
        assert early["forward_secret"] is False
        bob.start()
        upgrade = wait_for(lambda: stream.of_type("forward_secrecy"), 90, "the upgrade")[0]
    assert upgrade["pubkey"] == bob.pubkey
    assert upgrade["contact"]["forward_secret"] is True
    assert upgrade["contact"]["not_forward_secret_reason"] is None
    header = run_cli(alice, "messages", "Bob")
    assert "Forward-secret" in header.stdout
    later = alice.send(bob.pubkey, "now forward-secret")
    assert later["forward_secret"] is True
    wait_for(
        lambda: _bodies(bob, alice) == ["before your node ran", "now forward-secret"],
        what="both messages at bob",
    )
    assert [m["forward_secret"] for m in bob.messages(alice.pubkey)] == [False, True]
