"""``xchat chat``: one conversation, live, in the terminal.

At a terminal the input line is X Chat's own, not the terminal's: the terminal is put
in non-canonical mode without echo, and the line being typed is kept in a buffer and
drawn after a prompt (``> ``). A message that arrives meanwhile is printed *above* it:
the input line is erased, the message printed, and the prompt and the buffer drawn
again, so what is being typed is never split or overwritten. What one sends is shown
in the same format as the history. Keys: Enter sends; Backspace, Ctrl-U (erase the
line), Ctrl-W (erase a word), Ctrl-L (draw again); Ctrl-D on an empty line or Ctrl-C
quit; arrow keys and other escape sequences are ignored.

Why not the standard library's ``readline``: it reads in a blocking call (a thread),
cannot tell where its cursor is, and echoes from that thread while the event loop
prints, so a redraw would race its echo. Here every byte on the terminal is written
from the event loop, in order.

Without a terminal (standard input is a pipe) each line read is a message, and lines
are printed as they come.
"""

from __future__ import annotations

import asyncio
import codecs
import os
import shutil
import sys
import threading
import unicodedata
import urllib.parse
from collections.abc import Callable
from typing import Any, Final, TextIO

import orjson

from xchat.aio import reap
from xchat.cli.client import (
    NodeClient,
    check_text,
    contact_label,
    conversation_id,
    format_message,
    forward_secrecy_line,
    printable,
)
from xchat.errors import XChatError

__all__ = ["PROMPT", "InputLine", "chat"]

PROMPT: Final = "> "
_QUIT: Final = "\x04"  # pushed as a "line" when the user quits
_INTERRUPT: Final = "\x03"


def _width(text: str) -> int:
    """Columns ``text`` takes on a terminal (East Asian wide characters take two)."""
    return sum(
        0
        if unicodedata.combining(ch)
        else 2
        if unicodedata.east_asian_width(ch) in ("W", "F")
        else 1
        for ch in text
    )


class InputLine:
    """The prompt and the line being typed, kept at the bottom of the terminal."""

    def __init__(self, out: TextIO, on_line: Callable[[str], None]) -> None:
        self.out = out
        self.on_line = on_line
        self.buffer = ""
        self.active = False
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._escape = ""  # an escape sequence being skipped

    # -- drawing ------------------------------------------------------------------------

    def _shown(self) -> str:
        return PROMPT + printable(self.buffer, multiline=False)

    def _erase(self) -> None:
        """Erase the input line (all its rows, if it wrapped) and return to its start."""
        columns = max(1, shutil.get_terminal_size().columns)
        rows = max(0, _width(self._shown()) - 1) // columns
        self.out.write("\r" + (f"\x1b[{rows}A" if rows else "") + "\x1b[J")

    def draw(self) -> None:
        self.out.write(self._shown())
        self.out.flush()

    def print_above(self, text: str) -> None:
        """Print ``text`` (lines) above the input line, which stays as it was."""
        if self.active:
            self._erase()
        self.out.write(text + "\n")
        if self.active:
            self.out.write(self._shown())
        self.out.flush()

    def close(self) -> None:
        if self.active:
            self._erase()
            self.out.flush()
            self.active = False

    # -- keys ---------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        for ch in self._decoder.decode(data):
            self._key(ch)
        self.out.flush()

    def _in_escape(self, ch: str) -> bool:
        """Skip an escape sequence (arrow keys, ...): ESC x, ESC O x, ESC [ ... final."""
        if not self._escape:
            if ch != "\x1b":
                return False
            self._escape = ch
            return True
        self._escape += ch
        if len(self._escape) == 2:
            done = ch not in "[O"
        else:
            done = self._escape[1] == "O" or "@" <= ch <= "~"
        if done:
            self._escape = ""
        return True

    def _edit(self, change: Callable[[str], str]) -> None:
        self._erase()
        self.buffer = change(self.buffer)
        self.draw()

    def _key(self, ch: str) -> None:
        if self._in_escape(ch):
            return
        if ch in "\r\n":
            line, self.buffer = self.buffer, ""
            self._erase()
            self.draw()
            self.on_line(line)
        elif ch in "\x7f\x08":  # Backspace
            self._edit(lambda text: text[:-1])
        elif ch == "\x15":  # Ctrl-U
            self._edit(lambda _: "")
        elif ch == "\x17":  # Ctrl-W
            self._edit(_without_last_word)
        elif ch == "\x0c":  # Ctrl-L
            self._edit(lambda text: text)
        elif ch == "\x04":  # Ctrl-D: quit on an empty line
            if not self.buffer:
                self.on_line(_QUIT)
        elif ch == "\x03":  # Ctrl-C
            self.on_line(_INTERRUPT)
        elif unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp"):
            self.buffer += ch
            self.out.write(printable(ch, multiline=False))


def _without_last_word(text: str) -> str:
    kept = text.rstrip()
    return kept[: max(kept.rfind(" "), kept.rfind("\t")) + 1]


class _Terminal:
    """The terminal in non-canonical mode without echo (and Ctrl-C as a key) while
    chatting; restored on exit, whatever happens."""

    def __init__(self, fd: int) -> None:
        import termios

        self.fd = fd
        self.saved = termios.tcgetattr(fd)

    def __enter__(self) -> _Terminal:
        import termios

        mode = termios.tcgetattr(self.fd)
        mode[3] &= ~(termios.ECHO | termios.ICANON | termios.ISIG | termios.IEXTEN)
        mode[6][termios.VMIN] = 1
        mode[6][termios.VTIME] = 0
        termios.tcsetattr(self.fd, termios.TCSANOW, mode)
        return self

    def __exit__(self, *_: object) -> None:
        import termios

        termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)


