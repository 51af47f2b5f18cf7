"""Relays as real processes on 127.0.0.1, and signed events to feed them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.processes import stop_process
from xchat.core.events import sign_event
from xchat.crypto.keys import SecretKey
from xchat.wire.event import Event


@dataclass
class RelayProcess:
    """A running `xchat relay`: its URL, process, database and config."""

    url: str
    process: subprocess.Popen[str]
    db: str
    config: Path | None

    @property
    def http_url(self) -> str:
        return "http://" + self.url.removeprefix("ws://")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        return stop_process(self.process, sig, timeout)

    def follow_log(self, needle: str) -> threading.Event:
        """Set once a line of the relay's log contains ``needle`` (read by a thread of
        its own from now on)."""
        found = threading.Event()

        def follow() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                if needle in line:
                    found.set()
                    return

        threading.Thread(target=follow, daemon=True).start()
        return found


def start_relay(
    db: str,
    config_text: str | None = None,
    tmp: Path | None = None,
    port: int = 0,
    public_urls: Sequence[str] = (),
) -> RelayProcess:
    """``xchat relay`` on 127.0.0.1; with ``public_urls``, NIP-42 AUTH must name one."""
    config = None
    args = [
        sys.executable,
        "-m",
        "xchat",
        "relay",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--db",
        db,
    ]
    for url in public_urls:
        args += ["--public-url", url]
    if config_text is not None:
        assert tmp is not None
        config = tmp / f"relay-{time.monotonic_ns()}.toml"
        config.write_text(config_text)
        args += ["--config", str(config)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("XCHAT_")}
    process = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    deadline = time.monotonic() + 30
    assert process.stdout is not None
    seen = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        found = re.search(r"listening on (ws://[\d.]+:\d+)", line)
        if found:
            return RelayProcess(found.group(1), process, db, config)
    process.kill()
    raise RuntimeError("the relay did not start:\n" + "".join(seen))


@pytest.fixture
def relay_factory(tmp_path: Path) -> Iterator[object]:
    started: list[RelayProcess] = []

    def factory(
        config_text: str | None = None,
        db: str | None = None,
        port: int = 0,
        public_urls: Sequence[str] = (),
    ) -> RelayProcess:
        path = db or str(tmp_path / "relay.sqlite3")
        relay = start_relay(path, config_text, tmp_path, port, public_urls)
        started.append(relay)
        return relay

    yield factory
    for relay in started:
        relay.stop(signal.SIGKILL if relay.process.poll() is None else signal.SIGTERM)


@pytest.fixture
def relay(relay_factory: object) -> RelayProcess:
    return relay_factory()  # type: ignore[operator, no-any-return]


def make_event(
    key: SecretKey,
    kind: int = 1,
    content: str = "hello",
    tags: list[list[str]] | None = None,
    created_at: int | None = None,
) -> Event:
    return sign_event(
        key,
        kind=kind,
        tags=tags or [],
        content=content,
        created_at=int(time.time()) if created_at is None else created_at,
        rng=os.urandom,
    )


def new_key() -> SecretKey:
    return SecretKey.generate(os.urandom)
