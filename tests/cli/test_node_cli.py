"""The xchat commands against real nodes (``xchat up`` processes) and relays on 127.0.0.1."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from tests.cli.test_cli import xchat
from tests.node.faulty_relay import reserve_port
from tests.node.nodes import PASSPHRASE, NodeProcess, run_cli, wait_for
from tests.relay.conftest import RelayProcess
from xchat.cli.client import NO_IDENTITY
from xchat.core.message import MAX_TEXT_BYTES
from xchat.home import Home

#: What asyncio and aiohttp print when a program leaves tasks, loops or connections behind.
ASYNCIO_NOISE = (
    "Task was destroyed",
    "Event loop is closed",
    "Unclosed",
    "unclosed",
    "never awaited",
    "Unknown child process",
    "Traceback",
    "Exception ignored",
)


@pytest.fixture
def pair(
    node_factory: Callable[..., NodeProcess], relays: Callable[..., RelayProcess]
) -> tuple[NodeProcess, NodeProcess]:
    url = relays().url
    return node_factory((url,)), node_factory((url,))


def _friends(pair: tuple[NodeProcess, NodeProcess]) -> tuple[NodeProcess, NodeProcess]:
    alice, bob = pair
    assert run_cli(alice, "contacts", "add", bob.card(), "--name", "Bob").returncode == 0
    assert run_cli(bob, "contacts", "add", alice.card(), "--name", "Alice").returncode == 0
    return alice, bob


# -- contacts add on an existing contact ------------------------------------------------


def test_adding_an_existing_contact_says_so_and_never_renames(
    pair: tuple[NodeProcess, NodeProcess],
) -> None:
    alice, bob = _friends(pair)
    again = run_cli(alice, "contacts", "add", bob.npub, "--name", "Robert")
    assert again.returncode == 0, again.stderr
    assert "is already a contact, under the name 'Bob'." in again.stdout
    assert "Not renamed" in again.stdout
    assert "xchat contacts rename" in again.stdout
    assert [c["name"] for c in alice.call("GET", "/api/contacts")] == ["Bob"]
    as_json = orjson.loads(run_cli(alice, "contacts", "add", bob.card(), "--json").stdout)
    assert as_json["already_contact"] is True
    assert as_json["name"] == "Bob"
    renamed = run_cli(alice, "contacts", "rename", "Bob", "--name", "Robert")
    assert renamed.returncode == 0, renamed.stderr
    assert [c["name"] for c in alice.call("GET", "/api/contacts")] == ["Robert"]


def test_a_message_request_is_accepted_by_adding_it_with_its_name(
    pair: tuple[NodeProcess, NodeProcess],
) -> None:
    alice, bob = pair
    assert run_cli(alice, "contacts", "add", bob.card(), "--name", "Bob").returncode == 0
    wait_for(lambda: run_cli(alice, "send", "Bob", "hello").returncode == 0, what="send")
    wait_for(lambda: bob.call("GET", "/api/contacts"), what="a message request at bob")
    assert bob.call("GET", "/api/contacts")[0]["state"] == "request"
    added = run_cli(bob, "contacts", "add", alice.npub, "--name", "Alice")
    assert added.returncode == 0, added.stderr
    assert "Added Alice" in added.stdout
    contact = bob.call("GET", "/api/contacts")[0]
    assert (contact["state"], contact["name"]) == ("accepted", "Alice")


# -- what the CLI refuses to send -------------------------------------------------------


def test_whitespace_only_and_oversized_messages_are_refused_with_the_limit(
    pair: tuple[NodeProcess, NodeProcess],
) -> None:
    alice, bob = _friends(pair)
    for blank in (" ", "   \t  "):
        refused = run_cli(alice, "send", "Bob", blank)
        assert refused.returncode == 1
        assert refused.stderr == "xchat: Nothing to send: the message is empty or only spaces.\n"
    piped = run_cli(alice, "send", "Bob", "-", stdin="  \n\n \n")
    assert piped.returncode == 1
    assert "Nothing to send" in piped.stderr
    big = "é" * (MAX_TEXT_BYTES // 2 + 1)  # 2 bytes each: just over the limit
    too_big = run_cli(alice, "send", "Bob", "-", stdin=big)
    assert too_big.returncode == 1
    assert too_big.stderr == (
        "xchat: A message can be at most 32 KiB (32,768 bytes) of text; "
        f"this one is {len(big.encode()):,} bytes.\n"
    )
    huge = run_cli(alice, "send", "Bob", "-", stdin="x" * 300_000)  # over the body limit too
    assert huge.returncode == 1
    assert "at most 32 KiB (32,768 bytes)" in huge.stderr
    assert "300,000 bytes" in huge.stderr
    fits = run_cli(alice, "send", "Bob", "-", stdin="é" * (MAX_TEXT_BYTES // 2))
    assert fits.returncode == 0, fits.stderr
    assert [len(m["body"]) for m in alice.messages(bob.pubkey)] == [MAX_TEXT_BYTES // 2]


# -- unlock, lock, no identity ---------------------------------------------------------


def test_no_identity_yet_is_said_by_every_command_that_needs_one(
    node_factory: Callable[..., NodeProcess], tmp_path: Path, relays: Callable[..., RelayProcess]
) -> None:
    empty = NodeProcess(Home(tmp_path / "nobody"), ())
    for args in (("status",), ("contacts",), ("unlock",), ("lock",), ("card",), ("phrase",)):
        result = run_cli(empty, *args)  # no node runs either
        assert result.returncode == 1, args
        assert result.stderr == f"xchat: {NO_IDENTITY}\n", args
    fresh = NodeProcess(Home(tmp_path / "fresh"), (relays().url,))
    fresh.start(env_passphrase=False)  # in setup: X Chat Web would create the identity
    try:
        for args in (("status",), ("send", "Bob", "hi"), ("unlock",), ("relays",)):
            result = run_cli(fresh, *args)
            assert result.returncode == 1, args
            assert result.stderr == f"xchat: {NO_IDENTITY}\n", args
            assert "locked" not in result.stderr
    finally:
        fresh.stop()


def test_unlock_and_lock_a_running_node(
    node_factory: Callable[..., NodeProcess], tmp_path: Path
) -> None:
    node = node_factory(start=False)
    node.start(env_passphrase=False)  # locked: no passphrase given
    locked = run_cli(node, "status")
    assert locked.returncode == 1
    assert locked.stderr == "xchat: X Chat is locked: unlock it with 'xchat unlock'.\n"
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("not the passphrase\n")
    refused = run_cli(node, "unlock", "--passphrase-file", str(wrong))
    assert refused.returncode == 1
    assert refused.stderr == "xchat: wrong passphrase: it does not open this identity's keystore\n"
    right = tmp_path / "pass.txt"
    right.write_text(PASSPHRASE + "\n")
    unlocked = run_cli(node, "unlock", "--passphrase-file", str(right))
    assert unlocked.returncode == 0, unlocked.stderr
    assert f"Unlocked: X Chat is running for {node.npub}." in unlocked.stdout
    assert run_cli(node, "status").returncode == 0
    again = run_cli(node, "unlock")  # no passphrase needed, none asked for
    assert again.returncode == 0
    assert "already unlocked" in again.stdout
    assert run_cli(node, "lock").returncode == 0
    assert "locked" in run_cli(node, "contacts").stderr
    assert node.call("GET", "/api/session")["state"] == "locked"


# -- the embedded relay ends with its node ----------------------------------------------


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    """False once ``pid`` exited (a zombie not yet reaped counts as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def embedded_port() -> dict[str, str]:
    """An environment whose embedded relay listens on a free port of its own (never on
    7447, where another test's X Chat relay would be shared instead)."""
    return {"XCHAT_EMBEDDED_RELAY_PORT": "0"}


def _relay_child(node: NodeProcess) -> int:
    assert node.process is not None
    assert node.status()["embedded_relay"]
    relays = [
        pid
        for pid in _children(node.process.pid)
        if b"relay" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    assert len(relays) == 1
    return relays[0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_embedded_relay_ends_when_its_node_is_killed(
    node_factory: Callable[..., NodeProcess], embedded_port: dict[str, str]
) -> None:
    node = node_factory((), env=embedded_port)
    relay = _relay_child(node)
    assert _running(relay)
    node.stop(signal.SIGKILL)
    wait_for(lambda: not _running(relay), timeout=30, what="the embedded relay to end")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stopping_the_node_prints_no_asyncio_noise(
    node_factory: Callable[..., NodeProcess], embedded_port: dict[str, str], sig: int
) -> None:
    node = node_factory((), env=embedded_port)
    relay = _relay_child(node)
    assert node.stop(sig) == 0
    output = "".join(node.output)
    assert not [noise for noise in ASYNCIO_NOISE if noise in output], output
    assert not _running(relay)


@pytest.fixture
def mute_relay() -> Iterator[tuple[str, threading.Event]]:
    """A ws:// URL whose server accepts connections and never answers, and an event set
    once someone connected."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    connected = threading.Event()
    done = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        while not done.is_set():
            try:
                held.append(server.accept()[0])
                connected.set()
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"ws://127.0.0.1:{server.getsockname()[1]}", connected
    done.set()
    thread.join(5)
    for conn in held:
        conn.close()
    server.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_the_start_stops_cleanly(
    tmp_path: Path, mute_relay: tuple[str, threading.Event], sig: int
) -> None:
    """While the node waits on a relay that never answers (it is starting), a signal
    ends it at once, in order, without a word from asyncio."""
    from tests.node.nodes import make_home

    url, connected = mute_relay
    home = make_home(tmp_path / "slow")
    node = NodeProcess(home, (url,))
    args = [sys.executable, "-m", "xchat", "--home", str(home.path), "up", "--no-browser"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("XCHAT_")}
    env.update(XCHAT_PASSPHRASE=PASSPHRASE, XCHAT_PUBLISH_TIMEOUT="60")
    import subprocess

    process = subprocess.Popen(
        [*args, "--port", "0", "--relay", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert connected.wait(60), "the node never connected to the relay"
        process.send_signal(sig)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert "Open X Chat Web" not in out  # it was still starting
    assert not [noise for noise in ASYNCIO_NOISE if noise in out + err], out + err
    assert process.returncode == 0
    assert not (node.home.path / "node.json").exists()


# -- default relays at onboarding -------------------------------------------------------


def _init(home: Path, *args: str, defaults: str) -> str:
    made = xchat("init", *args, home=home, passphrase=PASSPHRASE, XCHAT_DEFAULT_RELAYS=defaults)
    assert made.returncode == 0, made.stderr
    return made.stdout


def test_init_accepts_the_default_relays_and_the_node_uses_them(
    relays: Callable[..., RelayProcess], tmp_path: Path
) -> None:
    public = [relays().url, relays().url]  # local relays standing in for public ones
    shown = _init(tmp_path / "a", defaults=",".join(public))  # no terminal: accepted
    assert f"Your relays: {', '.join(public)}" in shown
    node = NodeProcess(Home(tmp_path / "a"), ()).start()
    try:
        assert node.call("GET", "/api/relays")["inbox"] == public
        assert node.status()["embedded_relay"] is None
        wait_for(lambda: "connected" in run_cli(node, "status").stdout, what="status in words")
        assert node.call("GET", "/api/identity")["relays"] == public
        assert not (tmp_path / "a" / "setup-relays.json").exists()  # saved by the node
    finally:
        node.stop()
    node.start()  # saved: the next start has them without being told
    try:
        assert node.call("GET", "/api/relays")["inbox"] == public
    finally:
        node.stop()


def test_init_with_no_public_relay_says_so_and_uses_the_local_one(
    relays: Callable[..., RelayProcess], tmp_path: Path, embedded_port: dict[str, str]
) -> None:
    offered = relays().url
    shown = _init(tmp_path / "n", "--relays", "none", defaults=offered)
    assert "only the relay on this computer, so you can reach people on this computer only" in (
        shown
    )
    node = NodeProcess(Home(tmp_path / "n"), (), env=embedded_port).start()
    try:
        assert node.call("GET", "/api/relays")["inbox"] == [node.status()["embedded_relay"]]
        status = run_cli(node, "status").stdout
        assert "you can reach people on this computer only" in status
    finally:
        node.stop()


def test_init_with_own_relays_and_an_unreachable_one(
    relays: Callable[..., RelayProcess], tmp_path: Path
) -> None:
    good = relays().url
    dead_socket = reserve_port()  # bound, never listening: nobody answers there
    dead = f"ws://127.0.0.1:{dead_socket.getsockname()[1]}"
    try:
        _init(tmp_path / "o", "--relays", f"{good}, {dead}", defaults="")
        node = NodeProcess(Home(tmp_path / "o"), ()).start()
        try:
            assert node.call("GET", "/api/relays")["inbox"] == [good, dead]
            status = wait_for(
                lambda: (out := run_cli(node, "status").stdout) and "not reachable" in out and out,
                what="the dead relay shown as not reachable",
            )
            line = {url: next(x for x in status.splitlines() if url in x) for url in (good, dead)}
            assert line[good].split()[0] == "connected"
            assert line[dead].startswith("  not reachable")
            assert node.status()["npub"] == node.npub  # the node keeps working
        finally:
            node.stop()
    finally:
        dead_socket.close()
    bad = xchat("init", "--relays", "http://nope", home=tmp_path / "bad", passphrase=PASSPHRASE)
    assert bad.returncode == 1
    assert "ws://" in bad.stderr
    assert not (tmp_path / "bad" / "keystore.json").exists()


def test_init_at_a_terminal_offers_the_defaults_to_accept_edit_or_decline(
    relays: Callable[..., RelayProcess], tmp_path: Path
) -> None:
    from tests.cli.test_cli import PROMPTS, _interact

    offered = [relays().url, relays().url]
    env = {"XCHAT_DEFAULT_RELAYS": ",".join(offered)}
    prompts = (*PROMPTS, b"[n]o:", b"(empty for none) [" + ",".join(offered).encode() + b"]:")
    cases = {
        "accept": ([PASSPHRASE, PASSPHRASE, ""], offered),
        "edit": ([PASSPHRASE, PASSPHRASE, "e", offered[1]], [offered[1]]),
        "decline": ([PASSPHRASE, PASSPHRASE, "n"], []),
    }
    for name, (answers, expected) in cases.items():
        home = tmp_path / name
        code, screen = _interact(["--home", str(home), "init"], answers, env=env, prompts=prompts)
        assert code == 0, screen
        assert all(url in screen for url in offered)  # the offer lists them
        chosen = home / "setup-relays.json"
        if expected:
            assert orjson.loads(chosen.read_bytes()) == {"v": 1, "relays": expected}
        else:
            assert not chosen.exists()
            assert "you can reach people on this computer only" in screen


# -- chat at a terminal -----------------------------------------------------------------


class Terminal:
    """A program on a pseudo-terminal, and what a screen would show of its output: just
    enough of a VT100 (\\r, \\n, backspace, ESC[K, ESC[J, ESC[nA) for a line editor."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execve(sys.executable, [sys.executable, *args], env)
        self.raw = b""
        self.rows: list[str] = [""]
        self.row = self.col = 0

    def write(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def read_until(self, check: Callable[[], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"the screen never showed it:\n{self.screen()}")
            ready, _, _ = select.select([self.fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"the program ended:\n{self.screen()}")
                self.raw += chunk
                self._render(chunk.decode(errors="replace"))

    def _put(self, ch: str) -> None:
        line = self.rows[self.row].ljust(self.col)
        self.rows[self.row] = line[: self.col] + ch + line[self.col + 1 :]
        self.col += 1

    def _render(self, text: str) -> None:
        for part in re.split(r"(\x1b\[\d*[A-Za-z])", text):
            if part.startswith("\x1b["):
                count = int(part[2:-1] or 1)
                if part[-1] == "A":
                    self.row = max(0, self.row - count)
                elif part[-1] == "K":
                    self.rows[self.row] = self.rows[self.row][: self.col]
                elif part[-1] == "J":
                    self.rows[self.row] = self.rows[self.row][: self.col]
                    del self.rows[self.row + 1 :]
                continue
            for ch in part:
                if ch == "\r":
                    self.col = 0
                elif ch == "\n":
                    self.row += 1
                    if self.row == len(self.rows):
                        self.rows.append("")
                elif ch == "\b":
                    self.col = max(0, self.col - 1)
                else:
                    self._put(ch)

    def screen(self) -> str:
        return "\n".join(self.rows)

    def close(self) -> int:
        os.close(self.fd)
        _, status = os.waitpid(self.pid, 0)
        return os.waitstatus_to_exitcode(status)


def test_chat_keeps_the_line_being_typed_when_a_message_arrives(
    pair: tuple[NodeProcess, NodeProcess],
) -> None:
    alice, bob = _friends(pair)
    bob.send(alice.pubkey, "an old message")
    wait_for(lambda: alice.messages(bob.pubkey), what="the old message at alice")
    env = {k: v for k, v in os.environ.items() if not k.startswith("XCHAT_")}
    term = Terminal(["-m", "xchat", "--home", str(alice.home.path), "chat", "Bob"], env)
    try:
        term.read_until(lambda: term.rows[term.row] == "> ")
        assert "Bob (npub" in term.screen()
        assert re.search(r"^\S+ \S+ Bob \(npub1\S+\): an old message", term.screen(), re.M)
        term.write("half a thou")
        term.read_until(lambda: term.rows[term.row] == "> half a thou")
        bob.send(alice.pubkey, "news from bob")
        term.read_until(lambda: "news from bob" in term.screen())
        term.read_until(lambda: term.rows[term.row] == "> half a thou")
        above = term.rows[term.row - 1]
        assert above.endswith("): news from bob")  # on a line of its own, whole
        assert "half a thou" not in term.screen().replace("> half a thou", "")
        term.write("ghxx\x7f\x7ft\r")  # backspace works; Enter sends the whole line
        term.read_until(lambda: "me: half a thought" in term.screen())
        term.read_until(lambda: term.rows[term.row] == "> ")
        mine = next(r for r in term.rows if "me: half a thought" in r)
        # the same format as the history: date, time, who, text, [state]
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d me: half a thought  \[queued\]", mine)
        wait_for(
            lambda: bob.messages(alice.pubkey)[-1]["body"] == "half a thought",
            what="the typed line at bob",
        )
        term.write("   \r")  # only spaces: nothing is sent
        term.write("\x04")  # Ctrl-D on an empty line quits
    finally:
        code = _finish(term)
    assert code == 0
    assert [m["body"] for m in alice.messages(bob.pubkey)][-1] == "half a thought"
    assert b"\x1b[2J" not in term.raw


def _finish(term: Terminal) -> int:
    """Wait for the program to end (it quits on Ctrl-D), reading what it still prints."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([term.fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(term.fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            term.raw += chunk
    return term.close()


def test_chat_quits_on_ctrl_c_and_a_pipe_on_sigint_without_noise(
    pair: tuple[NodeProcess, NodeProcess],
) -> None:
    alice, bob = _friends(pair)
    env = {k: v for k, v in os.environ.items() if not k.startswith("XCHAT_")}
    term = Terminal(["-m", "xchat", "--home", str(alice.home.path), "chat", "Bob"], env)
    try:
        term.read_until(lambda: term.rows[term.row] == "> ")
        term.write("not sent\x03")  # Ctrl-C
    finally:
        code = _finish(term)
    assert code == 130
    assert not [noise for noise in ASYNCIO_NOISE if noise in term.raw.decode()]
    assert alice.messages(bob.pubkey) == []
    # standard input a pipe that stays open: SIGINT ends it at once, quietly
    import subprocess

    chat = subprocess.Popen(
        [sys.executable, "-m", "xchat", "--home", str(alice.home.path), "chat", "Bob"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert chat.stdout is not None
        assert "Chat with Bob" in chat.stdout.readline()
        chat.send_signal(signal.SIGINT)
        out, err = chat.communicate(timeout=30)
    finally:
        if chat.poll() is None:
            chat.kill()
            chat.communicate()
    assert chat.returncode == 130
    assert not [noise for noise in ASYNCIO_NOISE if noise in out + err], err
