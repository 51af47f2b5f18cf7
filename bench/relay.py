"""Relay throughput, latency and memory: X Chat's relay against two others, one load generator.

Run from the repository root::

    .venv/bin/python bench/relay.py [--quick] [--only NAME[,NAME...]] [--py-spy DIR]

``--only`` takes relay names (``ours``, ``local``, ``nostr-relay``) and/or measurement
names (``ingest``, ``fanout``, ``giftwrap``, ``idle``, ``heavyreq``, ``backlog``);
``--quick`` shrinks every count
(a smoke test, not a measurement); ``--py-spy DIR`` records our relay with py-spy (raw
collapsed stacks, ``--idle --threads --nonblocking``, 250 Hz) during each timed phase.

**The relays**, all on 127.0.0.1, each started afresh (new process, empty database) for
every measurement, stopped afterwards (SIGTERM to its process group, SIGKILL after 10 s):

* **ours**: ``python -m xchat relay`` in its own process, SQLite in a temporary folder
  with the store's defaults (WAL, ``synchronous=FULL``: ``OK true`` means committed),
  batches of up to 512 events / 2 ms. A config file raises the per-connection and
  per-IP event rate limits and bursts to 1e9 and the per-IP connection cap to 100,000,
  so that the benchmark, all of whose connections come from 127.0.0.1, is not throttled;
  every other setting is the default.
* **LocalRelay**: rust-nostr's ``nostr_sdk.LocalRelayBuilder`` (in-memory database, no
  durability) in a separate process (``bench/_local_relay.py``) so it shares no GIL
  with the load generator; its 60 events/minute rate limit is raised out of the way, and
  ``auth_dm(true)`` makes it serve gift wraps only to their NIP-42-authenticated
  recipient, as ours does.
* **nostr-relay**: PyPI ``nostr-relay`` (pinned below), installed by this script into
  its own virtual environment under ``bench/.venvs/nostr-relay`` on first use, run with
  its default server (gunicorn, one uvicorn worker) and default storage (SQLite via
  SQLAlchemy/aiosqlite, WAL, ``synchronous=normal``, the default validators), on a
  temporary SQLite file. Its per-event INFO log is turned down to WARNING (ours logs
  nothing per event either). No rate limiter is configured (its default). Its
  authentication is off by default, so anyone may read gift wraps from it. If it cannot
  be installed or started, its column says why and the run goes on.

**The load generator** is this process: one asyncio loop, aiohttp client WebSockets
(no compression), messages built and control messages (OK, EOSE, CLOSED, AUTH, NOTICE)
parsed with ``xchat.wire.messages``. Delivered ``EVENT`` messages take a fast path:
``orjson.loads`` and the event's ``id``, without re-checking the event (that would cost
the load generator 6 µs per delivery). All events are signed before any clock starts
(``xchat.core.events.sign_event``), and every relay gets the same events. Times are
``time.perf_counter`` in this process; connections are opened at most 100 at a time.
While a phase is timed the load generator's garbage collector is frozen and off, so
that no collection of what setup built pauses it.

**Measurements** (full run; ``--quick`` figures in ``QUICK``):

1. **ingest**: 40,000 unique kind-1 events (300 authors, 200 characters of content,
   three tags) spread over 20 connections, each pipelining with up to 256 events
   unanswered. Events/s = ``OK true`` answers / (last answer - first send); the best of
   three runs, the relays' runs interleaved, each on a fresh relay. A run is capped at
   15 s (then the answers by then count).
2. **fan-out**: 1,000 subscribers, subscriber *i* with ``{"kinds":[1],"#t":["topic-k"]}``
   for k = i mod 10, so each event (one ``t`` tag, topics in turn) matches exactly 100
   subscribers and the expected deliveries are events x 100. *Paced*: one publisher
   sends 100 events/s for 4 s (10,000 deliveries/s); latency = delivery's arrival at
   the subscriber - the publisher's send time, p50 and p99 over all deliveries.
   *Max*: 4 publishers pipeline 2,000 further events (window 256 each); deliveries/s =
   deliveries / (last delivery - first send), capped at 30 s. Every delivery is
   checked: right topic, known event, once per subscriber. The paced rates are the same
   for every relay; one that cannot sustain them shows it as growing latency.
3. **gift-wrap routing**: 1,000 subscribers, each with its own key, subscribed to
   ``{"kinds":[1059],"#p":[own key]}``. A relay that answers the REQ with
   ``CLOSED auth-required`` gets a NIP-42 AUTH for that key (ours, LocalRelay with
   ``auth_dm``) and the REQ again; one that accepts it is just subscribed (nostr-relay).
   Events: kind 1059, one ``p`` tag to a random subscriber, 2,000 characters of
   content, each signed by a fresh one-time key, ``created_at`` up to two days back.
   Paced: 500 events/s for 4 s from one publisher, latency p50/p99 as above; max: 4
   publishers pipeline 10,000 events, deliveries/s as above. Misdeliveries (an event
   reaching a subscriber it is not addressed to) must be 0; duplicates and missing
   deliveries are reported too.
4. **idle connections**: 10,000 connections, each with one REQ
   ``{"kinds":[1],"#t":["idle-i"]}`` (a distinct tag each), opened and answered (EOSE)
   one after another, at most 100 in progress; then 1 s of rest. KiB per connection =
   (VmRSS after - VmRSS before) / connections reached, VmRSS summed over the relay's
   process tree (for LocalRelay the helper process, for nostr-relay gunicorn's master
   and worker). The soft RLIMIT_NOFILE of this process is raised to the hard limit
   before anything starts, and the relays inherit it. If not all connections succeed,
   the figure is for those that did, and the table says how many.

5. **heavy REQs** (ours and LocalRelay): 300 kind-1 events of 87,000 characters (26 MB)
   by one author are published before the clock; then 10 connections at once each send
   one REQ of 10 filters, ``{"authors":[a],"kinds":[1],"since":i}`` for i = 0..9, every
   filter matching all 300, and read everything until EOSE. The relay's RSS (process
   tree, as for idle) is sampled every 20 ms: peak growth = highest sample - RSS before;
   growth after = RSS 1 s after the last EOSE - RSS before. Every client must get 300
   events.
6. **backlog catch-up** (ours and LocalRelay): 1,000 gift wraps of 87,000 characters
   (near the largest NIP-59 gift wrap, 87 MB in all) to one recipient, each from a fresh
   one-time key with ``created_at`` up to two days back, are published before the clock;
   then one new connection authenticates (NIP-42) and pages through
   ``{"kinds":[1059],"#p":[me],"until":t}`` as a node catching up would: REQ, read until
   EOSE, ``t`` = the oldest ``created_at`` received, again until a page brings nothing
   new. Time = first REQ to the last page's EOSE with all 1,000 received; MB/s = JSON
   bytes received / time.

Next to each figure the CPU used during the timed phase is printed, by the relay's
process tree and by this process, in % of one core (the machine's cores are shared by
the two). Targets, for our relay: ingest >= 10,000 events/s with SQLite durability and
>= 0.6x LocalRelay's; fan-out >= 40,000 deliveries/s; <= 16 KiB per idle subscribed
connection.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import os
import platform
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp
import orjson

import _nodes
from _nodes import STARTED, BenchError, cpu_model, cpu_seconds, process_tree, stop_all, stop_group
from xchat.core.events import sign_event
from xchat.crypto.keys import SecretKey
from xchat.wire import messages as m

BENCH_DIR = Path(__file__).resolve().parent
NOSTR_RELAY_VERSION = "1.14"
NOSTR_RELAY_VENV = BENCH_DIR / ".venvs" / "nostr-relay"
RELAYS = ("ours", "local", "nostr-relay")
RELAY_TITLES = {"ours": "ours", "local": "LocalRelay", "nostr-relay": "nostr-relay"}
MEASUREMENTS = ("ingest", "fanout", "giftwrap", "idle", "heavyreq", "backlog")
NOT_FOR = {"heavyreq": {"nostr-relay"}, "backlog": {"nostr-relay"}}  # too slow to be useful
BIG_CONTENT = 64_000  # characters: the largest LocalRelay takes (events up to 70,000 bytes)
KIND_AUTH = 22242
CONNECT_CONCURRENCY = 100
PHASE_CAP = 30.0  # seconds a max-rate phase may take
INGEST_CAP = 15.0  # seconds one ingest run may take
DRAIN = 10.0  # seconds a paced phase waits for its last deliveries
STEP_TIMEOUT = 30.0  # one connect, REQ or AUTH
MEASUREMENT_CAP = 300.0

TARGET_INGEST = 10_000.0
TARGET_INGEST_RATIO = 0.6
TARGET_FANOUT = 40_000.0
TARGET_IDLE_KIB = 16.0


@dataclass(frozen=True)
class Plan:
    ingest_events: int = 40_000
    ingest_conns: int = 20
    window: int = 256
    fanout_subs: int = 1_000
    topics: int = 10
    fanout_rate: float = 100.0
    fanout_max_events: int = 2_000
    paced_seconds: float = 4.0
    publishers: int = 4
    gw_subs: int = 1_000
    gw_rate: float = 500.0
    gw_max_events: int = 10_000
    idle_conns: int = 10_000
    idle_cap: float = 180.0
    authors: int = 300
    ingest_runs: int = 3
    heavy_events: int = 300
    heavy_clients: int = 10
    heavy_filters: int = 10
    backlog_wraps: int = 1_000


FULL = Plan()
QUICK = Plan(
    ingest_events=4_000,
    fanout_subs=200,
    fanout_max_events=300,
    paced_seconds=2.0,
    gw_subs=200,
    gw_max_events=1_000,
    idle_conns=1_000,
    idle_cap=60.0,
    ingest_runs=1,
    heavy_events=100,
    backlog_wraps=200,
)


# -- events, signed before any clock starts --------------------------------------------


@dataclass
class Data:
    ingest: list[tuple[str, str]]  # (id, EVENT message)
    fanout: list[tuple[str, int, str]]  # (id, topic index, EVENT message)
    wraps: list[tuple[str, int, str]]  # (id, recipient index, EVENT message)
    recipients: list[SecretKey]
    big: dict[str, Any] = field(default_factory=dict)  # heavyreq/backlog events, on first use


def big_events(plan: Plan, data: Data) -> dict[str, Any]:
    """The large events of heavyreq and backlog, signed once for every relay."""
    if data.big:
        return data.big
    rng = random.Random(1059)
    now = int(time.time())
    author = SecretKey.generate(os.urandom)
    recipient = SecretKey.generate(os.urandom)

    def signed(key: SecretKey, kind: int, tags: list[list[str]], created_at: int) -> str:
        event = sign_event(
            key,
            kind=kind,
            tags=tags,
            content=_text(rng, BIG_CONTENT),
            created_at=created_at,
            rng=os.urandom,
            one_time=True,
        )
        return m.publish_message(event)

    data.big = {
        "author": author.public_key.hex,
        "notes": [signed(author, 1, [], now - i) for i in range(plan.heavy_events)],
        "recipient": recipient,
        "wraps": [
            signed(
                SecretKey.generate(os.urandom),
                1059,
                [["p", recipient.public_key.hex]],
                now - rng.randrange(2 * 86_400),
            )
            for _ in range(plan.backlog_wraps)
        ],
    }
    return data.big


def _text(rng: random.Random, chars: int) -> str:
    return base64.b64encode(rng.randbytes(chars * 3 // 4)).decode()[:chars]


def prepare(plan: Plan) -> Data:
    rng = random.Random(7447)
    now = int(time.time())
    authors = [SecretKey.generate(os.urandom) for _ in range(plan.authors)]

    def note(i: int, tags: list[list[str]]) -> tuple[str, str]:
        event = sign_event(
            authors[i % len(authors)],
            kind=1,
            tags=tags,
            content=_text(rng, 200),
            created_at=now - rng.randrange(60),
            rng=os.urandom,
            one_time=True,
        )
        return event.id, m.publish_message(event)

    client_tag = ["client", "xchat-bench"]
    ingest = [
        note(i, [["t", "bench"], ["e", rng.randbytes(32).hex()], client_tag])
        for i in range(plan.ingest_events)
    ]
    fanout = []
    paced = int(plan.fanout_rate * plan.paced_seconds)
    for i in range(paced + plan.fanout_max_events):
        topic = i % plan.topics
        tags = [["t", f"topic-{topic}"], ["e", rng.randbytes(32).hex()], client_tag]
        event_id, text = note(i, tags)
        fanout.append((event_id, topic, text))
    recipients = [SecretKey.generate(os.urandom) for _ in range(plan.gw_subs)]
    wraps = []
    for _ in range(int(plan.gw_rate * plan.paced_seconds) + plan.gw_max_events):
        to = rng.randrange(plan.gw_subs)
        event = sign_event(
            SecretKey.generate(os.urandom),
            kind=1059,
            tags=[["p", recipients[to].public_key.hex]],
            content=_text(rng, 2000),
            created_at=now - rng.randrange(2 * 86_400),
            rng=os.urandom,
            one_time=True,
        )
        wraps.append((event.id, to, m.publish_message(event)))
    return Data(ingest, fanout, wraps, recipients)


# -- relay processes ------------------------------------------------------------------


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass
class RelayProcess:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def pids(self) -> list[int]:
        return process_tree(self.process.pid)

    def rss_kib(self) -> int:
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        return total

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)

    def stop(self) -> None:
        stop_group(self.process)


def spawn(
    name: str, args: list[str], tmp: Path, pattern: str, env: dict[str, str] | None = None
) -> RelayProcess:
    """A relay started by ``_nodes.spawn`` in ``tmp``; ``pattern`` finds its host:port."""
    started = _nodes.spawn(name, args, tmp / f"{name}.log", pattern, env, cwd=tmp)
    return RelayProcess(name, "ws://" + started.found, started.process, started.log)


def start_ours(tmp: Path) -> RelayProcess:
    config = tmp / "relay.toml"
    config.write_text(_nodes.RELAY_CONFIG)  # rate limits and connection caps out of the way
    args = [sys.executable, "-m", "xchat", "relay", "--host", "127.0.0.1", "--port", "0"]
    args += ["--db", str(tmp / "relay.sqlite3"), "--config", str(config)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("XCHAT_")}
    return spawn("ours", args, tmp, r"listening on ws://([\d.]+:\d+)", env)


def start_local(tmp: Path) -> RelayProcess:
    args = [sys.executable, str(BENCH_DIR / "_local_relay.py"), "--auth-dm"]
    return spawn("local", args, tmp, r"listening on ws://([\d.]+:\d+)")


def nostr_relay_config(tmp: Path) -> Path:
    """Its packaged config.yaml's values, with a temporary database and port, as JSON."""
    config = {
        "DEBUG": False,
        "relay_name": "bench",
        "relay_description": "bench/relay.py",
        "storage": {
            "sqlalchemy.url": f"sqlite+aiosqlite:///{tmp / 'nostr.sqlite3'}",
            "num_concurrent_reqs": 10,
            "num_concurrent_adds": 2,
            "validators": [
                "nostr_relay.validators.is_not_too_large",
                "nostr_relay.validators.is_signed",
                "nostr_relay.validators.is_recent",
                "nostr_relay.validators.is_not_hellthread",
            ],
        },
        "verification": {"nip05_verification": "disabled", "expiration": 2592000},
        "gunicorn": {"bind": "127.0.0.1:0", "workers": 1, "loglevel": "info", "reload": False},
        "authentication": {"enabled": False},
        "message_timeout": 1800,
        "subscription_limit": 32,
        "max_limit": 6000,
        "hellthread_limit": 100,
        "logging": {
            "version": 1,
            "handlers": {"console": {"class": "logging.StreamHandler"}},
            "loggers": {"nostr_relay": {"level": "WARNING", "propagate": True}},
            "root": {"level": "WARNING", "handlers": ["console"]},
        },
    }
    path = tmp / "nostr-relay.yaml"
    path.write_bytes(orjson.dumps(config))  # JSON is YAML
    return path


