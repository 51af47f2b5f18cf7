"""The local API's routes: each handler parses, calls one public method of the node
(or of its host) and answers with :mod:`~xchat.node.api.views` JSON."""

from __future__ import annotations

import asyncio
import io
import os
from importlib import resources
from typing import Any, Final

import orjson
import segno
from aiohttp import WSMsgType, web

from xchat.aio import reap
from xchat.core.identity import ContactCard, Identity
from xchat.core.message import MAX_TEXT_BYTES
from xchat.errors import InvalidInput, WrongPassphrase
from xchat.home.relays import DEFAULT_RELAYS_ABOUT, default_relays
from xchat.node.api import openapi
from xchat.node.api.guard import Guard, Locked, body, error, field, json
from xchat.node.api.host import Host
from xchat.node.api.views import contact_json, conversation_json, event_json, message_json
from xchat.node.node import Node
from xchat.wire.event import is_hex

__all__ = ["API_VERSION", "Api"]

API_VERSION: Final = 1
#: Limits a client shows (a counter near the composer).
LIMITS: Final = {"text_bytes": MAX_TEXT_BYTES}

_STATIC_TYPES: Final = {
    "html": "text/html",
    "js": "text/javascript",
    "css": "text/css",
    "svg": "image/svg+xml",
    "png": "image/png",
}


def _svg(content: str | bytes) -> web.Response:
    buffer = io.BytesIO()
    segno.make(content, error="m").save(buffer, kind="svg", scale=6, border=2)
    return web.Response(body=buffer.getvalue(), content_type="image/svg+xml")


def _pubkey(request: web.Request) -> str:
    value = request.match_info["pubkey"]
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise InvalidInput("A contact is named by its 64-hex public key in the path.")
    return value


