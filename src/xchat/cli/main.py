"""The ``xchat`` command.

Exit status: 0 on success, 1 when X Chat refused (wrong passphrase, bad input, ...)
with a one-line ``xchat: …`` message on stderr, 2 for a malformed command line, 130
when interrupted. Tracebacks are shown only with ``XCHAT_DEBUG=1``; no message ever
contains a secret key, a recovery word or a contact's key.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import orjson

from xchat import __version__
from xchat.cli.client import (
    NodeClient,
    NoIdentity,
    check_text,
    contact_label,
    conversation_id,
    format_message,
    forward_secrecy_line,
    printable,
)
from xchat.cli.setup import cmd_init, passphrase
from xchat.core.identity import ContactCard
from xchat.errors import InvalidInput, WrongPassphrase, XChatError
from xchat.home import Home, check_passphrase, default_home

__all__ = ["main"]


def _cmd_card(args: argparse.Namespace, out: TextIO) -> int:
    home = _home_with_identity(args)
    card = home.card()
    if args.relay:
        card = type(card).create(card.public_key, tuple(args.relay))
    if args.json:
        out.write(
            orjson.dumps(
                {
                    "npub": card.npub,
                    "nprofile": card.nprofile,
                    "uri": card.uri,
                    "relays": list(card.relays),
                },
                option=orjson.OPT_INDENT_2,
            ).decode()
            + "\n"
        )
    else:
        out.write(f"npub:     {card.npub}\n")
        out.write(f"nprofile: {card.nprofile}\n")
        out.write(f"link:     {card.uri}\n")
        if card.relays:
            out.write(f"relays:   {', '.join(card.relays)}\n")
    if args.qr or args.qr_file:
        import segno

        qr = segno.make(card.uri, error="m")
        if args.qr:
            qr.terminal(out=out, compact=True)
        if args.qr_file:
            path = Path(args.qr_file)
            if path.suffix.lower() not in (".png", ".svg"):
                raise InvalidInput("--qr-file must end in .png or .svg")
            qr.save(str(path), scale=8, border=4)
            out.write(f"QR code written to {path}\n")
    return 0


def _cmd_phrase(args: argparse.Namespace, out: TextIO) -> int:
    unlocked = _home_with_identity(args).unlock(passphrase(args, confirm=False))
    if unlocked.identity.phrase is None:
        raise InvalidInput(
            "this identity was imported from a secret key and has no recovery phrase"
        )
    out.write(unlocked.identity.phrase + "\n")
    return 0


def _cmd_change_passphrase(args: argparse.Namespace, out: TextIO) -> int:
    home = _home_with_identity(args)
    old = passphrase(args, confirm=False)
    home.unlock(old)  # WrongPassphrase before asking for the new one
    if args.new_passphrase_file:
        new = Path(args.new_passphrase_file).read_text(encoding="utf-8").rstrip("\r\n")
    elif (env := os.environ.get("XCHAT_NEW_PASSPHRASE")) is not None:
        new = env
    elif sys.stdin.isatty():
        new = getpass.getpass("New passphrase: ")
        check_passphrase(new)
        if getpass.getpass("New passphrase again: ") != new:
            raise InvalidInput("the two passphrases differ")
    else:
        raise InvalidInput("no new passphrase: give --new-passphrase-file or XCHAT_NEW_PASSPHRASE")
    home.change_passphrase(old, new, os.urandom)
    out.write("Passphrase changed.\n")
    return 0


def _cmd_relay(args: argparse.Namespace, out: TextIO) -> int:
    import asyncio
    import logging

    from xchat.relay.config import load_config
    from xchat.relay.server import run_relay

    config = load_config(
        args.config, host=args.host, port=args.port, db=args.db, public_url=args.public_url
    )
    logging.basicConfig(level=logging.INFO, format="xchat relay: %(message)s")

    def ready(address: str) -> None:
        out.write(f"xchat relay: listening on {address} (database: {_describe_db(config.db)})\n")
        out.flush()
        if args.parent_fd is not None:
            _watch_lifeline(args.parent_fd)

    asyncio.run(run_relay(config, ready=ready))
    return 0


def _watch_lifeline(fd: int) -> None:
    """Shut down as on SIGTERM once ``fd`` (a pipe whose other end the parent node holds)
    reads end-of-file: the parent ended, however it ended (SIGKILL included)."""
    import asyncio
    import signal

    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            data = os.read(fd, 64)
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            signal.raise_signal(signal.SIGTERM)  # run_relay's handler: a graceful stop

    loop.add_reader(fd, readable)


def _cmd_up(args: argparse.Namespace, out: TextIO) -> int:
    import asyncio
    import logging

    from xchat.node.runner import read_runtime, run_node

    home = Home(default_home(args.home))
    running = read_runtime(home)
    if running is not None:
        raise InvalidInput(f"a node for this identity is already running at {running['url']}")
    # The passphrase from a file, the environment or (with --unlock) a prompt; otherwise
    # X Chat Web asks for it (or creates the identity on first run).
    unlocked = None
    if home.exists() and (
        args.unlock or args.passphrase_file or os.environ.get("XCHAT_PASSPHRASE") is not None
    ):
        unlocked = home.unlock(passphrase(args, confirm=False))
    logging.basicConfig(level=logging.WARNING, format="xchat node: %(message)s")

    def ready(login: str) -> None:
        if unlocked is not None:
            out.write(f"X Chat is running for {unlocked.identity.npub}\n")
        elif home.exists():
            out.write("X Chat is running, locked: unlock it in X Chat Web\n")
        else:
            out.write("X Chat is running: create or restore your identity in X Chat Web\n")
        out.write(f"Open X Chat Web: {login}\n")
        out.write("Stop with Ctrl-C.\n")
        out.flush()

    asyncio.run(
        run_node(
            home,
            unlocked,
            relays=tuple(args.relay),
            port=args.port,
            open_browser=not args.no_browser,
            ready=ready,
        )
    )
    return 0


def _home_with_identity(args: argparse.Namespace) -> Home:
    """The home, or NoIdentity (the one sentence every command says before there is one)."""
    home = Home(default_home(args.home))
    if not home.exists():
        raise NoIdentity()
    return home


def _client(args: argparse.Namespace) -> NodeClient:
    return NodeClient(_home_with_identity(args))


def _dump(data: object, out: TextIO) -> None:
    out.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def _health_words(health: dict[str, Any], now: float) -> str:
    """A relay's state in words: connected, connecting, or not reachable (and when the
    node tries again)."""
    state = health["state"]
    if state == "connected":
        return "connected"
    if state == "connecting":
        return "connecting"
    retry = health.get("next_retry_at")
    if isinstance(retry, int | float) and retry > now:
        return f"not reachable, trying again in {max(1, round(retry - now))} s"
    return "not reachable"


def _relay_line(health: dict[str, Any]) -> str:
    """One relay's health for people: state, role, URL and the last error."""
    role = "inbox" if health["reading"] else "outbox"
    error = f" ({health['last_error']})" if health["last_error"] else ""
    warning = f"\n{'':<13}warning: {health['warning']}" if health.get("warning") else ""
    words = _health_words(health, time.time())
    return f"{words:<12} {role:<6} {health['url']}{error}{warning}"


