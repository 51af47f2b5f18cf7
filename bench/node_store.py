"""The node's database: SQLCipher (whole-file encryption) against plain SQLite.

Run from the repository root::

    .venv/bin/python bench/node_store.py [--messages N] [--runs R] [--seconds S]

The same :class:`~xchat.store.node.NodeStore` code (schema, statements, WAL,
``synchronous=FULL``, one connection) runs on three drivers, each on a fresh file in a
temporary folder:

* **sqlcipher**: the real store: SQLCipher 4 (``sqlcipher3``), a raw 256-bit key (AES-256
  CBC per 4 KiB page, HMAC-SHA512 per page, so no passphrase KDF on open);
* **sqlite** (the anchor): Python's own ``sqlite3`` module, no encryption;
* **sqlcipher, no key**: the SQLCipher build with no key set, for information: the same
  SQLite version and compile options as the real store, so the difference from it is the
  encryption alone (the stdlib's SQLite is a different version).

Measured, per driver:

* **insert, batch=100**: ``--messages`` messages (20 conversations, 100-character
  bodies, random 32-byte hex ids) with ``insert_message``, 100 per ``transaction()``:
  messages/s, every transaction a durable commit;
* **insert, batch=1**: the same, each message its own commit (as the node persists a
  message before sending it), on another fresh file;
* **page (warm)**: ``messages(conversation, before, 50)`` walking a random conversation
  from its newest message to its oldest, page after page, for ``--seconds``: pages/s;
* **page (cold)**: the store closed and reopened (empty page cache, so every page read
  is decrypted again; the OS file cache stays warm), then every conversation walked
  once in pages of 50: messages/s, including the open;
* **conversations()** and **search()** (a substring in about 1 % of the bodies; the body
  column scanned): calls/s, warm.

Each figure is the best of ``--runs`` runs, the drivers interleaved within each run so
that drift in machine load affects all alike. The ratio printed is sqlcipher / sqlite.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sqlite3
import string
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import sqlcipher3.dbapi2 as sqlcipher

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from xchat.model import Conversation, ConversationKind
from xchat.store.node import MessageRow, NodeStore

KEY = bytes(range(32))
PEERS = [os.urandom(32).hex() for _ in range(20)]
CONVERSATIONS = [os.urandom(16).hex() for _ in PEERS]  # each a direct conversation
ME = "ee" * 32
PAGE = 50
NEEDLE = "zebra crossing"


class PlainSqliteStore(NodeStore):
    """The anchor: the same store on Python's sqlite3, no key, no encryption."""

    def _connect(self) -> Any:
        return sqlite3.connect(str(self._path), isolation_level=None, check_same_thread=False)


class UnkeyedSqlcipherStore(NodeStore):
    """SQLCipher's SQLite with no key: plaintext pages, the same engine build."""

    def _connect(self) -> Any:
        return sqlcipher.connect(str(self._path), isolation_level=None, check_same_thread=False)


DRIVERS: dict[str, type[NodeStore]] = {
    "sqlcipher": NodeStore,
    "sqlite": PlainSqliteStore,
    "sqlcipher, no key": UnkeyedSqlcipherStore,
}


def make_messages(n: int) -> list[MessageRow]:
    rng = random.Random(1)
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9))) for _ in range(500)]
    rows = []
    start = 1_760_000_000_000
    for i in range(n):
        conversation = CONVERSATIONS[i % len(CONVERSATIONS)]
        outgoing = rng.random() < 0.5
        body = " ".join(rng.choices(words, k=30))[:100]
        if rng.random() < 0.01:
            body = f"{body[:80]} {NEEDLE}"
        sent_at = start + i * 1000 + rng.randint(-3000, 3000)  # clocks disagree a little
        rows.append(
            MessageRow(
                id=os.urandom(32).hex(),
                conversation=conversation,
                outgoing=outgoing,
                sender=ME if outgoing else PEERS[i % len(PEERS)],
                type="text",
                body=body,
                sent_at=sent_at,
                received_at=sent_at + 150,
                state="delivered" if outgoing else "received",
            )
        )
    return rows


def fresh(folder: Path, driver: type[NodeStore], tag: str) -> NodeStore:
    path = folder / f"{tag}.db"
    for leftover in folder.glob(f"{tag}.db*"):
        leftover.unlink()
    store = driver(path, KEY)
    store.open()
    with store.transaction():
        for conversation, peer in zip(CONVERSATIONS, PEERS, strict=True):
            store.add_conversation(
                Conversation(conversation, ConversationKind.DIRECT, peer, (peer,), 1_760_000_000)
            )
    return store


