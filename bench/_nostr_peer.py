"""One rust-nostr client of ``bench/delivery.py``'s anchor pair, in a process of its own.

Run as ``python bench/_nostr_peer.py {send,receive} --secret HEX --peer HEX --relay URL
[--relay URL ...]``. Both roles build a ``nostr_sdk`` 0.45.1 ``Client`` (Rust, behind
uniffi Python bindings) with an ``Authenticator`` that answers NIP-42 challenges with the
role's keys, add every relay and connect. This process only drives the client; the
relay connections, signature checks and NIP-42 run on rust-nostr's tokio threads.

* ``receive`` subscribes to ``{"kinds":[1059],"#p":[own key],"limit":0}`` on every relay
  (rust-nostr authenticates and re-subscribes when a relay answers ``auth-required``)
  and reads ``Client.notifications()`` (0.45's form of ``handle_notifications``). Each
  ``NEW_EVENT`` (rust-nostr reports an event id once, whichever relay brings it first)
  is unwrapped with ``UnwrappedGift.from_gift_wrap`` (NIP-44 twice, the seal's signature
  checked); a rumor whose content starts ``#TAG:SEQ `` is then reported as the line
  ``r TAG SEQ T`` with ``T = time.monotonic()`` taken after the unwrap. Lines are
  flushed every 10 ms. The notification channel is made large (1,000,000) so that a
  busy Python side cannot make the client drop notifications.
* ``send`` prints ``ready`` and reads JSON commands from stdin, one a line:
  ``{"tag": T, "rate": R, "count": N, "start": S}``: message k is due at
  ``S + k/R`` (``time.monotonic()``, the same clock as the receiver's and the bench's
  on Linux); at that time the process builds a NIP-17 private message
  (``nip17_make_private_msg``: rumor, seal, gift wrap from a one-time key) with content
  ``#T:k `` plus padding, and starts ``Client.send_event`` to every relay (not awaited:
  the schedule is open-loop). When all sends have been answered it prints one JSON line:
  ``{"tag", "sent", "failed", "max_lag", "ack_p50", "ack_p99"}`` (lag: how late a send
  began; ack: from its due time to every relay's ``OK``).

0.45.1 has no ``Client.send_private_msg``; ``nip17_make_private_msg`` + ``send_event``
is what it did. On exit the process leaves with ``os._exit`` (the bindings' teardown can
crash the interpreter at shutdown).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from typing import Any

import nostr_sdk as ns
import orjson

KIND_AUTH = 22242
KIND_GIFT_WRAP = 1059
FILLER = (
    "Are we still on for lunch tomorrow? I can be at the usual place by 12:30, "
    "or a bit later if that works better for you."
)


class Auth(ns.Authenticator):  # type: ignore[misc]
    """NIP-42: a kind 22242 event for the relay's challenge, signed with our keys."""

    def __init__(self, keys: ns.Keys) -> None:
        self.keys = keys

    async def make_auth_event(self, relay_url: ns.RelayUrl, challenge: str) -> ns.Event:
        tags = [ns.Tag.parse(["relay", str(relay_url)]), ns.Tag.parse(["challenge", challenge])]
        return ns.EventBuilder(ns.Kind(KIND_AUTH), "").tags(tags).finalize(self.keys)


async def client_for(keys: ns.Keys, relays: list[str]) -> ns.Client:
    client = (
        ns.ClientBuilder().authenticator(Auth(keys)).notification_channel_size(1_000_000).build()
    )
    for url in relays:
        await client.add_relay(ns.RelayUrl.parse(url))
    await client.connect()
    return client


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))]


async def receive(keys: ns.Keys, relays: list[str]) -> None:
    client = await client_for(keys, relays)
    stream = client.notifications()
    wanted = ns.Filter().kind(ns.Kind(KIND_GIFT_WRAP)).pubkey(keys.public_key()).limit(0)
    await client.subscribe(ns.ReqTarget.auto([wanted]))
    out: list[str] = []
    write = sys.stdout.write

    async def flusher() -> None:
        while True:
            await asyncio.sleep(0.01)
            if out:
                write("".join(out))
                out.clear()
                sys.stdout.flush()

    flushing = asyncio.create_task(flusher())
    write("ready\n")
    sys.stdout.flush()
    monotonic = time.monotonic
    unwrap = ns.UnwrappedGift.from_gift_wrap
    try:
        while True:
            note = await stream.next()
            if note is None:
                return
            if not note.is_new_event():
                continue
            try:
                content = unwrap(keys, note.event).rumor().content()
            except ns.NostrSdkError:
                continue
            now = monotonic()
            if content.startswith("#"):
                label = content[1:].split(" ", 1)[0]
                tag, _, seq = label.partition(":")
                out.append(f"r {tag} {seq} {now:.6f}\n")
    finally:
        flushing.cancel()


async def send(keys: ns.Keys, peer: ns.PublicKey, relays: list[str]) -> None:
    client = await client_for(keys, relays)
    print("ready", flush=True)
    make = ns.nip17_make_private_msg
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            return
        command: dict[str, Any] = orjson.loads(line)
        tag, rate = str(command["tag"]), float(command["rate"])
        count, start = int(command["count"]), float(command["start"])
        acks: list[float] = []
        failed = 0
        max_lag = 0.0

        async def one(event: ns.Event, due: float, acks: list[float]) -> None:
            nonlocal failed
            try:
                result = await client.send_event(event)
            except ns.NostrSdkError:
                failed += 1
                return
            if result.failed:
                failed += 1
            else:
                acks.append(time.monotonic() - due)

        tasks = []
        for k in range(count):
            due = start + k / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            max_lag = max(max_lag, time.monotonic() - due)
            event = make(keys, peer, f"#{tag}:{k} {FILLER}")
            tasks.append(asyncio.create_task(one(event, due, acks)))
        await asyncio.gather(*tasks)
        report = {
            "tag": tag,
            "sent": count,
            "failed": failed,
            "max_lag": max_lag,
            "ack_p50": percentile(acks, 0.5),
            "ack_p99": percentile(acks, 0.99),
        }
        print(orjson.dumps(report).decode(), flush=True)


async def amain(args: argparse.Namespace) -> None:
    ns.uniffi_set_event_loop(asyncio.get_running_loop())
    keys = ns.Keys.parse(args.secret)
    if args.role == "receive":
        await receive(keys, args.relay)
    else:
        await send(keys, ns.PublicKey.parse(args.peer), args.relay)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("role", choices=("send", "receive"))
    parser.add_argument("--secret", required=True, help="this client's secret key (hex)")
    parser.add_argument("--peer", default="", help="the receiver's public key (hex)")
    parser.add_argument("--relay", action="append", required=True)
    args = parser.parse_args()
    code = 0
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(amain(args))
    except Exception as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        code = 1
    sys.stdout.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
