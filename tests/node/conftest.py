"""Fixtures for node tests: relay and node processes (see tests/node/nodes.py)."""

from tests.node.nodes import node_factory, relays

__all__ = ["node_factory", "relays"]
