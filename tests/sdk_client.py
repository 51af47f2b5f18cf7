"""A nostr-sdk client on one relay for interop tests, recording what the relay sends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import nostr_sdk as sdk
import orjson


class SdkListener:
    """Every relay message the client got (as JSON) and its new events, pumped from the
    client's notifications; :meth:`close` shuts the client down."""

    #: How long :meth:`wait_for_message` waits when not told.
    wait_seconds = 5.0

    def __init__(self, client: sdk.Client, url: str) -> None:
        self.client = client
        self.url = sdk.RelayUrl.parse(url)
        self.messages: list[list[Any]] = []
        self.new_events: asyncio.Queue[sdk.Event] = asyncio.Queue()
        self._stream = client.notifications()
        self._pump = asyncio.create_task(self._read())

    def on_event(self, event: sdk.Event) -> None:
        self.new_events.put_nowait(event)

    async def _read(self) -> None:
        while (note := await self._stream.next()) is not None:
            if note.is_message():
                assert isinstance(note, sdk.ClientNotification.MESSAGE)
                self.messages.append(orjson.loads(note.message.as_json()))
            elif note.is_new_event():
                assert isinstance(note, sdk.ClientNotification.NEW_EVENT)
                self.on_event(note.event)

    async def wait_for_message(
        self, match: Callable[[list[Any]], bool], timeout: float | None = None
    ) -> list[Any]:
        timeout = self.wait_seconds if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.messages:
                if match(message):
                    return message
            await asyncio.sleep(0.01)
        raise AssertionError(f"no such message within {timeout} s: {self.messages}")

    async def close(self) -> None:
        await self.client.shutdown()
        try:
            async with asyncio.timeout(5):
                await self._pump
        except TimeoutError:
            self._pump.cancel()
