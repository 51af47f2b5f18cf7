"""Message crypto throughput: X Chat's sealed round trip against a floor and an anchor.

Run from the repository root::

    .venv/bin/python bench/crypto.py [--seconds N] [--profile]

Everything runs in one Python thread on one core (nothing is pinned; the native
libraries are called synchronously and start no worker threads). Measured:

* **X Chat, one way**: Alice's ``Channel.seal`` (frame, Olm encrypt, NIP-44, gift wrap
  signed by a one-time key), the event serialized to JSON bytes and parsed back with
  ``event_from_json`` (what a relay or peer receives), then Bob's ``Channel.open``
  (route, BIP-340 verify, NIP-44 decrypt, cached certificate check, Olm decrypt, frame
  checks). Steady state: one message has gone each way first, so these are normal
  (type 1) Olm messages addressed to mailbox keys, the realistic case.
* **X Chat, ping-pong**: the same round trip with the direction alternating, so every
  message starts a new Olm chain (a Curve25519 DH ratchet step).
* **Floor**: vodozemac alone, Olm encrypt and decrypt of a plaintext the size of
  X Chat's frame, one direction, the message passed as bytes (``to_parts``/``from_parts``).
  A second row, for information, alternates directions as the ping-pong figure does.
* **Anchor**: rust-nostr (``nostr_sdk`` 0.45.1, Rust behind uniffi Python bindings)
  NIP-17: ``nip17_make_private_msg`` from Alice's keys to Bob, then Bob's
  ``UnwrappedGift.from_gift_wrap`` (which verifies the seal). The synchronous API is
  used: no asyncio loop is involved. Two rows: *same steps* takes the same path as the
  X Chat figure (the event to JSON, parsed back, its signature verified, unwrapped);
  *bare* hands the native event object straight to the unwrap, skipping the JSON and
  the outer signature check that X Chat's figure includes. Both ratios are printed.
  Much of the anchor's time is binding overhead: uniffi copies a str into Rust one byte
  per Python loop iteration, so its curve arithmetic is not what the ratio compares.

Each figure is the best of three runs of ``--seconds`` each after a warm-up, the runs of
the four measurements interleaved so that drift in machine load affects all alike.
``--profile`` instead times the stages of the one-way round trip and runs cProfile on
it, printing the top functions by cumulative and by own time, per message.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata

import nostr_sdk
import orjson
import vodozemac

from xchat.core.channel import Channel, Incoming
from xchat.core.device import DeviceBundle, LocalDevice
from xchat.core.envelope import recipient_of, unwrap
from xchat.core.identity import Identity
from xchat.core.message import Text, new_message_id
from xchat.core.session import Frame, Session, encode_frame
from xchat.crypto.olm import MESSAGE_NORMAL
from xchat.wire.b64 import b64decode
from xchat.wire.event import event_from_json

TARGET_RATE = 4000.0
TARGET_ANCHOR_RATIO = 6.0
RUNS = 3
#: A typical chat message (118 bytes of UTF-8).
TEXT = (
    "Are we still on for lunch tomorrow? I can be at the usual place by 12:30, "
    "or a bit later if that works better for you."
)
NOW = 1_750_000_000

rng = os.urandom


# -- the systems under test ------------------------------------------------------


def _transfer(sender: Channel, session: Session, receiver: Channel) -> Incoming:
    """One full round trip: seal, JSON bytes over the wire, parse, open."""
    event = sender.seal(session, Text(new_message_id(rng), NOW * 1000, TEXT), NOW, rng)
    return receiver.open(event_from_json(event.to_json()), NOW, rng)


class XChat:
    """Alice and Bob with one session each way, in the steady state."""

    def __init__(self) -> None:
        alice = LocalDevice.create(Identity.generate(rng), NOW, rng)
        bob = LocalDevice.create(Identity.generate(rng), NOW, rng)
        self.alice, self.bob = Channel(alice), Channel(bob)
        bundle = DeviceBundle.from_event(bob.bundle_event(NOW, rng))
        self.alice_session = self.alice.open_session(bundle, NOW, rng)
        first = _transfer(self.alice, self.alice_session, self.bob)  # pre-key, to identity
        if not first.new_session or first.session is None:
            raise RuntimeError("the first message did not open a session at Bob")
        self.bob_session = first.session
        _transfer(self.bob, self.bob_session, self.alice)  # Bob answers to Alice's mailbox
        self._check_steady_state()

    def _check_steady_state(self) -> None:
        """Alice's next envelope is a type 1 Olm message to one of Bob's mailbox keys."""
        event = self.alice.seal(
            self.alice_session, Text(new_message_id(rng), NOW * 1000, TEXT), NOW, rng
        )
        recipient = recipient_of(event)
        if recipient == self.bob.identity.hex:
            raise RuntimeError("steady state not reached: still addressed to Bob's identity")
        keys = self.bob.receive_keys(NOW)
        inner = orjson.loads(unwrap(event, keys[recipient]))
        if inner["olm"][0] != MESSAGE_NORMAL:
            raise RuntimeError("steady state not reached: still an Olm pre-key message")
        self.olm_bytes = len(b64decode(inner["olm"][1]))
        self.wrap_bytes = len(event.to_json())
        message = Text(new_message_id(rng), NOW * 1000, TEXT)
        frame = Frame(self.alice.identity.hex, self.bob.identity.hex, None, message)
        self.frame_bytes = len(encode_frame(frame))
        incoming = self.bob.open(event_from_json(event.to_json()), NOW, rng)
        if incoming.session is not self.bob_session or incoming.new_session:
            raise RuntimeError("the steady-state message did not use the existing session")
        self.check()

    def check(self) -> None:
        incoming = _transfer(self.alice, self.alice_session, self.bob)
        message = incoming.message
        if not isinstance(message, Text) or message.body != TEXT or not incoming.forward_secret:
            raise RuntimeError("X Chat round trip returned the wrong message")

    def one_way(self) -> None:
        alice, bob, session = self.alice, self.bob, self.alice_session
        event = alice.seal(session, Text(new_message_id(rng), NOW * 1000, TEXT), NOW, rng)
        bob.open(event_from_json(event.to_json()), NOW, rng)

    def ping_pong(self) -> None:
        """Two messages, one each way: each starts a new Olm chain (DH ratchet step)."""
        alice, bob = self.alice, self.bob
        event = alice.seal(
            self.alice_session, Text(new_message_id(rng), NOW * 1000, TEXT), NOW, rng
        )
        bob.open(event_from_json(event.to_json()), NOW, rng)
        event = bob.seal(self.bob_session, Text(new_message_id(rng), NOW * 1000, TEXT), NOW, rng)
        alice.open(event_from_json(event.to_json()), NOW, rng)


class OlmFloor:
    """vodozemac sessions used directly: the cost of the double ratchet alone."""

    def __init__(self, plaintext_bytes: int) -> None:
        alice, bob = vodozemac.Account(), vodozemac.Account()
        bob.generate_one_time_keys(1)
        one_time_key = next(iter(bob.one_time_keys.values()))
        bob.mark_keys_as_published()
        self.alice = alice.create_outbound_session(bob.curve25519_key, one_time_key)
        pre_key = self.alice.encrypt(b"hello").to_pre_key()
        if pre_key is None:
            raise RuntimeError("the first Olm message is not a pre-key message")
        self.bob, _ = bob.create_inbound_session(alice.curve25519_key, pre_key)
        self.alice.decrypt(self.bob.encrypt(b"hello back"))
        self.plaintext = b"x" * plaintext_bytes
        self.check()

    def check(self) -> None:
        message_type, body = self.alice.encrypt(self.plaintext).to_parts()
        if message_type != MESSAGE_NORMAL:
            raise RuntimeError("the floor is not in the steady state")
        if self.bob.decrypt(vodozemac.AnyOlmMessage.from_parts(message_type, body)) != (
            self.plaintext
        ):
            raise RuntimeError("Olm round trip returned the wrong plaintext")

    def one_way(self) -> None:
        message_type, body = self.alice.encrypt(self.plaintext).to_parts()
        self.bob.decrypt(vodozemac.AnyOlmMessage.from_parts(message_type, body))

    def ping_pong(self) -> None:
        """Two messages, one each way, as in X Chat's ping-pong figure."""
        message_type, body = self.alice.encrypt(self.plaintext).to_parts()
        self.bob.decrypt(vodozemac.AnyOlmMessage.from_parts(message_type, body))
        message_type, body = self.bob.encrypt(self.plaintext).to_parts()
        self.alice.decrypt(vodozemac.AnyOlmMessage.from_parts(message_type, body))


