"""The node's local API: JSON over HTTP and a WebSocket stream, on 127.0.0.1 only.

:mod:`~xchat.node.api.guard` says who may call it; :mod:`~xchat.node.api.handlers` has
the routes (each calls one public method of :class:`~xchat.node.node.Node` or of its
:class:`~xchat.node.api.host.Host`); :mod:`~xchat.node.api.views` is the JSON of every
domain type and event. The API is described by an OpenAPI 3.1 document
(:mod:`~xchat.node.api.openapi`), served at ``/api/openapi.json``; the tests check every
response against it.

Conversations are named by their id (32 hex digits). For scripts, a contact's 64-hex
key in place of the id names the direct conversation with them (docs/api.md).
"""

from __future__ import annotations

from aiohttp import web

from xchat.node.api.guard import MAX_BODY, Guard
from xchat.node.api.handlers import API_VERSION, Api
from xchat.node.api.host import Host

__all__ = ["API_VERSION", "Host", "make_app"]


def make_app(host: Host, token: str, port_ref: list[int]) -> web.Application:
    """The aiohttp application; ``port_ref[0]`` must be set to the bound port."""
    guard = Guard(token, port_ref)
    api = Api(host, guard)
    app = web.Application(middlewares=[guard.middleware], client_max_size=MAX_BODY)
    pk = "{pubkey}"
    conv = "{id}"
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
            web.post("/api/passphrase", api.change_passphrase),
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
            web.get(f"/api/conversations/{conv}", api.conversation),
            web.get(f"/api/conversations/{conv}/messages", api.messages),
            web.post(f"/api/conversations/{conv}/messages", api.send),
            web.post(f"/api/conversations/{conv}/read", api.mark_read),
            web.get("/api/search", api.search),
            web.get("/api/messages/{id}", api.message),
            web.patch("/api/messages/{id}", api.edit),
            web.delete("/api/messages/{id}", api.delete),
            web.post("/api/messages/{id}/reactions", api.react),
            web.post("/api/messages/{id}/retry", api.retry),
            web.get("/api/relays", api.relays),
            web.get("/api/relays/defaults", api.default_relays),
            web.post("/api/relays", api.add_relay),
            web.delete("/api/relays", api.remove_relay),
            web.get("/api/settings", api.settings),
            web.patch("/api/settings", api.update_settings),
            web.get("/api/stream", api.stream),
            web.get("/{name:.+}", api.static),
        ]
    )
    return app
