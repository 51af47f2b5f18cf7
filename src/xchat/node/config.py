"""How a node runs: :class:`NodeConfig`, and its tuning from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final

from xchat.errors import InvalidInput
from xchat.node.pool import RESYNC_INTERVAL

__all__ = ["GAP_GRACE", "NodeConfig", "config_from_env"]

#: Default of NodeConfig.gap_grace: longer than a sender retries an envelope (12
#: attempts, about six to eight minutes), so a message still in its outbox can come.
GAP_GRACE: Final = 600.0


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """How to run a node. ``relays`` are added to the stored inbox relays."""

    relays: tuple[str, ...] = ()
    #: Longest wait for one relay's answer to a publish (connecting included).
    publish_timeout: float = 10.0
    #: How often stored mail is re-read from each inbox relay (relays can drop live
    #: events); see :data:`xchat.node.pool.RESYNC_INTERVAL`.
    resync_interval: float = RESYNC_INTERVAL
    #: Publish bundles with up to this many one-time keys (fewer if the inbox relays'
    #: content limits need it); republish when half of them are used.
    one_time_keys: int = 50
    #: How long an envelope far ahead in its chain waits, at least, for the ones before
    #: it once every inbox relay was read back (seconds); see ``xchat.core.holdback``.
    gap_grace: float = GAP_GRACE


def config_from_env() -> NodeConfig:
    """Defaults, with tuning from the environment (tests use short timers):
    ``XCHAT_PUBLISH_TIMEOUT``, ``XCHAT_RESYNC_INTERVAL`` and ``XCHAT_GAP_GRACE``, in
    seconds."""
    values: dict[str, float] = {}
    for name, var in (
        ("publish_timeout", "XCHAT_PUBLISH_TIMEOUT"),
        ("resync_interval", "XCHAT_RESYNC_INTERVAL"),
        ("gap_grace", "XCHAT_GAP_GRACE"),
    ):
        if (text := os.environ.get(var)) is not None:
            try:
                value = float(text)
            except ValueError:
                raise InvalidInput(f"{var} must be a number of seconds") from None
            if not 0.1 <= value <= 86400:
                raise InvalidInput(f"{var} must be between 0.1 and 86400 seconds")
            values[name] = value
    return NodeConfig(**values)  # type: ignore[arg-type]
