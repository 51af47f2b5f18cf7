"""The node with rust-nostr (nostr-sdk), real processes and sockets on 127.0.0.1.

1. Two X Chat nodes whose only relay is rust-nostr's ``LocalRelay`` (in memory, in a
   process of its own: ``tests/node/local_relay.py``): messages both ways, with delivery
   receipts. As LocalRelay is set up by default it does no NIP-42 and serves gift wraps
   to anyone; with ``auth_dm`` it serves them only to their authenticated recipient
   (our relay's rule), and sends its AUTH challenge only with a refusal.
2. A nostr-sdk client (keys of its own, no X Chat device bundle) and a node on our relay:
   NIP-17 messages both ways. The client authenticates by itself (NIP-42, its
   ``authenticator``), since our relay serves gift wraps only to their recipient, and
   finds the node's inbox relays (kind 10050) by itself (``SendEventTarget.to_nip17``,
   gossip). Messages from a stranger are a message request; nothing is forward-secret.

The nostr-sdk side runs on the test's event loop (``run``); the node's API is called
from a worker thread (``api``) so that the loop stays free for nostr-sdk's callbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import nostr_sdk as sdk
import pytest

from tests.node.nodes import PASSPHRASE, NodeProcess, make_home, wait_for
from tests.relay.conftest import RelayProcess
from tests.sdk_client import SdkListener

T = TypeVar("T")

WAIT = timedelta(seconds=10)  # every nostr-sdk network wait is bounded by this
DEADLINE = 60.0  # seconds for anything to arrive (a node's reader may be backing off)
ROOT = Path(__file__).resolve().parents[2]

StartNode = Callable[[tuple[str, ...]], NodeProcess]


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[StartNode]:
    """``nodes(relays)``: a new home and its ``xchat up``, SIGKILLed at the end if running."""
    started: list[NodeProcess] = []

    def start(relays: tuple[str, ...]) -> NodeProcess:
        node = NodeProcess(make_home(tmp_path / f"node{len(started)}"), relays)
        started.append(node)
        return node.start()

    yield start
    for node in started:
        if node.process is not None and node.process.poll() is None:
            node.stop(signal.SIGKILL)


# -- rust-nostr's LocalRelay as a process -------------------------------------------------


@contextlib.contextmanager
def local_relay(auth_dm: bool = False) -> Iterator[str]:
    """A LocalRelay process; yields its ``ws://`` URL, kills it at the end."""
    args = [sys.executable, "-m", "tests.node.local_relay"]
    if auth_dm:
        args.append("--auth-dm")
    process = subprocess.Popen(
        args,
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        seen = []
        deadline = time.monotonic() + 30
        url = ""
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            seen.append(line)
            if line.startswith("listening on "):
                url = line.split()[-1]
                break
        if not url:
            raise RuntimeError("LocalRelay did not start:\n" + "".join(seen))
        yield url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()


def _texts(node: NodeProcess, peer: str) -> list[str]:
    return [m["body"] for m in node.messages(peer)]


def _until(watched: tuple[NodeProcess, ...], check: Callable[[], Any], what: str) -> Any:
    """``wait_for`` with DEADLINE; a timeout shows what the nodes say of their relays."""
    try:
        return wait_for(check, DEADLINE, what)
    except AssertionError as exc:
        health = []
        for node in watched:
            status = node.status()
            counts = {k: status.get(k) for k in ("received", "rejected", "sent", "failed")}
            health.append(f"{node.pubkey[:8]}: {counts} relays={status['relays']}")
        raise AssertionError("\n".join([str(exc), *health])) from None


def _all_delivered(node: NodeProcess, peer: NodeProcess) -> bool:
    return all(m["state"] == "delivered" for m in node.messages(peer.pubkey) if m["outgoing"])


# == 1. two nodes, LocalRelay only ========================================================


@pytest.mark.parametrize("auth_dm", [False, True], ids=["open", "auth_dm"])
def test_two_nodes_talk_through_their_local_relay(nodes: StartNode, auth_dm: bool) -> None:
    with local_relay(auth_dm=auth_dm) as url:
        alice = nodes((url,))
        bob = nodes((url,))
        until = functools.partial(_until, (alice, bob))
        # Alice finds Bob's device bundle (an addressable event) on LocalRelay.
        contact = alice.add(bob, name="Bob")
        assert contact["forward_secret"] is True
        assert contact["relays"] == [url]

        first = alice.send(bob.pubkey, "hello bob, via rust-nostr")
        until(
            lambda: _texts(bob, alice.pubkey) == ["hello bob, via rust-nostr"],
            "bob receives through LocalRelay",
        )
        received = bob.messages(alice.pubkey)[0]
        assert received["id"] == first["id"]
        assert received["forward_secret"] is True
        request = next(c for c in bob.call("GET", "/api/contacts") if c["pubkey"] == alice.pubkey)
        assert request["state"] == "request"
        assert request["forward_secret"] is True
        bob.call("PATCH", f"/api/contacts/{alice.pubkey}", {"state": "accepted"})
        until(
            lambda: alice.messages(bob.pubkey)[0]["state"] == "delivered",
            "alice's delivered receipt",
        )
        assert alice.messages(bob.pubkey)[0]["id"] == first["id"]

        reply = bob.send(alice.pubkey, "hi alice")
        until(
            lambda: _texts(alice, bob.pubkey) == ["hello bob, via rust-nostr", "hi alice"],
            "alice receives the reply",
        )
        until(
            lambda: bob.messages(alice.pubkey)[-1]["state"] == "delivered",
            "bob's delivered receipt",
        )
        assert bob.messages(alice.pubkey)[-1]["id"] == reply["id"]
        # a few more both ways: sessions keep ratcheting over LocalRelay
        for i in range(3):
            alice.send(bob.pubkey, f"a{i}")
            bob.send(alice.pubkey, f"b{i}")
        until(lambda: len(bob.messages(alice.pubkey)) == 8, "the burst at bob")
        until(lambda: len(alice.messages(bob.pubkey)) == 8, "the burst at alice")
        assert _texts(alice, bob.pubkey) == _texts(bob, alice.pubkey)
        for node, peer in ((alice, bob), (bob, alice)):
            until(
                functools.partial(_all_delivered, node, peer),
                "every message delivered",
            )
            relays = node.status()["relays"]
            assert [(r["url"], r["reading"], r["state"]) for r in relays] == [
                (url, True, "connected")
            ]
        assert alice.stop() == 0
        assert bob.stop() == 0


# == 2. a nostr-sdk client and a node on our relay ========================================


def run(coro: Awaitable[T], timeout: float = 100) -> T:
    """Run ``coro`` on a fresh loop that nostr-sdk's callbacks (the authenticator) use."""

    async def scenario() -> T:
        sdk.uniffi_set_event_loop(asyncio.get_running_loop())
        try:
            return await asyncio.wait_for(coro, timeout)
        finally:
            sdk.uniffi_set_event_loop(None)

    return asyncio.run(scenario())


async def api(fn: Callable[..., T], *args: Any) -> T:
    """A (blocking) call to a node, off the event loop."""
    return await asyncio.to_thread(fn, *args)


class NostrUser(SdkListener):
    """A nostr-sdk client with keys of its own, reading its gift wraps from one relay."""

    wait_seconds = WAIT.total_seconds()

    def __init__(self, client: sdk.Client, keys: sdk.Keys, url: str) -> None:
        self.keys = keys
        self.wraps: asyncio.Queue[sdk.Event] = asyncio.Queue()
        super().__init__(client, url)

    @property
    def pubkey(self) -> str:
        return str(self.keys.public_key().to_hex())

    @property
    def npub(self) -> str:
        return str(self.keys.public_key().to_bech32())

    def on_event(self, event: sdk.Event) -> None:
        if event.kind().as_u16() == 1059:
            self.wraps.put_nowait(event)

    async def publish(self, event: sdk.Event, target: sdk.SendEventTarget | None = None) -> None:
        """Send; the relay must accept it."""
        if target is None:
            output = await self.client.send_event(event, ok_timeout=WAIT)
        else:
            output = await self.client.send_event(event, target=target, ok_timeout=WAIT)
        assert output.failed == {}, output.failed
        assert [str(u) for u in output.success] == [str(self.url)]

    async def read_wraps(self) -> None:
        """A live subscription to our gift wraps (stored ones included)."""
        wraps = sdk.Filter().kind(sdk.Kind(1059)).pubkey(self.keys.public_key())
        sub = await self.client.subscribe(sdk.ReqTarget.single(self.url, [wraps]))
        # our relay serves them only because the client authenticated as us
        eose = await self.wait_for_message(lambda m: m[0] in ("EOSE", "CLOSED") and m[1] == sub.id)
        assert eose[0] == "EOSE", eose

    async def next_message(self) -> sdk.UnwrappedGift:
        """The next gift wrap to us, unwrapped (seal and rumor checked by nostr-sdk)."""
        wrap = await asyncio.wait_for(self.wraps.get(), DEADLINE)
        assert wrap.verify()
        return sdk.UnwrappedGift.from_gift_wrap(self.keys, wrap)


@contextlib.asynccontextmanager
async def nostr_user(url: str, keys: sdk.Keys | None = None) -> AsyncIterator[NostrUser]:
    """A nostr-sdk user on our relay, authenticated (NIP-42) by nostr-sdk itself, with
    gossip (NIP-17 inbox relays looked up by the client; loopback relays allowed).
    ``keys``: its own by default (the node's: another app of the same person)."""
    keys = keys or sdk.Keys.generate()
    # Gossip first tries a negentropy sync (NIP-77), which our relay does not speak: it
    # answers NEG-OPEN with NEG-ERR, and nostr-sdk falls back to a REQ at once (with a
    # NOTICE it waited for its 10 s sync timeout, which this test then had to shorten).
    gossip = sdk.GossipConfig().allowed(sdk.GossipAllowedRelays(local=True))
    client = (
        sdk.ClientBuilder()
        .authenticator(sdk.SignerAuthenticator(keys))
        .gossip(sdk.NostrGossip.in_memory())
        .gossip_config(gossip)
        .build()
    )
    user = NostrUser(client, keys, url)
    try:
        await client.add_relay(user.url)
        await client.connect(WAIT)
        # Our relay challenges on connect; nostr-sdk answers at once.
        await user.wait_for_message(lambda m: m[0] == "AUTH")
        ok = await user.wait_for_message(lambda m: m[0] == "OK")
        assert ok[2] is True, ok
        yield user
    finally:
        await user.close()


async def publish_inbox_relays(user: NostrUser, urls: list[str]) -> None:
    """The user's NIP-17 inbox relay list (kind 10050), built by nostr-sdk."""
    tags = [sdk.Tag.parse(["relay", url]) for url in urls]
    event = sdk.EventBuilder(sdk.Kind(10050), "").tags(tags).finalize(user.keys)
    assert [str(u) for u in sdk.nip17_extract_relay_list(event)] == urls
    await user.publish(event)


def check_rumor(gift: sdk.UnwrappedGift, sender: NodeProcess, to: NostrUser, text: str) -> None:
    """A kind 14 chat message from the node's identity to ``to``, reading ``text``."""
    rumor = gift.rumor()
    assert gift.sender().to_hex() == sender.pubkey  # who signed the seal
    assert rumor.author().to_hex() == sender.pubkey
    assert rumor.kind().as_u16() == 14
    assert rumor.content() == text
    p_tags = [t.to_vec() for t in rumor.tags() if t.to_vec()[0] == "p"]
    assert p_tags == [["p", to.pubkey]]


def test_node_and_nostr_sdk_user_it_added(
    nodes: StartNode, relays: Callable[..., RelayProcess]
) -> None:
    """The node adds a nostr-sdk user by npub: NIP-17 both ways, no message request."""
    relay = relays()
    node = nodes((relay.url,))

    async def scenario() -> None:
        async with nostr_user(relay.url) as them:
            await publish_inbox_relays(them, [relay.url])
            await them.read_wraps()

            contact = await api(node.call, "POST", "/api/contacts", {"address": them.npub})
            assert contact["pubkey"] == them.pubkey
            assert contact["state"] == "accepted"
            assert contact["forward_secret"] is False  # no X Chat device bundle
            assert contact["relays"] == [relay.url]  # from their kind 10050

            sent = await api(node.send, them.pubkey, "hello from X Chat ✓")
            assert sent["forward_secret"] is False
            gift = await them.next_message()
            check_rumor(gift, node, them, "hello from X Chat ✓")
            assert gift.rumor().id().to_hex() == sent["id"]  # the message id is the rumor's
            await api(
                wait_for,
                lambda: node.messages(them.pubkey)[0]["state"] == "sent",
                DEADLINE,
                "the node's message sent",
            )

            # Their answer, sent where the node's kind 10050 says it reads (gossip).
            wrap = sdk.nip17_make_private_msg(them.keys, sdk.PublicKey.parse(node.pubkey), "hi!")
            await them.publish(wrap, sdk.SendEventTarget.to_nip17())
            rows = await api(
                wait_for,
                lambda: [m for m in node.messages(them.pubkey) if not m["outgoing"]],
                DEADLINE,
                "the node receives their answer",
            )
            assert [(m["body"], m["sender"], m["forward_secret"]) for m in rows] == [
                ("hi!", them.pubkey, False)
            ]
            contacts = await api(node.call, "GET", "/api/contacts")
            assert [(c["pubkey"], c["state"]) for c in contacts] == [(them.pubkey, "accepted")]
            # No receipts go to NIP-17 contacts: nothing more arrives for them.
            await asyncio.sleep(1)
            assert them.wraps.empty()

    run(scenario())
    assert node.stop() == 0


def test_nostr_sdk_user_writes_first_and_becomes_a_message_request(
    nodes: StartNode, relays: Callable[..., RelayProcess]
) -> None:
    """A stranger on nostr-sdk writes to the node: a request; once accepted, the
    node's reply reaches them."""
    relay = relays()
    node = nodes((relay.url,))

    async def scenario() -> None:
        async with nostr_user(relay.url) as them:
            await them.read_wraps()
            wrap = sdk.nip17_make_private_msg(
                them.keys, sdk.PublicKey.parse(node.pubkey), "hello from rust-nostr ✓"
            )
            # nostr-sdk looks the node's inbox relays (kind 10050) up itself.
            await them.publish(wrap, sdk.SendEventTarget.to_nip17())

            rows = await api(
                wait_for,
                lambda: node.messages(them.pubkey),
                DEADLINE,
                "the node receives the stranger's message",
            )
            assert len(rows) == 1
            row = rows[0]
            assert row["body"] == "hello from rust-nostr ✓"
            assert row["sender"] == them.pubkey
            assert row["outgoing"] is False
            assert row["forward_secret"] is False
            contacts = await api(node.call, "GET", "/api/contacts")
            assert len(contacts) == 1
            request = contacts[0]
            assert request["pubkey"] == them.pubkey
            assert request["state"] == "request"
            assert request["forward_secret"] is False

            accepted = await api(
                node.call, "PATCH", f"/api/contacts/{them.pubkey}", {"state": "accepted"}
            )
            assert accepted["state"] == "accepted"
            assert accepted["forward_secret"] is False
            reply = await api(node.send, them.pubkey, "welcome, rust-nostr")
            assert reply["forward_secret"] is False
            gift = await them.next_message()  # the reply, and no receipt before it
            check_rumor(gift, node, them, "welcome, rust-nostr")
            assert gift.rumor().id().to_hex() == reply["id"]
            messages = await api(node.messages, them.pubkey)
            assert [(m["body"], m["outgoing"]) for m in messages] == [
                ("hello from rust-nostr ✓", False),
                ("welcome, rust-nostr", True),
            ]

    run(scenario())
    assert node.stop() == 0


def test_files_group_messages_and_copies_to_ourselves_from_other_clients(
    nodes: StartNode, relays: Callable[..., RelayProcess]
) -> None:
    """A file message (kind 15) shows with a note; a group message is kept out of the
    one-to-one conversation (counted); what the node sends to a NIP-17 contact is also
    wrapped to itself, and a copy written with the same key in another app is filed
    as an outgoing message of the conversation."""
    relay = relays()
    node = nodes((relay.url,))
    node_keys = sdk.Keys.parse(node.home.unlock(PASSPHRASE).identity.secret.to_bytes().hex())
    node_pk = sdk.PublicKey.parse(node.pubkey)
    carol = sdk.Keys.generate()

    async def scenario() -> None:
        async with nostr_user(relay.url) as them, nostr_user(relay.url, node_keys) as other_app:
            await publish_inbox_relays(them, [relay.url])
            await them.read_wraps()
            await other_app.read_wraps()
            await api(node.call, "POST", "/api/contacts", {"address": them.npub})
            them_pk = sdk.PublicKey.parse(them.pubkey)

            # a file message from their app
            tags = [
                sdk.Tag.parse(["p", node.pubkey]),
                sdk.Tag.parse(["file-type", "image/jpeg"]),
                sdk.Tag.parse(["encryption-algorithm", "aes-gcm"]),
            ]
            rumor = (
                sdk.EventBuilder(sdk.Kind(15), "https://files.example/abc")
                .tags(tags)
                .finalize_unsigned(them.keys.public_key())
            )
            await them.publish(sdk.nip59_make_gift_wrap(them.keys, node_pk, rumor))
            rows = await api(
                wait_for, lambda: node.messages(them.pubkey), DEADLINE, "the file message"
            )
            assert [(m["type"], m["note"], m["outgoing"]) for m in rows] == [
                ("file", "files from other apps are not supported yet", False)
            ]
            assert "image/jpeg" in rows[0]["body"]

            # a group message to the node and carol: never in the one-to-one chat
            group = sdk.nip17_make_private_msg(
                them.keys,
                node_pk,
                "hello group",
                rumor_extra_tags=[sdk.Tag.parse(["p", carol.public_key().to_hex()])],
            )
            await them.publish(group)
            await api(
                wait_for,
                lambda: node.status()["rejected_by_reason"].get("GroupMessage") == 1,
                DEADLINE,
                "the group message counted",
            )
            assert [m["body"] for m in await api(node.messages, them.pubkey)] == [rows[0]["body"]]
            contacts = await api(node.call, "GET", "/api/contacts")
            assert [c["pubkey"] for c in contacts] == [them.pubkey]

            # the node's message to them is also wrapped to the node itself
            sent = await api(node.send, them.pubkey, "hello from X Chat")
            copy = await other_app.next_message()  # it reads all the node's mail:
            while copy.rumor().author().to_hex() != node.pubkey:  # the file, the group
                copy = await other_app.next_message()
            assert copy.rumor().id().to_hex() == sent["id"]
            assert copy.rumor().content() == "hello from X Chat"
            p_tags = [t.to_vec() for t in copy.rumor().tags() if t.to_vec()[0] == "p"]
            assert p_tags == [["p", them.pubkey]]
            gift = await them.next_message()
            assert gift.rumor().id().to_hex() == sent["id"]

            # a message written in the other app, with its copy to ourselves
            mine = (
                sdk.EventBuilder(sdk.Kind(14), "written in another app")
                .tags([sdk.Tag.parse(["p", them.pubkey])])
                .finalize_unsigned(node_keys.public_key())
            )
            await other_app.publish(sdk.nip59_make_gift_wrap(node_keys, them_pk, mine))
            await other_app.publish(sdk.nip59_make_gift_wrap(node_keys, node_pk, mine))
            filed = await api(
                wait_for,
                lambda: [
                    m for m in node.messages(them.pubkey) if m["body"] == "written in another app"
                ],
                DEADLINE,
                "the other app's message filed",
            )
            assert [(m["outgoing"], m["sender"], m["state"]) for m in filed] == [
                (True, node.pubkey, "sent")
            ]
            # our own copy of our own message is not a second message
            texts = [m["body"] for m in await api(node.messages, them.pubkey)]
            assert texts.count("hello from X Chat") == 1

    run(scenario())
    assert node.stop() == 0
