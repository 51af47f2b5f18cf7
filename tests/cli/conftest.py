"""The CLI against real nodes and relays: the fixtures of tests/node (processes on
127.0.0.1, stopped after each test)."""

from tests.node.conftest import faulty_relays, relay_fronts, relays
from tests.node.nodes import node_factory

__all__ = ["faulty_relays", "node_factory", "relay_fronts", "relays"]