def ensure_nostr_relay() -> Path:
    """The nostr-relay executable, installing it into its own venv on first use."""
    exe = NOSTR_RELAY_VENV / "bin" / "nostr-relay"
    stamp = NOSTR_RELAY_VENV / f"installed-{NOSTR_RELAY_VERSION}"
    if stamp.exists() and exe.exists():
        return exe
    if NOSTR_RELAY_VENV.exists():
        shutil.rmtree(NOSTR_RELAY_VENV)
    print(
        f"installing nostr-relay=={NOSTR_RELAY_VERSION} into {NOSTR_RELAY_VENV} ...",
        file=sys.stderr,
        flush=True,
    )
    steps = [
        [sys.executable, "-m", "venv", str(NOSTR_RELAY_VENV)],
        [
            str(NOSTR_RELAY_VENV / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            f"nostr-relay=={NOSTR_RELAY_VERSION}",
        ],
    ]
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=600, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BenchError(f"{' '.join(step[:4])}: {exc}") from None
        if done.returncode != 0:
            lines = [ln for ln in done.stderr.splitlines() if not ln.startswith("WARNING")]
            raise BenchError(f"{' '.join(step[:4])} failed: {' / '.join(lines[-3:])}")
    if not exe.exists():
        raise BenchError(f"no {exe} after installing")
    stamp.write_text(NOSTR_RELAY_VERSION + "\n")
    return exe


def start_nostr_relay(tmp: Path) -> RelayProcess:
    exe = ensure_nostr_relay()
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp))  # gunicorn's control socket goes here
    args = [str(exe), "-c", str(nostr_relay_config(tmp)), "serve"]
    return spawn("nostr-relay", args, tmp, r"Listening at: http://([\d.]+:\d+)", env)