def insert(store: NodeStore, rows: list[MessageRow], batch: int) -> float:
    start = time.perf_counter()
    if batch == 1:
        for row in rows:
            store.insert_message(row)
    else:
        for i in range(0, len(rows), batch):
            with store.transaction():
                for row in rows[i : i + batch]:
                    store.insert_message(row)
    return len(rows) / (time.perf_counter() - start)


def walk(store: NodeStore, conversation: str) -> int:
    count = 0
    before = None
    while page := store.messages(conversation, before, PAGE):
        count += len(page)
        before = (page[-1].sent_at, page[-1].seq)
    return count


def page_warm(store: NodeStore, seconds: float) -> float:
    rng = random.Random(2)
    pages = 0
    deadline = time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < deadline:
        conversation = rng.choice(CONVERSATIONS)
        before = None
        while page := store.messages(conversation, before, PAGE):
            pages += 1
            before = (page[-1].sent_at, page[-1].seq)
    return pages / (time.perf_counter() - start)


def page_cold(store: NodeStore) -> float:
    store.close()
    start = time.perf_counter()
    store.open()
    count = sum(walk(store, c) for c in CONVERSATIONS)
    return count / (time.perf_counter() - start)


def calls_per_second(fn: Callable[[], object], seconds: float) -> float:
    calls = 0
    deadline = time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < deadline:
        fn()
        calls += 1
    return calls / (time.perf_counter() - start)


MEASURES = [
    ("insert, batch=100", "messages/s"),
    ("insert, batch=1", "messages/s"),
    ("page (warm)", f"pages/s ({PAGE})"),
    ("page (cold, incl. open)", "messages/s"),
    ("conversations()", "calls/s"),
    ("search()", "calls/s"),
]


def run_once(folder: Path, driver: type[NodeStore], rows: list[MessageRow], seconds: float):
    out: dict[str, float] = {}
    store = fresh(folder, driver, "batch1")
    try:
        out["insert, batch=1"] = insert(store, rows, 1)
    finally:
        store.close()
    store = fresh(folder, driver, "batch100")
    try:
        out["insert, batch=100"] = insert(store, rows, 100)
        out["file size"] = sum(f.stat().st_size for f in folder.glob("batch100.db*"))
        assert sum(walk(store, c) for c in CONVERSATIONS) == len(rows)
        out["page (warm)"] = page_warm(store, seconds)
        out["page (cold, incl. open)"] = page_cold(store)
        assert len(store.conversations()) == len(CONVERSATIONS)
        out["conversations()"] = calls_per_second(store.conversations, seconds / 2)
        found = len(store.search(NEEDLE, limit=10_000))
        assert found > 0
        out["search()"] = calls_per_second(lambda: store.search(NEEDLE), seconds / 2)
    finally:
        store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=0.5)
    args = parser.parse_args()
    with sqlcipher.connect(":memory:") as probe:
        cipher_version = probe.execute("PRAGMA cipher_version").fetchone()[0]
        cipher_sqlite = probe.execute("SELECT sqlite_version()").fetchone()[0]
    print(
        f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs;"
        f" sqlcipher3 {metadata.version('sqlcipher3')} (SQLCipher {cipher_version},"
        f" SQLite {cipher_sqlite}); stdlib sqlite3: SQLite {sqlite3.sqlite_version}"
    )
    print(
        f"{args.messages:,} messages in {len(CONVERSATIONS)} conversations;"
        f" WAL, synchronous=FULL; best of {args.runs} runs"
    )
    rows = make_messages(args.messages)
    best: dict[str, dict[str, float]] = {name: {} for name in DRIVERS}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            for name, driver in DRIVERS.items():
                folder = Path(tmp) / name.replace(",", "").replace(" ", "-")
                folder.mkdir(exist_ok=True)
                for row in rows:
                    row.seq = 0
                figures = run_once(folder, driver, rows, args.seconds)
                for measure, value in figures.items():  # (file size: the largest)
                    best[name][measure] = max(best[name].get(measure, 0.0), value)
            print(f"  run {run + 1}/{args.runs} done", file=sys.stderr, flush=True)
    print()
    names = list(DRIVERS)
    header = f"{'measurement':<26}{'unit':<16}" + "".join(f"{n:>19}" for n in names)
    print(header + f"{'sqlcipher/sqlite':>18}")
    print("-" * (len(header) + 18))
    for measure, unit in MEASURES:
        cells = "".join(f"{best[n][measure]:>19,.0f}" for n in names)
        ratio = best["sqlcipher"][measure] / best["sqlite"][measure]
        print(f"{measure:<26}{unit:<16}{cells}{ratio:>17.2f}x")
    sizes = ", ".join(f"{n} {best[n]['file size'] / 2**20:.1f} MiB" for n in names)
    print(f"database + WAL after the batched inserts: {sizes}")
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
