"""Who may call the local API, and how errors are answered.

Who may call it: whoever holds the bearer token, which the node writes to
``<home>/node.json`` (owner-only) when it starts and puts in the web app's login URL.
Every request must also name the node itself in ``Host`` (a DNS-rebinding page names
its own host) and, when a browser sends ``Origin``, come from the node's own origin
(another site's page cannot post to the API). Browsers cannot set headers on a
WebSocket, so the stream also takes the token as ``?token=``.

Errors are ``{"error": {"code": ..., "message": ...}}`` with a 4xx status; messages are
sentences and never contain keys or message text.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import orjson
from aiohttp import web

from xchat.errors import (
    InvalidInput,
    KeystoreError,
    LocalProtocolError,
    WrongPassphrase,
    XChatError,
)

__all__ = ["MAX_BODY", "Guard", "Locked", "body", "error", "field", "json"]

log = logging.getLogger("xchat.node")

MAX_BODY: Final = 256 * 1024
_PUBLIC: Final = frozenset({"/api/openapi.json"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Locked(Exception):
    """The identity is not unlocked: only the session, setup and unlock calls work."""


def json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def error(status: int, code: str, message: str) -> web.Response:
    return json({"error": {"code": code, "message": message}}, status)


_TOO_LARGE: Final = f"The request is too large: the node accepts at most {MAX_BODY // 1024} KiB."


async def body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body (at most :data:`MAX_BODY` bytes)."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise InvalidInput(_TOO_LARGE)
    raw = await request.read()
    if len(raw) > MAX_BODY:
        raise InvalidInput(_TOO_LARGE)
    try:
        data = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError:
        raise InvalidInput("The request body is not JSON.") from None
    if not isinstance(data, dict):
        raise InvalidInput("The request body must be a JSON object.")
    return data


def field(data: dict[str, Any], name: str, kind: type, *, required: bool = True) -> Any:
    value = data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidInput(f"The field {name!r} must be a {kind.__name__}.")
    return value


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


def sentence(text: str) -> str:
    """An error message as a sentence: a capital letter first, a full stop last."""
    text = text.strip()
    if not text:
        return "Something went wrong."
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


class Guard:
    """The middleware: refuses foreign hosts, origins and missing tokens; turns X Chat
    errors into JSON errors."""

    def __init__(self, token: str, port_ref: list[int]) -> None:
        self.token = token
        self.port_ref = port_ref  # filled in once the socket is bound

    def allowed_hosts(self) -> set[str]:
        port = self.port_ref[0]
        return {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}

    def _refusal(self, request: web.Request) -> web.Response | None:
        """Why a request is refused (Host, Origin, token), or None."""
        if request.host not in self.allowed_hosts():
            return error(403, "forbidden_host", "This API answers only to 127.0.0.1.")
        origin = request.headers.get("Origin")
        if origin is not None and origin.removeprefix("http://") not in self.allowed_hosts():
            return error(403, "forbidden_origin", "Cross-site requests are refused.")
        if request.path.startswith("/api/") and request.path not in _PUBLIC:
            header = request.headers.get("Authorization", "")
            supplied = header[len("Bearer ") :] if header.startswith("Bearer ") else ""
            if request.path == "/api/stream" and not header:
                supplied = request.query.get("token", "")
            if not hmac.compare_digest(supplied.encode(), self.token.encode()):
                return error(401, "unauthorized", "A valid bearer token is required.")
        return None

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code = "not_found" if exc.status == 404 else "http_error"
            return error(exc.status, code, sentence(exc.reason))
        except Locked:
            return error(423, "locked", "X Chat is locked: unlock it with your passphrase.")
        except XChatError as exc:
            status, code = _status_of(exc)
            if status == 500:
                log.error("the node database failed: %s", type(exc).__name__)
            return error(status, code, sentence(str(exc)))
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response