STARTERS: dict[str, Callable[[Path], RelayProcess]] = {
    "ours": start_ours,
    "local": start_local,
    "nostr-relay": start_nostr_relay,
}


# -- the load generator --------------------------------------------------------------

EventSink = Callable[[str, Any, float], None]


class Client:
    """One load-generator connection: its WebSocket and the task reading it."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, url: str) -> None:
        self.ws = ws
        self.url = url
        loop = asyncio.get_running_loop()
        self.challenge: asyncio.Future[str] = loop.create_future()
        self.waiting: dict[tuple[str, str], asyncio.Future[m.RelayMessage]] = {}
        self.on_event: EventSink | None = None
        self.on_ok: Callable[[str, bool, str], None] | None = None
        self.notices: list[str] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                parts = orjson.loads(msg.data)
                if parts[0] == "EVENT" and len(parts) == 3:
                    if self.on_event is not None:
                        self.on_event(parts[1], parts[2], time.perf_counter())
                    continue
                self._dispatch(m.parse_relay_message(msg.data))
        except (aiohttp.ClientError, ConnectionError, orjson.JSONDecodeError, m.MessageError):
            pass
        finally:
            for future in self.waiting.values():
                if not future.done():
                    future.set_exception(BenchError("the relay closed the connection"))
            self.waiting.clear()

    def _dispatch(self, message: m.RelayMessage) -> None:
        if isinstance(message, m.RelayOk):
            future = self.waiting.pop(("ok", message.event_id), None)
            if future is not None:
                future.set_result(message)
            elif self.on_ok is not None:
                self.on_ok(message.event_id, message.accepted, message.message)
        elif isinstance(message, m.RelayEose | m.RelayClosed):
            future = self.waiting.pop(("sub", message.sub_id), None)
            if future is not None:
                future.set_result(message)
        elif isinstance(message, m.RelayAuth):
            if self.challenge.done():
                self.challenge = asyncio.get_running_loop().create_future()
            self.challenge.set_result(message.challenge)
        elif isinstance(message, m.RelayNotice):
            self.notices.append(message.message)

    async def request(self, key: tuple[str, str], text: str) -> m.RelayMessage:
        future: asyncio.Future[m.RelayMessage] = asyncio.get_running_loop().create_future()
        self.waiting[key] = future
        await self.ws.send_str(text)
        return await asyncio.wait_for(future, STEP_TIMEOUT)

    async def subscribe(self, sub_id: str, filt: dict[str, Any], key: SecretKey | None) -> bool:
        """REQ until EOSE; NIP-42 AUTH as ``key`` first if the relay asks. True if it did."""
        reply = await self.request(("sub", sub_id), m.req_message(sub_id, [filt]))
        if isinstance(reply, m.RelayEose):
            return False
        message = getattr(reply, "message", repr(reply))
        if key is None or not message.startswith("auth-required"):
            raise BenchError(f"REQ refused: {message}")
        challenge = await asyncio.wait_for(asyncio.shield(self.challenge), STEP_TIMEOUT)
        auth = sign_event(
            key,
            kind=KIND_AUTH,
            tags=[["relay", self.url], ["challenge", challenge]],
            content="",
            created_at=int(time.time()),
            rng=os.urandom,
        )
        ok = await self.request(("ok", auth.id), m.auth_message(auth))
        if not isinstance(ok, m.RelayOk) or not ok.accepted:
            raise BenchError(f"AUTH refused: {getattr(ok, 'message', ok)}")
        reply = await self.request(("sub", sub_id), m.req_message(sub_id, [filt]))
        if not isinstance(reply, m.RelayEose):
            raise BenchError(f"REQ refused after AUTH: {getattr(reply, 'message', reply)}")
        return True

    async def close(self) -> None:
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.reader


def new_session() -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=None, connect=STEP_TIMEOUT)
    return aiohttp.ClientSession(connector=connector, timeout=timeout)


async def connect(session: aiohttp.ClientSession, url: str) -> Client:
    ws = await asyncio.wait_for(
        session.ws_connect(url, autoping=True, max_msg_size=0, compress=0), STEP_TIMEOUT
    )
    return Client(ws, url)


async def open_many(
    session: aiohttp.ClientSession,
    url: str,
    count: int,
    setup: Callable[[int, Client], Awaitable[None]] | None = None,
    cap: float = 120.0,
) -> tuple[list[Client | None], Counter[str]]:
    """``count`` connections, each set up, at most CONNECT_CONCURRENCY at a time."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    errors: Counter[str] = Counter()

    async def one(i: int) -> Client | None:
        async with gate:
            client = None
            try:
                client = await connect(session, url)
                if setup is not None:
                    await setup(i, client)
            except (aiohttp.ClientError, OSError, TimeoutError, BenchError) as exc:
                errors[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
                if client is not None:
                    await client.close()
                return None
            return client

    tasks = [asyncio.create_task(one(i)) for i in range(count)]
    done, pending = await asyncio.wait(tasks, timeout=cap)
    for task in pending:
        task.cancel()
    if pending:
        errors[f"not done within {cap:g} s"] += len(pending)
        await asyncio.gather(*pending, return_exceptions=True)
    return [t.result() if t in done else None for t in tasks], errors


async def close_all(session: aiohttp.ClientSession, clients: list[Client | None]) -> None:
    for client in clients:
        if client is not None:
            client.reader.cancel()
    await asyncio.gather(*(c.reader for c in clients if c is not None), return_exceptions=True)
    await session.close()


class Acks:
    """``OK`` answers to published events, with a send window per connection."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.accepted = 0
        self.answered = 0
        self.refusals: Counter[str] = Counter()
        self.last = 0.0
        self.done = asyncio.Event()
        if total == 0:
            self.done.set()

    def handler(self, window: asyncio.Semaphore | None) -> Callable[[str, bool, str], None]:
        def on_ok(_event_id: str, accepted: bool, message: str) -> None:
            if window is not None:
                window.release()
            self.answered += 1
            self.last = time.perf_counter()
            if accepted:
                self.accepted += 1
            else:
                self.refusals[message[:60]] += 1
            if self.answered >= self.total:
                self.done.set()

        return on_ok


async def pump(
    client: Client,
    items: list[tuple[str, str]],
    window: asyncio.Semaphore,
    sent_at: dict[str, float] | None,
    stop: asyncio.Event,
) -> None:
    """Send events as fast as the window allows."""
    send = client.ws.send_str
    for event_id, text in items:
        await window.acquire()
        if stop.is_set():
            return
        if sent_at is not None:
            sent_at[event_id] = time.perf_counter()
        await send(text)


async def publish_pipelined(
    clients: list[Client],
    items: list[tuple[str, str]],
    window: int,
    sent_at: dict[str, float] | None,
) -> tuple[Acks, asyncio.Event, list[asyncio.Task[None]]]:
    acks = Acks(len(items))
    stop = asyncio.Event()
    tasks = []
    for i, client in enumerate(clients):
        gate = asyncio.Semaphore(window)
        client.on_ok = acks.handler(gate)
        share = items[i :: len(clients)]
        tasks.append(asyncio.create_task(pump(client, share, gate, sent_at, stop)))
    return acks, stop, tasks


async def publish_paced(
    client: Client, items: list[tuple[str, str]], rate: float, sent_at: dict[str, float]
) -> Acks:
    acks = Acks(len(items))
    client.on_ok = acks.handler(None)
    start = time.perf_counter()
    for k, (event_id, text) in enumerate(items):
        delay = start + k / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent_at[event_id] = time.perf_counter()
        await client.ws.send_str(text)
    return acks


async def finish(tasks: list[asyncio.Task[None]], stop: asyncio.Event) -> None:
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class Deliveries:
    """What subscribers received in one phase, checked against what was sent to whom."""

    def __init__(
        self,
        owner_of: dict[str, int],
        owner: Callable[[int], int],
        expected: int,
        earlier: set[str],
    ) -> None:
        self.owner_of = owner_of  # event id -> topic / recipient it is for
        self.earlier = earlier  # ids published in earlier phases
        self.owner = owner  # subscriber index -> its topic / recipient
        self.expected = expected
        self.sent_at: dict[str, float] = {}
        self.latencies: list[float] = []
        self.seen: set[tuple[int, str]] = set()
        self.received = 0
        self.misdelivered = 0
        self.duplicates = 0
        self.stray = 0
        self.late = 0
        self.last = 0.0
        self.done = asyncio.Event()

    def deliver(self, who: int, event: Any, now: float) -> None:
        event_id = event.get("id") if type(event) is dict else None
        target = self.owner_of.get(event_id) if type(event_id) is str else None
        if target is None:
            if event_id in self.earlier:
                self.late += 1
            else:
                self.stray += 1
            return
        if target != self.owner(who):
            self.misdelivered += 1
            return
        pair = (who, event_id)
        if pair in self.seen:
            self.duplicates += 1
            return
        self.seen.add(pair)
        sent = self.sent_at.get(event_id)
        if sent is not None:
            self.latencies.append(now - sent)
        self.received += 1
        self.last = now
        if self.received >= self.expected:
            self.done.set()

    def problems(self) -> str:
        parts = [
            f"{n} {what}"
            for n, what in (
                (self.expected - self.received, "missing"),
                (self.misdelivered, "misdelivered"),
                (self.duplicates, "duplicate"),
                (self.stray, "unexpected"),
                (self.late, "late from the phase before"),
            )
            if n
        ]
        return ", ".join(parts) if parts else "all delivered exactly once"


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))]


# -- measuring --------------------------------------------------------------------------


class Meter:
    """CPU of the relay and of this process over a timed phase; optionally py-spy."""

    def __init__(self, relay: RelayProcess, profile_dir: Path | None) -> None:
        self.relay = relay
        self.profile_dir = profile_dir if relay.name == "ours" else None
        self.spy: subprocess.Popen[bytes] | None = None

    async def start(self, label: str) -> None:
        if self.profile_dir is not None:
            exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            out = self.profile_dir / f"ours-{label}.txt"
            args = [exe, "record", "--pid", str(self.relay.process.pid), "--format", "raw"]
            args += ["--rate", "250", "--idle", "--threads", "--nonblocking", "-o", str(out)]
            with open(self.profile_dir / f"ours-{label}.log", "wb") as log:
                self.spy = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
            STARTED.append(self.spy)
            await asyncio.sleep(0.5)
        gc.collect()
        gc.freeze()  # what setup built is never scanned again ...
        gc.disable()  # ... and no collection pauses the load generator while timed
        self.wall = time.perf_counter()
        self.cpu = self.relay.cpu_seconds()
        self.bench = time.process_time()

    def stop(self) -> str:
        wall = time.perf_counter() - self.wall
        relay = (self.relay.cpu_seconds() - self.cpu) / wall * 100
        bench = (time.process_time() - self.bench) / wall * 100
        gc.enable()
        gc.unfreeze()
        if self.spy is not None:
            self.spy.send_signal(signal.SIGINT)
            try:
                self.spy.wait(30)
            except subprocess.TimeoutExpired:
                self.spy.kill()
            self.spy = None
        return f"cpu: relay {relay:.0f}%, load generator {bench:.0f}% of a core over {wall:.1f} s"


@dataclass
class Outcome:
    figures: dict[str, float | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


async def bench_ingest(relay: RelayProcess, plan: Plan, data: Data, meter: Meter) -> Outcome:
    out = Outcome()
    session = new_session()
    clients: list[Client | None] = []
    try:
        clients, errors = await open_many(session, relay.url, plan.ingest_conns)
        live = [c for c in clients if c is not None]
        if errors or not live:
            raise BenchError(f"connections failed: {dict(errors)}")
        await meter.start("ingest")
        start = time.perf_counter()
        acks, stop, tasks = await publish_pipelined(live, data.ingest, plan.window, None)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(acks.done.wait(), INGEST_CAP)
        usage = meter.stop()
        await finish(tasks, stop)
        capped = acks.answered < acks.total
        elapsed = (acks.last or time.perf_counter()) - start
        out.figures["ingest"] = acks.accepted / elapsed if elapsed > 0 else None
        out.notes.append(
            f"ingest: {acks.accepted:,} of {acks.total:,} accepted in {elapsed:.2f} s"
            + (f" (capped at {INGEST_CAP:g} s)" if capped else "")
            + (f"; refused: {dict(acks.refusals)}" if acks.refusals else "")
            + f"; {usage}"
        )
    finally:
        await close_all(session, clients)
    return out


async def _delivery_phases(
    relay: RelayProcess,
    plan: Plan,
    meter: Meter,
    out: Outcome,
    name: str,
    subscribers: list[Client],
    publishers: list[Client],
    items: list[tuple[str, int, str]],
    paced_count: int,
    rate: float,
    owner: Callable[[int], int],
    fan: Callable[[int], int],
) -> None:
    """A paced phase (latency), then a max-rate phase (deliveries/s), on subscribers
    already subscribed. ``fan(target)`` is how many subscribers an event for it reaches."""
    holder: list[Deliveries] = []
    published: set[str] = set()

    def sink(i: int) -> EventSink:
        return lambda _sub, event, now: holder[0].deliver(i, event, now)

    for i, client in enumerate(subscribers):
        client.on_event = sink(i)

    def phase(chunk: list[tuple[str, int, str]]) -> Deliveries:
        owners = {event_id: target for event_id, target, _ in chunk}
        expected = sum(fan(t) for _, t, _ in chunk)
        holder[:] = [Deliveries(owners, owner, expected, set(published))]
        published.update(owners)
        return holder[0]

    paced_items = items[:paced_count]
    d = phase(paced_items)
    await meter.start(f"{name}-paced")
    acks = await publish_paced(publishers[0], [(i, t) for i, _, t in paced_items], rate, d.sent_at)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(d.done.wait(), acks.done.wait()), DRAIN)
    usage = meter.stop()
    out.figures[f"{name}_p50"] = _ms(percentile(d.latencies, 0.50))
    out.figures[f"{name}_p99"] = _ms(percentile(d.latencies, 0.99))
    out.figures[f"{name}_mis"] = d.misdelivered
    out.notes.append(
        f"{name} paced: {len(paced_items):,} events at {rate:g}/s, {d.received:,} of "
        f"{d.expected:,} deliveries ({d.problems()}); {acks.accepted:,} OK true; "
        f"max latency {_ms(max(d.latencies, default=0)):.1f} ms; {usage}"
    )
    await asyncio.sleep(0.5)

    max_items = items[paced_count:]
    d = phase(max_items)
    await meter.start(f"{name}-max")
    start = time.perf_counter()
    acks, stop, tasks = await publish_pipelined(
        publishers, [(i, t) for i, _, t in max_items], plan.window, d.sent_at
    )
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(d.done.wait(), acks.done.wait()), PHASE_CAP)
    usage = meter.stop()
    await finish(tasks, stop)
    elapsed = (d.last or time.perf_counter()) - start
    out.figures[f"{name}_rate"] = d.received / elapsed if elapsed > 0 else None
    out.figures[f"{name}_mis"] = (out.figures[f"{name}_mis"] or 0) + d.misdelivered
    out.notes.append(
        f"{name} max: {len(max_items):,} events from {len(publishers)} publishers, "
        f"{d.received:,} of {d.expected:,} deliveries in {elapsed:.2f} s ({d.problems()}); "
        f"{acks.accepted:,} OK true"
        + (f", refused: {dict(acks.refusals)}" if acks.refusals else "")
        + f"; p50 {_ms(percentile(d.latencies, 0.5)) or 0:.0f} ms under load; {usage}"
    )


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


async def _setup_clients(
    relay: RelayProcess,
    session: aiohttp.ClientSession,
    count: int,
    setup: Callable[[int, Client], Awaitable[None]],
    publishers: int,
) -> tuple[list[Client | None], list[Client]]:
    clients, errors = await open_many(session, relay.url, count, setup)
    if errors:
        raise BenchError(f"{sum(errors.values())} subscribers failed: {dict(errors)}")
    pubs, errors = await open_many(session, relay.url, publishers)
    if errors:
        raise BenchError(f"publishers failed: {dict(errors)}")
    return clients, [p for p in pubs if p is not None]


async def bench_fanout(relay: RelayProcess, plan: Plan, data: Data, meter: Meter) -> Outcome:
    out = Outcome()
    session = new_session()
    clients: list[Client | None] = []
    pubs: list[Client] = []
    topics = plan.topics

    async def setup(i: int, client: Client) -> None:
        await client.subscribe("fan", {"kinds": [1], "#t": [f"topic-{i % topics}"]}, None)

    try:
        clients, pubs = await _setup_clients(
            relay, session, plan.fanout_subs, setup, plan.publishers
        )
        per_topic = Counter(i % topics for i in range(plan.fanout_subs))
        await _delivery_phases(
            relay,
            plan,
            meter,
            out,
            "fanout",
            [c for c in clients if c is not None],
            pubs,
            data.fanout,
            int(plan.fanout_rate * plan.paced_seconds),
            plan.fanout_rate,
            lambda i: i % topics,
            lambda topic: per_topic[topic],
        )
    finally:
        await close_all(session, [*clients, *pubs])
    return out


async def bench_giftwrap(relay: RelayProcess, plan: Plan, data: Data, meter: Meter) -> Outcome:
    out = Outcome()
    session = new_session()
    clients: list[Client | None] = []
    pubs: list[Client] = []
    authed = 0

    async def setup(i: int, client: Client) -> None:
        nonlocal authed
        key = data.recipients[i]
        filt = {"kinds": [1059], "#p": [key.public_key.hex]}
        if await client.subscribe("wraps", filt, key):
            authed += 1

    try:
        clients, pubs = await _setup_clients(relay, session, plan.gw_subs, setup, plan.publishers)
        out.notes.append(
            f"giftwrap: {authed:,} of {plan.gw_subs:,} subscribers had to authenticate (NIP-42)"
            + ("" if authed else "; this relay serves kind 1059 to anyone who asks")
        )
        await _delivery_phases(
            relay,
            plan,
            meter,
            out,
            "giftwrap",
            [c for c in clients if c is not None],
            pubs,
            data.wraps,
            int(plan.gw_rate * plan.paced_seconds),
            plan.gw_rate,
            lambda i: i,
            lambda _to: 1,
        )
    finally:
        await close_all(session, [*clients, *pubs])
    return out


async def bench_idle(relay: RelayProcess, plan: Plan, data: Data, meter: Meter) -> Outcome:
    out = Outcome()
    session = new_session()
    clients: list[Client | None] = []

    async def setup(i: int, client: Client) -> None:
        await client.subscribe("idle", {"kinds": [1], "#t": [f"idle-{i}"]}, None)

    try:
        await asyncio.sleep(0.5)
        before = relay.rss_kib()
        await meter.start("idle")
        clients, errors = await open_many(session, relay.url, plan.idle_conns, setup, plan.idle_cap)
        usage = meter.stop()
        await asyncio.sleep(1.0)
        alive = [c for c in clients if c is not None and not c.reader.done()]
        after = relay.rss_kib()
        reached = len(alive)
        out.figures["idle_kib"] = (after - before) / reached if reached else None
        out.figures["idle_reached"] = reached
        out.notes.append(
            f"idle: {reached:,} of {plan.idle_conns:,} connections subscribed and open; "
            f"relay RSS {before / 1024:.1f} MiB -> {after / 1024:.1f} MiB"
            + (f"; failures: {dict(errors)}" if errors else "")
            + f"; opening them: {usage}"
        )
    finally:
        await close_all(session, clients)
    return out


async def publish_big(relay: RelayProcess, texts: list[str]) -> None:
    """Publish ``texts`` (EVENT messages) before the clock, 32 unanswered at a time."""
    async with new_session() as session:
        client = await connect(session, relay.url)
        try:
            acks, stop, tasks = await publish_pipelined(
                [client], [(str(i), t) for i, t in enumerate(texts)], 32, None
            )
            await asyncio.wait_for(acks.done.wait(), MEASUREMENT_CAP / 2)
            await finish(tasks, stop)
            if acks.accepted < len(texts):
                raise BenchError(f"refused {len(texts) - acks.accepted}: {dict(acks.refusals)}")
        finally:
            await client.ws.close()
            await client.close()


class RssSampler:
    """The relay's RSS (process tree) every 20 ms while running."""

    def __init__(self, relay: RelayProcess) -> None:
        self.relay = relay
        self.peak = relay.rss_kib()
        self.task = asyncio.create_task(self._sample())

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, self.relay.rss_kib())
            await asyncio.sleep(0.02)

    async def stop(self) -> int:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        return max(self.peak, self.relay.rss_kib())