async def chat(
    client: NodeClient, contact: dict[str, Any], out: TextIO, stdin: TextIO | None = None
) -> int:
    """Interactive conversation: history, live messages, a line typed is a message sent.
    Exit status 0 (Ctrl-D or end of input), 130 (Ctrl-C), 1 (the node stopped)."""
    stdin = stdin or sys.stdin
    loop = asyncio.get_running_loop()
    conversation = conversation_id(contact)
    names = {contact["pubkey"]: contact_label(contact)}
    history = client.call("GET", f"/api/conversations/{conversation}/messages?limit=50")
    interactive = stdin.isatty() and out.isatty()
    quit_keys = "Ctrl-D or Ctrl-C quits" if interactive else "end of input quits"
    out.write(f"Chat with {contact_label(contact)}. Type a message and Enter; {quit_keys}.\n")
    out.write(forward_secrecy_line(contact) + "\n")
    ours = {m["id"] for m in history}  # state changes are shown for these only
    for message in reversed(history):
        out.write(format_message(message, names) + "\n")
    out.flush()
    await loop.run_in_executor(None, client.call, "POST", f"/api/conversations/{conversation}/read")

    lines: asyncio.Queue[str] = asyncio.Queue()
    screen = InputLine(out, lines.put_nowait)
    ended: list[int] = []

    async def live() -> None:
        try:
            await _follow(client, conversation, contact["pubkey"], names, ours, screen)
            screen.print_above("  · The node stopped: the chat ends.")
        except (XChatError, OSError) as exc:
            screen.print_above(f"  · The live updates stopped: {exc}")
        ended.append(1)
        lines.put_nowait(_QUIT)

    watcher = asyncio.create_task(live(), name="chat-stream")
    terminal: _Terminal | None = None
    fd = stdin.fileno() if interactive else -1
    try:
        if interactive:
            terminal = _Terminal(fd).__enter__()
            screen.active = True
            screen.draw()
            loop.add_reader(fd, lambda: screen.feed(os.read(fd, 4096) or b"\x04"))
        else:
            _read_lines(stdin, lines)
        while (line := await lines.get()) not in (_QUIT, _INTERRUPT):
            await _send(client, conversation, line, names, ours, screen)
        if line == _INTERRUPT:
            return 130
    finally:
        if interactive:
            loop.remove_reader(fd)
            screen.close()
        if terminal is not None:
            terminal.__exit__()
        await reap(watcher)
    return 1 if ended else 0


def _read_lines(stdin: TextIO, lines: asyncio.Queue[str]) -> None:
    """Read ``stdin`` line by line in a daemon thread of its own, so that quitting never
    waits for a line that may not come (as a thread of the loop's executor would)."""
    loop = asyncio.get_running_loop()

    def read() -> None:
        try:
            for line in iter(stdin.readline, ""):
                loop.call_soon_threadsafe(lines.put_nowait, line.rstrip("\n"))
            loop.call_soon_threadsafe(lines.put_nowait, _QUIT)
        except (RuntimeError, OSError, ValueError):
            return  # the chat ended (its loop is closed) or the input went away

    threading.Thread(target=read, name="chat-input", daemon=True).start()


async def _send(
    client: NodeClient,
    conversation: str,
    text: str,
    names: dict[str, str],
    ours: set[str],
    screen: InputLine,
) -> None:
    """Send one typed line; it is shown as the history shows messages, or why not."""
    loop = asyncio.get_running_loop()
    if not text.strip():
        return  # an empty line sends nothing (and says nothing)
    try:
        check_text(text)
        sent = await loop.run_in_executor(
            None,
            client.call,
            "POST",
            f"/api/conversations/{conversation}/messages",
            {"text": text},
        )
    except XChatError as exc:
        screen.print_above(f"  · Not sent: {exc}")
        return
    ours.add(sent["id"])
    screen.print_above(format_message(sent, names))


async def _follow(
    client: NodeClient,
    conversation: str,
    pubkey: str,
    names: dict[str, str],
    ours: set[str],
    screen: InputLine,
) -> None:
    """Show the conversation's events from the node's stream until it closes."""
    import aiohttp

    loop = asyncio.get_running_loop()
    ws_url = (
        client.url.replace("http://", "ws://")
        + "/api/stream?"
        + urllib.parse.urlencode({"token": client.token})
    )
    try:
        async with aiohttp.ClientSession() as session, session.ws_connect(ws_url) as ws:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                event = orjson.loads(msg.data)
                kind = event.get("type")
                if kind == "message" and event["message"]["conversation"] == conversation:
                    message = event["message"]
                    if message["outgoing"] and message["id"] in ours:
                        continue
                    screen.print_above(format_message(message, names))
                    if not message["outgoing"]:
                        await loop.run_in_executor(
                            None, client.call, "POST", f"/api/conversations/{conversation}/read"
                        )
                elif kind == "forward_secrecy" and event["pubkey"] == pubkey:
                    screen.print_above(f"  · {forward_secrecy_line(event['contact'])}")
                elif kind == "state" and event["id"] in ours:
                    screen.print_above(f"  · message {event['id'][:8]} {event['state']}")
    except aiohttp.ClientError as exc:
        raise XChatError(f"the node's stream is not reachable ({type(exc).__name__}).") from None