def _cmd_status(args: argparse.Namespace, out: TextIO) -> int:
    status = _client(args).call("GET", "/api/status")
    if args.json:
        _dump(status, out)
        return 0
    out.write(f"Node running for {status['npub']} (up {status['uptime']:.0f} s)\n")
    out.write(
        f"Messages: {status['sent']} sent, {status['received']} received, "
        f"{status['outbox_pending']} waiting to be sent, {status['failed']} failed\n"
    )
    for relay in status["relays"]:
        out.write(f"  {_relay_line(relay)}\n")
    for warning in status.get("warnings", []):
        out.write(f"Warning: {warning}\n")
    if status["embedded_relay"]:
        out.write(
            f"Using only the relay on this computer ({status['embedded_relay']}): you can "
            "reach people on this computer only. Add a public relay with "
            "'xchat relays add wss://…' to reach others.\n"
        )
    elif status["relays"] and all(r["state"] != "connected" for r in status["relays"]):
        out.write(
            "No relay is reachable now: messages wait in the outbox and go out when one is.\n"
        )
    return 0


def _cmd_unlock(args: argparse.Namespace, out: TextIO) -> int:
    client = _client(args)
    session = client.call("GET", "/api/session")
    if session["state"] == "setup":
        raise NoIdentity()
    if session["state"] == "unlocked":
        out.write(f"X Chat is already unlocked for {session['npub']}.\n")
        return 0
    session = client.call("POST", "/api/unlock", {"passphrase": passphrase(args, confirm=False)})
    out.write(f"Unlocked: X Chat is running for {session['npub']}.\n")
    return 0


