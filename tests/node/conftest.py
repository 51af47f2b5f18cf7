"""Relays, faulty relays and nodes as real processes on 127.0.0.1, stopped after each test.

Nodes: ``node_factory`` in tests/node/nodes.py."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.node.faulty_relay import FaultyRelay, start_faulty_relay
from tests.node.nodes import node_factory
from tests.relay.conftest import RelayProcess, start_relay

__all__ = ["faulty_relays", "node_factory", "relays"]

StartRelay = Callable[..., RelayProcess]
StartFaulty = Callable[..., FaultyRelay]


@pytest.fixture
def relays(tmp_path: Path) -> Iterator[StartRelay]:
    """``relays(config_text=None, db=None, port=0)``: a new relay (its own database unless
    ``db`` names one), SIGKILLed at the end of the test if still running."""
    started: list[RelayProcess] = []

    def start(config_text: str | None = None, *, db: str | None = None, port: int = 0) -> Any:
        path = db or str(tmp_path / f"relay-{len(started)}.sqlite3")
        relay = start_relay(path, config_text, tmp_path, port)
        started.append(relay)
        return relay

    yield start
    for relay in started:
        relay.stop(signal.SIGKILL)


@pytest.fixture
def faulty_relays() -> Iterator[StartFaulty]:
    """``faulty_relays(upstream_url, **faults)``: see :func:`start_faulty_relay`."""
    started: list[FaultyRelay] = []

    def start(upstream: str, **faults: Any) -> FaultyRelay:
        relay = start_faulty_relay(upstream, **faults)
        started.append(relay)
        return relay

    yield start
    for relay in started:
        relay.stop()
