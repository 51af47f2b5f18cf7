"""A flooded inbox still delivers (issue 9, item 1), against real relay and node processes.

Before the relay streamed stored results, it built the whole answer to a REQ in memory
and dropped the reader once 8 MiB waited to be sent; the node asked again and was
dropped again, for as long as the relay kept the mail. Two ways to get there: a stranger
publishes a few hundred large junk gift wraps tagged to someone's npub (and to a mailbox
key, which any relay sees in the ``p`` tags of their mail), within the relay's default
rate limits; or a contact sends 110 long messages to someone offline.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
import pytest

from tests.node.nodes import NodeProcess, StreamRecorder, wait_for
from tests.relay.conftest import RelayProcess, make_event, new_key
from xchat.core.message import MAX_TEXT_BYTES
from xchat.node.relay_client import RelayConnection
from xchat.wire.event import Event

#: The attacker's addresses (the relay's per-address limits count each on its own) and
#: the junk each publishes over one connection: under the default per-connection burst
#: (200 events), so none is refused as rate-limited.
ATTACKERS = ("127.0.0.2", "127.0.0.3")
JUNK_PER_ADDRESS = 160
#: Junk content sizes in characters: from small to near the relay's content limit
#: (128 Ki characters; the largest real gift wrap is ~87.5 Ki).
JUNK_SIZES = (1_000, 130_000)


def _pair(node_factory: Callable[..., NodeProcess], url: str) -> tuple[NodeProcess, NodeProcess]:
    alice = node_factory((url,))
    bob = node_factory((url,))
    alice.add(bob, name="Bob")
    bob.add(alice, name="Alice")
    return alice, bob


def _long(i: int) -> str:
    """A message of the largest size the node sends (``MAX_TEXT_BYTES``), told apart by
    ``i``; letters that do not repeat, so nothing in the way could make it smaller."""
    head = f"long {i:04d} "
    rng = random.Random(i)
    return head + "".join(rng.choices("abcdefghijklmnopqrstuvwxyz ", k=MAX_TEXT_BYTES - len(head)))


def _send(alice: NodeProcess, bob: NodeProcess, bodies: list[str]) -> None:
    """Send ``bodies`` one after the other (so the sender's order is theirs)."""
    for body in bodies:
        alice.send(bob.pubkey, body)


#: States of a message the relay accepted.
_SENT = ("sent", "delivered", "read")


def _all_sent(alice: NodeProcess, bob: NodeProcess, count: int) -> None:
    def done() -> bool:
        mine = [m for m in alice.messages(bob.pubkey) if m["outgoing"]]
        return len(mine) == count and all(m["state"] in _SENT for m in mine)

    wait_for(done, timeout=120, what=f"all {count} accepted by the relay")
    assert alice.status()["failed"] == 0


def _arrives_once_in_order(alice: NodeProcess, bob: NodeProcess, count: int) -> list[str]:
    """Wait until bob has ``count`` messages from alice; they are exactly hers, once
    each, in her order. Their ids."""
    sent = [m["id"] for m in alice.messages(bob.pubkey) if m["outgoing"]]
    assert len(sent) == count

    def got() -> list[str]:
        return [m["id"] for m in bob.messages(alice.pubkey) if not m["outgoing"]]

    try:
        wait_for(lambda: len(got()) >= count, timeout=150, what=f"all {count} at bob")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; bob: {bob.status()}; {''.join(bob.output[-20:])}") from None
    assert got() == sent
    bodies = {m["id"]: m["body"] for m in alice.messages(bob.pubkey)}
    assert [m["body"] for m in bob.messages(alice.pubkey) if not m["outgoing"]] == [
        bodies[i] for i in sent
    ]
    return sent


def _newest_recipient(relay: RelayProcess) -> str:
    """What anyone reading the relay's store learns: the ``p`` tag of the newest gift wrap."""
    with sqlite3.connect(f"file:{relay.db}?mode=ro", uri=True) as conn:
        row = conn.execute(
            "SELECT json FROM events WHERE kind = 1059 ORDER BY seq DESC LIMIT 1"
        ).fetchone()
    wrap = orjson.loads(row[0])
    return next(str(t[1]) for t in wrap["tags"] if t[0] == "p")


def _stored_wrap_bytes(relay: RelayProcess) -> int:
    """Bytes of JSON of every gift wrap the relay stores (what a full answer sends)."""
    with sqlite3.connect(f"file:{relay.db}?mode=ro", uri=True) as conn:
        (total,) = conn.execute("SELECT SUM(LENGTH(json)) FROM events WHERE kind = 1059").fetchone()
    return int(total or 0)


def _junk(recipients: list[str], count: int) -> list[Event]:
    """Gift wraps nobody can open: valid events signed by one-time keys, random base64 of
    mixed sizes as content, dated up to a day back (as real gift wraps are)."""
    now = int(time.time())
    events = []
    for i in range(count):
        size = random.randint(*JUNK_SIZES)
        content = base64.b64encode(os.urandom(size * 3 // 4 + 3)).decode()[:size]
        events.append(
            make_event(
                new_key(),
                kind=1059,
                content=content,
                tags=[["p", recipients[i % len(recipients)]]],
                created_at=now - random.randint(0, 24 * 3600),
            )
        )
    return events


async def _publish_from(address: str, url: str, events: list[Event]) -> list[Any]:
    """Publish over one connection from ``address`` (a 127.0.0.x of its own)."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        await RelayConnection.connect(url, session=session) as conn,
    ):
        return await conn.publish_many(events, timeout=120)


class _Attacker:
    """Publishes the junk from :data:`ATTACKERS` in a thread, while the test goes on."""

    def __init__(self, url: str, recipients: list[str]) -> None:
        self.url = url
        self.batches = [_junk(recipients, JUNK_PER_ADDRESS) for _ in ATTACKERS]
        self.results: list[Any] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def events(self) -> list[Event]:
        return [e for batch in self.batches for e in batch]

    def start(self) -> _Attacker:
        self._thread.start()
        return self

    def join(self) -> None:
        self._thread.join(180)
        assert not self._thread.is_alive(), "the attacker did not finish"
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        async def all_addresses() -> None:
            answers = await asyncio.gather(
                *(
                    _publish_from(address, self.url, batch)
                    for address, batch in zip(ATTACKERS, self.batches, strict=True)
                )
            )
            self.results = [r for answer in answers for r in answer]

        try:
            asyncio.run(all_addresses())
        except BaseException as exc:  # handed to the test thread in join()
            self.error = exc


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_flooded_inbox_still_delivers_junk_and_real_mail_mixed_large_and_small(
    node_factory: Callable[..., NodeProcess], relays: Callable[..., RelayProcess]
) -> None:
    """Bob offline; from two addresses of its own an attacker publishes 320 junk gift
    wraps (~21 MB, up to near the relay's content limit) to bob's npub and to the
    mailbox key it read off the relay's store, within the default rate limits; meanwhile
    alice sends bob 240 messages, every third of the largest size. Bob starts: every
    real message arrives once, in order; every piece of junk is counted as rejected;
    nothing crashes; the stream and the API keep working."""
    relay = relays()  # today's default limits
    alice, bob = _pair(node_factory, relay.url)
    alice.send(bob.pubkey, "hello bob")
    wait_for(lambda: bob.messages(alice.pubkey), what="the first message at bob")
    bob.send(alice.pubkey, "hello alice")  # alice learns bob's mailbox seed
    wait_for(lambda: len(alice.messages(bob.pubkey)) == 2, what="the reply at alice")
    _all_sent(alice, bob, 1)
    bob.stop()

    bodies = [_long(i) if i % 3 == 0 else f"short {i:04d}" for i in range(240)]
    _send(alice, bob, bodies[:1])
    _all_sent(alice, bob, 2)
    mailbox = _newest_recipient(relay)  # what the relay (or a reader of it) sees
    assert mailbox not in (bob.pubkey, alice.pubkey)

    attacker = _Attacker(relay.url, [bob.pubkey, mailbox]).start()
    _send(alice, bob, bodies[1:])  # meanwhile
    attacker.join()
    junk = attacker.events
    assert all(r.accepted for r in attacker.results), attacker.results[:3]
    junk_bytes = sum(len(e.content) for e in junk)
    assert 13_000_000 < junk_bytes < 40_000_000, junk_bytes
    _all_sent(alice, bob, 1 + len(bodies))

    bob.start()
    with StreamRecorder(bob) as stream:
        sent = _arrives_once_in_order(alice, bob, 1 + len(bodies))
        status = wait_for(
            lambda: (s := bob.status())["rejected"] >= len(junk) and s,
            timeout=60,
            what="all the junk counted",
        )
        assert status["rejected"] == len(junk), status  # each once, none of the real mail
        assert bob.process is not None
        assert bob.process.poll() is None
        # still responsive: a new message comes through live, and bob can answer
        alice.send(bob.pubkey, "after the flood")
        live = wait_for(
            lambda: [
                e
                for e in stream.of_type("message")
                if e["message"]["body"] == "after the flood" and not e["message"]["outgoing"]
            ],
            what="the live message on bob's stream",
        )
        assert live[0]["message"]["id"] not in sent
        bob.send(alice.pubkey, "got them all")
        wait_for(
            lambda: any(m["body"] == "got them all" for m in alice.messages(bob.pubkey)),
            what="bob's answer at alice",
        )
    print(
        f"flood: {len(junk)} junk ({junk_bytes / 1e6:.1f} MB) and {len(sent)} real "
        f"({_stored_wrap_bytes(relay) / 1e6:.1f} MB of gift wraps stored in all) read by bob"
    )
    assert "Traceback" not in "".join(bob.output), "".join(bob.output[-40:])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_contact_sending_110_long_messages_to_an_offline_node_is_not_cut_off(
    node_factory: Callable[..., NodeProcess], relays: Callable[..., RelayProcess]
) -> None:
    """No attacker at all: 120 messages of the largest size (gift wraps of ~88 KB,
    ~10.5 MB in one answer of the relay's default 500) to an offline bob all arrive."""
    relay = relays()
    alice, bob = _pair(node_factory, relay.url)
    bob.stop()
    _send(alice, bob, [_long(i) for i in range(120)])
    _all_sent(alice, bob, 120)
    stored = _stored_wrap_bytes(relay)
    assert stored > 9_000_000, stored  # well over the old relay's 8 MiB send queue
    print(f"120 long messages: {stored / 1e6:.1f} MB of gift wraps")
    bob.start()
    _arrives_once_in_order(alice, bob, 120)
    assert bob.status()["rejected"] == 0
    assert "Traceback" not in "".join(bob.output), "".join(bob.output[-40:])
