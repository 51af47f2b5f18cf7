"""NodeStore implements every store Protocol of xchat.core.stores, method by method.

(The store may not import the core, so the check is here: each Protocol method exists
on NodeStore with the same parameters, in the same order, with the same defaults.)
"""

from __future__ import annotations

import inspect

import pytest

from xchat.core import stores
from xchat.store.node import NodeStore

PROTOCOLS = [
    stores.SettingsStore,
    stores.ContactStore,
    stores.ConversationStore,
    stores.MessageStore,
    stores.OutboxStore,
    stores.InboxStore,
    stores.SessionStore,
    stores.NodeStoreProtocol,
]


def methods(protocol: type) -> list[str]:
    return [
        name
        for klass in protocol.__mro__
        if klass not in (object,) and getattr(klass, "_is_protocol", False)
        for name, value in vars(klass).items()
        if callable(value) and not name.startswith("_")
    ]


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.__name__)
def test_node_store_has_every_method(protocol: type) -> None:
    names = methods(protocol)
    assert names
    for name in names:
        wanted = inspect.signature(getattr(protocol, name))
        have = inspect.signature(getattr(NodeStore, name))
        assert list(have.parameters) == list(wanted.parameters), name
        for param, theirs in wanted.parameters.items():
            ours = have.parameters[param]
            assert ours.kind == theirs.kind, (name, param)
            if theirs.default is not inspect.Parameter.empty and theirs.default is not ...:
                assert ours.default == theirs.default, (name, param)
