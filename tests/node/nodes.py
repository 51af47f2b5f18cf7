"""X Chat nodes as real processes (``xchat up``) on 127.0.0.1, and a client for their API.

A node's home is created in the test process with a cheap Argon2id setting (the real
one costs 128 MiB and about a second); the node itself runs as ``python -m xchat up``
with the passphrase in its environment, exactly as a user would run it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from xchat.cli.client import NodeClient
from xchat.core.identity import Identity
from xchat.crypto.keystore import KdfParams
from xchat.home import Home

FAST_KDF = KdfParams(time_cost=1, memory_kib=8192, parallelism=1)
PASSPHRASE = "correct horse battery"


def make_home(path: Path, relays: tuple[str, ...] = ()) -> Home:
    home = Home(path)
    home.create(
        Identity.generate(os.urandom), PASSPHRASE, int(time.time()), os.urandom, relays, FAST_KDF
    )
    return home


@dataclass
class NodeProcess:
    """A running ``xchat up`` for one home."""

    home: Home
    relays: tuple[str, ...]
    process: subprocess.Popen[str] | None = None
    login_url: str = ""
    env: dict[str, str] = field(default_factory=dict)
    output: list[str] = field(default_factory=list)
    #: The API/web port: 0 picks one at the first start, later starts keep it (so a
    #: restarted node keeps its web origin).
    port: int = 0
    _drain: threading.Thread | None = None

    def start(self, timeout: float = 60, *, env_passphrase: bool = True) -> NodeProcess:
        args = [
            sys.executable,
            "-m",
            "xchat",
            "--home",
            str(self.home.path),
            "up",
            "--no-browser",
            "--port",
            str(self.port),
        ]
        for url in self.relays:
            args += ["--relay", url]
        env = {k: v for k, v in os.environ.items() if not k.startswith("XCHAT_")}
        env["XCHAT_DEFAULT_RELAYS"] = ""  # nothing in the tests reaches the internet
        env.update(self.env)
        if env_passphrase:
            env["XCHAT_PASSPHRASE"] = PASSPHRASE
        self.process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.output.append(line)
            found = re.search(r"Open X Chat Web: (\S+)", line)
            if found:
                self.login_url = found.group(1)
                self.port = int(re.findall(r":(\d+)/", self.login_url)[0])
                # keep reading what it prints: a full pipe would block the node's logging
                self._drain = threading.Thread(target=self._read_output, daemon=True)
                self._drain.start()
                return self
        self.process.kill()
        raise RuntimeError("the node did not start:\n" + "".join(self.output))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(timeout)
        if self._drain is not None:
            self._drain.join(timeout)
            self._drain = None
        elif self.process.stdout is not None:
            self._read_output()
        if self.process.stdout is not None:
            self.process.stdout.close()
        if sig == signal.SIGKILL:
            (self.home.path / "node.json").unlink(missing_ok=True)
        return code

    def _read_output(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)

    @property
    def api(self) -> NodeClient:
        return NodeClient(self.home)

    @property
    def pubkey(self) -> str:
        return self.home.card().public_key.hex

    @property
    def npub(self) -> str:
        return self.home.card().npub

    def card(self) -> str:
        """This node's nprofile with its inbox relays as hints."""
        identity = self.api.call("GET", "/api/identity")
        return str(identity["nprofile"])

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.api.call(method, path, body)

    def messages(self, peer: str, limit: int = 500) -> list[dict[str, Any]]:
        """The conversation with ``peer``, oldest first."""
        rows = self.call("GET", f"/api/conversations/{peer}/messages?limit={limit}")
        return list(reversed(rows))

    def send(self, peer: str, text: str) -> dict[str, Any]:
        return dict(self.call("POST", f"/api/conversations/{peer}/messages", {"text": text}))

    def add(self, other: NodeProcess, name: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"address": other.card()}
        if name:
            body["name"] = name
        return dict(self.call("POST", "/api/contacts", body))

    def status(self) -> dict[str, Any]:
        return dict(self.call("GET", "/api/status"))

    def stream_url(self) -> str:
        client = self.api
        query = urllib.parse.urlencode({"token": client.token})
        return client.url.replace("http://", "ws://") + "/api/stream?" + query


class StreamRecorder:
    """A node's API stream (``/api/stream``), read in a thread: ``events`` holds every
    object received, in order. Use as a context manager; it is connected on entry."""

    def __init__(self, node: NodeProcess) -> None:
        self.url = node.stream_url()
        self.events: list[dict[str, Any]] = []
        self._ready = threading.Event()
        self._loop: Any = None
        self._stop: Any = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StreamRecorder:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the stream did not connect")
        return self

    def __exit__(self, *_: object) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in list(self.events) if e.get("type") == kind]

    def _run(self) -> None:
        import asyncio

        import aiohttp
        import orjson

        async def read() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            async with aiohttp.ClientSession() as session, session.ws_connect(self.url) as ws:
                self._ready.set()
                stopping = asyncio.create_task(self._stop.wait())
                while not self._stop.is_set():
                    receiving = asyncio.create_task(ws.receive())
                    await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    if not receiving.done():
                        receiving.cancel()
                        break
                    msg = receiving.result()
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    self.events.append(orjson.loads(msg.data))
                stopping.cancel()

        asyncio.run(read())


def run_cli(
    node: NodeProcess, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``xchat --home <node's home> ARGS`` as a user would type it (no XCHAT_ variables)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("XCHAT_")}
    env["XCHAT_DEFAULT_RELAYS"] = ""  # nothing in the tests reaches the internet
    return subprocess.run(
        [sys.executable, "-m", "xchat", "--home", str(node.home.path), *args],
        capture_output=True,
        text=True,
        env=env,
        input=stdin,
        timeout=60,
        check=False,
    )


def wait_for(check: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


@pytest.fixture
def node_factory(tmp_path: Path) -> Iterator[Callable[..., NodeProcess]]:
    started: list[NodeProcess] = []
    count = [0]

    def factory(
        relays: tuple[str, ...] = (), start: bool = True, env: dict[str, str] | None = None
    ) -> NodeProcess:
        count[0] += 1
        home = make_home(tmp_path / f"node{count[0]}")
        node = NodeProcess(home, relays, env=dict(env or {}))
        started.append(node)
        return node.start() if start else node

    yield factory
    for node in started:
        if node.process is not None and node.process.poll() is None:
            node.stop(signal.SIGKILL)
