"""What the API needs of whoever runs the node (``xchat.node.runner.NodeHost``).

A Protocol, so that the API package imports nothing from the runner (which imports the
API to serve it): the two meet only here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from xchat.node.node import Node

__all__ = ["Host"]


class Host(Protocol):
    @property
    def node(self) -> Node | None:
        """The running node; None while X Chat is locked or not set up."""
        ...

    @property
    def state(self) -> str:
        """``setup`` (no identity yet), ``locked`` or ``unlocked``."""
        ...

    async def create(
        self, phrase: str, passphrase: str, relays: Sequence[str] | None = None
    ) -> Node:
        """Create (or restore) the identity; ``relays``: the relays the user chose at
        onboarding (None: not asked; empty: only the relay on this computer)."""
        ...

    async def unlock(self, passphrase: str) -> Node: ...
    async def lock(self) -> None: ...
    async def phrase(self, passphrase: str) -> str: ...
    async def change_passphrase(self, old: str, new: str) -> None: ...
