"""End-to-end delivery between two X Chat nodes, against a rust-nostr NIP-17 client pair.

Run from the repository root::

    .venv/bin/python bench/delivery.py [--quick] [--relays 1,3] [--py-spy DIR]

``--quick`` shortens every phase (a smoke test, not a measurement); ``--relays`` picks
the topologies (default ``1,3``); ``--py-spy DIR`` records the two nodes (or the two
nostr-sdk clients) with py-spy (raw collapsed stacks, ``--idle --threads --nonblocking``,
250 Hz) during every phase at 1,000 messages/s or more (py-spy's own CPU then counts
under ``others``). A full run takes about 4 minutes, longer if it has to wait for a busy
machine to quieten (see below); ``--quick`` about 80 s. The nodes and relays run the
``xchat`` this process imports (they inherit ``PYTHONPATH``); its path and commit are
printed.

**The systems**, all on 127.0.0.1, sharing this machine's cores with each other, with
the relays and with this process:

* **X Chat**: two nodes (``python -m xchat --home DIR up --no-browser --port 0 --relay
  URL ...``, each a process of its own, homes created here with a cheap Argon2id
  setting), which add each other as contacts (so the receiver sends delivery receipts,
  as in real use). Alice sends, Bob receives. This process sends with an aiohttp
  client (keep-alive, bearer token, at most 100 connections) ``POST
  /api/conversations/{bob}/messages {"text"}`` (answered once the message is durable
  in Alice's store) and reads Bob's ``/api/stream`` WebSocket; a message has arrived
  when Bob's stream pushes ``{"type":"message"}`` for it (not outgoing), i.e. once Bob
  has decrypted it and committed it to his store. Before any measurement 20 messages
  go through, so the Olm sessions are in their steady state (normal messages).
* **Anchor**: two ``nostr_sdk`` 0.45.1 clients (``bench/_nostr_peer.py``, each a process
  of its own, as the nodes are): the sender builds each message with
  ``nip17_make_private_msg`` (NIP-17: rumor, seal, gift wrap) and ``send_event``-s it to
  every relay; the receiver, subscribed to its gift wraps (authenticated with NIP-42),
  unwraps each ``NEW_EVENT`` notification and takes the time after the unwrap. It keeps
  nothing on disk and sends no receipts.
* **Relays**: ``xchat relay`` processes (SQLite, WAL, ``synchronous=FULL``; the rate
  limits and per-IP connection cap raised out of the way, since every connection comes
  from 127.0.0.1: the defaults, 50 events/s per connection, would throttle a single
  sender above 50 messages/s). One topology uses one relay, the other three; both
  systems use the same relays, started afresh for each topology. Both senders publish
  to every relay of the receiver (X Chat counts a message sent once two relays
  accepted it) and both receivers read from all of them and drop duplicates.

**Measured**: message k of a phase at rate R is due at ``start + k/R`` (open loop: no
send waits for another); its latency is its arrival at the receiver minus its due time
(so a late send counts against the system, not for it), all times ``time.monotonic()``
(CLOCK_MONOTONIC, one clock for every process on Linux). Each message's text carries
its phase tag and sequence number (about 120 characters in all). Fixed rates: 10/s for
10 s, 100/s for 10 s, 1,000/s for 5 s, each system in turn on the same relays; p50, p99
and max latency, and the messages lost (not arrived 15 s after the phase's last send)
and duplicated. The sustained rate is a ramp, 4 s a step (250, 500, 750, 1,000, 1,500,
2,000, 3,000, 4,000 messages/s), on a fresh pair of each system, stopped at the first
step that did not keep up: a message lost, duplicated or refused, p99 over 1 s, sends
issued more than 100 ms behind schedule, or a receiver falling behind (the median
latency of the step's last fifth of messages more than three times that of its first
fifth, and over 100 ms). Between phases each system is let settle (the nodes' outboxes
empty) and, since this machine is shared, each phase waits up to 20 s for the rest of
the machine to use under a quarter of a core. At the end of each pair's phases the
bench waits up to 60 s for stragglers and reports any message that never arrived or
arrived twice. CPU is printed for every phase, in % of one core: each process tree,
this process, ``others`` (everything else the machine ran meanwhile) and ``steal``
(time the hypervisor took).

Targets (this machine): p99 under 50 ms at 100 messages/s through three relays; at
least 1,000 messages/s sustained between the pair, with nothing lost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from _nodes import (
    STARTED,
    BenchError,
    NodeProcess,
    Spawned,
    call,
    cpu_model,
    cpu_seconds,
    load,
    source,
    start_node,
    start_relay,
    stop_all,
)
from xchat.crypto.keys import SecretKey

BENCH_DIR = Path(__file__).resolve().parent
FILLER = (
    "Are we still on for lunch tomorrow? I can be at the usual place by 12:30, "
    "or a bit later if that works better for you."
)
TARGET_P99_MS = 50.0  # at 100 messages/s through three relays
TARGET_RATE = 1000.0  # sustained between one pair
KEPT_UP_P99 = 1.0  # seconds
KEPT_UP_LAG = 0.1  # seconds a send may start behind its schedule
SETTLE_CAP = 60.0
QUIET_CPU = 25.0  # % of one core: the rest of the machine counts as quiet below this
QUIET_CAP = 20.0  # seconds to wait for it before a phase, at most
HTTP_CONNECTIONS = 100


@dataclass(frozen=True)
class Plan:
    fixed: tuple[tuple[float, float], ...] = ((10, 10.0), (100, 10.0), (1000, 5.0))
    ramp: tuple[float, ...] = (250, 500, 750, 1000, 1500, 2000, 3000, 4000)
    ramp_seconds: float = 4.0
    grace: float = 15.0
    warmup: int = 20


FULL = Plan()
QUICK = Plan(
    fixed=((10, 2.0), (100, 2.0), (1000, 1.0)),
    ramp=(250, 500, 1000, 2000),
    ramp_seconds=1.5,
    grace=10.0,
    warmup=10,
)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))]


def median(values: list[float]) -> float:
    return percentile(values, 0.5) or 0.0


# -- what arrived ---------------------------------------------------------------------


class Arrivals:
    """Arrival times by phase tag and sequence number, at one receiver."""

    def __init__(self) -> None:
        self.times: dict[str, dict[int, float]] = {}
        self.expected: dict[str, int] = {}
        self.complete: dict[str, asyncio.Event] = {}
        self.duplicates: Counter[str] = Counter()
        self.stray = 0  # arrivals of a phase not (or no longer) expected

    def expect(self, tag: str, count: int) -> None:
        self.times[tag] = {}
        self.expected[tag] = count
        self.complete[tag] = asyncio.Event()

    def record(self, tag: str, seq: int, now: float) -> None:
        got = self.times.get(tag)
        if got is None or not 0 <= seq < self.expected[tag]:
            self.stray += 1
            return
        if seq in got:
            self.duplicates[tag] += 1
            return
        got[seq] = now
        if len(got) == self.expected[tag]:
            self.complete[tag].set()

    def missing(self) -> dict[str, int]:
        """Messages not (yet) arrived, by phase tag."""
        return {
            tag: self.expected[tag] - len(got)
            for tag, got in self.times.items()
            if len(got) < self.expected[tag]
        }

    async def eventually(self, cap: float) -> dict[str, int]:
        """Wait up to ``cap`` seconds for every phase to be complete; what is still missing."""
        deadline = time.monotonic() + cap
        for event in self.complete.values():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), max(0.0, deadline - time.monotonic()))
        return self.missing()

    def record_text(self, body: str, now: float) -> None:
        if not body.startswith("#"):
            return
        label = body[1:].split(" ", 1)[0]
        tag, _, seq = label.partition(":")
        if seq.isdigit():
            self.record(tag, int(seq), now)


# -- one phase's outcome ----------------------------------------------------------------


@dataclass
class Phase:
    system: str
    relays: int
    rate: float
    seconds: float
    sent: int
    received: int = 0
    lost: int = 0
    duplicates: int = 0
    refused: int = 0  # HTTP errors (X Chat); sends a relay did not accept (anchor)
    p50: float | None = None
    p99: float | None = None
    max: float | None = None
    ack_p50: float | None = None  # X Chat: HTTP 201; anchor: every relay's OK
    ack_p99: float | None = None
    max_lag: float = 0.0
    falling_behind: bool = False
    cpu: dict[str, float] = field(default_factory=dict)
    drain: float = 0.0  # last arrival - last due time

    def kept_up(self) -> bool:
        return (
            self.lost == 0
            and self.duplicates == 0
            and self.refused == 0
            and self.p99 is not None
            and self.p99 <= KEPT_UP_P99
            and self.max_lag <= KEPT_UP_LAG
            and not self.falling_behind
        )

    def why_not(self) -> str:
        reasons = []
        if self.lost:
            reasons.append(f"{self.lost} lost")
        if self.duplicates:
            reasons.append(f"{self.duplicates} duplicated")
        if self.refused:
            reasons.append(f"{self.refused} refused")
        if self.p99 is None or self.p99 > KEPT_UP_P99:
            reasons.append(f"p99 {_ms(self.p99)} ms")
        if self.max_lag > KEPT_UP_LAG:
            reasons.append(f"sends {self.max_lag * 1000:.0f} ms behind schedule")
        if self.falling_behind:
            reasons.append("receiver falling behind")
        return ", ".join(reasons) or "kept up"

    def line(self) -> str:
        cpu = ", ".join(f"{k} {v:.0f}%" for k, v in self.cpu.items())
        return (
            f"{self.system:6} {self.relays} relay(s) {self.rate:>6,.0f}/s x {self.seconds:g} s: "
            f"{self.received:,}/{self.sent:,} arrived, lost {self.lost}, dup {self.duplicates}, "
            f"refused {self.refused}; latency p50 {_ms(self.p50)} p99 {_ms(self.p99)} "
            f"max {_ms(self.max)} ms; send answered p50 {_ms(self.ack_p50)} p99 "
            f"{_ms(self.ack_p99)} ms; lag {self.max_lag * 1000:.0f} ms; drain "
            f"{self.drain * 1000:.0f} ms; cpu: {cpu}"
        )


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    value = seconds * 1000
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def summarize(phase: Phase, arrivals: Arrivals, tag: str, start: float, acks: list[float]) -> None:
    """Fill ``phase`` from what arrived (latency from each message's due time)."""
    got = arrivals.times.get(tag, {})
    rate = phase.rate
    latencies = [(seq, t - (start + seq / rate)) for seq, t in got.items()]
    latencies.sort()
    values = [lat for _, lat in latencies]
    phase.received = len(got)
    phase.lost = phase.sent - len(got)
    phase.duplicates = arrivals.duplicates[tag]
    phase.p50 = percentile(values, 0.5)
    phase.p99 = percentile(values, 0.99)
    phase.max = max(values) if values else None
    phase.ack_p50 = percentile(acks, 0.5)
    phase.ack_p99 = percentile(acks, 0.99)
    if got:
        phase.drain = max(got.values()) - (start + (phase.sent - 1) / rate)
    fifth = max(1, len(values) // 5)
    if len(values) >= 10:
        first, last = median(values[:fifth]), median(values[-fifth:])
        phase.falling_behind = last > 3 * first and last > 0.1


# -- CPU over a phase -------------------------------------------------------------------


def machine_ticks() -> tuple[float, float]:
    """CPU seconds this machine spent busy (all cores) and stolen by the hypervisor."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


class Meter:
    """CPU of the given processes (their trees), of this one and of everything else on
    the machine (``others``: other users' processes, e.g. a test suite running
    meanwhile), over a phase, in % of one core; ``steal``: time the hypervisor took."""

    def __init__(self, pids: dict[str, list[int]]) -> None:
        self.pids = pids

    def _now(self) -> dict[str, float]:
        out = {name: sum(cpu_seconds(p) for p in pids) for name, pids in self.pids.items()}
        out["bench"] = time.process_time()
        out["machine"], out["steal"] = machine_ticks()
        return out

    def start(self) -> None:
        gc.collect()
        gc.freeze()
        gc.disable()  # no collection pauses this process's clocks during a phase
        self.wall = time.monotonic()
        self.before = self._now()

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self.wall
        after = self._now()
        gc.enable()
        gc.unfreeze()
        used = {k: (after[k] - self.before[k]) / wall * 100 for k in after}
        machine = used.pop("machine")
        steal = used.pop("steal")
        used["others"] = max(0.0, machine - sum(used.values()))
        used["steal"] = steal
        return used


async def wait_quiet(pids: dict[str, list[int]]) -> float:
    """Wait (up to QUIET_CAP s) until the rest of the machine (other users' processes:
    this machine is shared, e.g. with test suites) uses under QUIET_CPU % of a core over
    half a second. Returns the seconds waited."""
    began = time.monotonic()
    while True:
        meter = Meter(pids)
        meter.start()
        await asyncio.sleep(0.5)
        others = meter.stop()["others"]
        waited = time.monotonic() - began
        if others < QUIET_CPU or waited >= QUIET_CAP:
            return waited


class Spy:
    """py-spy on some processes while a phase runs (``--py-spy``)."""

    def __init__(self, out_dir: Path | None) -> None:
        self.out_dir = out_dir
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, label: str, pids: dict[str, int]) -> None:
        if self.out_dir is None:
            return
        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        for name, pid in pids.items():
            out = self.out_dir / f"{label}-{name}.txt"
            args = [exe, "record", "--pid", str(pid), "--format", "raw", "--rate", "250"]
            args += ["--idle", "--threads", "--nonblocking", "-o", str(out)]
            with open(self.out_dir / f"{label}-{name}.log", "wb") as log:
                spy = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
            STARTED.append(spy)
            self.running.append(spy)
        time.sleep(0.5)

    def stop(self) -> None:
        for spy in self.running:
            spy.send_signal(signal.SIGINT)
        for spy in self.running:
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
        self.running.clear()


# -- the X Chat pair --------------------------------------------------------------------


class XChatPair:
    name = "X Chat"

    def __init__(self, tmp: Path, relays: list[str], plan: Plan, prefix: str) -> None:
        self.tmp = tmp
        self.prefix = prefix
        self.closed = False
        self.relays = relays
        self.plan = plan
        self.arrivals = Arrivals()
        self.tags = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.alice, self.bob = await asyncio.gather(
            loop.run_in_executor(None, start_node, self.tmp, f"{self.prefix}alice", self.relays),
            loop.run_in_executor(None, start_node, self.tmp, f"{self.prefix}bob", self.relays),
        )
        connector = aiohttp.TCPConnector(limit=HTTP_CONNECTIONS, force_close=False)
        timeout = aiohttp.ClientTimeout(total=120)
        self.session = aiohttp.ClientSession(connector=connector, timeout=timeout)
        self.ws = await self.session.ws_connect(self.bob.stream_url(), max_msg_size=0)
        self.reader = asyncio.create_task(self._read())
        alice_id = await call(self.session, self.alice, "GET", "/api/identity")
        bob_id = await call(self.session, self.bob, "GET", "/api/identity")
        await call(
            self.session, self.alice, "POST", "/api/contacts", {"address": bob_id["nprofile"]}
        )
        await call(
            self.session, self.bob, "POST", "/api/contacts", {"address": alice_id["nprofile"]}
        )
        self.path = f"/api/conversations/{self.bob.pubkey}/messages"
        self.url = self.alice.url + self.path
        self.headers = {**self.alice.headers(), "Content-Type": "application/json"}
        warm = await self.run(self.plan.warmup / 2, self.plan.warmup, "warm")
        if warm.lost or warm.refused:
            raise BenchError(f"X Chat warm-up failed: {warm.line()}")
        await self.settle()

    def pids(self) -> dict[str, list[int]]:
        return {"alice": [self.alice.pid], "bob": [self.bob.pid]}

    async def _read(self) -> None:
        loads = orjson.loads
        monotonic = time.monotonic
        async for msg in self.ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            now = monotonic()
            data = loads(msg.data)
            if data.get("type") != "message":
                continue
            message = data["message"]
            if not message["outgoing"]:
                self.arrivals.record_text(message["body"], now)

    async def _post(self, body: bytes, due: float, acks: list[float], errors: Counter[str]) -> None:
        try:
            async with self.session.post(self.url, data=body, headers=self.headers) as response:
                await response.read()
                if response.status == 201:
                    acks.append(time.monotonic() - due)
                else:
                    errors[f"HTTP {response.status}"] += 1
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            errors[type(exc).__name__] += 1

    async def run(self, rate: float, count: int, label: str | None = None) -> Phase:
        self.tags += 1
        tag = label or f"x{self.tags}"
        arrivals = self.arrivals
        arrivals.expect(tag, count)
        acks: list[float] = []
        errors: Counter[str] = Counter()
        phase = Phase(self.name, len(self.relays), rate, count / rate, count)
        bodies = [orjson.dumps({"text": f"#{tag}:{k} {FILLER}"}) for k in range(count)]
        start = time.monotonic() + 0.05
        tasks = []
        max_lag = 0.0
        for k in range(count):
            due = start + k / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            max_lag = max(max_lag, time.monotonic() - due)
            tasks.append(asyncio.create_task(self._post(bodies[k], due, acks, errors)))
        await asyncio.gather(*tasks)
        last_due = start + (count - 1) / rate
        with contextlib.suppress(TimeoutError):
            remaining = last_due + self.plan.grace - time.monotonic()
            await asyncio.wait_for(arrivals.complete[tag].wait(), max(0.0, remaining))
        phase.max_lag = max_lag
        phase.refused = sum(errors.values())
        summarize(phase, arrivals, tag, start, acks)
        if errors:
            print(f"    X Chat send errors: {dict(errors)}", flush=True)
        return phase

    def pids_flat(self) -> dict[str, int]:
        return {"alice": self.alice.pid, "bob": self.bob.pid}

    async def status(self, node: NodeProcess) -> dict[str, Any]:
        return dict(await call(self.session, node, "GET", "/api/status"))

    async def settle(self) -> None:
        """Until both outboxes are empty (Alice's messages, Bob's receipts), then 0.5 s."""
        deadline = time.monotonic() + SETTLE_CAP
        while time.monotonic() < deadline:
            a, b = await asyncio.gather(self.status(self.alice), self.status(self.bob))
            if a["outbox_pending"] == 0 and b["outbox_pending"] == 0:
                break
            await asyncio.sleep(0.2)
        else:
            print("    X Chat: outboxes still not empty after settling", flush=True)
        await asyncio.sleep(0.5)

    async def counters(self) -> str:
        a, b = await asyncio.gather(self.status(self.alice), self.status(self.bob))
        keys = ("sent", "failed", "received", "rejected", "duplicates", "outbox_pending")
        return (
            "alice "
            + " ".join(f"{k}={a[k]}" for k in keys)
            + "; bob "
            + " ".join(f"{k}={b[k]}" for k in keys)
        )

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.reader
        await self.ws.close()
        await self.session.close()
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            loop.run_in_executor(None, self.alice.stop),
            loop.run_in_executor(None, self.bob.stop),
        )


# -- the anchor pair ----------------------------------------------------------------------


class AnchorPair:
    name = "anchor"

    def __init__(self, tmp: Path, relays: list[str], plan: Plan, prefix: str) -> None:
        self.tmp = tmp
        self.prefix = prefix
        self.relays = relays
        self.plan = plan
        self.arrivals = Arrivals()
        self.tags = 0
        self.closed = False
        self.processes: list[asyncio.subprocess.Process] = []

    async def _spawn(self, role: str, secret: str, peer: str) -> asyncio.subprocess.Process:
        args = [sys.executable, str(BENCH_DIR / "_nostr_peer.py"), role, "--secret", secret]
        args += ["--peer", peer]
        for url in self.relays:
            args += ["--relay", url]
        log = open(self.tmp / f"{self.prefix}nostr-{role}.log", "wb")  # noqa: SIM115 - child's stderr
        process = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            start_new_session=True,
            limit=1 << 20,
        )
        log.close()
        self.processes.append(process)
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        if line.strip() != b"ready":
            raise BenchError(f"nostr-sdk {role} did not start: {line[:200]!r}")
        return process

    async def start(self) -> None:
        alice, bob = SecretKey.generate(os.urandom), SecretKey.generate(os.urandom)
        self.receiver = await self._spawn("receive", bob.to_bytes().hex(), "")
        self.sender = await self._spawn("send", alice.to_bytes().hex(), bob.public_key.hex)
        self.reader = asyncio.create_task(self._read())
        await asyncio.sleep(0.5)  # the receiver's subscriptions (NIP-42, then REQ again)
        warm = await self.run(self.plan.warmup / 2, self.plan.warmup, "warm")
        if warm.lost or warm.refused:
            raise BenchError(f"anchor warm-up failed: {warm.line()}")

    def pids(self) -> dict[str, list[int]]:
        return {"nostr-send": [self.sender.pid], "nostr-recv": [self.receiver.pid]}

    def pids_flat(self) -> dict[str, int]:
        return {"send": self.sender.pid, "recv": self.receiver.pid}

    async def _read(self) -> None:
        assert self.receiver.stdout is not None
        record = self.arrivals.record
        while line := await self.receiver.stdout.readline():
            parts = line.split()
            if len(parts) == 4 and parts[0] == b"r" and parts[2].isdigit():
                record(parts[1].decode(), int(parts[2]), float(parts[3]))

    async def run(self, rate: float, count: int, label: str | None = None) -> Phase:
        self.tags += 1
        tag = label or f"n{self.tags}"
        self.arrivals.expect(tag, count)
        phase = Phase(self.name, len(self.relays), rate, count / rate, count)
        start = time.monotonic() + 0.2
        command = {"tag": tag, "rate": rate, "count": count, "start": start}
        assert self.sender.stdin is not None
        assert self.sender.stdout is not None
        self.sender.stdin.write(orjson.dumps(command) + b"\n")
        await self.sender.stdin.drain()
        last_due = start + (count - 1) / rate
        timeout = last_due + self.plan.grace + 30 - time.monotonic()
        line = await asyncio.wait_for(self.sender.stdout.readline(), timeout)
        if not line:
            raise BenchError("the nostr-sdk sender exited")
        report = orjson.loads(line)
        with contextlib.suppress(TimeoutError):
            remaining = last_due + self.plan.grace - time.monotonic()
            await asyncio.wait_for(self.arrivals.complete[tag].wait(), max(0.0, remaining))
        phase.max_lag = float(report["max_lag"])
        phase.refused = int(report["failed"])
        summarize(phase, self.arrivals, tag, start, [])
        phase.ack_p50, phase.ack_p99 = report["ack_p50"], report["ack_p99"]
        return phase

    async def settle(self) -> None:
        await asyncio.sleep(0.5)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.reader


# -- a topology -------------------------------------------------------------------------


@dataclass
class Topology:
    relays: int
    fixed: list[Phase] = field(default_factory=list)
    ramps: dict[str, list[Phase]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    clean: bool = True  # every message arrived exactly once in the end

    def sustained(self, system: str) -> float | None:
        best = None
        for phase in self.ramps.get(system, []):
            if not phase.kept_up():
                break
            best = phase.rate
        return best

    def phase(self, system: str, rate: float) -> Phase | None:
        for phase in self.fixed:
            if phase.system == system and phase.rate == rate:
                return phase
        return None


async def run_topology(n: int, plan: Plan, tmp: Path, spy: Spy) -> Topology:
    """Fresh relays; the fixed rates for both systems in turn; then each one's ramp.

    Each ramp runs on a fresh pair (new homes; new keys and client processes): a node's
    outbox query grows with every message it has ever sent (docs/benchmarks.md), and
    the fixed phases' history should weigh on neither system's ramp.
    """
    out = Topology(n)
    loop = asyncio.get_running_loop()
    started = await asyncio.gather(
        *(loop.run_in_executor(None, start_relay, tmp, f"relay{i + 1}") for i in range(n))
    )
    relay_procs: list[Spawned] = [r for r, _ in started]
    urls = [url for _, url in started]
    relay_pids = [r.pid for r in relay_procs]
    print(f"  {n} relay(s): {' '.join(urls)}", flush=True)
    systems: list[XChatPair | AnchorPair] = []

    async def one(system: XChatPair | AnchorPair, rate: float, seconds: float) -> Phase:
        kind = "xchat" if isinstance(system, XChatPair) else "nostr"
        label = f"{kind}-{n}r-{rate:.0f}-{system.prefix}{system.tags + 1}"
        if rate >= 1000:
            spy.start(label, system.pids_flat())
        pids = {**system.pids(), "relays": relay_pids}
        waited = await wait_quiet(pids)
        if waited >= 1.0:
            print(f"    (waited {waited:.0f} s for the rest of the machine to quieten)")
        meter = Meter(pids)
        meter.start()
        phase = await system.run(rate, max(1, int(rate * seconds)))
        phase.cpu = meter.stop()
        spy.stop()
        print("    " + phase.line(), flush=True)
        await system.settle()
        return phase

    async def ramp(system: XChatPair | AnchorPair) -> None:
        steps: list[Phase] = []
        out.ramps[system.name] = steps
        for rate in plan.ramp:
            phase = await one(system, rate, plan.ramp_seconds)
            steps.append(phase)
            if not phase.kept_up():
                print(f"    {system.name}: {rate:,.0f}/s not kept up: {phase.why_not()}")
                break

    async def check(system: XChatPair | AnchorPair, what: str) -> None:
        """Every message of every phase, arrived in the end? (a slow phase's tail may
        arrive after its grace period: late, not lost)."""
        missing = await system.arrivals.eventually(SETTLE_CAP)
        sent = sum(system.arrivals.expected.values())
        dups = sum(system.arrivals.duplicates.values())
        if missing or dups:
            out.notes.append(
                f"{what}: of {sent:,} messages, never arrived: {sum(missing.values())} "
                f"{missing}; duplicated: {dups}"
            )
            if isinstance(system, XChatPair):
                out.clean = False
        else:
            out.notes.append(f"{what}: all {sent:,} messages arrived exactly once in the end")
        if isinstance(system, XChatPair):
            out.notes.append(f"{what}: node counters: {await system.counters()}")
        await system.close()

    try:
        xchat = XChatPair(tmp, urls, plan, "fixed-")
        anchor = AnchorPair(tmp, urls, plan, "fixed-")
        systems += [xchat, anchor]
        await xchat.start()
        await anchor.start()
        for rate, seconds in plan.fixed:
            for system in (xchat, anchor):
                out.fixed.append(await one(system, rate, seconds))
        await check(xchat, "X Chat, fixed rates")
        await check(anchor, "anchor, fixed rates")
        xchat = XChatPair(tmp, urls, plan, "ramp-")
        systems.append(xchat)
        await xchat.start()
        await ramp(xchat)
        await check(xchat, "X Chat, ramp")
        anchor = AnchorPair(tmp, urls, plan, "ramp-")
        systems.append(anchor)
        await anchor.start()
        await ramp(anchor)
        await check(anchor, "anchor, ramp")
    finally:
        for system in systems:
            with contextlib.suppress(Exception):
                await system.close()
        for relay in relay_procs:
            await loop.run_in_executor(None, relay.stop)
    return out


# -- the report ---------------------------------------------------------------------------


def _lat(phase: Phase | None) -> str:
    if phase is None:
        return "-"
    return f"{_ms(phase.p50)} / {_ms(phase.p99)} / {_ms(phase.max)}"


def _loss(phase: Phase | None) -> str:
    if phase is None:
        return "-"
    return f"{phase.lost}/{phase.duplicates}"


def report(tops: list[Topology], plan: Plan) -> bool:
    print()
    print("Latency from the send call to the decrypted message at the peer, ms (p50 / p99 / max)")
    print("lost/dup: messages not arrived within the grace period / arrived twice")
    print()
    header = "| relays | rate/s | X Chat | lost/dup | anchor | lost/dup | p99 anchor/X Chat |"
    print(header)
    print("|---|---:|---:|---:|---:|---:|---:|")
    for top in tops:
        for rate, _ in plan.fixed:
            ours, theirs = top.phase("X Chat", rate), top.phase("anchor", rate)
            ratio = "-"
            if ours and theirs and ours.p99 and theirs.p99:
                ratio = f"{theirs.p99 / ours.p99:.2f}x"
            print(
                f"| {top.relays} | {rate:,.0f} | {_lat(ours)} | {_loss(ours)} | "
                f"{_lat(theirs)} | {_loss(theirs)} | {ratio} |"
            )
    print()
    print(
        "| relays | highest rate kept up, X Chat | anchor | X Chat / anchor | X Chat stopped at |"
    )
    print("|---|---:|---:|---:|---|")
    for top in tops:
        best, best_anchor = top.sustained("X Chat"), top.sustained("anchor")
        ratio = f"{best / best_anchor:.2f}x" if best and best_anchor else "-"
        steps = top.ramps.get("X Chat", [])
        stop = next((p for p in steps if not p.kept_up()), None)
        why = f"{stop.rate:,.0f}/s: {stop.why_not()}" if stop else "never (end of ramp)"
        print(f"| {top.relays} | {_rate(best)} | {_rate(best_anchor)} | {ratio} | {why} |")
    print()
    ok = True
    lost = [
        p for top in tops for p in top.fixed if p.system == "X Chat" and (p.lost or p.duplicates)
    ]
    by_relays = {top.relays: top for top in tops}
    three = by_relays.get(3)
    if three is not None:
        phase = three.phase("X Chat", 100)
        p99 = None if phase is None or phase.p99 is None else phase.p99 * 1000
        met = p99 is not None and p99 < TARGET_P99_MS and phase is not None and phase.lost == 0
        ok &= met
        shown = "-" if p99 is None else f"{p99:.1f} ms"
        print(f"target p99 < {TARGET_P99_MS:g} ms at 100/s via three relays: {shown}: ", end="")
        print("PASS" if met else "FAIL")
    for top in tops:
        sustained = top.sustained("X Chat")
        met = sustained is not None and sustained >= TARGET_RATE
        ok &= met
        print(
            f"target >= {TARGET_RATE:,.0f}/s sustained, {top.relays} relay(s): "
            f"{_rate(sustained)}: " + ("PASS" if met else "FAIL")
        )
    clean = all(top.clean for top in tops)
    print(
        "no X Chat message lost or duplicated (fixed rates: within the grace period; "
        "every phase: in the end): "
        + ("PASS" if not lost and clean else f"FAIL ({len(lost)} fixed phases)")
    )
    ok &= not lost and clean
    for top in tops:
        for note in top.notes:
            print(f"  {top.relays} relay(s): {note}")
    return ok


def _rate(rate: float | None) -> str:
    return "none" if rate is None else f"{rate:,.0f}/s"


async def amain(args: argparse.Namespace, plan: Plan) -> list[Topology]:
    spy = Spy(args.py_spy)
    tops = []
    with tempfile.TemporaryDirectory(prefix="xchat-delivery-") as root:
        for n in args.relays:
            tmp = Path(root) / f"r{n}"
            tmp.mkdir()
            print(f"{n} relay(s) ...", flush=True)
            tops.append(await run_topology(n, plan, tmp, spy))
    return tops


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="short phases (a smoke test)")
    parser.add_argument(
        "--relays",
        default="1,3",
        type=lambda s: [int(x) for x in s.split(",") if x.strip()],
        help="topologies: numbers of relays, comma-separated (default 1,3)",
    )
    parser.add_argument("--py-spy", metavar="DIR", type=Path, help="py-spy the nodes into DIR")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.py_spy is not None:
        args.py_spy.mkdir(parents=True, exist_ok=True)
    print("X Chat delivery benchmark: two nodes, and a rust-nostr NIP-17 client pair, via relays")
    print(f"  Python {platform.python_version()} on {platform.machine()}, {cpu_model()}")
    print(
        f"  {os.cpu_count()} cores shared by the two nodes (or the two nostr-sdk clients), "
        "the relays and this process"
    )
    print(
        f"  aiohttp {metadata.version('aiohttp')}, nostr-sdk {metadata.version('nostr-sdk')}; "
        "relays: xchat relay, SQLite, rate limits raised"
    )
    if args.quick:
        print("  --quick: short phases, a smoke test; figures are not comparable to a full run")
    sys.stdout.flush()
    print(f"  xchat from {source()}")
    print(f"  load average before the run: {load()}", flush=True)
    began = time.monotonic()
    ok = False
    try:
        tops = asyncio.run(amain(args, plan))
        ok = report(tops, plan)
    finally:
        stop_all(2.0)
    print(f"\nwhole run: {time.monotonic() - began:.0f} s; load average after: {load()}")
    print(f"overall: {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
