"""Shared test fixtures: deterministic randomness and ready-made devices."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator

import pytest

from tests.pg_server import PostgresServer, find_bindir
from xchat.core.channel import Channel
from xchat.core.device import DeviceBundle, LocalDevice
from xchat.core.identity import Identity


class SeededRng:
    """A reproducible ``rng(n)``: SHAKE-256 of a seed, read in order. Records what it gave."""

    def __init__(self, seed: bytes | str) -> None:
        self._seed = seed.encode() if isinstance(seed, str) else seed
        self._offset = 0
        self.drawn: list[bytes] = []

    def __call__(self, n: int) -> bytes:
        stream = hashlib.shake_256(self._seed).digest(self._offset + n)
        out = stream[self._offset :]
        self._offset += n
        self.drawn.append(out)
        return out


class ReplayRng:
    """Gives back exactly the bytes recorded in a vector, failing if asked for more."""

    def __init__(self, chunks: list[str]) -> None:
        self._chunks = [bytes.fromhex(c) for c in chunks]

    def __call__(self, n: int) -> bytes:
        chunk = self._chunks.pop(0)
        assert len(chunk) == n, f"vector chunk of {len(chunk)} bytes, {n} asked"
        return chunk

    def exhausted(self) -> bool:
        return not self._chunks


@pytest.fixture
def rng() -> SeededRng:
    return SeededRng(os.urandom(16))


@pytest.fixture
def now() -> int:
    return int(time.time())


def make_device(name: str, now: int) -> LocalDevice:
    rng = SeededRng(name)
    return LocalDevice.create(Identity.generate(rng), now, os.urandom)


def bundle_of(device: LocalDevice, now: int) -> DeviceBundle:
    return DeviceBundle.from_event(device.bundle_event(now, os.urandom))


@pytest.fixture
def alice(now: int) -> Channel:
    return Channel(make_device("alice", now))


@pytest.fixture
def bob(now: int) -> Channel:
    return Channel(make_device("bob", now))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bindir = find_bindir()
    if bindir is None:
        message = (
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): "
            "install Debian's `postgresql` package (apt-get install postgresql)"
        )
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must run the PostgreSQL store tests")
        pytest.skip(message)
    server = PostgresServer.start(bindir)
    yield server
    server.stop()
