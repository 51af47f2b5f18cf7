"""How long a relay pool with many keys takes to read its first mail.

Run from the repository root::

    .venv/bin/python bench/pool_auth.py [--keys 300] [--latency-ms 0,25] [--runs 5]

One ``xchat relay`` (SQLite in a temporary folder) on 127.0.0.1 holds one gift wrap
(kind 1059) addressed to the last of ``--keys`` keys. For every one-way latency in
``--latency-ms``, the relay is reached directly (0) or through the faulty relay proxy
(``tests/node/faulty_relay.py --latency-ms``, which delays every message both ways by
that much, so the round trip is twice it). Each run times, with
``time.perf_counter``, a fresh :class:`~xchat.node.pool.RelayPool` from ``start()``
until ``on_event`` gets that gift wrap: connect, NIP-42 AUTH as every key, subscribe,
catch up. The median of ``--runs`` runs is printed.

The pool authenticates in a pipeline (every AUTH sent, then the OKs awaited). Before,
it waited for each key's OK before sending the next AUTH: with 300 keys, 73-75 ms
directly and 15.9 s at 25 ms one way (300 round trips); pipelined, 50-80 ms and 0.25 s
(a 2-core machine shared with other work).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.node.faulty_relay import reserve_port, start_faulty_relay
from tests.relay.conftest import make_event, new_key, start_relay

from xchat.crypto.keys import SecretKey
from xchat.node.pool import RelayPool
from xchat.node.relay_client import RelayConnection
from xchat.wire.event import Event


async def first_mail(url: str, keys: dict[str, SecretKey], wrap: Event) -> float:
    arrived = asyncio.Event()

    async def on_event(_: str, event: Event) -> None:
        if event.id == wrap.id:
            arrived.set()

    pool = RelayPool(lambda: keys, on_event)
    started = time.perf_counter()
    await pool.start([url])
    await asyncio.wait_for(arrived.wait(), 300)
    elapsed = time.perf_counter() - started
    await pool.close()
    return elapsed


async def measure(relay_url: str, url: str, count: int, runs: int) -> list[float]:
    secrets = [new_key() for _ in range(count)]
    keys = {k.public_key.hex: k for k in secrets}
    wrap = make_event(new_key(), kind=1059, content="x", tags=[["p", secrets[-1].public_key.hex]])
    async with await RelayConnection.connect(relay_url) as conn:
        assert (await conn.publish(wrap)).accepted
    return [await first_mail(url, keys, wrap) for _ in range(runs)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=300)
    parser.add_argument("--latency-ms", default="0,25")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        # AUTH through the proxy names the proxy's URL: the relay must accept it (NIP-42).
        own, front = reserve_port(), reserve_port()
        port, front_port = own.getsockname()[1], front.getsockname()[1]
        urls = [f"ws://127.0.0.1:{port}", f"ws://127.0.0.1:{front_port}"]
        relay = start_relay(os.path.join(tmp, "relay.sqlite3"), port=port, public_urls=urls)
        own.close()
        try:
            for latency in [float(x) for x in args.latency_ms.split(",")]:
                proxy = None
                if latency:
                    proxy = start_faulty_relay(relay.url, latency_ms=latency, port=front_port)
                    front.close()
                try:
                    url = proxy.url if proxy else relay.url
                    times = asyncio.run(measure(relay.url, url, args.keys, args.runs))
                finally:
                    if proxy is not None:
                        proxy.stop()
                shown = ", ".join(f"{t * 1000:.0f}" for t in times)
                print(
                    f"{args.keys} keys, one-way latency {latency:g} ms: first mail after "
                    f"{statistics.median(times) * 1000:.0f} ms (median; runs: {shown} ms)"
                )
        finally:
            relay.stop()


if __name__ == "__main__":
    main()
