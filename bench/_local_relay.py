"""rust-nostr's ``LocalRelay`` in a process of its own, for ``bench/relay.py``.

Run as ``python bench/_local_relay.py [--auth-dm]``: builds a ``nostr_sdk`` LocalRelay on
127.0.0.1 (a free port; the default in-memory database, which keeps up to 75,000
events), prints ``listening on ws://127.0.0.1:PORT`` and serves until SIGTERM or SIGINT.
The relay itself runs on rust-nostr's tokio threads; this Python process only waits.

Its default rate limit (60 events per minute per connection) is raised out of the way,
and so is the number of subscriptions per connection; ``--auth-dm`` makes it serve gift
wraps (kind 1059) only to connections authenticated (NIP-42) as their ``p`` recipient,
as X Chat's relay does. The soft RLIMIT_NOFILE is raised to the hard limit.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import signal

import nostr_sdk

U32_MAX = 2**32 - 1


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def serve(auth_dm: bool) -> None:
    builder = (
        nostr_sdk.LocalRelayBuilder()
        .addr("127.0.0.1")
        .rate_limit(nostr_sdk.RateLimit(max_reqs=1000, notes_per_minute=U32_MAX))
    )
    if auth_dm:
        builder = builder.auth_dm(True)
    relay = builder.build()
    await relay.run()
    print(f"listening on {await relay.url()}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    relay.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--auth-dm", action="store_true", help="NIP-42 for gift wraps")
    args = parser.parse_args()
    raise_nofile()
    asyncio.run(serve(args.auth_dm))


if __name__ == "__main__":
    main()
