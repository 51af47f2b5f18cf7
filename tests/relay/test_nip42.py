"""NIP-42 against a real relay: the ``relay`` tag must name this relay as it knows itself
(never as the client's Host header says), AUTH is rate-limited and keys per connection
capped (relay/auth.py, docs/threat-model.md "NIP-42 relayed")."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import aiohttp
import orjson
import pytest

from tests.relay.conftest import RelayProcess, make_event, new_key
from xchat.core.events import sign_event
from xchat.crypto.keys import SecretKey
from xchat.errors import InvalidInput
from xchat.relay.auth import RelayAddresses
from xchat.relay.config import load_config
from xchat.wire import messages as m
from xchat.wire.event import Event


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


class Client:
    """A raw WebSocket client: AUTH with any ``relay`` tag, and read gift wraps."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, challenge: str) -> None:
        self.ws = ws
        self.challenge = challenge

    @classmethod
    async def connect(
        cls, session: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
    ) -> Client:
        ws = await session.ws_connect(url, headers=headers)
        first = orjson.loads((await ws.receive(5)).data)
        assert first[0] == "AUTH"
        return cls(ws, first[1])

    async def reply(self) -> list[Any]:
        msg = await self.ws.receive(10)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        return orjson.loads(msg.data)  # type: ignore[no-any-return]

    def auth_event(self, key: SecretKey, relay_url: str) -> Event:
        return sign_event(
            key,
            kind=22242,
            tags=[["relay", relay_url], ["challenge", self.challenge]],
            content="",
            created_at=int(time.time()),
            rng=os.urandom,
        )

    async def auth(self, key: SecretKey, relay_url: str) -> tuple[bool, str]:
        event = self.auth_event(key, relay_url)
        await self.ws.send_str(m.auth_message(event))
        ok = await self.reply()
        assert ok[:2] == ["OK", event.id]
        return ok[2], ok[3]

    async def gift_wraps(self, key: SecretKey) -> list[str] | str:
        """The ids of gift wraps to ``key`` served, or the CLOSED reason."""
        wanted = {"kinds": [1059], "#p": [key.public_key.hex]}
        await self.ws.send_str(m.req_message("w", [wanted]))
        ids = []
        while True:
            reply = await self.reply()
            if reply[0] == "EVENT":
                ids.append(reply[2]["id"])
            elif reply[0] == "EOSE":
                await self.ws.send_str(m.close_message("w"))
                return ids
            elif reply[0] == "CLOSED":
                return str(reply[2])


async def _publish_wrap(session: aiohttp.ClientSession, url: str, to: SecretKey) -> Event:
    wrap = make_event(new_key(), kind=1059, content="opaque", tags=[["p", to.public_key.hex]])
    client = await Client.connect(session, url)
    await client.ws.send_str(m.publish_message(wrap))
    assert (await client.reply())[:3] == ["OK", wrap.id, True]
    await client.ws.close()
    return wrap


async def _refusal(client: Client, key: SecretKey) -> str:
    """The CLOSED reason of a REQ for ``key``'s gift wraps (it must be refused)."""
    served = await client.gift_wraps(key)
    assert isinstance(served, str), f"served {served}"
    return served


def _port(relay: RelayProcess) -> int:
    return int(relay.url.rsplit(":", 1)[1])


def test_auth_must_name_the_address_the_relay_listens_on(relay: RelayProcess) -> None:
    port = _port(relay)
    other_port = port + 1 if port < 65535 else port - 1
    victim = new_key()
    refused_urls = [
        f"ws://127.0.0.1:{other_port}",  # another port on the same host
        f"ws://evil.example:{port}",  # another host
        f"ws://127.0.0.2:{port}",
        f"wss://127.0.0.1:{port}",  # another scheme
        f"http://127.0.0.1:{port}",
        "ws://127.0.0.1",  # no port: 80
        "not a url",
    ]

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            wrap = await _publish_wrap(session, relay.url, victim)
            for url in refused_urls:
                client = await Client.connect(session, relay.url)
                accepted, reason = await client.auth(victim, url)
                assert not accepted, url
                assert reason.startswith("invalid: the relay tag does not name this relay")
                assert reason.endswith(f"(ws://127.0.0.1:{port})")
                assert (await _refusal(client, victim)).startswith("auth-required:"), url
                await client.ws.close()
            # The proxy attack: the client names the host it likes in Host, and signs it.
            proxied = await Client.connect(
                session, relay.url, headers={"Host": f"evil.example:{port}"}
            )
            accepted, _ = await proxied.auth(victim, f"ws://evil.example:{port}")
            assert not accepted
            assert (await _refusal(proxied, victim)).startswith("auth-required:")
            # Its own address, as written or normalized (localhost for a loopback bind).
            for url in (relay.url, f"WS://LOCALHOST:{port}/", f"ws://127.0.0.1:{port}/"):
                client = await Client.connect(session, relay.url)
                assert await client.auth(victim, url) == (True, ""), url
                assert await client.gift_wraps(victim) == [wrap.id]
                await client.ws.close()

    run(scenario())


