"""Small asyncio helpers shared by the relay and the node (standard library only)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

__all__ = ["reap"]


async def reap(*tasks: asyncio.Future[Any]) -> None:
    """Cancel ``tasks`` and wait until every one ended, whatever it raised.

    Not ``suppress(CancelledError)`` around each await: that would also swallow a
    cancellation of the caller itself while it waits, and a cancelled worker would
    then carry on. Here the caller's own cancellation is raised again once all ended.
    """
    for task in tasks:
        task.cancel()
    cancelled = False
    current = asyncio.current_task()
    for task in tasks:
        while not task.done():
            try:
                # its own failure does not matter: it has ended, which is all we want
                with contextlib.suppress(Exception):
                    await task
            except asyncio.CancelledError:
                cancelled = cancelled or (current is not None and current.cancelling() > 0)
    if cancelled:
        raise asyncio.CancelledError
