"""Relays and X Chat nodes as real processes on 127.0.0.1, for ``bench/delivery.py``.

A node's home is created in this process with a cheap Argon2id setting (the real one
costs 128 MiB and about a second; it is only paid at unlock); the node then runs as
``python -m xchat --home DIR up --no-browser --port 0 --relay URL ...`` with its
passphrase in ``XCHAT_PASSPHRASE``, as a user would run it, and is driven over its
local API (aiohttp, keep-alive, bearer token) and its WebSocket stream.

Every process is started in a session of its own and stopped as a group (SIGTERM, then
SIGKILL after a grace period); :data:`STARTED` lists them so that a failed run can stop
whatever it started. The few lines shared with ``tests/node/nodes.py`` are copied, not
imported: the benchmarks do not depend on the test suite.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import signal
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from xchat.core.identity import Identity
from xchat.crypto.keystore import KdfParams
from xchat.home import Home

FAST_KDF = KdfParams(time_cost=1, memory_kib=8192, parallelism=1)
PASSPHRASE = "correct horse battery"

#: Our relay's configuration: rate limits and connection caps out of the way (every
#: connection of the benchmark comes from 127.0.0.1); everything else is the default.
#: bench/delivery.py and bench/relay.py use it.
RELAY_CONFIG = """\
# bench: rate limits and connection caps out of the way; all else default.
[limits]
events_per_second = 1e9
events_burst = 1000000000
ip_events_per_second = 1e9
ip_events_burst = 1000000000
max_connections_per_ip = 100000
max_connections = 100000
"""


class BenchError(Exception):
    """Something could not be run or misbehaved; the message says what."""


#: Every process this run started (most lead a process group of their own; py-spy not).
STARTED: list[subprocess.Popen[bytes]] = []


def _children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as f:
                out.extend(int(p) for p in f.read().split())
    return out


def process_tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(_children(pid))
    return pids


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (alive ones), in seconds."""
    ticks = 0
    for one in process_tree(pid):
        with contextlib.suppress(OSError), open(f"/proc/{one}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def stop_group(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM to the process group we created (or to the process, if it leads none),
    then SIGKILL to what is left."""
    try:
        leader = os.getpgid(process.pid) == process.pid
    except ProcessLookupError:
        leader = False

    def send(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            if leader:
                os.killpg(process.pid, sig)
            elif process.poll() is None:
                process.send_signal(sig)

    send(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(grace)
    send(signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(10)


def stop_all(grace: float = 5.0) -> None:
    for process in reversed(STARTED):
        if process.poll() is None:
            stop_group(process, grace)


@dataclass
class Spawned:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    found: str  # the first group of the start-up pattern

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)

    def stop(self, grace: float = 10.0) -> None:
        stop_group(self.process, grace)

    def tail(self, chars: int = 1500) -> str:
        return self.log.read_text(errors="replace")[-chars:]


def spawn(
    name: str,
    args: list[str],
    log: Path,
    pattern: str,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
    cwd: Path | None = None,
) -> Spawned:
    """Start ``args`` in a session of its own, output to ``log``; wait for ``pattern``."""
    with open(log, "wb") as out:
        process = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    STARTED.append(process)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, log.read_text(errors="replace"))
        if found:
            return Spawned(name, process, log, found.group(1))
        if process.poll() is not None:
            break
        time.sleep(0.05)
    stop_group(process)
    tail = log.read_text(errors="replace")[-1500:]
    raise BenchError(f"{name} did not start (exit {process.poll()}):\n{tail}")


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("XCHAT_")}


def start_relay(tmp: Path, name: str) -> tuple[Spawned, str]:
    """``xchat relay`` on a fresh SQLite database in ``tmp``; returns it and its URL."""
    config = tmp / "relay.toml"
    if not config.exists():
        config.write_text(RELAY_CONFIG)
    args = [sys.executable, "-m", "xchat", "relay", "--host", "127.0.0.1", "--port", "0"]
    args += ["--db", str(tmp / f"{name}.sqlite3"), "--config", str(config)]
    relay = spawn(name, args, tmp / f"{name}.log", r"listening on (ws://[\d.]+:\d+)", _env())
    return relay, relay.found


def make_home(path: Path) -> Home:
    home = Home(path)
    home.create(
        Identity.generate(os.urandom), PASSPHRASE, int(time.time()), os.urandom, (), FAST_KDF
    )
    return home


@dataclass
class NodeProcess:
    """A running ``xchat up``: its process, API URL and token."""

    name: str
    home: Home
    spawned: Spawned
    url: str
    token: str

    @property
    def pid(self) -> int:
        return self.spawned.pid

    @property
    def pubkey(self) -> str:
        return self.home.card().public_key.hex

    def stream_url(self) -> str:
        query = urllib.parse.urlencode({"token": self.token})
        return self.url.replace("http://", "ws://") + "/api/stream?" + query

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def stop(self) -> None:
        self.spawned.stop(20.0)


def start_node(tmp: Path, name: str, relays: list[str]) -> NodeProcess:
    """A new home in ``tmp/name`` and ``xchat up`` for it, reading from ``relays``."""
    home = make_home(tmp / name)
    args = [sys.executable, "-m", "xchat", "--home", str(home.path), "up", "--no-browser"]
    args += ["--port", "0"]
    for url in relays:
        args += ["--relay", url]
    env = _env()
    env["XCHAT_PASSPHRASE"] = PASSPHRASE
    spawned = spawn(name, args, tmp / f"{name}.log", r"Open X Chat Web: (\S+)", env)
    runtime = orjson.loads((home.path / "node.json").read_bytes())
    return NodeProcess(name, home, spawned, str(runtime["url"]), str(runtime["token"]))


async def call(
    session: aiohttp.ClientSession,
    node: NodeProcess,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
) -> Any:
    """One API call; BenchError on an error answer."""
    data = orjson.dumps(body) if body is not None else None
    headers = {**node.headers(), "Content-Type": "application/json"}
    async with session.request(method, node.url + path, data=data, headers=headers) as response:
        raw = await response.read()
        if response.status >= 400:
            raise BenchError(f"{node.name}: {method} {path}: HTTP {response.status} {raw[:200]!r}")
        return orjson.loads(raw)


def cpu_model() -> str:
    """The CPU's model name, for the report's header."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def source() -> str:
    """Where the nodes' and relays' code comes from (they inherit PYTHONPATH), and its
    commit when that is a git work tree (``+`` if src/ has uncommitted changes)."""
    import xchat

    src = Path(xchat.__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(src), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return str(src)
    return f"{src} (commit {commit}{'+' if dirty else ''})"


def load() -> str:
    """The load average, for the report."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())
