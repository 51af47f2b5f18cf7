"""A relay that drops, duplicates and reorders: the conversation still comes out whole."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.node.faulty_relay import FaultyRelay
from tests.node.nodes import NodeProcess, wait_for
from tests.relay.conftest import RelayProcess

#: Short timers so that retries and re-reads happen within the test's time.
FAST = {"XCHAT_PUBLISH_TIMEOUT": "2", "XCHAT_RESYNC_INTERVAL": "3"}


def test_drops_duplicates_and_reordering_come_out_exactly_once_in_order(
    node_factory: Callable[..., NodeProcess],
    relays: Callable[..., RelayProcess],
    faulty_relays: Callable[..., FaultyRelay],
) -> None:
    upstream = relays().url
    faults: dict[str, Any] = {"drop": 0.25, "dup": 0.3, "reorder": 0.4, "drop_publish": 0.15}
    first = faulty_relays(upstream, seed=1, **faults)
    second = faulty_relays(upstream, seed=2, **faults)
    urls = (first.url, second.url)
    alice = node_factory(urls, env=FAST)
    bob = node_factory(urls, env=FAST)
    alice.add(bob, name="Bob")
    bob.add(alice, name="Alice")
    sent = []
    for i in range(30):
        sender, receiver = (alice, bob) if i % 3 else (bob, alice)
        sent.append(sender.send(receiver.pubkey, f"message {i:02d}"))
    first_id = sent[1]["id"]
    alice.call("PATCH", f"/api/messages/{first_id}", {"text": "message 01 (edited)"})
    alice.call("POST", f"/api/messages/{sent[0]['id']}/reactions", {"emoji": "🎉"})
    expected = [m["body"] if m["id"] != first_id else "message 01 (edited)" for m in sent]

    def conversation(node: NodeProcess, peer: NodeProcess) -> list[str]:
        return [m["body"] for m in node.messages(peer.pubkey)]

    for node, peer in ((bob, alice), (alice, bob)):
        try:
            wait_for(lambda n=node, p=peer: conversation(n, p) == expected, timeout=90)
        except AssertionError:
            got = conversation(node, peer)
            states = [
                (m["body"], m["state"], m["state_detail"])
                for m in peer.messages(node.pubkey)
                if m["outgoing"] and m["body"] not in got
            ]
            raise AssertionError(
                f"missing at {node.home.path.name}: {states}; "
                f"status {node.status()}; faults {first.stats()}"
            ) from None
    # the reaction is an envelope of its own: it may still be in a retry
    wait_for(
        lambda: bob.messages(alice.pubkey)[0]["reactions"] == {alice.pubkey: "🎉"},
        what="the reaction at bob",
        timeout=90,
    )
    # every message exactly once (ids unique) and the faults really happened
    for node, peer in ((alice, bob), (bob, alice)):
        ids = [m["id"] for m in node.messages(peer.pubkey)]
        assert len(ids) == len(set(ids)) == 30
    stats = [first.stats(), second.stats()]
    assert sum(s.get("dropped", 0) for s in stats) > 0, stats
    assert sum(s.get("duplicated", 0) for s in stats) > 0, stats
    assert sum(s.get("held", 0) for s in stats) > 0, stats
    wait_for(
        lambda: all(
            m["state"] in ("delivered", "read") for m in alice.messages(bob.pubkey) if m["outgoing"]
        ),
        what="receipts through the faulty relays",
        timeout=90,
    )
