"""The node's local API: JSON over HTTP and a WebSocket stream, on 127.0.0.1 only.

Who may call it: whoever holds the bearer token, which the node writes to
``<home>/node.json`` (owner-only) when it starts and puts in the web app's login URL.
Every request must also name the node itself in ``Host`` (a DNS-rebinding page names
its own host) and, when a browser sends ``Origin``, come from the node's own origin
(another site's page cannot post to the API). Browsers cannot set headers on a
WebSocket, so the stream also takes the token as ``?token=``.

The API is described by an OpenAPI 3.1 document (:mod:`xchat.node.openapi`), served at
``/api/openapi.json``; the tests check every response against it. Errors are
``{"error": {"code": ..., "message": ...}}`` with a 4xx status; messages never contain
keys or message text.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import logging
import os
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any, Final

import orjson
import segno
from aiohttp import WSMsgType, web

from xchat.aio import reap
from xchat.core.identity import ContactCard, Identity
from xchat.errors import (
    InvalidInput,
    KeystoreError,
    LocalProtocolError,
    WrongPassphrase,
    XChatError,
)
from xchat.node import openapi
from xchat.node.service import Node, message_json
from xchat.store.node import ConversationRow

if TYPE_CHECKING:
    from xchat.node.runner import NodeHost

__all__ = ["API_VERSION", "make_app"]

log = logging.getLogger("xchat.node")

API_VERSION: Final = 1
_MAX_BODY: Final = 256 * 1024
_PUBLIC: Final = frozenset({"/api/openapi.json"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _svg(content: str | bytes) -> web.Response:
    buffer = io.BytesIO()
    segno.make(content, error="m").save(buffer, kind="svg", scale=6, border=2)
    return web.Response(body=buffer.getvalue(), content_type="image/svg+xml")


def _error(status: int, code: str, message: str) -> web.Response:
    return _json({"error": {"code": code, "message": message}}, status)


def conversation_json(row: ConversationRow) -> dict[str, Any]:
    card = ContactCard.create(_key(row.pubkey))
    return {
        "pubkey": row.pubkey,
        "npub": card.npub,
        "name": row.name,
        "state": row.state,
        "last_activity": row.last_activity,
        "last_message": message_json(row.last_message) if row.last_message else None,
        "unread": row.unread,
        "forward_secret": row.forward_secret,
    }


def _key(pubkey: str) -> Any:
    from xchat.crypto.keys import PublicKey

    return PublicKey.from_hex(pubkey)


def _pubkey(request: web.Request) -> str:
    value = request.match_info["pubkey"]
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise InvalidInput("a contact is named by its 64-hex public key in the path")
    return value


async def _body(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > _MAX_BODY:
        raise InvalidInput("the request body is too large")
    raw = await request.read()
    if len(raw) > _MAX_BODY:
        raise InvalidInput("the request body is too large")
    try:
        data = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError:
        raise InvalidInput("the request body is not JSON") from None
    if not isinstance(data, dict):
        raise InvalidInput("the request body must be a JSON object")
    return data


def _field(data: dict[str, Any], name: str, kind: type, *, required: bool = True) -> Any:
    value = data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidInput(f"field {name!r} must be a {kind.__name__}")
    return value


class _Locked(Exception):
    """The identity is not unlocked: only the session, setup and unlock calls work."""


def _status_of(exc: XChatError) -> tuple[int, str]:
    """The HTTP status and error code for an X Chat error."""
    if isinstance(exc, WrongPassphrase):
        return 400, "wrong_passphrase"
    if isinstance(exc, InvalidInput):
        return 400, "invalid_input"
    if isinstance(exc, LocalProtocolError):
        return 409, "conflict"
    if isinstance(exc, KeystoreError):
        return 500, "store_error"
    return 502, "remote_error"


class Api:
    """Routes bound to one node; see the module docstring."""

    def __init__(self, host: NodeHost, token: str, port_ref: list[int]) -> None:
        self.host = host
        self.token = token
        self.port_ref = port_ref  # filled in once the socket is bound
        self._sockets: set[web.WebSocketResponse] = set()

    @property
    def node(self) -> Node:
        node = self.host.node
        if node is None:
            raise _Locked
        return node

    # -- guards -------------------------------------------------------------------

    def _allowed_hosts(self) -> set[str]:
        port = self.port_ref[0]
        return {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}

    def _refusal(self, request: web.Request) -> web.Response | None:
        """Why a request is refused (Host, Origin, token), or None."""
        if request.host not in self._allowed_hosts():
            return _error(403, "forbidden_host", "this API answers only to 127.0.0.1")
        origin = request.headers.get("Origin")
        if origin is not None and origin.removeprefix("http://") not in self._allowed_hosts():
            return _error(403, "forbidden_origin", "cross-site requests are refused")
        if request.path.startswith("/api/") and request.path not in _PUBLIC:
            header = request.headers.get("Authorization", "")
            supplied = header[len("Bearer ") :] if header.startswith("Bearer ") else ""
            if request.path == "/api/stream" and not header:
                supplied = request.query.get("token", "")
            if not hmac.compare_digest(supplied.encode(), self.token.encode()):
                return _error(401, "unauthorized", "a valid bearer token is required")
        return None

    @web.middleware
    async def guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code = "not_found" if exc.status == 404 else "http_error"
            return _error(exc.status, code, exc.reason)
        except _Locked:
            return _error(423, "locked", "X Chat is locked: unlock it with your passphrase")
        except XChatError as exc:
            status, code = _status_of(exc)
            if status == 500:
                log.error("the node database failed: %s", type(exc).__name__)
            return _error(status, code, str(exc))
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    # -- session: setup, unlock, lock ---------------------------------------------------

    def _session(self) -> dict[str, Any]:
        node = self.host.node
        return {"state": self.host.state, "npub": node.identity.npub if node else None}

    async def session(self, request: web.Request) -> web.Response:
        return _json(self._session())

    async def new_phrase(self, request: web.Request) -> web.Response:
        """A fresh recovery phrase to show; nothing is stored until setup."""
        words = _field(await _body(request), "words", int, required=False) or 12
        if words not in (12, 24):
            raise InvalidInput("a recovery phrase has 12 or 24 words")
        return _json({"phrase": Identity.generate(os.urandom, words).phrase})

    async def setup(self, request: web.Request) -> web.Response:
        data = await _body(request)
        await self.host.create(_field(data, "phrase", str), _field(data, "passphrase", str))
        return _json(self._session())

    async def unlock(self, request: web.Request) -> web.Response:
        data = await _body(request)
        if self.host.state == "setup":
            raise InvalidInput("there is no identity yet: create or restore one")
        await self.host.unlock(_field(data, "passphrase", str))
        return _json(self._session())

    async def lock(self, request: web.Request) -> web.Response:
        for ws in list(self._sockets):
            await ws.close()
        await self.host.lock()
        return _json(self._session())

    async def phrase(self, request: web.Request) -> web.Response:
        data = await _body(request)
        self.node  # noqa: B018 - only an unlocked X Chat shows the phrase
        phrase = await self.host.phrase(_field(data, "passphrase", str))
        return _json({"phrase": phrase})

    # -- identity and status ----------------------------------------------------------

    async def identity(self, request: web.Request) -> web.Response:
        relays = await self.node.own_relays()
        card = ContactCard.create(self.node.identity.public_key, tuple(relays[:3]))
        return _json(
            {
                "npub": card.npub,
                "pubkey": self.node.pubkey,
                "nprofile": card.nprofile,
                "uri": card.uri,
                "relays": relays,
                "device": self.node.channel.device.certificate.device_id,
            }
        )

    async def identity_qr(self, request: web.Request) -> web.Response:
        relays = await self.node.own_relays()
        card = ContactCard.create(self.node.identity.public_key, tuple(relays[:3]))
        return _svg(card.uri)

    async def safety_qr(self, request: web.Request) -> web.Response:
        info = await self.node.safety_number(_pubkey(request))
        return _svg(bytes.fromhex(info["qr_payload"]))

    async def status(self, request: web.Request) -> web.Response:
        return _json({"api_version": API_VERSION, **await self.node.status()})

    # -- contacts ------------------------------------------------------------------------

    async def contacts(self, request: web.Request) -> web.Response:
        rows = await self.node._db(self.node.store.contacts)
        return _json([self.node.contact_view(c) for c in rows])

    async def add_contact(self, request: web.Request) -> web.Response:
        data = await _body(request)
        address = _field(data, "address", str)
        name = _field(data, "name", str, required=False)
        contact = await self.node.add_contact(address, name)
        return _json(self.node.contact_view(contact), 201)

    async def update_contact(self, request: web.Request) -> web.Response:
        data = await _body(request)
        contact = await self.node.set_contact(
            _pubkey(request),
            name=_field(data, "name", str, required=False),
            state=_field(data, "state", str, required=False),
        )
        return _json(self.node.contact_view(contact))

    async def safety_number(self, request: web.Request) -> web.Response:
        return _json(await self.node.safety_number(_pubkey(request)))

    async def verify(self, request: web.Request) -> web.Response:
        data = await _body(request)
        verified = _field(data, "verified", bool)
        return _json(await self.node.mark_verified(_pubkey(request), verified))

    # -- conversations and messages -----------------------------------------------------

    async def conversations(self, request: web.Request) -> web.Response:
        return _json([conversation_json(c) for c in await self.node.conversations()])

    async def messages(self, request: web.Request) -> web.Response:
        pubkey = _pubkey(request)
        try:
            limit = int(request.query.get("limit", "50"))
            before_ts = request.query.get("before_sent_at")
            before_seq = request.query.get("before_seq")
            before = (int(before_ts), int(before_seq or 2**62)) if before_ts is not None else None
        except ValueError:
            raise InvalidInput("limit, before_sent_at and before_seq are integers") from None
        if not 1 <= limit <= 500:
            raise InvalidInput("limit must be 1 to 500")
        rows = await self.node.messages(pubkey, before, limit)
        return _json([message_json(r) for r in rows])

    async def send(self, request: web.Request) -> web.Response:
        data = await _body(request)
        text = _field(data, "text", str)
        reply_to = _field(data, "reply_to", str, required=False)
        client_id = _field(data, "client_id", str, required=False)
        row = await self.node.send_text(_pubkey(request), text, reply_to, client_id)
        return _json(message_json(row), 201)

    async def mark_read(self, request: web.Request) -> web.Response:
        ids = await self.node.mark_read(_pubkey(request))
        return _json({"read": ids})

    async def search(self, request: web.Request) -> web.Response:
        text = request.query.get("q", "")
        if not text.strip():
            raise InvalidInput("give the text to search for as ?q=")
        rows = await self.node._db(self.node.store.search, text, 100)
        return _json([message_json(r) for r in rows])

    async def message(self, request: web.Request) -> web.Response:
        row = await self.node._message(request.match_info["id"])
        return _json(message_json(row))

    async def edit(self, request: web.Request) -> web.Response:
        data = await _body(request)
        row = await self.node.edit(request.match_info["id"], _field(data, "text", str))
        return _json(message_json(row))

    async def delete(self, request: web.Request) -> web.Response:
        return _json(message_json(await self.node.delete(request.match_info["id"])))

    async def react(self, request: web.Request) -> web.Response:
        data = await _body(request)
        row = await self.node.react(request.match_info["id"], _field(data, "emoji", str))
        return _json(message_json(row))

    async def retry(self, request: web.Request) -> web.Response:
        return _json(message_json(await self.node.retry(request.match_info["id"])))

    # -- relays and settings -----------------------------------------------------------------

    async def relays(self, request: web.Request) -> web.Response:
        return _json(
            {
                "inbox": await self.node.own_relays(),
                "embedded": self.node.embedded_relay,
                "health": [h.to_json() for h in self.node.pool.health()],
            }
        )

    async def add_relay(self, request: web.Request) -> web.Response:
        data = await _body(request)
        urls = await self.node.add_relay(_field(data, "url", str))
        return _json({"inbox": urls}, 201)

    async def remove_relay(self, request: web.Request) -> web.Response:
        url = request.query.get("url", "")
        return _json({"inbox": await self.node.remove_relay(url)})

    async def settings(self, request: web.Request) -> web.Response:
        return _json({"read_receipts": await self.node.read_receipts_enabled()})

    async def update_settings(self, request: web.Request) -> web.Response:
        data = await _body(request)
        enabled = _field(data, "read_receipts", bool, required=False)
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
                    await ws.send_str(orjson.dumps(getter.result()).decode())
            except (ConnectionResetError, RuntimeError):
                pass
            finally:
                await reap(reader)

    async def openapi_doc(self, request: web.Request) -> web.Response:
        return _json(openapi.document())

    async def static(self, request: web.Request) -> web.StreamResponse:
        """X Chat Web's files (package data), with a strict Content-Security-Policy."""
        name = request.match_info.get("name") or "index.html"
        kind = _STATIC_TYPES.get(name.rsplit(".", 1)[-1])
        resource = resources.files("xchat") / "web" / name
        if kind is None or "/" in name or name.startswith(".") or not resource.is_file():
            raise web.HTTPNotFound(reason="no such file")
        port = self.port_ref[0]
        response = web.Response(body=resource.read_bytes(), content_type=kind)
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
            f"connect-src 'self' ws://127.0.0.1:{port} ws://localhost:{port}; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )
        response.headers["X-Frame-Options"] = "DENY"
        return response