def _cmd_lock(args: argparse.Namespace, out: TextIO) -> int:
    client = _client(args)
    if client.call("GET", "/api/session")["state"] == "setup":
        raise NoIdentity()
    client.call("POST", "/api/lock")
    out.write("Locked: the node forgot your keys and stopped; 'xchat unlock' starts it again.\n")
    return 0


def _cmd_contacts(args: argparse.Namespace, out: TextIO) -> int:
    client = _client(args)
    if args.action == "add":
        if not args.address:
            raise InvalidInput("usage: xchat contacts add <npub|nprofile> [--name NAME]")
        return _add_contact(args, client, out)
    if args.action in ("accept", "block", "rename"):
        return _change_contact(args, client, out)
    if args.action not in (None, "list"):
        raise InvalidInput("contacts actions are: list, add, accept, block, rename")
    contacts = client.call("GET", "/api/contacts")
    if args.json:
        _dump(contacts, out)
        return 0
    _list_contacts(contacts, out)
    return 0


def _add_contact(args: argparse.Namespace, client: NodeClient, out: TextIO) -> int:
    """Add a contact, or accept a request; an existing contact is said so, never renamed
    (only 'xchat contacts rename' renames). The node answers ``already_contact``; the
    contact list is compared first too, so that a node without it renames nothing."""
    address = args.address[0]
    pubkey = ContactCard.parse(address).public_key.hex
    contacts: list[dict[str, Any]] = client.call("GET", "/api/contacts")
    existing = next((c for c in contacts if c["pubkey"] == pubkey), None)
    already = existing is not None and existing["state"] == "accepted"
    body = {"address": address}
    if args.name and not already:
        body["name"] = args.name
    contact = client.call("POST", "/api/contacts", body)  # an existing one: looked up again
    already = already or contact.get("already_contact") is True
    if args.json:
        _dump({**contact, "already_contact": already}, out)
    elif already:
        named = contact.get("name")
        under = (
            f"under the name {printable(named, multiline=False)!r}" if named else "without a name"
        )
        out.write(f"{contact_label(contact)} is already a contact, {under}.\n")
        if args.name and args.name != named:
            out.write(
                f"Not renamed: to rename, use 'xchat contacts rename {contact['npub']} "
                f"--name NAME'.\n"
            )
    else:
        out.write(f"Added {contact_label(contact)}\n{forward_secrecy_line(contact)}\n")
    return 0


def _list_contacts(contacts: list[dict[str, Any]], out: TextIO) -> None:
    if not contacts:
        out.write("No contacts yet. Add one with 'xchat contacts add <npub|nprofile>'.\n")
    for contact in contacts:
        marks = [contact["state"]] if contact["state"] != "accepted" else []
        if not contact["forward_secret"]:
            marks.append("not forward-secret")
        if contact["verified"]:
            marks.append("verified")
        suffix = f"  [{', '.join(marks)}]" if marks else ""
        out.write(f"{contact_label(contact)}  {contact['npub']}{suffix}\n")
        if not contact["forward_secret"]:
            out.write(f"    {forward_secrecy_line(contact)}\n")


