"""A fault-injecting relay for tests: a WebSocket proxy in front of a real relay.

Run it as its own process (so that node processes can use it too)::

    python -m tests.node.faulty_relay --upstream ws://127.0.0.1:PORT \\
        [--drop 0.2] [--dup 0.2] [--reorder 0.3] [--hold 3] [--hold-seconds 1.0] \\
        [--drop-publish 0.1] [--refuse-auth] [--no-auth] [--challenge-on-refusal] \\
        [--one-key] [--auth-to-publish] [--latency-ms 0] [--seed N] \\
        [--page-limit N] [--shuffle-stored] [--drop-page-bytes N] \\
        [--host 127.0.0.1] [--port 0]

The first line on stdout is ``faulty relay listening on ws://HOST:PORT``. It serves
until SIGTERM or SIGINT. ``GET /stats`` returns its counters as JSON (among them
``events_from_authenticated``: EVENTs sent on a connection that had sent an AUTH).
``GET /connections`` returns what each client connection carried, as a relay sees it:
a list (in order of connection) of ``{"number", "open", "events": [[kind, pubkey],
…], "auths": [pubkey, …], "req_authors": [pubkey, …]}``: the kind and author of every
EVENT the client sent, the keys it authenticated as, and the ``authors`` of its REQs.

Per client connection it opens one upstream connection and forwards every message both
ways, except:

* relay -> client ``EVENT`` messages on *live* subscriptions (after the subscription's
  ``EOSE``; stored events and everything else pass untouched) are each, with a
  ``random.Random`` seeded from ``--seed`` and the connection's number, **dropped**
  (``--drop``), else **duplicated** (``--dup``: sent twice in a row), else **held back**
  (``--reorder``) and sent after the next 1 to ``--hold`` messages to that client, or
  after ``--hold-seconds`` if no message comes. Three draws per live event (and one more
  for a held one), so a seed and the same sequence of messages give the same faults.
* client -> relay ``EVENT`` messages are dropped with ``--drop-publish``, unanswered:
  the client waits for an ``OK`` that never comes.
* ``--refuse-auth`` answers every client ``AUTH`` itself with ``OK false``
  (``restricted: ...``) and forwards none; ``--no-auth`` swallows the relay's ``AUTH``
  challenges, so the relay seems not to speak NIP-42; ``--challenge-on-refusal`` holds
  the relay's challenge back until the relay refuses something with ``auth-required``,
  and sends it right after the refusal (as relays that challenge only on demand do);
  ``--one-key`` forwards only the first ``AUTH`` of a connection and answers the others
  ``OK false`` (as rust-nostr's relays, which authenticate one key per connection).
* ``--auth-to-publish`` answers an ``EVENT`` itself with ``OK false``
  (``auth-required: ...``) on a connection that has sent no ``AUTH`` yet.
* ``--latency-ms`` delays every message, both ways, by that much (order kept).
* ``--page-limit N`` lowers every filter's ``limit`` in a client ``REQ`` to at most N
  (a relay with small pages); ``--shuffle-stored`` sends the stored events of each
  ``REQ`` (those before its ``EOSE``) in a random order instead of the relay's;
  ``--drop-page-bytes N`` closes the client's connection once the stored events of one
  ``REQ`` pass N bytes (what ``xchat relay`` did once 8 MiB waited to be sent), counted
  in ``page_drops``.

If the upstream relay cannot be reached, the client's WebSocket is accepted and then
closed (1011): a relay that is up but broken.

NIP-42 through the proxy. A client signs its AUTH for the URL it connected to, the
proxy's, and the relay behind accepts only AUTH events naming its own public URL(s)
(docs/threat-model.md): so, as with any reverse proxy, the relay must be started with
the proxy's URL as a ``public_url``. The proxy's port is reserved before the relay
starts (:func:`reserve_port`) and handed to the proxy (``--port``); tests/node/conftest.py
does this for every relay it starts.

From tests, :func:`start_faulty_relay` starts one and returns a :class:`FaultyRelay`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

from tests.processes import stop_process

__all__ = ["Faults", "FaultyRelay", "reserve_port", "start_faulty_relay"]


@dataclass(frozen=True)
class Faults:
    drop: float = 0.0
    dup: float = 0.0
    reorder: float = 0.0
    hold: int = 3
    hold_seconds: float = 1.0
    drop_publish: float = 0.0
    refuse_auth: bool = False
    no_auth: bool = False
    challenge_on_refusal: bool = False
    one_key: bool = False
    auth_to_publish: bool = False
    latency: float = 0.0  # seconds
    seed: int = 0
    page_limit: int = 0  # 0: the relay's own
    shuffle_stored: bool = False
    drop_page_bytes: int = 0  # 0: never


@dataclass
class _Held:
    text: str
    after: int  # messages still to pass before this one
    deadline: float


@dataclass(eq=False)
class _Link:
    """One client connection and its upstream."""

    faults: Faults
    rng: random.Random
    stats: Counter[str]
    client: web.WebSocketResponse
    upstream: aiohttp.ClientWebSocketResponse | None = None
    live: set[str] = field(default_factory=set)
    challenge: str | None = None  # held back until a refusal (--challenge-on-refusal)
    auths: int = 0
    held: list[_Held] = field(default_factory=list)
    stored: dict[str, list[str]] = field(default_factory=dict)  # --shuffle-stored
    stored_bytes: dict[str, int] = field(default_factory=dict)  # --drop-page-bytes
    dropped: bool = False
    to_client: asyncio.Queue[tuple[float, str]] = field(default_factory=asyncio.Queue)
    to_upstream: asyncio.Queue[tuple[float, str]] = field(default_factory=asyncio.Queue)
    #: What the client sent, for ``GET /connections``.
    record: dict[str, Any] = field(default_factory=dict)

    # -- relay -> client ----------------------------------------------------------------

    def from_upstream(self, text: str) -> None:
        if self.dropped:
            return
        msg = _load(text)
        verb = msg[0] if msg else None
        stored = verb == "EVENT" and len(msg) >= 3 and str(msg[1]) not in self.live
        if stored and self._stored_event(str(msg[1]), text):
            return
        if verb in ("EOSE", "CLOSED") and len(msg) >= 2:
            self.stored_bytes.pop(str(msg[1]), None)
            events = self.stored.pop(str(msg[1]), [])
            self.rng.shuffle(events)
            for event in events:
                self.send_client(event)
        if verb == "EOSE" and len(msg) >= 2:
            self.live.add(str(msg[1]))
        elif verb == "CLOSED" and len(msg) >= 2:
            self.live.discard(str(msg[1]))
            refusal = len(msg) >= 3 and str(msg[2]).startswith("auth-required")
            if refusal and self.challenge is not None:
                self.send_client(text)
                self.stats["challenges_on_refusal"] += 1
                self.send_client(self.challenge)
                return
        elif verb == "AUTH" and self.faults.no_auth:
            self.stats["challenges_swallowed"] += 1
            return
        elif verb == "AUTH" and self.faults.challenge_on_refusal:
            self.challenge = text
            return
        elif verb == "EVENT" and len(msg) >= 3 and str(msg[1]) in self.live:
            self.stats["live_events"] += 1
            f = self.faults
            drop, dup, reorder = self.rng.random(), self.rng.random(), self.rng.random()
            if drop < f.drop:
                self.stats["dropped"] += 1
                return
            if dup < f.dup:
                self.stats["duplicated"] += 1
                self.send_client(text)
                self.send_client(text)
                return
            if reorder < f.reorder:
                self.stats["held"] += 1
                after = self.rng.randint(1, max(1, f.hold))
                self.held.append(_Held(text, after, time.monotonic() + f.hold_seconds))
                return
        self.send_client(text)

    def _stored_event(self, sub_id: str, text: str) -> bool:
        """A stored event of ``sub_id``: True if it was taken (kept back to shuffle, or
        the connection dropped)."""
        f = self.faults
        if f.drop_page_bytes:
            size = self.stored_bytes.get(sub_id, 0) + len(text)
            self.stored_bytes[sub_id] = size
            if size > f.drop_page_bytes:
                self.stats["page_drops"] += 1
                self.dropped = True
                asyncio.get_running_loop().create_task(
                    self.client.close(code=1008, message=b"too slow to read")
                )
                return True
        if f.shuffle_stored:
            self.stored.setdefault(sub_id, []).append(text)
            return True
        return False

    def send_client(self, text: str) -> None:
        """Queue ``text`` for the client; held messages whose turn came follow it."""
        self._emit(text)
        due = []
        for held in self.held:
            held.after -= 1
            if held.after <= 0:
                due.append(held)
        for held in due:
            self.held.remove(held)
            self.stats["released"] += 1
            self._emit(held.text)

    def release_expired(self) -> None:
        now = time.monotonic()
        for held in [h for h in self.held if h.deadline <= now]:
            self.held.remove(held)
            self.stats["released"] += 1
            self._emit(held.text)

    def _emit(self, text: str) -> None:
        if text.startswith('["EVENT"'):
            self.stats["events_to_clients"] += 1
        self.to_client.put_nowait((time.monotonic() + self.faults.latency, text))

    # -- client -> relay ----------------------------------------------------------------

    def _record(self, msg: list[Any]) -> None:
        verb, body = msg[0], msg[1] if len(msg) >= 2 else None
        if verb in ("EVENT", "AUTH") and isinstance(body, dict):
            if verb == "EVENT":
                self.record["events"].append([body.get("kind"), body.get("pubkey")])
            else:
                self.record["auths"].append(body.get("pubkey"))
        elif verb == "REQ":
            for f in msg[2:]:
                if isinstance(f, dict) and isinstance(f.get("authors"), list):
                    self.record["req_authors"].extend(f["authors"])

    def from_client(self, text: str) -> None:
        msg = _load(text)
        verb = msg[0] if msg else None
        if msg:
            self._record(msg)
        if verb in ("REQ", "CLOSE") and len(msg) >= 2:
            self.live.discard(str(msg[1]))  # a new REQ starts with stored events again
            if verb == "REQ" and self.faults.page_limit:
                text = json.dumps([*msg[:2], *map(self._small_page, msg[2:])])
        elif verb == "EVENT":
            if self.auths:  # what a relay would learn: the publisher's authenticated keys
                self.stats["events_from_authenticated"] += 1
            elif self.faults.auth_to_publish:
                self.stats["events_refused_unauthenticated"] += 1
                event = msg[1] if len(msg) >= 2 and isinstance(msg[1], dict) else {}
                reply = ["OK", event.get("id", ""), False, "auth-required: authenticate first"]
                self._emit(json.dumps(reply))
                return
            if self.rng.random() < self.faults.drop_publish:
                self.stats["publishes_dropped"] += 1
                return
        elif verb == "AUTH" and (
            self.faults.refuse_auth or (self.faults.one_key and self.auths > 0)
        ):
            self.stats["auth_refused"] += 1
            event = msg[1] if len(msg) >= 2 and isinstance(msg[1], dict) else {}
            reply = ["OK", event.get("id", ""), False, "restricted: this relay refuses AUTH"]
            self._emit(json.dumps(reply))
            return
        elif verb == "AUTH":
            self.auths += 1
        self.to_upstream.put_nowait((time.monotonic() + self.faults.latency, text))

    def _small_page(self, f: object) -> object:
        if not isinstance(f, dict):
            return f
        limit = f.get("limit")
        if not isinstance(limit, int) or limit > self.faults.page_limit:
            self.stats["pages_limited"] += 1
            return {**f, "limit": self.faults.page_limit}
        return f


def _load(text: str) -> list[Any]:
    try:
        msg = json.loads(text)
    except ValueError:
        return []
    return msg if isinstance(msg, list) and msg else []


class FaultyProxy:
    """The proxy itself, in this process (the CLI and :func:`start_faulty_relay` wrap it)."""

    def __init__(self, upstream: str, faults: Faults) -> None:
        self.upstream = upstream
        self.faults = faults
        self.stats: Counter[str] = Counter()
        self.links: set[_Link] = set()
        self.app = web.Application()
        self.app.router.add_get("/", self._websocket)
        self.app.router.add_get("/stats", self._stats)
        self.app.router.add_get("/connections", self._connections)
        self.records: list[dict[str, Any]] = []
        self._session: aiohttp.ClientSession | None = None

    async def _stats(self, request: web.Request) -> web.Response:
        stats = dict(self.stats)
        stats["held_now"] = sum(len(link.held) for link in self.links)
        return web.json_response(stats)

    async def _connections(self, request: web.Request) -> web.Response:
        return web.json_response(self.records)

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        client = web.WebSocketResponse(max_msg_size=16 * 1024 * 1024, autoping=True)
        await client.prepare(request)
        number = self.stats["connections"]
        self.stats["connections"] += 1
        link = _Link(self.faults, random.Random(f"{self.faults.seed}/{number}"), self.stats, client)
        link.record = {"number": number, "open": True, "events": [], "auths": [], "req_authors": []}
        self.records.append(link.record)
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            link.upstream = await self._session.ws_connect(
                self.upstream, max_msg_size=16 * 1024 * 1024, autoping=True
            )
        except (aiohttp.ClientError, OSError):
            self.stats["upstream_failures"] += 1
            link.record["open"] = False
            await client.close(code=1011, message=b"upstream unreachable")
            return client
        self.links.add(link)
        tasks = [
            asyncio.create_task(self._read_upstream(link)),
            asyncio.create_task(self._read_client(link)),
            asyncio.create_task(self._write(link.to_client, client)),
            asyncio.create_task(self._write(link.to_upstream, link.upstream)),
            asyncio.create_task(self._release(link)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self.links.discard(link)
            link.record["open"] = False
            await link.upstream.close()
            await client.close()
        return client

    @staticmethod
    async def _read_upstream(link: _Link) -> None:
        assert link.upstream is not None
        async for msg in link.upstream:
            if msg.type != WSMsgType.TEXT:
                return
            link.from_upstream(msg.data)

    @staticmethod
    async def _read_client(link: _Link) -> None:
        async for msg in link.client:
            if msg.type != WSMsgType.TEXT:
                return
            link.from_client(msg.data)

    @staticmethod
    async def _write(
        queue: asyncio.Queue[tuple[float, str]],
        ws: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    ) -> None:
        while True:
            due, text = await queue.get()
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await ws.send_str(text)

    @staticmethod
    async def _release(link: _Link) -> None:
        while True:
            await asyncio.sleep(0.05)
            link.release_expired()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


async def serve(upstream: str, faults: Faults, host: str, port: int, ready: Any = print) -> None:
    proxy = FaultyProxy(upstream, faults)
    runner = web.AppRunner(proxy.app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    server = getattr(site, "_server", None)
    assert server is not None
    assert server.sockets
    bound_host, bound_port = server.sockets[0].getsockname()[:2]
    ready(f"faulty relay listening on ws://{bound_host}:{bound_port}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    await proxy.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.node.faulty_relay")
    parser.add_argument("--upstream", required=True, help="the real relay, ws://host:port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--drop", type=float, default=0.0, help="P(drop a live event)")
    parser.add_argument("--dup", type=float, default=0.0, help="P(send a live event twice)")
    parser.add_argument("--reorder", type=float, default=0.0, help="P(hold a live event back)")
    parser.add_argument("--hold", type=int, default=3, help="a held event waits 1..N messages")
    parser.add_argument("--hold-seconds", type=float, default=1.0, help="...or this long")
    parser.add_argument("--drop-publish", type=float, default=0.0, help="P(swallow an EVENT)")
    parser.add_argument("--refuse-auth", action="store_true", help="answer AUTH with OK false")
    parser.add_argument("--no-auth", action="store_true", help="swallow the AUTH challenge")
    parser.add_argument(
        "--challenge-on-refusal",
        action="store_true",
        help="send the AUTH challenge only after an auth-required refusal",
    )
    parser.add_argument("--one-key", action="store_true", help="one AUTH per connection")
    parser.add_argument(
        "--auth-to-publish", action="store_true", help="refuse EVENTs before an AUTH"
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay every message")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--page-limit", type=int, default=0, help="lower every REQ limit")
    parser.add_argument("--shuffle-stored", action="store_true", help="stored events in any order")
    parser.add_argument(
        "--drop-page-bytes", type=int, default=0, help="drop a connection past N stored bytes"
    )
    args = parser.parse_args(argv)
    faults = Faults(
        drop=args.drop,
        dup=args.dup,
        reorder=args.reorder,
        hold=args.hold,
        hold_seconds=args.hold_seconds,
        drop_publish=args.drop_publish,
        refuse_auth=args.refuse_auth,
        no_auth=args.no_auth,
        challenge_on_refusal=args.challenge_on_refusal,
        one_key=args.one_key,
        auth_to_publish=args.auth_to_publish,
        latency=args.latency_ms / 1000,
        seed=args.seed,
        page_limit=args.page_limit,
        shuffle_stored=args.shuffle_stored,
        drop_page_bytes=args.drop_page_bytes,
    )

    def ready(line: str) -> None:
        print(line, flush=True)

    asyncio.run(serve(args.upstream, faults, args.host, args.port, ready))


# -- from tests ---------------------------------------------------------------------------


def reserve_port(host: str = "127.0.0.1") -> socket.socket:
    """A socket bound to a free port with SO_REUSEADDR, not listening: no one else is
    given the port meanwhile, but a process that binds it with SO_REUSEADDR (as the
    relay and this proxy do) can listen on it. Close it once that process listens."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    return sock


