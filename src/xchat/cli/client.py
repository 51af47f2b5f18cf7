"""The CLI's side of the local API: find the running node, call it, show the answers.

Everything here is a thin client: the node (``xchat up``) holds the keys and the
database; these commands only need ``<home>/node.json`` (the API URL and token).
Text that came from a peer is passed through :func:`printable` before it reaches the
terminal, so a message cannot move the cursor, change colours or retitle the window.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Final

import orjson

from xchat.core.identity import ContactCard
from xchat.core.message import MAX_TEXT_BYTES
from xchat.errors import InvalidInput, WrongPassphrase, XChatError
from xchat.home import Home, read_runtime

__all__ = [
    "NO_IDENTITY",
    "NoIdentity",
    "NodeClient",
    "NodeLocked",
    "NodeNotRunning",
    "check_text",
    "conversation_id",
    "printable",
]

#: What every command that needs an identity says before one exists.
NO_IDENTITY: Final = (
    "No identity yet: create one with 'xchat init' or restore one with 'xchat init --restore'."
)


class NodeNotRunning(XChatError):
    """No node runs for this home (or it does not answer)."""


class NoIdentity(XChatError):
    """The home holds no identity yet (nothing to unlock)."""

    def __init__(self) -> None:
        super().__init__(NO_IDENTITY)


class NodeLocked(XChatError):
    """The node runs, but the identity is locked."""

    def __init__(self) -> None:
        super().__init__("X Chat is locked: unlock it with 'xchat unlock'.")


def check_text(text: str) -> str:
    """A message as the CLI sends it, or InvalidInput: not only spaces (as X Chat Web
    refuses them), and at most ``MAX_TEXT_BYTES`` of UTF-8 (the node's limit, named)."""
    if not text.strip():
        raise InvalidInput("Nothing to send: the message is empty or only spaces.")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_TEXT_BYTES:
        raise InvalidInput(
            f"A message can be at most {MAX_TEXT_BYTES // 1024} KiB ({MAX_TEXT_BYTES:,} bytes) "
            f"of text; this one is {size:,} bytes."
        )
    return text


def conversation_id(contact: dict[str, Any]) -> str:
    """The id of the direct conversation with ``contact`` for the API's
    ``/api/conversations/{id}`` paths: ``contact.conversation``, or (from a node that
    predates conversation ids) the contact's key, which the API accepts in its place."""
    conversation = contact.get("conversation")
    return conversation if isinstance(conversation, str) and conversation else contact["pubkey"]


def printable(text: str, *, multiline: bool = True) -> str:
    """Escape terminal control and format characters (ESC, C1, bidi overrides, ...)."""
    out = []
    for ch in text:
        if ch == "\n" and multiline:
            out.append(ch)
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


class NodeClient:
    """Calls to the node of one home over its local API."""

    def __init__(self, home: Home) -> None:
        self.home = home
        runtime = read_runtime(home)
        if runtime is None:
            raise NodeNotRunning(
                f"the X Chat node for {home.path} is not running; start it with 'xchat up'"
            )
        self.url: str = runtime["url"]
        self.token: str = runtime["token"]

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = orjson.dumps(body) if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - our own http://127.0.0.1 URL
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                return orjson.loads(response.read())
        except urllib.error.HTTPError as exc:
            try:
                error = orjson.loads(exc.read())["error"]
                code, message = str(error.get("code", "")), str(error["message"])
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
                code, message = "", f"the node answered HTTP {exc.code}"
            if exc.code == 423:
                raise NodeLocked() if self.home.exists() else NoIdentity() from None
            if code == "wrong_passphrase":
                raise WrongPassphrase(message) from None
            if exc.code == 413 or "request body is too large" in message:
                message = "The request is larger than the node accepts (256 KiB)."
            raise InvalidInput(message) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            raise NodeNotRunning(
                "the X Chat node does not answer; start it with 'xchat up'"
            ) from None

    def contact(self, text: str) -> dict[str, Any]:
        """A contact by name (case-insensitive), npub, nprofile or hex key."""
        contacts: list[dict[str, Any]] = self.call("GET", "/api/contacts")
        wanted = text.strip()
        named = [c for c in contacts if (c["name"] or "").lower() == wanted.lower()]
        if len(named) == 1:
            return named[0]
        if len(named) > 1:
            raise InvalidInput(f"several contacts are named {wanted!r}; use their npub")
        try:
            pubkey = ContactCard.parse(wanted).public_key.hex
        except InvalidInput:
            raise InvalidInput(
                "no contact by that name; give a contact's name, npub or nprofile"
            ) from None
        for contact in contacts:
            if contact["pubkey"] == pubkey:
                return contact
        raise InvalidInput(
            "that address is not one of your contacts; add it with 'xchat contacts add'"
        )


def contact_label(contact: dict[str, Any]) -> str:
    name = contact.get("name")
    short = contact["npub"][:16] + "…"
    return printable(name, multiline=False) + f" ({short})" if name else short


def forward_secrecy_line(contact: dict[str, Any]) -> str:
    """Whether the conversation is forward-secret, and why not, in one line."""
    if contact["forward_secret"]:
        return "Forward-secret (Olm): end-to-end encrypted, past messages stay safe."
    name = printable(contact.get("name") or "", multiline=False) or "This contact"
    why = (
        f"Not forward-secret: {name}'s app has not published its X Chat keys yet"
        " (or they use another Nostr app, plain NIP-17)"
    )
    if contact.get("next_keys_check_at"):
        return why + "; X Chat keeps looking and switches to forward secrecy when they appear."
    return why + "."


def format_message(message: dict[str, Any], names: dict[str, str]) -> str:
    when = dt.datetime.fromtimestamp(message["sent_at"] / 1000).strftime("%Y-%m-%d %H:%M")
    who = "me" if message["outgoing"] else names.get(message["sender"], message["sender"][:12])
    body = "(deleted)" if message["deleted"] else printable(message["body"])
    if message.get("note"):
        body = f"{body} ({printable(message['note'], multiline=False)})".lstrip()
    body = body.replace("\n", "\n    ")
    extras = []
    if message["outgoing"]:
        extras.append(message["state"])
    if message["edited_at"]:
        extras.append("edited")
    if message["reactions"]:
        extras.append(
            " ".join(printable(e, multiline=False) for e in message["reactions"].values())
        )
    if not message["forward_secret"]:
        extras.append("not forward-secret")
    suffix = f"  [{', '.join(extras)}]" if extras else ""
    return f"{when} {who}: {body}{suffix}"
