"""Nothing is lost: offline recipients, dead relays, a killed sender, and what relays see."""

from __future__ import annotations

import signal
import sqlite3
import statistics
from collections.abc import Callable
from pathlib import Path

import orjson

from tests.node.nodes import NodeProcess, wait_for
from tests.relay.conftest import RelayProcess


def _pair(
    node_factory: Callable[..., NodeProcess], urls: tuple[str, ...]
) -> tuple[NodeProcess, NodeProcess]:
    alice = node_factory(urls)
    bob = node_factory(urls)
    alice.add(bob, name="Bob")
    bob.add(alice, name="Alice")
    return alice, bob


def _bodies(node: NodeProcess, peer: str) -> list[str]:
    return [m["body"] for m in node.messages(peer)]


def _send_while_offline(alice: NodeProcess, bob: NodeProcess, count: int) -> list[str]:
    """Stop bob, send him ``count`` messages, start him, wait until all are there in
    order; their texts."""
    bob.stop()
    expected = [f"m{i:03d}" for i in range(count)]
    for body in expected:
        alice.send(bob.pubkey, body)
    wait_for(
        lambda: all(m["state"] == "sent" for m in alice.messages(bob.pubkey)),
        what=f"all {count} accepted by the relays",
    )
    bob.start()
    wait_for(lambda: _bodies(bob, alice.pubkey) == expected, what=f"all {count} at bob", timeout=90)
    return expected


def test_recipient_offline_gets_all_fifty_exactly_once_in_order(
    node_factory: Callable[..., NodeProcess], relays: Callable[..., RelayProcess]
) -> None:
    alice, bob = _pair(node_factory, (relays().url, relays().url))
    expected = _send_while_offline(alice, bob, 50)
    wait_for(
        lambda: all(m["state"] == "delivered" for m in alice.messages(bob.pubkey)),
        what="delivered receipts for all 50",
    )
    # a restart re-reads the relays: still exactly once
    bob.stop()
    bob.start()
    wait_for(lambda: bob.status()["duplicates"] >= 50, what="old mail seen again and dropped")
    assert _bodies(bob, alice.pubkey) == expected


def test_a_long_chain_read_back_in_small_pages_in_random_order_loses_nothing(
    node_factory: Callable[..., NodeProcess], relays: Callable[..., RelayProcess]
) -> None:
    """120 messages sent to an offline node form one Olm chain (no reply ratchets it);
    the relay serves them ten at a time, newest randomised timestamp first, so they
    come back in random order and in many batches. A ratchet keeps only ~40 skipped
    keys: the node must hold messages that are far ahead until the gap fills."""
    relay = relays("[limits]\ndefault_limit = 10\nmax_limit = 10\n").url
    alice, bob = _pair(node_factory, (relay,))
    _send_while_offline(alice, bob, 120)
    assert bob.status()["rejected"] == 0


def test_relay_killed_mid_burst_and_one_unreachable(
    node_factory: Callable[..., NodeProcess], relays: Callable[..., RelayProcess]
) -> None:
    first, second, third = relays(), relays(), relays()
    dead = "ws://127.0.0.1:9"  # nothing listens on the discard port
    urls = (first.url, second.url, third.url, dead)
    alice, bob = _pair(node_factory, urls)
    for i in range(40):
        alice.send(bob.pubkey, f"burst {i:02d}")
        if i == 15:
            second.stop(signal.SIGKILL)
    expected = [f"burst {i:02d}" for i in range(40)]
    wait_for(lambda: _bodies(bob, alice.pubkey) == expected, what="the whole burst", timeout=60)
    wait_for(
        lambda: all(m["state"] in ("sent", "delivered") for m in alice.messages(bob.pubkey)),
        what="every message accepted by two relays",
    )
    for message in alice.messages(bob.pubkey):
        assert dead not in message["state_detail"]
        accepted = message["state_detail"].split()
        assert len(accepted) >= 2
        assert set(accepted) <= {first.url, second.url, third.url}
    health = {r["url"]: r for r in alice.status()["relays"]}
    assert health[dead]["state"] != "connected"
    assert health[dead]["last_error"]


def test_sender_killed_right_after_send_delivers_after_restart(
    node_factory: Callable[..., NodeProcess], relays: Callable[..., RelayProcess]
) -> None:
    urls = (relays().url, relays().url)
    alice, bob = _pair(node_factory, urls)
    sent = [alice.send(bob.pubkey, f"before the crash {i}") for i in range(5)]
    alice.stop(signal.SIGKILL)
    alice.start()
    wait_for(
        lambda: _bodies(bob, alice.pubkey) == [m["body"] for m in sent],
        what="the messages sent before the crash",
    )
    assert [m["id"] for m in alice.messages(bob.pubkey)] == [m["id"] for m in sent]


def _stored_events(db: Path) -> list[dict[str, object]]:
    with sqlite3.connect(db) as conn:
        return [orjson.loads(row[0]) for row in conn.execute("SELECT json FROM events")]


def test_what_the_relays_store_reveals_nothing(
    node_factory: Callable[..., NodeProcess], relays: Callable[..., RelayProcess], tmp_path: Path
) -> None:
    relay_list = [relays(), relays()]
    urls = tuple(r.url for r in relay_list)
    alice, bob = _pair(node_factory, urls)
    secrets_said = []
    for i in range(15):
        a = f"alice secret number {i} about the garden"
        b = f"bob secret number {i} about the sea"
        secrets_said += [a, b]
        alice.send(bob.pubkey, a)
        wait_for(lambda a=a: a in _bodies(bob, alice.pubkey), what="a at bob")
        bob.send(alice.pubkey, b)
        wait_for(lambda b=b: b in _bodies(alice, bob.pubkey), what="b at alice")
    alice.stop()
    bob.stop()
    identities = {alice.pubkey, bob.pubkey}
    for relay in relay_list:
        relay.stop()
        db = Path(relay.db)
        raw = db.read_bytes() + (
            db.with_name(db.name + "-wal").read_bytes()
            if db.with_name(db.name + "-wal").exists()
            else b""
        )
        for text in secrets_said:
            assert text.encode() not in raw
        wraps = [e for e in _stored_events(db) if e["kind"] == 1059]
        assert len(wraps) >= 30
        recipients = [t[1] for e in wraps for t in e["tags"] if t[0] == "p"]  # type: ignore[union-attr,index]
        authors = {e["pubkey"] for e in wraps}
        assert not authors & identities, "a gift wrap signed by an identity key"
        assert len(authors) == len(wraps), "one-time keys are reused"
        to_identity = sum(r in identities for r in recipients)
        # only the first contact (pre-key messages before the peer's mailbox is known)
        assert to_identity <= 6, to_identity
        assert len(set(recipients) - identities) >= 2  # mailbox keys, one per direction
        sizes = {len(e["content"]) for e in wraps}  # type: ignore[arg-type]
        assert len(sizes) <= 3, sizes
        stamps = [int(e["created_at"]) for e in wraps]  # type: ignore[call-overload]
        assert max(stamps) - min(stamps) > 3 * 3600
        assert statistics.pstdev(stamps) > 3600