_STATIC_TYPES: Final = {
    "html": "text/html",
    "js": "text/javascript",
    "css": "text/css",
    "svg": "image/svg+xml",
    "png": "image/png",
}


def make_app(host: NodeHost, token: str, port_ref: list[int]) -> web.Application:
    """The aiohttp application; ``port_ref[0]`` must be set to the bound port."""
    api = Api(host, token, port_ref)
    app = web.Application(middlewares=[api.guard], client_max_size=_MAX_BODY)
    pk = "{pubkey}"
    app.add_routes(
        [
            web.get("/", api.static),
            web.get("/api/openapi.json", api.openapi_doc),
            web.get("/api/session", api.session),
            web.post("/api/setup/phrase", api.new_phrase),
            web.post("/api/setup", api.setup),
            web.post("/api/unlock", api.unlock),
            web.post("/api/lock", api.lock),
            web.post("/api/phrase", api.phrase),
            web.get("/api/identity/qr.svg", api.identity_qr),
            web.get(f"/api/contacts/{pk}/safety-number/qr.svg", api.safety_qr),
            web.get("/api/identity", api.identity),
            web.get("/api/status", api.status),
            web.get("/api/contacts", api.contacts),
            web.post("/api/contacts", api.add_contact),
            web.patch(f"/api/contacts/{pk}", api.update_contact),
            web.get(f"/api/contacts/{pk}/safety-number", api.safety_number),
            web.post(f"/api/contacts/{pk}/verify", api.verify),
            web.get("/api/conversations", api.conversations),
            web.get(f"/api/conversations/{pk}/messages", api.messages),
            web.post(f"/api/conversations/{pk}/messages", api.send),
            web.post(f"/api/conversations/{pk}/read", api.mark_read),
            web.get("/api/search", api.search),
            web.get("/api/messages/{id}", api.message),
            web.patch("/api/messages/{id}", api.edit),
            web.delete("/api/messages/{id}", api.delete),
            web.post("/api/messages/{id}/reactions", api.react),
            web.post("/api/messages/{id}/retry", api.retry),
            web.get("/api/relays", api.relays),
            web.post("/api/relays", api.add_relay),
            web.delete("/api/relays", api.remove_relay),
            web.get("/api/settings", api.settings),
            web.patch("/api/settings", api.update_settings),
            web.get("/api/stream", api.stream),
            web.get("/{name}", api.static),
        ]
    )
    return app