async def bench_heavyreq(relay: RelayProcess, plan: Plan, data: Data, meter: Meter) -> Outcome:
    out = Outcome()
    big = big_events(plan, data)
    await publish_big(relay, big["notes"])
    filters = [
        {"authors": [big["author"]], "kinds": [1], "since": i} for i in range(plan.heavy_filters)
    ]
    session = new_session()
    clients: list[Client | None] = []
    try:
        clients, errors = await open_many(session, relay.url, plan.heavy_clients)
        if errors:
            raise BenchError(f"connections failed: {dict(errors)}")
        received = [0] * len(clients)
        for i, client in enumerate(clients):
            assert client is not None

            def sink(_sub: str, _event: Any, _now: float, i: int = i) -> None:
                received[i] += 1

            client.on_event = sink
        await asyncio.sleep(1.0)
        before = relay.rss_kib()
        sampler = RssSampler(relay)
        await meter.start("heavyreq")
        began = time.perf_counter()

        async def one(client: Client) -> m.RelayMessage:
            key = ("sub", "heavy")
            future: asyncio.Future[m.RelayMessage] = asyncio.get_running_loop().create_future()
            client.waiting[key] = future
            await client.ws.send_str(m.req_message("heavy", filters))
            return await asyncio.wait_for(future, MEASUREMENT_CAP / 2)

        replies = await asyncio.gather(*(one(c) for c in clients if c is not None))
        took = time.perf_counter() - began
        usage = meter.stop()
        peak = await sampler.stop()
        await asyncio.sleep(1.0)
        after = relay.rss_kib()
        refused = [r for r in replies if not isinstance(r, m.RelayEose)]
        if refused or any(n != plan.heavy_events for n in received):
            raise BenchError(f"incomplete answers: {received} events, {refused[:2]}")
        out.figures["heavy_peak"] = (peak - before) / 1024
        out.figures["heavy_growth"] = (after - before) / 1024
        out.figures["heavy_secs"] = took
        out.notes.append(
            f"heavyreq: {plan.heavy_clients} REQs x {plan.heavy_filters} filters x "
            f"{plan.heavy_events} events of {BIG_CONTENT:,} characters answered in {took:.2f} s; "
            f"relay RSS {before / 1024:.1f} MiB, peak {peak / 1024:.1f}, "
            f"after {after / 1024:.1f}; {usage}"
        )
    finally:
        await close_all(session, clients)
    return out


