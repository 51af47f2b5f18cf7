"""rust-nostr's ``LocalRelay`` (nostr-sdk) as a process of its own, for node tests.

``python -m tests.node.local_relay [--auth-dm]`` serves on 127.0.0.1 (a free port the OS
picks), events in memory, and prints ``listening on ws://127.0.0.1:PORT`` once it
accepts connections. It runs until it gets SIGTERM or SIGINT, or its stdin closes.

``--auth-dm``: gift wraps (kind 1059) are served only to a connection authenticated
(NIP-42) as their recipient, like our relay does. Without it, LocalRelay does no NIP-42
at all and serves gift wraps to anyone.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import nostr_sdk as sdk


async def serve(auth_dm: bool) -> None:
    loop = asyncio.get_running_loop()
    sdk.uniffi_set_event_loop(loop)
    builder = sdk.LocalRelayBuilder().addr("127.0.0.1")
    if auth_dm:
        builder = builder.auth_dm(True)
    relay = builder.build()
    await relay.run()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.read(1) else None)
    print(f"listening on {await relay.url()}", flush=True)
    try:
        await stop.wait()
    finally:
        relay.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--auth-dm", action="store_true", help="gift wraps only to their #p")
    args = parser.parse_args()
    asyncio.run(serve(args.auth_dm))


if __name__ == "__main__":
    main()
