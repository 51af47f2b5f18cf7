"""``xchat init`` and the passphrase: creating or restoring an identity, and choosing
the relays it starts with.

The relays: ``--relays default`` (the documented public set, :mod:`xchat.home.relays`;
``XCHAT_DEFAULT_RELAYS`` replaces it), ``--relays none`` (only the relay on this computer)
or ``--relays URL,URL``. Without the flag, at a terminal the default set is offered
(accept with Enter, edit, or decline); without a terminal it is accepted. The choice is
left for the node (``setup-relays.json``), which saves it as its inbox relays at its next
start, as ``xchat up --relay`` does.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from pathlib import Path
from typing import Final, TextIO

from xchat.core.identity import Identity
from xchat.errors import InvalidInput
from xchat.home import Home, check_passphrase, default_home
from xchat.home.relays import default_relays, parse_relay_list, write_setup_relays

__all__ = ["LOCAL_ONLY", "choose_relays", "cmd_init", "passphrase", "read_secret_line"]

#: Said plainly when no public relay is chosen.
LOCAL_ONLY: Final = (
    "No public relay: only the relay on this computer, so you can reach people on this "
    "computer only. Add a public relay later with 'xchat relays add wss://…'."
)
RELAY_QUESTION: Final = "Use these relays? [Y]es, [e]dit, [n]o: "
_MAX_ASKS: Final = 5


def choose_relays(flag: str | None, stdin: TextIO, out: TextIO) -> tuple[str, ...]:
    """The relays a new identity starts with, from ``--relays`` or (at a terminal) asked."""
    if flag is not None:
        return _relays_flag(flag)
    offered = default_relays()
    if not offered:
        return ()
    if not stdin.isatty():
        return offered
    out.write(
        "\nTo reach people on other computers, X Chat passes your encrypted messages\n"
        "through public Nostr relays. The suggested ones (they cannot read your messages):\n"
    )
    for url in offered:
        out.write(f"    {url}\n")
    return _ask_relays(offered, stdin, out)


def _relays_flag(flag: str) -> tuple[str, ...]:
    if flag == "default":
        return default_relays()
    return () if flag == "none" else parse_relay_list(flag)


def _ask_relays(offered: tuple[str, ...], stdin: TextIO, out: TextIO) -> tuple[str, ...]:
    for _ in range(_MAX_ASKS):
        out.write(RELAY_QUESTION)
        out.flush()
        answer = stdin.readline().strip().lower()
        if answer in ("", "y", "yes"):
            return offered
        if answer in ("n", "no"):
            return ()
        if answer in ("e", "edit"):
            out.write(f"Relays, separated by commas (empty for none) [{','.join(offered)}]:\n")
            out.flush()
            try:
                return parse_relay_list(stdin.readline())
            except InvalidInput as exc:
                out.write(f"{exc}\n")
                continue
        out.write("Answer y (use them), e (edit the list) or n (none).\n")
    raise InvalidInput("no answer about the relays: give --relays default, none or URL,URL")


def read_secret_line(prompt: str, stdin: TextIO) -> str:
    """One line from a pipe, or typed without echo at a terminal."""
    if stdin.isatty():
        return getpass.getpass(prompt)
    return stdin.readline().strip()


def passphrase(args: argparse.Namespace, *, confirm: bool) -> str:
    """From --passphrase-file, then XCHAT_PASSPHRASE, then an interactive prompt."""
    if args.passphrase_file:
        try:
            text = Path(args.passphrase_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidInput(f"cannot read the passphrase file: {exc.strerror}") from None
        return text.rstrip("\r\n")
    if (env := os.environ.get("XCHAT_PASSPHRASE")) is not None:
        return env
    if not sys.stdin.isatty():
        raise InvalidInput(
            "no passphrase: give --passphrase-file FILE or set XCHAT_PASSPHRASE "
            "(standard input is not a terminal to ask on)"
        )
    first = getpass.getpass("Passphrase: ")
    if confirm:
        check_passphrase(first)
        if getpass.getpass("Passphrase again: ") != first:
            raise InvalidInput("the two passphrases differ")
    return first


def cmd_init(args: argparse.Namespace, out: TextIO) -> int:
    home = Home(default_home(args.home))
    if home.exists():
        raise InvalidInput(
            f"an X Chat identity already exists in {home.path}; use another --home "
            "or remove that folder first"
        )
    if args.restore and args.import_nsec:
        raise InvalidInput("choose either --restore or --import-nsec, not both")
    if args.restore:
        if sys.stdin.isatty():
            out.write("Type your recovery phrase (the words are not shown):\n")
        identity = Identity.from_phrase(read_secret_line("Recovery phrase: ", sys.stdin))
    elif args.import_nsec:
        identity = Identity.from_nsec(read_secret_line("Secret key (nsec1…): ", sys.stdin))
    else:
        identity = Identity.generate(os.urandom, args.words)
    secret = passphrase(args, confirm=True)
    check_passphrase(secret)
    relays = choose_relays(args.relays, sys.stdin, out)
    hints = tuple(args.relay) or relays[:3]
    home.create(identity, secret, int(time.time()), os.urandom, hints)
    write_setup_relays(home, relays)
    out.write(f"Created your X Chat identity in {home.path}\n")
    if relays:
        out.write(f"Your relays: {', '.join(relays)} (used once 'xchat up' runs)\n\n")
    else:
        out.write(f"{LOCAL_ONLY}\n\n")
    out.write(f"Your address: {identity.npub}\n")
    if not args.restore and identity.phrase is not None:
        words = identity.phrase.split()
        out.write(
            f"\nYour recovery phrase ({len(words)} words). Write it down and keep it somewhere\n"
            "safe and offline. It is the only way to restore this identity on a new device,\n"
            "anyone who has it can read your messages, and it will not be shown again:\n\n"
        )
        for row in range(0, len(words), 4):
            out.write(
                "   "
                + "  ".join(
                    f"{i + 1:>2}. {w:<9}" for i, w in enumerate(words) if row <= i < row + 4
                )
                + "\n"
            )
        out.write("\n")
    out.write("Share your contact card with 'xchat card' (add --qr for a QR code).\n")
    return 0