async def bench_backlog(relay: RelayProcess, plan: Plan, data: Data, meter: Meter) -> Outcome:
    out = Outcome()
    big = big_events(plan, data)
    await publish_big(relay, big["wraps"])
    recipient: SecretKey = big["recipient"]
    session = new_session()
    clients: list[Client | None] = []
    try:
        client = await connect(session, relay.url)
        clients.append(client)
        seen: set[str] = set()
        oldest = [int(time.time()) + 60]
        size = [0]

        def sink(_sub: str, event: Any, _now: float) -> None:
            seen.add(event["id"])
            oldest[0] = min(oldest[0], event["created_at"])
            size[0] += len(event["content"]) + 400  # about the JSON's size

        client.on_event = sink
        await asyncio.sleep(0.5)
        await meter.start("backlog")
        began = time.perf_counter()
        pages = 0
        authed = False
        while True:
            had = len(seen)
            filt = {"kinds": [1059], "#p": [recipient.public_key.hex], "until": oldest[0]}
            authed = await client.subscribe(f"page{pages}", filt, recipient) or authed
            pages += 1
            if len(seen) == had or len(seen) >= plan.backlog_wraps:
                break
        took = time.perf_counter() - began
        usage = meter.stop()
        if len(seen) < plan.backlog_wraps:
            raise BenchError(f"caught up {len(seen)} of {plan.backlog_wraps} gift wraps")
        out.figures["backlog_secs"] = took
        out.figures["backlog_rate"] = size[0] / took / 1e6
        out.notes.append(
            f"backlog: {len(seen):,} gift wraps of {BIG_CONTENT:,} characters in {pages} "
            f"page(s) in {took:.2f} s{' after NIP-42 AUTH' if authed else ''}; {usage}"
        )
    finally:
        await close_all(session, clients)
    return out