class Nip17Anchor:
    """rust-nostr's NIP-17 direct message, made by Alice and unwrapped by Bob."""

    def __init__(self) -> None:
        self.alice = nostr_sdk.Keys.generate()
        self.bob = nostr_sdk.Keys.generate()
        self.bob_public = self.bob.public_key()
        self.alice_hex = self.alice.public_key().to_hex()
        event = nostr_sdk.nip17_make_private_msg(self.alice, self.bob_public, TEXT)
        self.wrap_bytes = len(event.as_json().encode())
        self.check()

    def check(self) -> None:
        event = nostr_sdk.nip17_make_private_msg(self.alice, self.bob_public, TEXT)
        received = nostr_sdk.Event.from_json(event.as_json())
        if not received.verify():
            raise RuntimeError("the NIP-17 gift wrap does not verify")
        gift = nostr_sdk.UnwrappedGift.from_gift_wrap(self.bob, received)
        if gift.rumor().content() != TEXT or gift.sender().to_hex() != self.alice_hex:
            raise RuntimeError("NIP-17 round trip returned the wrong message")

    def one_way(self) -> None:
        """Make and unwrap, the event handed over as a native object: the strict anchor."""
        event = nostr_sdk.nip17_make_private_msg(self.alice, self.bob_public, TEXT)
        nostr_sdk.UnwrappedGift.from_gift_wrap(self.bob, event).rumor().content()

    def one_way_wire(self) -> None:
        """As X Chat is measured: JSON over the wire, parsed, id and signature verified.

        ``Event.from_json`` pays for uniffi's Python bindings, which copy a str into
        Rust one byte per loop iteration (about 0.1 µs a byte).
        """
        event = nostr_sdk.nip17_make_private_msg(self.alice, self.bob_public, TEXT)
        received = nostr_sdk.Event.from_json(event.as_json())
        if not received.verify():
            raise RuntimeError("the NIP-17 gift wrap does not verify")
        nostr_sdk.UnwrappedGift.from_gift_wrap(self.bob, received).rumor().content()


