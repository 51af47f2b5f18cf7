"""Writes ``tests/fixtures/relay-v1.sqlite3``, a relay database at schema version 1.

Run once, when version 1 was released; the file is committed and never regenerated
(tests/fixtures/README.md). ``test_the_released_v1_sqlite_file_still_opens`` imports
:func:`fixture_batches` to know what the file holds. The events are really signed, by
keys derived from fixed names, with zero auxiliary randomness, so they are reproducible.

    .venv/bin/python -m tests.store.make_relay_v1
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from xchat.core.events import sign_event
from xchat.crypto.keys import SecretKey
from xchat.store.events import StoredEvent
from xchat.store.sqlite import SqliteEventStore

NOW = 1_760_000_000
DAY = 86_400
OUT = Path(__file__).resolve().parents[1] / "fixtures" / "relay-v1.sqlite3"


def key(name: str) -> SecretKey:
    return SecretKey(hashlib.sha256(name.encode()).digest())


def event(
    name: str, kind: int, created_at: int, tags: list[list[str]], content: str
) -> StoredEvent:
    signed = sign_event(
        key(name),
        kind=kind,
        tags=tags,
        content=content,
        created_at=created_at,
        rng=bytes,
    )
    return StoredEvent(signed, signed.to_json().decode())


def written() -> tuple[list[StoredEvent], list[StoredEvent]]:
    """The two batches written, in order, with ``now = NOW``."""
    alice = key("alice").public_key.hex
    bob = key("bob").public_key.hex
    profile_old = event("alice", 0, NOW - 100, [], '{"name":"alice (old)"}')
    note = event("alice", 1, NOW - 40, [["t", "hello"], ["p", bob]], "hello bob")
    post = event("alice", 30023, NOW - 30, [["d", "post"], ["title", "A post"]], "# A post")
    old_post = event("alice", 30023, NOW - 60, [["d", "old-post"]], "# Old")
    wrap = event(
        "one-time wrapper",
        1059,
        NOW - 20,
        [["p", bob], ["expiration", str(NOW + 10 * DAY)]],
        "AhtCaQ==",  # stands in for NIP-44 ciphertext
    )
    bob_note = event("bob", 1, NOW - 10, [], "oops")
    first = [profile_old, note, post, old_post, wrap, bob_note]
    profile = event("alice", 0, NOW - 50, [], '{"name":"alice"}')
    bob_delete = event("bob", 5, NOW - 5, [["e", bob_note.event.id], ["k", "1"]], "")
    alice_delete = event("alice", 5, NOW - 1, [["a", f"30023:{alice}:old-post"]], "")
    return first, [profile, bob_delete, alice_delete]


def fixture_batches() -> tuple[list[StoredEvent], list[StoredEvent]]:
    """(kept, refused): what the file holds, newest first; then the events it refuses,
    an obsolete profile and two deleted events, in that order."""
    (profile_old, note, post, old_post, wrap, bob_note), (profile, bob_delete, alice_delete) = (
        written()
    )
    kept = [alice_delete, bob_delete, wrap, post, note, profile]
    return kept, [profile_old, bob_note, old_post]


async def main() -> None:
    OUT.unlink(missing_ok=True)
    store = SqliteEventStore(OUT)
    await store.open()
    for batch in written():
        await store.save_batch(batch, NOW)
    await store.close()
    print(f"wrote {OUT}")


if __name__ == "__main__":
    asyncio.run(main())
