"""Relays, faulty relays and nodes as real processes on 127.0.0.1, stopped after each test.

Nodes: ``node_factory`` in tests/node/nodes.py."""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.node.faulty_relay import FaultyRelay, reserve_port, start_faulty_relay
from tests.node.nodes import node_factory
from tests.relay.conftest import RelayProcess, start_relay

__all__ = ["faulty_relays", "node_factory", "relay_fronts", "relays"]

StartRelay = Callable[..., RelayProcess]
StartFaulty = Callable[..., FaultyRelay]


#: Ports reserved per relay for faulty relays in front of it (the most a test uses is 3).
PROXY_PORTS = 4


@dataclass
class _Fronts:
    """The proxy URLs a relay accepts in NIP-42 AUTH, and the ports not yet handed out."""

    urls: list[str]
    free: list[socket.socket]


@pytest.fixture
def relay_fronts() -> Iterator[dict[str, _Fronts]]:
    fronts: dict[str, _Fronts] = {}
    yield fronts
    for front in fronts.values():
        for sock in front.free:
            sock.close()


@pytest.fixture
def relays(tmp_path: Path, relay_fronts: dict[str, _Fronts]) -> Iterator[StartRelay]:
    """``relays(config_text=None, db=None, port=0)``: a new relay (its own database unless
    ``db`` names one), SIGKILLed at the end of the test if still running.

    Its public URLs (NIP-42) are its own and those of up to :data:`PROXY_PORTS` faulty
    relays in front of it (``faulty_relays(relay.url)``), whose ports are reserved now;
    started again on the same port, it keeps them."""
    started: list[RelayProcess] = []

    def start(config_text: str | None = None, *, db: str | None = None, port: int = 0) -> Any:
        path = db or str(tmp_path / f"relay-{len(started)}.sqlite3")
        own = reserve_port() if port == 0 else None
        if own is not None:
            port = own.getsockname()[1]
        url = f"ws://127.0.0.1:{port}"
        if url not in relay_fronts:
            free = [reserve_port() for _ in range(PROXY_PORTS)]
            urls = [f"ws://127.0.0.1:{s.getsockname()[1]}" for s in free]
            relay_fronts[url] = _Fronts(urls, free)
        try:
            relay = start_relay(path, config_text, tmp_path, port, [url, *relay_fronts[url].urls])
        finally:
            if own is not None:
                own.close()
        started.append(relay)
        return relay

    yield start
    for relay in started:
        relay.stop(signal.SIGKILL)


@pytest.fixture
def faulty_relays(relay_fronts: dict[str, _Fronts]) -> Iterator[StartFaulty]:
    """``faulty_relays(upstream_url, port=None, **faults)``: see :func:`start_faulty_relay`.
    In front of a relay from ``relays``, it listens on a port that relay accepts in AUTH;
    ``port`` starts one again where an earlier one (now stopped) listened."""
    started: list[FaultyRelay] = []

    def start(upstream: str, *, port: int | None = None, **faults: Any) -> FaultyRelay:
        front = relay_fronts.get(upstream)
        sock = front.free.pop(0) if port is None and front is not None and front.free else None
        try:
            if port is None:
                port = sock.getsockname()[1] if sock is not None else 0
            relay = start_faulty_relay(upstream, port=port, **faults)
        finally:
            if sock is not None:
                sock.close()
        started.append(relay)
        return relay

    yield start
    for relay in started:
        relay.stop()
