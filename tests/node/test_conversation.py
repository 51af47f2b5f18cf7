"""Two nodes, three relays, real processes: messages both ways, receipts flow back."""

from __future__ import annotations

import signal
from collections.abc import Callable

from tests.node.nodes import NodeProcess, wait_for
from tests.relay.conftest import RelayProcess


def _texts(node: NodeProcess, peer: str) -> list[str]:
    return [m["body"] for m in node.messages(peer)]


def test_two_nodes_three_relays_both_ways_with_receipts(
    node_factory: Callable[..., NodeProcess], relays: Callable[..., RelayProcess]
) -> None:
    urls = tuple(relays().url for _ in range(3))
    alice = node_factory(urls)
    bob = node_factory(urls)
    contact = alice.add(bob, name="Bob")
    assert contact["forward_secret"] is True
    assert contact["name"] == "Bob"

    first = alice.send(bob.pubkey, "hello bob")
    assert first["state"] == "queued"
    wait_for(lambda: _texts(bob, alice.pubkey) == ["hello bob"], what="bob receives")
    # An unknown sender's first message is a message request.
    request = next(c for c in bob.call("GET", "/api/contacts") if c["pubkey"] == alice.pubkey)
    assert request["state"] == "request"
    bob.call("PATCH", f"/api/contacts/{alice.pubkey}", {"state": "accepted", "name": "Alice"})
    # Accepting sends the delivery receipt for what was waiting.
    wait_for(
        lambda: alice.messages(bob.pubkey)[0]["state"] == "delivered",
        what="the delivered receipt",
    )
    sent = alice.messages(bob.pubkey)[0]
    assert sent["id"] == first["id"]

    reply = bob.send(alice.pubkey, "hi alice")
    wait_for(lambda: _texts(alice, bob.pubkey) == ["hello bob", "hi alice"], what="reply")
    wait_for(lambda: bob.messages(alice.pubkey)[-1]["state"] == "delivered", what="bob's delivered")
    alice.call("POST", f"/api/conversations/{bob.pubkey}/read")
    wait_for(lambda: bob.messages(alice.pubkey)[-1]["state"] == "read", what="read receipt")
    assert bob.messages(alice.pubkey)[-1]["id"] == reply["id"]

    # a burst both ways, ordered by the sender's clock
    for i in range(10):
        alice.send(bob.pubkey, f"a{i}")
        bob.send(alice.pubkey, f"b{i}")
    expected_bob = ["hello bob", "hi alice"]
    wait_for(lambda: len(bob.messages(alice.pubkey)) == 22, what="burst at bob")
    wait_for(lambda: len(alice.messages(bob.pubkey)) == 22, what="burst at alice")
    at_bob = [m["body"] for m in bob.messages(alice.pubkey) if m["body"].startswith("a")]
    assert at_bob == [f"a{i}" for i in range(10)]
    assert _texts(bob, alice.pubkey)[:2] == expected_bob
    both = _texts(alice, bob.pubkey)
    assert both == _texts(bob, alice.pubkey)  # the same order on both sides

    # sent states name the relays that accepted
    wait_for(
        lambda: all(m["state"] != "queued" for m in alice.messages(bob.pubkey) if m["outgoing"]),
        what="all sent",
    )
    detail = alice.messages(bob.pubkey)[0]["state_detail"]
    assert sum(url in detail for url in urls) >= 2

    status = alice.status()
    assert {r["url"] for r in status["relays"] if r["reading"]} == set(urls)
    assert alice.stop(signal.SIGTERM) == 0
    assert bob.stop(signal.SIGTERM) == 0
