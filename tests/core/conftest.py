"""Fixtures of the core's rule tests: the stores the rules run over.

``any_store`` is each implementation of :class:`xchat.core.stores.NodeStoreProtocol` in
turn: the in-memory reference (:class:`xchat.core.memory.MemoryStore`) and the node's
real SQLCipher store on a file in tmp_path, so that a rule proven here holds in both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from xchat.core.memory import MemoryStore
from xchat.core.stores import NodeStoreProtocol
from xchat.store.node import NodeStore

STORES = ["memory", "sqlcipher"]


def open_store(kind: str, path: Path) -> NodeStoreProtocol:
    if kind == "memory":
        return MemoryStore()
    store = NodeStore(path / "node.db", bytes(range(32)))
    store.open()
    return store


@pytest.fixture(params=STORES)
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NodeStoreProtocol]:
    store = open_store(request.param, tmp_path)
    yield store
    if isinstance(store, NodeStore):
        store.close()


class Boom(Exception):
    """Raised inside a transaction to make it roll back."""


def fail_in_transaction(store: NodeStoreProtocol, writes: Callable[[], object]) -> None:
    """Run ``writes`` in a transaction, then raise :class:`Boom` inside it."""
    with store.transaction():
        writes()
        raise Boom