BENCHES: dict[str, Callable[[RelayProcess, Plan, Data, Meter], Awaitable[Outcome]]] = {
    "ingest": bench_ingest,
    "fanout": bench_fanout,
    "giftwrap": bench_giftwrap,
    "idle": bench_idle,
    "heavyreq": bench_heavyreq,
    "backlog": bench_backlog,
}


async def wait_ready(relay: RelayProcess) -> None:
    """Until a WebSocket connection succeeds (gunicorn logs its port before its worker runs)."""
    deadline = time.monotonic() + 60
    async with new_session() as session:
        while True:
            try:
                client = await connect(session, relay.url)
            except (aiohttp.ClientError, OSError, TimeoutError):
                if time.monotonic() > deadline or relay.process.poll() is not None:
                    raise BenchError(f"{relay.name} does not accept connections") from None
                await asyncio.sleep(0.2)
                continue
            await client.ws.close()
            await client.close()
            return


async def run_one(
    relay_name: str, measurement: str, plan: Plan, data: Data, tmp: Path, spy: Path | None
) -> Outcome:
    relay = STARTERS[relay_name](tmp)
    try:
        await wait_ready(relay)
        meter = Meter(relay, spy)
        return await asyncio.wait_for(
            BENCHES[measurement](relay, plan, data, meter), MEASUREMENT_CAP
        )
    finally:
        relay.stop()