def _change_contact(args: argparse.Namespace, client: NodeClient, out: TextIO) -> int:
    if not args.address:
        raise InvalidInput(f"usage: xchat contacts {args.action} <contact>")
    contact = client.contact(args.address[0])
    change: dict[str, str] = {}
    if args.action == "rename":
        if not args.name:
            raise InvalidInput("usage: xchat contacts rename <contact> --name NAME")
        change["name"] = args.name
    else:
        change["state"] = "accepted" if args.action == "accept" else "blocked"
    updated = client.call("PATCH", f"/api/contacts/{contact['pubkey']}", change)
    if args.json:
        _dump(updated, out)
    else:
        out.write(f"{contact_label(updated)}: {updated['state']}\n")
    return 0


def _cmd_send(args: argparse.Namespace, out: TextIO) -> int:
    client = _client(args)
    contact = client.contact(args.contact)
    text = " ".join(args.text)
    if text == "-":
        text = sys.stdin.read().rstrip("\n")
    check_text(text)
    message = client.call(
        "POST", f"/api/conversations/{conversation_id(contact)}/messages", {"text": text}
    )
    if args.json:
        _dump(message, out)
    else:
        out.write(f"Queued message {message['id']} to {contact_label(contact)}\n")
    return 0


def _cmd_messages(args: argparse.Namespace, out: TextIO) -> int:
    client = _client(args)
    contact = client.contact(args.contact)
    path = f"/api/conversations/{conversation_id(contact)}/messages?limit={args.limit}"
    rows = client.call("GET", path)
    if args.json:
        _dump(list(reversed(rows)), out)
        return 0
    names = {contact["pubkey"]: contact_label(contact)}
    out.write(f"Conversation with {contact_label(contact)}\n{forward_secrecy_line(contact)}\n")
    for row in reversed(rows):
        out.write(format_message(row, names) + "\n")
    return 0


def _cmd_chat(args: argparse.Namespace, out: TextIO) -> int:
    import asyncio

    from xchat.cli.chat import chat

    client = _client(args)
    return asyncio.run(chat(client, client.contact(args.contact), out))


def _cmd_relays(args: argparse.Namespace, out: TextIO) -> int:
    client = _client(args)
    if args.action in ("add", "remove"):
        if not args.url:
            raise InvalidInput(f"usage: xchat relays {args.action} <wss://…>")
        if args.action == "add":
            result = client.call("POST", "/api/relays", {"url": args.url})
        else:
            query = urllib.parse.urlencode({"url": args.url})
            result = client.call("DELETE", f"/api/relays?{query}")
        if args.json:
            _dump(result, out)
        else:
            out.write("Inbox relays: " + (", ".join(result["inbox"]) or "(none)") + "\n")
        return 0
    if args.action not in (None, "list"):
        raise InvalidInput("relays actions are: list, add, remove")
    relays = client.call("GET", "/api/relays")
    if args.json:
        _dump(relays, out)
        return 0
    for health in relays["health"]:
        out.write(f"{_relay_line(health)}\n")
    return 0


def _cmd_verify(args: argparse.Namespace, out: TextIO) -> int:
    client = _client(args)
    contact = client.contact(args.contact)
    path = f"/api/contacts/{contact['pubkey']}"
    if args.mark or args.unmark:
        info = client.call("POST", f"{path}/verify", {"verified": bool(args.mark)})
    else:
        info = client.call("GET", f"{path}/safety-number")
    if args.json:
        _dump(info, out)
        return 0
    out.write(f"Safety number with {contact_label(contact)}:\n\n")
    groups = info["safety_number"].split()
    for row in range(0, len(groups), 4):
        out.write("    " + "  ".join(groups[row : row + 4]) + "\n")
    out.write("\nCompare it with theirs in person or on a call you trust.\n")
    if info["verified"]:
        out.write("You marked it verified.\n")
    elif info["previously_verified"]:
        out.write("WARNING: it changed since you verified it (a new or replaced device).\n")
    else:
        out.write("Not verified yet: 'xchat verify <contact> --mark' once it matches.\n")
    return 0