@dataclass
class FaultyRelay:
    """A running faulty relay process."""

    url: str
    process: subprocess.Popen[str]

    @property
    def http_url(self) -> str:
        return "http://" + self.url.removeprefix("ws://")

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(self.http_url + "/stats", timeout=10) as response:
            data: dict[str, int] = json.loads(response.read())
        return data

    def connections(self) -> list[dict[str, Any]]:
        """What each client connection carried (see ``GET /connections``)."""
        with urllib.request.urlopen(self.http_url + "/connections", timeout=10) as response:
            data: list[dict[str, Any]] = json.loads(response.read())
        return data

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        return stop_process(self.process, sig, timeout)


def start_faulty_relay(
    upstream: str,
    *,
    drop: float = 0.0,
    dup: float = 0.0,
    reorder: float = 0.0,
    hold: int = 3,
    hold_seconds: float = 1.0,
    drop_publish: float = 0.0,
    refuse_auth: bool = False,
    no_auth: bool = False,
    challenge_on_refusal: bool = False,
    one_key: bool = False,
    auth_to_publish: bool = False,
    latency_ms: float = 0.0,
    seed: int = 0,
    port: int = 0,
    page_limit: int = 0,
    shuffle_stored: bool = False,
    drop_page_bytes: int = 0,
) -> FaultyRelay:
    """Start ``python -m tests.node.faulty_relay`` and wait (at most 30 s) for its URL."""
    args = [
        sys.executable,
        "-m",
        "tests.node.faulty_relay",
        "--upstream",
        upstream,
        "--port",
        str(port),
        "--drop",
        str(drop),
        "--dup",
        str(dup),
        "--reorder",
        str(reorder),
        "--hold",
        str(hold),
        "--hold-seconds",
        str(hold_seconds),
        "--drop-publish",
        str(drop_publish),
        "--latency-ms",
        str(latency_ms),
        "--seed",
        str(seed),
        "--page-limit",
        str(page_limit),
        "--drop-page-bytes",
        str(drop_page_bytes),
    ]
    if shuffle_stored:
        args.append("--shuffle-stored")
    if refuse_auth:
        args.append("--refuse-auth")
    if no_auth:
        args.append("--no-auth")
    if challenge_on_refusal:
        args.append("--challenge-on-refusal")
    if one_key:
        args.append("--one-key")
    if auth_to_publish:
        args.append("--auth-to-publish")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env, cwd=root)
    assert process.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        line = process.stdout.readline()
        if not line:
            break
        found = re.search(r"listening on (ws://[\d.]+:\d+)", line)
        if found:
            return FaultyRelay(found.group(1), process)
    process.kill()
    process.wait()
    raise RuntimeError("the faulty relay did not start")


if __name__ == "__main__":
    main()
