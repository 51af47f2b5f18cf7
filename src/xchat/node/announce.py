"""Our lists on relays: the inbox relay list (kind 10050) and the device bundle.

Theory of operation. :meth:`Announcer.announce` signs a new relay list and a new
bundle, sized to fit every inbox relay: each relay's NIP-11 ``max_content_length`` and
``max_message_length`` are read (at most ``NIP11_TIMEOUT``; a relay that publishes none
counts as 4,096 characters and 65,536 bytes) and the bundle carries as many one-time
keys as fit the smallest, at most ``one_time_keys``. Both go to every inbox relay, each
over a one-shot connection (``xchat.node.oneshot``: never one that carries gift wraps);
relays that do not answer get the same two events again with backoff (1 s doubling to
60 s) until they do or a newer announcement replaces them. A relay that refuses one
(``OK false``) gets a warning on its health and a ``warning`` event on the stream,
until it accepts them. :attr:`Announcer.announced` is set once a relay accepted each
of the two, which is all the node's start waits for: a relay that never answers cannot
hold it back.

:meth:`Announcer.keys_used` counts the sessions opened from the bundle; once half of its
one-time keys are used it asks for a new announcement (new keys replace them).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final

from xchat.core.device import DeviceBundle, LocalDevice
from xchat.core.events import sign_event
from xchat.crypto.keys import Rng, SecretKey
from xchat.node.oneshot import NIP11_TIMEOUT
from xchat.node.pool import RelayPool
from xchat.node.relay_client import PublishResult, RelayError
from xchat.wire.event import Event
from xchat.wire.kinds import KIND_INBOX_RELAYS

__all__ = ["KIND_INBOX_RELAYS", "Announcer"]

log = logging.getLogger("xchat.node")

RETRY_START: Final = 1.0
RETRY_MAX: Final = 60.0
_RELAY_LIST: Final = "inbox relay list"
_BUNDLE: Final = "device bundle"


class Announcer:
    """See the module docstring. Driven from the node's loop."""

    def __init__(
        self,
        pool: RelayPool,
        identity: SecretKey,
        device: Callable[[], LocalDevice],
        save_device: Callable[[], Awaitable[None]],
        own_relays: Callable[[], Awaitable[list[str]]],
        warn: Callable[[str, str], None],
        *,
        publish_timeout: float,
        one_time_keys: int,
        rng: Rng,
        clock: Callable[[], float],
    ) -> None:
        self._pool = pool
        self._identity = identity
        self._device = device
        self._save_device = save_device
        self._own_relays = own_relays
        self._tell = warn  # (relay, warning): for the user to see
        self._timeout = publish_timeout
        self._max_keys = one_time_keys
        self._rng = rng
        self._clock = clock
        #: Set once our relay list and bundle were each accepted by some relay.
        self.announced = asyncio.Event()
        self._generation = 0
        self._last_at = 0
        #: Per relay, what it answered to each list ("" = accepted).
        self._answers: dict[str, dict[str, str]] = {}
        #: One-time keys in the last bundle, and sessions opened from it since.
        self.bundle_keys = 0
        self._used = 0

    async def announce(self) -> None:
        """Publish a new relay list and bundle; retry relays that do not answer."""
        self._generation += 1
        generation = self._generation
        urls = await self._own_relays()
        if not urls:
            self.announced.set()
            return
        lists = await self._make(urls)
        pending = set(urls)
        delay = RETRY_START
        while generation == self._generation:
            pending = await self._publish(lists, sorted(pending))
            if not pending:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    def keys_used(self, count: int) -> bool:
        """``count`` sessions were opened from our bundle: True if it is time for a new
        one (half of its one-time keys used; asked once per bundle)."""
        self._used += count
        if self.bundle_keys and self._used * 2 >= self.bundle_keys:
            self._used = -(10**9)  # until the next bundle
            return True
        return False

    async def _make(self, urls: list[str]) -> dict[str, Event]:
        timeout = min(NIP11_TIMEOUT, self._timeout)
        limits = await asyncio.gather(*(self._pool.limits(url, timeout) for url in urls))
        now = max(int(self._clock()), self._last_at + 1)  # newer than the last: replaces it
        self._last_at = now
        relay_list = sign_event(
            self._identity,
            kind=KIND_INBOX_RELAYS,
            tags=[["relay", url] for url in urls],
            content="",
            created_at=now,
            rng=self._rng,
        )
        bundle = self._device().bundle_event(
            now,
            self._rng,
            self._max_keys,
            max_content=min(limit.max_content for limit in limits),
            max_message=min(limit.max_message for limit in limits),
        )
        await self._save_device()  # the account holds the new keys
        self._used = 0
        self.bundle_keys = len(DeviceBundle.from_event(bundle).one_time_keys)
        return {_RELAY_LIST: relay_list, _BUNDLE: bundle}

    async def _publish(self, lists: dict[str, Event], urls: list[str]) -> set[str]:
        """Publish ``lists`` to ``urls``; the relays that did not answer."""

        async def one(what: str, url: str) -> tuple[str, str, PublishResult | None]:
            try:
                result = await self._pool.publish_one(url, lists[what], self._timeout, signed=True)
            except RelayError:
                return what, url, None
            return what, url, result

        unanswered: set[str] = set()
        for job in asyncio.as_completed([one(what, url) for what in lists for url in urls]):
            what, url, result = await job
            if result is None:
                unanswered.add(url)
                continue
            self._answers.setdefault(url, {})[what] = (
                "" if result.accepted else (result.message or "refused")
            )
            self._warn(url)
            accepted = {w for a in self._answers.values() for w, why in a.items() if not why}
            if accepted >= set(lists):
                self.announced.set()
        return unanswered

    def _warn(self, url: str) -> None:
        """Show (or clear) the relay's warning; each refusal is also a stream event."""
        answers = self._answers.get(url, {})
        refused = [f"{what} ({why})" for what, why in sorted(answers.items()) if why]
        warning = ""
        if refused:
            warning = "refused your " + " and ".join(refused)
            if answers.get(_BUNDLE):
                warning += ": contacts who look only there cannot find your keys"
        self._pool.set_warning(url, warning)
        if warning:
            log.warning("a relay refused our bundle or relay list")
            self._tell(url, warning)