def test_with_a_public_url_only_that_url_is_accepted(relay_factory: Any) -> None:
    relay = relay_factory(public_urls=["wss://Relay.Example.com/", "ws://127.0.0.1:1"])
    victim = new_key()

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            wrap = await _publish_wrap(session, relay.url, victim)
            for url in (
                relay.url,  # the address it listens on: not public, refused
                "ws://relay.example.com",  # scheme
                "wss://relay.example.com:8443",  # port
                "wss://relay.example.org",  # host
            ):
                client = await Client.connect(session, relay.url)
                accepted, reason = await client.auth(victim, url)
                assert not accepted, url
                assert reason.startswith("invalid:")
                assert (await _refusal(client, victim)).startswith("auth-required:")
                await client.ws.close()
            for url in ("wss://relay.example.com", "wss://RELAY.example.com:443/"):
                client = await Client.connect(session, relay.url)
                assert await client.auth(victim, url) == (True, ""), url
                assert await client.gift_wraps(victim) == [wrap.id]
                await client.ws.close()

    run(scenario())


def test_auth_is_rate_limited_and_keys_per_connection_capped(relay_factory: Any) -> None:
    relay = relay_factory("[limits]\nmax_auth_keys = 3\nauth_burst = 6\nauth_per_second = 0.01\n")
    keys = [new_key() for _ in range(5)]

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            client = await Client.connect(session, relay.url)
            for key in keys[:3]:
                assert await client.auth(key, relay.url) == (True, "")
            accepted, reason = await client.auth(keys[3], relay.url)
            assert not accepted
            assert reason == (
                "blocked: at most 3 keys per connection; authenticate the others on "
                "another connection"
            )
            assert await client.auth(keys[0], relay.url) == (True, "")  # already counted
            accepted, reason = await client.auth(keys[4], relay.url)
            assert (accepted, reason.split(":")[0]) == (False, "blocked")
            # Six AUTH messages spent the burst: the seventh is refused unread.
            accepted, reason = await client.auth(keys[0], relay.url)
            assert not accepted
            assert reason == "rate-limited: at most 0.01 AUTH messages per second on one connection"
            # Another connection has its own allowance.
            fresh = await Client.connect(session, relay.url)
            assert await fresh.auth(keys[3], relay.url) == (True, "")

    run(scenario())


def test_an_auth_flood_gets_answers_and_others_are_served(relay_factory: Any) -> None:
    relay = relay_factory("[limits]\nauth_burst = 2000\nauth_per_second = 0.01\n")
    key, reader = new_key(), new_key()

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            wrap = await _publish_wrap(session, relay.url, reader)
            flooder = await Client.connect(session, relay.url)
            good = flooder.auth_event(key, relay.url)
            forged = {**good.to_dict(), "sig": "ab" * 64}  # valid form, bad sig
            text = orjson.dumps(["AUTH", forged]).decode()
            for _ in range(3000):
                await flooder.ws.send_str(text)
            other = await Client.connect(session, relay.url)
            assert await other.auth(reader, relay.url) == (True, "")
            assert await other.gift_wraps(reader) == [wrap.id]
            replies = [await flooder.reply() for _ in range(3000)]
            reasons = [r[3].split(":")[0] for r in replies]
            assert all(r[:3] == ["OK", good.id, False] for r in replies)
            assert reasons.count("invalid") == 2000  # the burst, each checked and refused
            assert reasons.count("rate-limited") == 1000

    run(scenario())


def test_public_url_setting_is_normalized_and_checked(tmp_path: Any) -> None:
    config = tmp_path / "relay.toml"
    config.write_text('[relay]\npublic_url = ["WSS://Relay.Example.com:443/", "ws://h:81"]\n')
    assert load_config(config).public_url == ("wss://relay.example.com", "ws://h:81")
    assert load_config(public_url=["wss://a.example/"]).public_url == ("wss://a.example",)
    assert load_config().public_url == ()
    with pytest.raises(InvalidInput, match="not a relay address"):
        load_config(public_url=["https://relay.example.com"])
    config.write_text("[relay]\npublic_url = 7\n")
    with pytest.raises(InvalidInput, match="must be a URL or a list of URLs"):
        load_config(config)


def test_which_urls_name_the_relay() -> None:
    loopback = RelayAddresses(())
    loopback.listening([("127.0.0.1", 7447)])
    assert loopback.accepts("ws://localhost:7447/", None)
    assert not loopback.accepts("ws://127.0.0.1:7448", None)
    assert not loopback.accepts(None, None)
    ipv6 = RelayAddresses(())
    ipv6.listening([("::1", 7447)])
    assert ipv6.accepts("ws://[::1]:7447", None)
    assert ipv6.accepts("ws://localhost:7447", None)
    # Bound to every address: the local address the connection arrived on, nothing else.
    everywhere = RelayAddresses(())
    everywhere.listening([("0.0.0.0", 7447), ("::", 7447)])
    assert everywhere.wildcard
    assert everywhere.accepts("ws://192.0.2.7:7447", ("192.0.2.7", 7447))
    assert everywhere.accepts("ws://[2001:db8::1]:7447", ("2001:db8::1", 7447))
    assert not everywhere.accepts("ws://192.0.2.8:7447", ("192.0.2.7", 7447))
    assert not everywhere.accepts("ws://0.0.0.0:7447", ("192.0.2.7", 7447))
    assert not everywhere.accepts("ws://relay.example:7447", ("192.0.2.7", 7447))
    # A public URL replaces all of that.
    public = RelayAddresses(["wss://relay.example.com"])
    public.listening([("0.0.0.0", 7447)])
    assert not public.wildcard
    assert public.accepts("wss://relay.example.com:443", ("192.0.2.7", 7447))
    assert not public.accepts("ws://192.0.2.7:7447", ("192.0.2.7", 7447))