# -- measuring ---------------------------------------------------------------------


@dataclass
class Bench:
    name: str
    step: Callable[[], None]
    messages_per_step: int = 1
    best: float = 0.0  # messages per second


def measure(step: Callable[[], None], messages_per_step: int, seconds: float) -> float:
    """Messages per second over ``seconds``, checking the clock every few steps."""
    batch = 8
    steps = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(batch):
            step()
        steps += batch
        now = time.perf_counter()
        if now >= deadline:
            return steps * messages_per_step / (now - start)


def _versions() -> str:
    names = ("vodozemac", "nostr-sdk", "coincurve", "cryptography", "orjson")
    return ", ".join(f"{name} {metadata.version(name)}" for name in names)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _native_threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def run_benchmarks(seconds: float) -> None:
    xchat = XChat()
    floor = OlmFloor(xchat.frame_bytes)
    anchor = Nip17Anchor()
    one_way = Bench("X Chat round trip, one way (A->B)", xchat.one_way)
    ping_pong = Bench("X Chat round trip, ping-pong (ratchet)", xchat.ping_pong, 2)
    olm = Bench("floor: vodozemac Olm enc+dec", floor.one_way)
    olm_ping_pong = Bench("  (floor, ping-pong, info)", floor.ping_pong, 2)
    nip17_wire = Bench("anchor: rust-nostr NIP-17, same steps", anchor.one_way_wire)
    nip17 = Bench("anchor: rust-nostr NIP-17, bare", anchor.one_way)
    benches = [one_way, ping_pong, olm, olm_ping_pong, nip17_wire, nip17]

    print("X Chat crypto benchmark: single-threaded, one core (no pinning)")
    print(f"  Python {platform.python_version()} on {platform.machine()}, {_cpu_model()}")
    print(f"  {_versions()}")
    print(
        f"  text {len(TEXT.encode())} B; X Chat frame (Olm plaintext) ~{xchat.frame_bytes} B, "
        f"Olm message {xchat.olm_bytes} B, gift wrap JSON {xchat.wrap_bytes} B; "
        f"NIP-17 gift wrap JSON {anchor.wrap_bytes} B"
    )
    print(
        f"  best of {RUNS} runs x {seconds:g} s each, runs interleaved, after a warm-up;"
        " nostr_sdk via its synchronous API (no asyncio)"
    )
    print(
        "  anchor, same steps = make, to JSON, parse, verify, unwrap (as X Chat is measured);"
        " bare = make + unwrap of the in-memory event"
    )
    sys.stdout.flush()
    warm_up = min(1.0, seconds / 3)
    for bench in benches:
        measure(bench.step, bench.messages_per_step, warm_up)
    for run in range(RUNS):
        for bench in benches:
            rate = measure(bench.step, bench.messages_per_step, seconds)
            bench.best = max(bench.best, rate)
        print(f"  run {run + 1}/{RUNS} done", file=sys.stderr, flush=True)
    xchat.check()
    floor.check()
    anchor.check()

    print()
    print(f"{'benchmark':<42} {'messages/s':>12} {'µs/message':>12}")
    print("-" * 68)
    for bench in benches:
        print(f"{bench.name:<42} {bench.best:>12,.0f} {1e6 / bench.best:>12.1f}")
    print("-" * 68)
    for label, anchor_bench in (("same steps", nip17_wire), ("bare", nip17)):
        ratio = one_way.best / anchor_bench.best
        print(
            f"X Chat / anchor, {label + ':':<11} {ratio:6.2f}x   target >= "
            f"{TARGET_ANCHOR_RATIO:g}x  {'PASS' if ratio >= TARGET_ANCHOR_RATIO else 'FAIL'}"
        )
    print(f"X Chat ping-pong / anchor, same steps: {ping_pong.best / nip17_wire.best:6.2f}x")
    print(
        f"X Chat / floor (one way):    {one_way.best / olm.best:6.3f}x   "
        f"(the Olm floor is {olm.best / one_way.best:.1f}x faster)"
    )
    print(f"X Chat / floor (ping-pong):  {ping_pong.best / olm_ping_pong.best:6.3f}x")
    print(
        f"X Chat absolute (one way):   {one_way.best:,.0f}/s   target >= {TARGET_RATE:,.0f}/s  "
        f"{'PASS' if one_way.best >= TARGET_RATE else 'FAIL'}"
    )
    print(f"threads in process at the end: {_native_threads()} (all work on the main thread)")