# -- reporting ----------------------------------------------------------------------------

ROWS = (
    # key, label, format, higher is better
    ("ingest", "ingest, events/s (20 conns)", "{:,.0f}", True),
    ("fanout_rate", "fan-out max, deliveries/s", "{:,.0f}", True),
    ("fanout_p50", "fan-out paced, p50 ms", "{:.1f}", False),
    ("fanout_p99", "fan-out paced, p99 ms", "{:.1f}", False),
    ("giftwrap_rate", "gift-wrap max, deliveries/s", "{:,.0f}", True),
    ("giftwrap_p50", "gift-wrap paced, p50 ms", "{:.1f}", False),
    ("giftwrap_p99", "gift-wrap paced, p99 ms", "{:.1f}", False),
    ("giftwrap_mis", "gift-wrap misdeliveries", "{:.0f}", False),
    ("idle_kib", "idle, KiB per connection", "{:.1f}", False),
    ("idle_reached", "idle, connections reached", "{:,.0f}", True),
    ("heavy_peak", "10 heavy REQs, RSS peak +MiB", "{:,.1f}", False),
    ("heavy_growth", "10 heavy REQs, RSS after +MiB", "{:,.1f}", False),
    ("heavy_secs", "10 heavy REQs, seconds", "{:.2f}", False),
    ("backlog_secs", "backlog catch-up, seconds", "{:.2f}", False),
    ("backlog_rate", "backlog catch-up, MB/s", "{:.1f}", True),
)
ROW_MEASUREMENT = {
    "ingest": "ingest",
    "fanout_rate": "fanout",
    "fanout_p50": "fanout",
    "fanout_p99": "fanout",
    "giftwrap_rate": "giftwrap",
    "giftwrap_p50": "giftwrap",
    "giftwrap_p99": "giftwrap",
    "giftwrap_mis": "giftwrap",
    "idle_kib": "idle",
    "idle_reached": "idle",
    "heavy_peak": "heavyreq",
    "heavy_growth": "heavyreq",
    "heavy_secs": "heavyreq",
    "backlog_secs": "backlog",
    "backlog_rate": "backlog",
}


def _cell(value: float | str | None, fmt: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return fmt.format(value)


def _ratio(ours: float | str | None, other: float | str | None) -> str:
    if not isinstance(ours, int | float) or not isinstance(other, int | float) or not other:
        return "-"
    ratio = ours / other
    return f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.4f}x"