class Api:
    """Routes bound to one host; see the package docstring."""

    def __init__(self, host: Host, guard: Guard) -> None:
        self.host = host
        self.guard = guard
        self._sockets: set[web.WebSocketResponse] = set()

    @property
    def node(self) -> Node:
        node = self.host.node
        if node is None:
            raise Locked
        return node

    # -- session: setup, unlock, lock ---------------------------------------------------

    def _session(self) -> dict[str, Any]:
        node = self.host.node
        return {"state": self.host.state, "npub": node.identity.npub if node else None}

    async def session(self, request: web.Request) -> web.Response:
        return json(self._session())

    async def new_phrase(self, request: web.Request) -> web.Response:
        """A fresh recovery phrase to show; nothing is stored until setup."""
        words = field(await body(request), "words", int, required=False) or 12
        if words not in (12, 24):
            raise InvalidInput("A recovery phrase has 12 or 24 words.")
        return json({"phrase": Identity.generate(os.urandom, words).phrase})

    async def setup(self, request: web.Request) -> web.Response:
        data = await body(request)
        relays = field(data, "relays", list, required=False)
        if relays is not None and not all(isinstance(url, str) for url in relays):
            raise InvalidInput("The field 'relays' must be a list of relay addresses.")
        await self.host.create(field(data, "phrase", str), field(data, "passphrase", str), relays)
        return json(self._session())

    async def unlock(self, request: web.Request) -> web.Response:
        data = await body(request)
        if self.host.state == "setup":
            raise InvalidInput("There is no identity yet: create or restore one.")
        await self.host.unlock(field(data, "passphrase", str))
        return json(self._session())

    async def lock(self, request: web.Request) -> web.Response:
        for ws in list(self._sockets):
            await ws.close()
        await self.host.lock()
        return json(self._session())

    async def phrase(self, request: web.Request) -> web.Response:
        data = await body(request)
        self.node  # noqa: B018 - only an unlocked X Chat shows the phrase
        return json({"phrase": await self.host.phrase(field(data, "passphrase", str))})

    async def change_passphrase(self, request: web.Request) -> web.Response:
        data = await body(request)
        self.node  # noqa: B018 - only an unlocked X Chat changes its passphrase
        old, new = field(data, "old", str), field(data, "new", str)
        try:
            await self.host.change_passphrase(old, new)
        except WrongPassphrase:
            return error(403, "wrong_passphrase", "That is not your current passphrase.")
        return web.Response(status=204)

    # -- identity and status ----------------------------------------------------------

    async def _card(self) -> ContactCard:
        relays = await self.node.own_relays()
        return ContactCard.create(self.node.identity.public_key, tuple(relays[:3]))

    async def identity(self, request: web.Request) -> web.Response:
        card = await self._card()
        return json(
            {
                "npub": card.npub,
                "pubkey": self.node.pubkey,
                "nprofile": card.nprofile,
                "uri": card.uri,
                "relays": await self.node.own_relays(),
                "device": self.node.channel.device.certificate.device_id,
            }
        )

    async def identity_qr(self, request: web.Request) -> web.Response:
        return _svg((await self._card()).uri)

    async def safety_qr(self, request: web.Request) -> web.Response:
        info = await self.node.safety_number(_pubkey(request))
        return _svg(bytes.fromhex(info["qr_payload"]))

    async def status(self, request: web.Request) -> web.Response:
        return json({"api_version": API_VERSION, "limits": LIMITS, **await self.node.status()})

    # -- contacts ------------------------------------------------------------------------

    def _contact(self, contact: Any) -> dict[str, Any]:
        return contact_json(contact, self.node.contact_marks(contact))

    async def contacts(self, request: web.Request) -> web.Response:
        return json([self._contact(c) for c in await self.node.contact_list()])

    async def add_contact(self, request: web.Request) -> web.Response:
        data = await body(request)
        address = field(data, "address", str)
        name = field(data, "name", str, required=False)
        contact, already = await self.node.add_contact(address, name)
        view = self._contact(contact)
        if already:
            return json({**view, "already_contact": True})
        return json(view, 201)

    async def update_contact(self, request: web.Request) -> web.Response:
        data = await body(request)
        contact = await self.node.set_contact(
            _pubkey(request),
            name=field(data, "name", str, required=False),
            state=field(data, "state", str, required=False),
        )
        return json(self._contact(contact))

    async def safety_number(self, request: web.Request) -> web.Response:
        return json(await self.node.safety_number(_pubkey(request)))

    async def verify(self, request: web.Request) -> web.Response:
        verified = field(await body(request), "verified", bool)
        return json(await self.node.mark_verified(_pubkey(request), verified))

    # -- conversations and messages -----------------------------------------------------

    async def conversations(self, request: web.Request) -> web.Response:
        return json([conversation_json(c) for c in await self.node.conversations()])

    async def conversation(self, request: web.Request) -> web.Response:
        found = await self.node.conversation(request.match_info["id"])
        for summary in await self.node.conversations():
            if summary.conversation.id == found.id:
                return json(conversation_json(summary))
        raise web.HTTPNotFound(reason="no such conversation")

    async def messages(self, request: web.Request) -> web.Response:
        try:
            limit = int(request.query.get("limit", "50"))
            before_ts = request.query.get("before_sent_at")
            before_seq = request.query.get("before_seq")
            before = (int(before_ts), int(before_seq or 2**62)) if before_ts is not None else None
        except ValueError:
            raise InvalidInput("limit, before_sent_at and before_seq are integers.") from None
        if not 1 <= limit <= 500:
            raise InvalidInput("The limit must be 1 to 500.")
        ref = request.match_info["id"]
        if is_hex(ref, 64) and await self.node.direct_conversation(ref) is None:
            return json([])  # the alias of someone we have no conversation with (yet)
        conversation = await self.node.conversation(ref)
        rows = await self.node.messages(conversation.id, before, limit)
        return json([message_json(r) for r in rows])

    async def send(self, request: web.Request) -> web.Response:
        data = await body(request)
        text = field(data, "text", str)
        reply_to = field(data, "reply_to", str, required=False)
        client_id = field(data, "client_id", str, required=False)
        # the id (or a contact's key) is resolved with the rest of the send, in one hop
        row = await self.node.send_text(request.match_info["id"], text, reply_to, client_id)
        return json(message_json(row), 201)

    async def mark_read(self, request: web.Request) -> web.Response:
        conversation = await self.node.conversation(request.match_info["id"])
        return json({"read": await self.node.mark_read(conversation.id)})

    async def search(self, request: web.Request) -> web.Response:
        text = request.query.get("q", "")
        if not text.strip():
            raise InvalidInput("Give the text to search for as ?q=.")
        return json([message_json(r) for r in await self.node.search(text, 100)])

    async def message(self, request: web.Request) -> web.Response:
        return json(message_json(await self.node.message(request.match_info["id"])))

    async def edit(self, request: web.Request) -> web.Response:
        text = field(await body(request), "text", str)
        return json(message_json(await self.node.edit(request.match_info["id"], text)))

    async def delete(self, request: web.Request) -> web.Response:
        return json(message_json(await self.node.delete(request.match_info["id"])))

    async def react(self, request: web.Request) -> web.Response:
        emoji = field(await body(request), "emoji", str)
        return json(message_json(await self.node.react(request.match_info["id"], emoji)))

    async def retry(self, request: web.Request) -> web.Response:
        return json(message_json(await self.node.retry(request.match_info["id"])))

    # -- relays and settings -----------------------------------------------------------------

    async def relays(self, request: web.Request) -> web.Response:
        return json(
            {
                "inbox": await self.node.own_relays(),
                "embedded": self.node.embedded_relay,
                "health": [h.to_json() for h in self.node.pool.health()],
            }
        )

    async def default_relays(self, request: web.Request) -> web.Response:
        return json({"relays": list(default_relays()), "about": DEFAULT_RELAYS_ABOUT})

    async def add_relay(self, request: web.Request) -> web.Response:
        urls = await self.node.add_relay(field(await body(request), "url", str))
        return json({"inbox": urls}, 201)

    async def remove_relay(self, request: web.Request) -> web.Response:
        return json({"inbox": await self.node.remove_relay(request.query.get("url", ""))})

    async def settings(self, request: web.Request) -> web.Response:
        return json({"read_receipts": await self.node.read_receipts_enabled()})

    async def update_settings(self, request: web.Request) -> web.Response:
        enabled = field(await body(request), "read_receipts", bool, required=False)
        if enabled is not None:
            await self.node.set_read_receipts(enabled)
        return await self.settings(request)

    # -- the stream ----------------------------------------------------------------------------

    async def stream(self, request: web.Request) -> web.WebSocketResponse:
        node = self.node
        ws = web.WebSocketResponse(heartbeat=20, max_msg_size=4096)
        await ws.prepare(request)
        self._sockets.add(ws)
        try:
            await self._pump_stream(ws, node)
        finally:
            self._sockets.discard(ws)
        await ws.close()
        return ws

    async def _pump_stream(self, ws: web.WebSocketResponse, node: Node) -> None:
        async with node.subscribe() as queue:
            await ws.send_str(orjson.dumps({"type": "hello", "api_version": API_VERSION}).decode())

            async def drain_client() -> None:
                async for msg in ws:
                    if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                        return

            reader = asyncio.create_task(drain_client())
            try:
                while not ws.closed and not reader.done():
                    getter = asyncio.create_task(queue.get())
                    done, _ = await asyncio.wait(
                        [getter, reader], return_when=asyncio.FIRST_COMPLETED
                    )
                    if getter not in done:
                        getter.cancel()
                        break
                    for item in event_json(getter.result(), node.contact_marks):
                        await ws.send_str(orjson.dumps(item).decode())
            except (ConnectionResetError, RuntimeError):
                pass
            finally:
                await reap(reader)

    async def openapi_doc(self, request: web.Request) -> web.Response:
        return json(openapi.document())

    async def static(self, request: web.Request) -> web.StreamResponse:
        """X Chat Web's files (package data), with a strict Content-Security-Policy.

        Paths may name files in folders of the web app (``chat/list.js``); no part may
        be empty or start with a dot, so nothing outside it can be named."""
        name = request.match_info.get("name") or "index.html"
        parts = name.split("/")
        kind = _STATIC_TYPES.get(name.rsplit(".", 1)[-1])
        resource = resources.files("xchat") / "web"
        for part in parts:
            if not part or part.startswith(".") or "\\" in part:
                raise web.HTTPNotFound(reason="no such file")
            resource = resource / part
        if kind is None or len(parts) > 3 or not resource.is_file():
            raise web.HTTPNotFound(reason="no such file")
        port = self.guard.port_ref[0]
        response = web.Response(body=resource.read_bytes(), content_type=kind)
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
            f"connect-src 'self' ws://127.0.0.1:{port} ws://localhost:{port}; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )
        response.headers["X-Frame-Options"] = "DENY"
        return response
