"""The OpenAPI 3.1 document of the node's local API (served at ``/api/openapi.json``).

The schemas are strict (``additionalProperties: false``) so that the tests, which check
every response against them, notice any field added without documenting it.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["document"]

_HEX64 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_STR = {"type": "string"}
_INT = {"type": "integer"}
_BOOL = {"type": "boolean"}
_NULLABLE_STR = {"type": ["string", "null"]}
_NULLABLE_INT = {"type": ["integer", "null"]}


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": list(props) if required is None else required,
        "additionalProperties": False,
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _array(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": item}


_CONVERSATION_ID: Final = {"type": "string", "pattern": "^[0-9a-f]{32}$"}

_SCHEMAS: dict[str, Any] = {
    "Limits": _obj({"text_bytes": _INT}),
    "Session": _obj(
        {
            "state": {"enum": ["setup", "locked", "unlocked"]},
            "npub": _NULLABLE_STR,
            "limits": _ref("Limits"),
        }
    ),
    "DefaultRelays": _obj({"relays": _array(_STR), "about": _STR}),
    "Phrase": _obj({"phrase": _NULLABLE_STR}),
    "Error": _obj({"error": _obj({"code": _STR, "message": _STR})}),
    "Identity": _obj(
        {
            "npub": _STR,
            "pubkey": _HEX64,
            "nprofile": _STR,
            "uri": _STR,
            "relays": _array(_STR),
            "device": _STR,
        }
    ),
    "RelayHealth": _obj(
        {
            "url": _STR,
            "reading": _BOOL,
            "state": {"enum": ["connecting", "connected", "disconnected"]},
            "last_error": _STR,
            "failures": _INT,
            "accepted": _INT,
            "refused": _INT,
            "received": _INT,
            "latency_ms": {"type": ["number", "null"]},
            "connected_since": {"type": ["number", "null"]},
            "next_retry_at": {"type": ["number", "null"]},
            "warning": _STR,
        }
    ),
    "Status": _obj(
        {
            "api_version": _INT,
            "limits": _ref("Limits"),
            "npub": _STR,
            "pubkey": _HEX64,
            "device": _STR,
            "uptime": {"type": "number"},
            "relays": _array(_ref("RelayHealth")),
            "warnings": _array(_STR),
            "embedded_relay": _NULLABLE_STR,
            "outbox_pending": _INT,
            "sessions": _INT,
            "received": _INT,
            "rejected": _INT,
            "rejected_by_reason": {"type": "object", "additionalProperties": _INT},
            "lost": _INT,
            "held": _INT,
            "duplicates": _INT,
            "sent": _INT,
            "failed": _INT,
        }
    ),
    "Contact": _obj(
        {
            "pubkey": _HEX64,
            "npub": _STR,
            "nprofile": _STR,
            "name": _NULLABLE_STR,
            "state": {"enum": ["accepted", "request", "blocked"]},
            "conversation": {"oneOf": [_CONVERSATION_ID, {"type": "null"}]},
            "already_contact": _BOOL,
            "relays": _array(_STR),
            "forward_secret": _BOOL,
            "not_forward_secret_reason": {"enum": ["no_keys", None]},
            "keys_checked_at": _NULLABLE_INT,
            "next_keys_check_at": _NULLABLE_INT,
            "verified": _BOOL,
            "verification_changed": _BOOL,
            "created_at": _INT,
        }
    ),
    "Message": _obj(
        {
            "id": {"type": "string", "pattern": "^([0-9a-f]{32}|[0-9a-f]{64})$"},
            "conversation": _CONVERSATION_ID,
            "outgoing": _BOOL,
            "sender": _HEX64,
            "type": {"enum": ["text", "reply", "file", "undecryptable"]},
            "body": _STR,
            "sent_at": _INT,
            "received_at": _INT,
            "state": {"enum": ["queued", "sent", "delivered", "read", "failed", "received"]},
            "state_detail": _STR,
            "forward_secret": _BOOL,
            "reply_to": _NULLABLE_STR,
            "edited_at": _NULLABLE_INT,
            "deleted": _BOOL,
            "reactions": {"type": "object", "additionalProperties": _STR},
            "seq": _INT,
            "note": _NULLABLE_STR,
        }
    ),
    "Conversation": _obj(
        {
            "id": _CONVERSATION_ID,
            "kind": {"enum": ["direct", "group", "self"]},
            "peer": {"oneOf": [_HEX64, {"type": "null"}]},
            "members": _array(_HEX64),
            "pubkey": {"oneOf": [_HEX64, {"type": "null"}]},
            "npub": _NULLABLE_STR,
            "name": _NULLABLE_STR,
            "state": {"enum": ["accepted", "request", "blocked", None]},
            "last_activity": _INT,
            "last_message": {"oneOf": [_ref("Message"), {"type": "null"}]},
            "unread": _INT,
            "forward_secret": _BOOL,
        }
    ),
    "SafetyNumber": _obj(
        {
            "pubkey": _HEX64,
            "safety_number": _STR,
            "qr_payload": _STR,
            "verified": _BOOL,
            "previously_verified": _BOOL,
            "devices": _array(_STR),
            "forward_secret": _BOOL,
        }
    ),
    "Relays": _obj(
        {
            "inbox": _array(_STR),
            "embedded": _NULLABLE_STR,
            "health": _array(_ref("RelayHealth")),
        }
    ),
    "RelayList": _obj({"inbox": _array(_STR)}),
    "Settings": _obj({"read_receipts": _BOOL}),
    "ReadResult": _obj({"read": _array(_STR)}),
}


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _responses(code: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        code: {"description": description, "content": {"application/json": {"schema": schema}}},
        "400": {"description": "invalid input", "content": _error_content()},
        "401": {"description": "missing or wrong bearer token", "content": _error_content()},
        "403": {"description": "wrong Host or Origin", "content": _error_content()},
        "404": {"description": "no such resource", "content": _error_content()},
        "409": {"description": "not possible in the current state", "content": _error_content()},
        "413": {"description": "request body too large", "content": _error_content()},
        "423": {"description": "X Chat is locked", "content": _error_content()},
        "500": {"description": "the local database failed", "content": _error_content()},
        "502": {"description": "a relay or peer failed", "content": _error_content()},
    }


def _error_content() -> dict[str, Any]:
    return {"application/json": {"schema": _ref("Error")}}


_PUBKEY_PARAM = {"name": "pubkey", "in": "path", "required": True, "schema": _HEX64}
_ID_PARAM = {"name": "id", "in": "path", "required": True, "schema": _STR}
#: A conversation's id, or (for scripts) a contact's key naming the direct conversation.
_CONV_PARAM = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^([0-9a-f]{32}|[0-9a-f]{64})$"},
}


def _op(
    summary: str,
    schema: dict[str, Any],
    *,
    code: str = "200",
    body: dict[str, Any] | None = None,
    params: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": _responses(code, schema, summary),
    }
    if body is not None:
        op["requestBody"] = _json_body(body)
    if params:
        op["parameters"] = params
    return op


_SVG = {"description": "a QR code", "content": {"image/svg+xml": {"schema": _STR}}}

_PATHS: dict[str, Any] = {
    "/api/session": {"get": _op("Whether an identity exists and is unlocked", _ref("Session"))},
    "/api/setup/phrase": {
        "post": _op(
            "A fresh recovery phrase to show (nothing is stored yet)",
            _ref("Phrase"),
            body=_obj({"words": {"enum": [12, 24]}}, []),
        )
    },
    "/api/setup": {
        "post": _op(
            "Create the identity from a new or restored phrase, then unlock",
            _ref("Session"),
            body=_obj(
                {"phrase": _STR, "passphrase": _STR, "relays": _array(_STR)},
                ["phrase", "passphrase"],
            ),
        )
    },
    "/api/passphrase": {
        "post": {
            "summary": "Change the passphrase (403 wrong_passphrase if old is not it)",
            "requestBody": _json_body(_obj({"old": _STR, "new": _STR})),
            "responses": {
                **_responses("200", _ref("Error"), "unused"),
                "204": {"description": "changed"},
            },
        }
    },
    "/api/unlock": {
        "post": _op(
            "Unlock with the passphrase (400 wrong_passphrase)",
            _ref("Session"),
            body=_obj({"passphrase": _STR}),
        )
    },
    "/api/lock": {"post": _op("Stop the node and forget the keys until unlocked", _ref("Session"))},
    "/api/phrase": {
        "post": _op(
            "Show the recovery phrase after the passphrase is given again",
            _ref("Phrase"),
            body=_obj({"passphrase": _STR}),
        )
    },
    "/api/identity/qr.svg": {
        "get": {
            "summary": "QR code of this identity's nostr:nprofile link",
            "responses": {"200": _SVG},
        }
    },
    "/api/contacts/{pubkey}/safety-number/qr.svg": {
        "get": {
            "summary": "QR code of the safety number payload",
            "parameters": [_PUBKEY_PARAM],
            "responses": {"200": _SVG},
        }
    },
    "/api/identity": {"get": _op("This identity's address and card", _ref("Identity"))},
    "/api/status": {"get": _op("Node status and relay health", _ref("Status"))},
    "/api/contacts": {
        "get": _op("Every contact, requests and blocked ones included", _array(_ref("Contact"))),
        "post": _op(
            "Add (or accept) a contact by npub or nprofile; looks up their devices (200"
            " with already_contact: an accepted contact, not renamed)",
            _ref("Contact"),
            code="201",
            body=_obj({"address": _STR, "name": _STR}, ["address"]),
        ),
    },
    "/api/contacts/{pubkey}": {
        "patch": _op(
            "Rename, accept or block a contact",
            _ref("Contact"),
            body=_obj({"name": _STR, "state": {"enum": ["accepted", "blocked"]}}, []),
            params=[_PUBKEY_PARAM],
        )
    },
    "/api/contacts/{pubkey}/safety-number": {
        "get": _op("Safety number with a contact", _ref("SafetyNumber"), params=[_PUBKEY_PARAM])
    },
    "/api/contacts/{pubkey}/verify": {
        "post": _op(
            "Mark the current safety number verified (or not)",
            _ref("SafetyNumber"),
            body=_obj({"verified": _BOOL}),
            params=[_PUBKEY_PARAM],
        )
    },
    "/api/conversations": {
        "get": _op("Conversations by latest activity", _array(_ref("Conversation")))
    },
    "/api/conversations/{id}": {
        "get": _op("One conversation", _ref("Conversation"), params=[_CONV_PARAM])
    },
    "/api/conversations/{id}/messages": {
        "get": _op(
            "Messages, newest first; page with before_sent_at and before_seq",
            _array(_ref("Message")),
            params=[
                _CONV_PARAM,
                {"name": "limit", "in": "query", "schema": _INT},
                {"name": "before_sent_at", "in": "query", "schema": _INT},
                {"name": "before_seq", "in": "query", "schema": _INT},
            ],
        ),
        "post": _op(
            (
                "Send a text (or a reply); returns once it is stored, state queued. The "
                "same client_id again returns the same message (safe to resend)"
            ),
            _ref("Message"),
            code="201",
            body=_obj(
                {
                    "text": _STR,
                    "reply_to": _STR,
                    "client_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                },
                ["text"],
            ),
            params=[_CONV_PARAM],
        ),
    },
    "/api/conversations/{id}/read": {
        "post": _op(
            "Mark the conversation read (sends a read receipt if enabled)",
            _ref("ReadResult"),
            params=[_CONV_PARAM],
        )
    },
    "/api/search": {
        "get": _op(
            "Messages containing a text, across conversations (searched locally)",
            _array(_ref("Message")),
            params=[{"name": "q", "in": "query", "required": True, "schema": _STR}],
        )
    },
    "/api/messages/{id}": {
        "get": _op("One message", _ref("Message"), params=[_ID_PARAM]),
        "patch": _op(
            "Edit one of your messages for everyone",
            _ref("Message"),
            body=_obj({"text": _STR}),
            params=[_ID_PARAM],
        ),
        "delete": _op(
            "Delete one of your messages for everyone", _ref("Message"), params=[_ID_PARAM]
        ),
    },
    "/api/messages/{id}/reactions": {
        "post": _op(
            "React to a message (empty emoji removes your reaction)",
            _ref("Message"),
            body=_obj({"emoji": _STR}),
            params=[_ID_PARAM],
        )
    },
    "/api/messages/{id}/retry": {
        "post": _op("Send a failed message again", _ref("Message"), params=[_ID_PARAM])
    },
    "/api/relays": {
        "get": _op("Inbox relays and the health of every relay in use", _ref("Relays")),
        "post": _op(
            "Add an inbox relay (republishes the relay list)",
            _ref("RelayList"),
            code="201",
            body=_obj({"url": _STR}),
        ),
        "delete": _op(
            "Remove an inbox relay",
            _ref("RelayList"),
            params=[{"name": "url", "in": "query", "required": True, "schema": _STR}],
        ),
    },
    "/api/relays/defaults": {
        "get": _op("The default public relays offered at onboarding", _ref("DefaultRelays"))
    },
    "/api/settings": {
        "get": _op("Settings", _ref("Settings")),
        "patch": _op("Change settings", _ref("Settings"), body=_obj({"read_receipts": _BOOL}, [])),
    },
    "/api/stream": {
        "get": {
            "summary": (
                "WebSocket of changes: first {type: hello}, then objects of type message, "
                "state, read, contact, device_added, forward_secrecy, warning and relay "
                "(docs/api.md)"
            ),
            "parameters": [{"name": "token", "in": "query", "schema": _STR}],
            "responses": {"101": {"description": "switching to WebSocket"}},
        }
    },
}

# adding an accepted contact again answers 200 (already_contact), not 201
_PATHS["/api/contacts"]["post"]["responses"]["200"] = _PATHS["/api/contacts"]["post"][
    "responses"
]["201"]


def document() -> dict[str, Any]:
    """The whole OpenAPI document."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "X Chat node API",
            "version": "1",
            "description": (
                "Local API of an X Chat node, on 127.0.0.1 only. Send the token from "
                "<home>/node.json as 'Authorization: Bearer <token>'."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": _SCHEMAS,
        },
        "paths": _PATHS,
    }