# -- profiling ---------------------------------------------------------------------


def _where(key: tuple[str, int, str]) -> str:
    filename, line, name = key
    if filename == "~":
        return name
    for marker in ("/site-packages/", "/src/", "/lib/python"):
        if marker in filename:
            filename = filename.split(marker, 1)[1]
            break
    return f"{name} ({filename}:{line})"


def _print_top(stats: pstats.Stats, messages: int, by: str, limit: int = 25) -> None:
    table = stats.stats  # type: ignore[attr-defined]
    column = 3 if by == "cumulative" else 2
    rows = sorted(table.items(), key=lambda item: item[1][column], reverse=True)[:limit]
    print(f"\nTop {limit} by {by} time (per message; cProfile adds overhead to Python calls)")
    print(f"{'calls/msg':>9} {'own µs':>8} {'cum µs':>8}  function")
    for key, (_, calls, own, cumulative, _) in rows:
        print(
            f"{calls / messages:>9.2f} {own * 1e6 / messages:>8.2f} "
            f"{cumulative * 1e6 / messages:>8.2f}  {_where(key)}"
        )


def run_profile(seconds: float) -> None:
    xchat = XChat()
    measure(xchat.one_way, 1, min(1.0, seconds / 3))
    alice, bob, session = xchat.alice, xchat.bob, xchat.alice_session

    # Stage times without the profiler.
    totals = [0.0] * 5
    count = 0
    clock = time.perf_counter
    deadline = clock() + seconds
    while clock() < deadline:
        t0 = clock()
        message = Text(new_message_id(rng), NOW * 1000, TEXT)
        t1 = clock()
        event = alice.seal(session, message, NOW, rng)
        t2 = clock()
        data = event.to_json()
        t3 = clock()
        received = event_from_json(data)
        t4 = clock()
        bob.open(received, NOW, rng)
        t5 = clock()
        for i, (a, b) in enumerate(((t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5))):
            totals[i] += b - a
        count += 1
    names = ("Text(...)", "Channel.seal", "Event.to_json", "event_from_json", "Channel.open")
    total = sum(totals)
    print(f"X Chat one-way round trip, {count:,} messages, stage times (no profiler):")
    for name, spent in zip(names, totals, strict=True):
        print(f"  {name:<16} {spent * 1e6 / count:8.1f} µs  {100 * spent / total:5.1f} %")
    print(f"  {'total':<16} {total * 1e6 / count:8.1f} µs  ({count / total:,.0f} messages/s)")

    profiler = cProfile.Profile()
    messages = 0
    deadline = time.perf_counter() + seconds
    profiler.enable()
    while time.perf_counter() < deadline:
        xchat.one_way()
        messages += 1
    profiler.disable()
    stats = pstats.Stats(profiler)
    _print_top(stats, messages, "cumulative")
    _print_top(stats, messages, "own")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each run")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile the X Chat one-way round trip instead of benchmarking",
    )
    args = parser.parse_args(argv)
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    if args.profile:
        run_profile(args.seconds)
    else:
        run_benchmarks(args.seconds)


if __name__ == "__main__":
    main()
