"""The CLI's side of the local API: find the running node, call it, show the answers.

Everything here is a thin client: the node (``xchat up``) holds the keys and the
database; these commands only need ``<home>/node.json`` (the API URL and token).
Text that came from a peer is passed through :func:`printable` before it reaches the
terminal, so a message cannot move the cursor, change colours or retitle the window.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import sys
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, TextIO

import orjson

from xchat.core.identity import ContactCard
from xchat.errors import InvalidInput, XChatError
from xchat.home import Home, read_runtime

__all__ = ["NodeClient", "NodeNotRunning", "printable"]


class NodeNotRunning(XChatError):
    """No node runs for this home (or it does not answer)."""


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
                message = orjson.loads(exc.read())["error"]["message"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                message = f"the node answered HTTP {exc.code}"
            raise InvalidInput(str(message)) from None
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


async def chat(client: NodeClient, contact: dict[str, Any], out: TextIO) -> int:
    """Interactive conversation: history, live messages, a line typed is a message sent."""
    import aiohttp

    pubkey = contact["pubkey"]
    names = {pubkey: contact_label(contact)}
    history = client.call("GET", f"/api/conversations/{pubkey}/messages?limit=50")
    out.write(f"Chat with {contact_label(contact)}. Type a message and Enter; Ctrl-D quits.\n")
    out.write(forward_secrecy_line(contact) + "\n")
    ours = {m["id"] for m in history}  # state changes are shown for these only
    for message in reversed(history):
        out.write(format_message(message, names) + "\n")
    out.flush()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, client.call, "POST", f"/api/conversations/{pubkey}/read")
    ws_url = (
        client.url.replace("http://", "ws://")
        + "/api/stream?"
        + urllib.parse.urlencode({"token": client.token})
    )

    async def live() -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(ws_url) as ws:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                event = orjson.loads(msg.data)
                if event.get("type") == "message" and event["message"]["conversation"] == pubkey:
                    message = event["message"]
                    if message["outgoing"]:
                        continue
                    out.write(format_message(message, names) + "\n")
                    out.flush()
                    await loop.run_in_executor(
                        None, client.call, "POST", f"/api/conversations/{pubkey}/read"
                    )
                elif event.get("type") == "forward_secrecy" and event["pubkey"] == pubkey:
                    out.write(f"  · {forward_secrecy_line(event['contact'])}\n")
                    out.flush()
                elif event.get("type") == "state" and event["id"] in ours:
                    out.write(f"  · message {event['id'][:8]} {event['state']}\n")
                    out.flush()

    watcher = asyncio.create_task(live())
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            text = line.rstrip("\n")
            if not text.strip():
                continue
            sent = await loop.run_in_executor(
                None, client.call, "POST", f"/api/conversations/{pubkey}/messages", {"text": text}
            )
            ours.add(sent["id"])
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watcher
    return 0