def report(
    relays: list[str],
    measurements: list[str],
    results: dict[tuple[str, str], float | str | None],
    plan: Plan,
) -> None:
    width = 31
    print()
    header = f"{'measurement':<{width}}" + "".join(f"{RELAY_TITLES[r]:>13}" for r in relays)
    if "ours" in relays:
        header += "".join(f"{'ours/' + RELAY_TITLES[r]:>19}" for r in relays if r != "ours")
    print(header)
    print("-" * len(header))
    for key, label, fmt, _higher in ROWS:
        if ROW_MEASUREMENT[key] not in measurements:
            continue
        line = f"{label:<{width}}" + "".join(
            f"{_cell(results.get((r, key)), fmt):>13}" for r in relays
        )
        if "ours" in relays:
            line += "".join(
                f"{_ratio(results.get(('ours', key)), results.get((r, key))):>19}"
                for r in relays
                if r != "ours"
            )
        print(line)
    print("-" * len(header))
    print("ratios: ours / other (for ms, KiB and misdeliveries lower is better)")
    if "ours" not in relays:
        return
    print()
    verdicts = []

    def verdict(label: str, passed: bool | None, detail: str) -> None:
        state = "n/a " if passed is None else ("PASS" if passed else "FAIL")
        verdicts.append(f"{state}  {label:<46} {detail}")

    ours = {key: results.get(("ours", key)) for key, *_ in ROWS}
    if "ingest" in measurements:
        rate = ours["ingest"]
        ok = isinstance(rate, float) and rate >= TARGET_INGEST
        verdict(
            f"ingest >= {TARGET_INGEST:,.0f} events/s (SQLite, FULL)",
            ok if isinstance(rate, float) else None,
            _cell(rate, "{:,.0f}"),
        )
        local = results.get(("local", "ingest"))
        if isinstance(rate, float) and isinstance(local, float) and local:
            verdict(
                f"ingest >= {TARGET_INGEST_RATIO:g}x LocalRelay",
                rate / local >= TARGET_INGEST_RATIO,
                f"{rate / local:.2f}x",
            )
        else:
            verdict(f"ingest >= {TARGET_INGEST_RATIO:g}x LocalRelay", None, "not measured")
    if "fanout" in measurements:
        rate = ours["fanout_rate"]
        verdict(
            f"fan-out >= {TARGET_FANOUT:,.0f} deliveries/s",
            (rate >= TARGET_FANOUT) if isinstance(rate, float) else None,
            _cell(rate, "{:,.0f}"),
        )
    if "giftwrap" in measurements:
        mis = ours["giftwrap_mis"]
        verdict(
            "gift-wrap misdeliveries == 0",
            (mis == 0) if isinstance(mis, int | float) else None,
            _cell(mis, "{:.0f}"),
        )
    if "idle" in measurements:
        kib = ours["idle_kib"]
        reached = ours["idle_reached"]
        verdict(
            f"idle <= {TARGET_IDLE_KIB:g} KiB per subscribed connection",
            (kib <= TARGET_IDLE_KIB) if isinstance(kib, float) else None,
            _cell(kib, "{:.1f} KiB")
            + (
                f" (at {reached:,.0f} connections, not {plan.idle_conns:,})"
                if isinstance(reached, int | float) and reached < plan.idle_conns
                else ""
            ),
        )
    print("targets for our relay:")
    for line in verdicts:
        print("  " + line)


def run_all(
    relays: list[str],
    measurements: list[str],
    plan: Plan,
    data: Data,
    spy: Path | None,
    unavailable: dict[str, str],
) -> tuple[dict[tuple[str, str], float | str | None], list[str]]:
    """Each measurement on each relay (ingest ``plan.ingest_runs`` times, interleaved)."""
    results: dict[tuple[str, str], float | str | None] = {}
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="xchat-bench-relay-") as tmp_root:
        for measurement in measurements:
            runs = plan.ingest_runs if measurement == "ingest" else 1
            keys = [k for k, *_ in ROWS if ROW_MEASUREMENT[k] == measurement]
            for run in range(runs):
                for relay_name in relays:
                    title = RELAY_TITLES[relay_name]
                    if relay_name in unavailable or relay_name in NOT_FOR.get(measurement, ()):
                        results.update({(relay_name, key): "n/a" for key in keys})
                        continue
                    which = f" (run {run + 1}/{runs})" if runs > 1 else ""
                    print(f"  {measurement}{which} on {title} ...", file=sys.stderr, flush=True)
                    tmp = Path(tempfile.mkdtemp(dir=tmp_root, prefix=f"{relay_name}-"))
                    began = time.perf_counter()
                    try:
                        outcome = asyncio.run(
                            run_one(relay_name, measurement, plan, data, tmp, spy)
                        )
                    except (BenchError, TimeoutError, OSError) as exc:
                        text = str(exc).strip()
                        reason = text.splitlines()[0] if text else ""
                        notes.append(
                            f"{title}: {measurement}{which} failed: {type(exc).__name__} {reason}"
                        )
                        for key in keys:
                            results.setdefault((relay_name, key), "failed")
                        continue
                    for key in keys:
                        value = outcome.figures.get(key)
                        old = results.get((relay_name, key))
                        if isinstance(old, int | float) and (value is None or old >= value):
                            continue  # best of the runs
                        results[(relay_name, key)] = value
                    notes.extend(f"{title}: {note}{which}" for note in outcome.notes)
                    took = time.perf_counter() - began
                    print(f"    done in {took:.0f} s", file=sys.stderr, flush=True)
    return results, notes


def _selection(only: str | None) -> tuple[list[str], list[str]]:
    if not only:
        return list(RELAYS), list(MEASUREMENTS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in RELAYS and n not in MEASUREMENTS]
    if unknown:
        raise SystemExit(f"--only: unknown {unknown}; choose from {RELAYS + MEASUREMENTS}")
    relays = [r for r in RELAYS if r in names] or list(RELAYS)
    measurements = [x for x in MEASUREMENTS if x in names] or list(MEASUREMENTS)
    return relays, measurements


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="small counts (a smoke test)")
    parser.add_argument(
        "--only", metavar="NAME", help="relays and/or measurements, comma-separated"
    )
    parser.add_argument("--py-spy", metavar="DIR", type=Path, help="py-spy our relay into DIR")
    args = parser.parse_args(argv)
    relays, measurements = _selection(args.only)
    plan = QUICK if args.quick else FULL
    nofile = raise_nofile()
    if args.py_spy is not None:
        args.py_spy.mkdir(parents=True, exist_ok=True)

    print("X Chat relay benchmark: one load generator (this process) against each relay")
    print(f"  Python {platform.python_version()} on {platform.machine()}, {cpu_model()}")
    print(f"  {os.cpu_count()} cores shared by the relay and the load generator")
    print(
        f"  aiohttp {metadata.version('aiohttp')}, nostr-sdk {metadata.version('nostr-sdk')}, "
        f"nostr-relay {NOSTR_RELAY_VERSION} (own venv), RLIMIT_NOFILE {nofile}"
    )
    print(
        "  ours: SQLite WAL + synchronous=FULL; config raises event rate limits/bursts "
        "(per connection and per IP) to 1e9 and max_connections_per_ip to 100,000"
    )
    print(
        "  LocalRelay: in memory, separate process, rate limit raised, auth_dm on; "
        "nostr-relay: default gunicorn/SQLite (synchronous=normal), logging at WARNING"
    )
    if args.quick:
        print("  --quick: small counts, a smoke test; figures are not comparable to a full run")
    sys.stdout.flush()

    started = time.perf_counter()
    data = prepare(plan)
    print(
        f"  signed {len(data.ingest) + len(data.fanout) + len(data.wraps):,} events in "
        f"{time.perf_counter() - started:.1f} s before any measurement",
        flush=True,
    )

    unavailable: dict[str, str] = {}
    if "nostr-relay" in relays:
        try:
            ensure_nostr_relay()
        except BenchError as exc:
            unavailable["nostr-relay"] = str(exc)
    try:
        results, notes = run_all(relays, measurements, plan, data, args.py_spy, unavailable)
    finally:
        stop_all(grace=2.0)

    print()
    for note in notes:
        print("  " + note)
    for name, reason in unavailable.items():
        print(f"  {RELAY_TITLES[name]}: unavailable: {reason}")
    report(relays, measurements, results, plan)
    print(f"\nwhole run: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