def _describe_db(db: str) -> str:
    """The database for humans, without a password a URL might carry."""
    if db.startswith(("postgresql://", "postgres://")):
        from urllib.parse import urlsplit

        parts = urlsplit(db)
        return f"PostgreSQL at {parts.hostname or 'localhost'}{parts.path}"
    return f"SQLite {db}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xchat",
        description="X Chat: end-to-end encrypted messages over untrusted relays.",
    )
    parser.add_argument("--version", action="version", version=f"xchat {__version__}")
    parser.add_argument(
        "--home",
        metavar="DIR",
        help="folder of the identity to use (default: $XCHAT_HOME or the user data folder)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    init = sub.add_parser("init", help="create (or restore) your identity on this device")
    how = init.add_mutually_exclusive_group()
    how.add_argument("--restore", action="store_true", help="restore from a recovery phrase")
    how.add_argument("--import-nsec", action="store_true", help="import an existing Nostr key")
    init.add_argument(
        "--words",
        type=int,
        choices=(12, 24),
        default=12,
        help="length of a new recovery phrase (default 12)",
    )
    init.add_argument(
        "--passphrase-file",
        metavar="FILE",
        help="read the passphrase from FILE (default: $XCHAT_PASSPHRASE or a prompt)",
    )
    init.add_argument(
        "--relay",
        action="append",
        default=[],
        metavar="URL",
        help="relay hint for your contact card (repeatable; default: the chosen relays)",
    )
    init.add_argument(
        "--relays",
        metavar="default|none|URL,URL",
        help="the relays to start with: the default public set, none (only the relay on "
        "this computer) or your own list (default: asked at a terminal, else default)",
    )
    init.set_defaults(run=cmd_init)

    card = sub.add_parser("card", help="print your address and contact card")
    card.add_argument("--qr", action="store_true", help="also print a QR code in the terminal")
    card.add_argument("--qr-file", metavar="PATH", help="write the QR code to PATH (.png or .svg)")
    card.add_argument(
        "--relay",
        action="append",
        default=[],
        metavar="URL",
        help="relay hints to put in the card instead of the saved ones",
    )
    card.add_argument("--json", action="store_true", help="machine-readable output")
    card.set_defaults(run=_cmd_card)

    phrase = sub.add_parser("phrase", help="show your recovery phrase (asks for the passphrase)")
    phrase.add_argument("--passphrase-file", metavar="FILE", help="read the passphrase from FILE")
    phrase.set_defaults(run=_cmd_phrase)

    change = sub.add_parser("change-passphrase", help="change the passphrase of your keystore")
    change.add_argument("--passphrase-file", metavar="FILE", help="read the current one from FILE")
    change.add_argument("--new-passphrase-file", metavar="FILE", help="read the new one from FILE")
    change.set_defaults(run=_cmd_change_passphrase)

    relay = sub.add_parser("relay", help="run a Nostr relay (anyone can run one)")
    relay.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    relay.add_argument("--port", type=int, help="port for WebSocket and HTTP (default 7447)")
    relay.add_argument(
        "--db",
        metavar="PATH_OR_URL",
        help="SQLite file (default: in the user data folder) or postgresql:// URL",
    )
    relay.add_argument(
        "--public-url",
        action="append",
        metavar="URL",
        help="the wss:// URL clients reach this relay at (repeatable); NIP-42 AUTH must "
        "name one of them (default: the address it listens on)",
    )
    relay.add_argument("--config", metavar="FILE", help="TOML file with [relay] and [limits]")
    # the embedded relay of a node: stop when this pipe closes (the node ended)
    relay.add_argument("--parent-fd", type=int, help=argparse.SUPPRESS)
    relay.set_defaults(run=_cmd_relay)

    _add_node_commands(sub)
    return parser


def _add_node_commands(sub: Any) -> None:
    """The commands that run the node or talk to it."""
    up = sub.add_parser("up", help="run your node and X Chat Web (until Ctrl-C)")
    up.add_argument(
        "--relay",
        action="append",
        default=[],
        metavar="URL",
        help="inbox relay to use (repeatable; saved); without any, a local relay is started",
    )
    up.add_argument("--port", type=int, default=7440, help="port of X Chat Web and the API")
    up.add_argument("--no-browser", action="store_true", help="do not open the browser")
    up.add_argument("--passphrase-file", metavar="FILE", help="read the passphrase from FILE")
    up.add_argument(
        "--unlock", action="store_true", help="ask for the passphrase here, not in the browser"
    )
    up.set_defaults(run=_cmd_up)

    unlock = sub.add_parser("unlock", help="unlock the running node (asks for the passphrase)")
    unlock.add_argument("--passphrase-file", metavar="FILE", help="read the passphrase from FILE")
    unlock.set_defaults(run=_cmd_unlock)

    lock = sub.add_parser("lock", help="lock the running node: it forgets your keys")
    lock.set_defaults(run=_cmd_lock)

    status = sub.add_parser("status", help="is the node running; relays and outbox")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(run=_cmd_status)

    contacts = sub.add_parser("contacts", help="list, add, accept, block or rename contacts")
    contacts.add_argument(
        "action",
        nargs="?",
        choices=("list", "add", "accept", "block", "rename"),
    )
    contacts.add_argument("address", nargs="*", help="npub/nprofile (add) or a contact")
    contacts.add_argument("--name", help="a name for the contact")
    contacts.add_argument("--json", action="store_true", help="machine-readable output")
    contacts.set_defaults(run=_cmd_contacts)

    send = sub.add_parser("send", help="send a message (text '-' reads standard input)")
    send.add_argument("contact", help="a contact's name, npub or nprofile")
    send.add_argument("text", nargs="+", help="the message")
    send.add_argument("--json", action="store_true", help="machine-readable output")
    send.set_defaults(run=_cmd_send)

    messages = sub.add_parser("messages", help="show a conversation")
    messages.add_argument("contact", help="a contact's name, npub or nprofile")
    messages.add_argument("--limit", type=int, default=50, help="how many (default 50)")
    messages.add_argument("--json", action="store_true", help="machine-readable output")
    messages.set_defaults(run=_cmd_messages)

    chat_cmd = sub.add_parser("chat", help="chat interactively with a contact")
    chat_cmd.add_argument("contact", help="a contact's name, npub or nprofile")
    chat_cmd.set_defaults(run=_cmd_chat)

    relays = sub.add_parser("relays", help="list, add or remove your inbox relays")
    relays.add_argument("action", nargs="?", choices=("list", "add", "remove"))
    relays.add_argument("url", nargs="?", help="relay URL (wss://…)")
    relays.add_argument("--json", action="store_true", help="machine-readable output")
    relays.set_defaults(run=_cmd_relays)

    verify = sub.add_parser("verify", help="show (and mark) the safety number with a contact")
    verify.add_argument("contact", help="a contact's name, npub or nprofile")
    mark = verify.add_mutually_exclusive_group()
    mark.add_argument("--mark", action="store_true", help="mark it verified")
    mark.add_argument("--unmark", action="store_true", help="remove the verified mark")
    verify.add_argument("--json", action="store_true", help="machine-readable output")
    verify.set_defaults(run=_cmd_verify)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status: int = args.run(args, sys.stdout)
    except WrongPassphrase:
        sys.stderr.write("xchat: wrong passphrase: it does not open this identity's keystore\n")
        return 1
    except XChatError as exc:
        if os.environ.get("XCHAT_DEBUG"):
            raise
        sys.stderr.write(f"xchat: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
