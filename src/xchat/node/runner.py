"""``xchat up``: run a node, its local API and (when needed) an embedded relay.

The node writes ``<home>/node.json`` (owner-only) while it runs: the API's URL, the
bearer token (kept in ``<home>/api-token`` across restarts) and its process id. The
CLI reads it to talk to the node; the file is removed at shutdown. With no relay
configured anywhere, an ``xchat relay`` child process is started on 127.0.0.1 (port
7447, database ``<home>/relay.sqlite3``); if that port is taken by another X Chat
relay on this machine, that one is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import sys
import time
import webbrowser
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

import aiohttp
import orjson
from aiohttp import web

from xchat.aio import reap
from xchat.core.identity import Identity
from xchat.errors import InvalidInput, XChatError
from xchat.home import RUNTIME_FILE, Home, Unlocked, check_passphrase, read_runtime, write_private
from xchat.home.relays import read_setup_relays, remove_setup_relays
from xchat.node.api import make_app
from xchat.node.config import config_from_env
from xchat.node.node import Node
from xchat.relay.config import DEFAULT_PORT
from xchat.wire.relay_url import normalize_relay_url

__all__ = ["DEFAULT_API_PORT", "RUNTIME_FILE", "NodeHost", "read_runtime", "run_node"]

log = logging.getLogger("xchat.node")

DEFAULT_API_PORT: Final = 7440
TOKEN_FILE: Final = "api-token"  # noqa: S105 - a file name, not a secret


class EmbeddedRelay:
    """An ``xchat relay`` child process for a node that has no relay configured.

    It ends with the node, however the node ends: the child is given the read end of a
    pipe (its *lifeline*) whose write end only the node holds. When the node exits (a
    clean stop, a crash, SIGKILL) the kernel closes that end, the child reads end-of-file
    and shuts down as on SIGTERM. The child runs in a session of its own, so a Ctrl-C in
    the node's terminal reaches the node only, which then stops the relay last.
    """

    def __init__(self, db: Path, port: int | None = None) -> None:
        self.db = db
        self.port = embedded_port() if port is None else port
        self.process: asyncio.subprocess.Process | None = None
        self.url: str | None = None
        self._lifeline: int | None = None  # the write end of the child's pipe
        self._drain: asyncio.Task[None] | None = None

    async def start(self) -> str:
        url = await self._spawn(self.port)
        if url is not None:
            return url
        existing = f"ws://127.0.0.1:{self.port}"
        if self.port and await _is_xchat_relay(existing):
            log.info("using the X Chat relay already running on port %d", self.port)
            return existing
        url = await self._spawn(0)
        if url is None:
            raise XChatError("the embedded relay could not be started")
        return url

    async def _spawn(self, port: int) -> str | None:
        env = {k: v for k, v in os.environ.items() if k != "XCHAT_PASSPHRASE"}
        read_end, write_end = os.pipe()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "xchat",
                "relay",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--db",
                str(self.db),
                "--parent-fd",
                str(read_end),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                pass_fds=(read_end,),
                start_new_session=True,
            )
        except BaseException:
            os.close(write_end)
            raise
        finally:
            os.close(read_end)
        assert process.stdout is not None
        try:
            async with asyncio.timeout(30):
                while line := (await process.stdout.readline()).decode(errors="replace"):
                    if "listening on " in line:
                        self.process, self._lifeline = process, write_end
                        self._drain = asyncio.create_task(_drain(process), name="relay-log")
                        return line.split("listening on ", 1)[1].split()[0]
        except TimeoutError:
            pass
        except BaseException:  # cancelled (the node is stopping): the child goes too
            await _kill(process, write_end)
            raise
        await _kill(process, write_end)
        return None

    async def stop(self) -> None:
        """Stop the child (SIGTERM, then SIGKILL after 20 s) and wait for it."""
        process, self.process = self.process, None
        lifeline, self._lifeline = self._lifeline, None
        if process is not None:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
            try:
                async with asyncio.timeout(20):
                    await process.wait()
            except TimeoutError:
                await _kill(process, None)
        if lifeline is not None:
            os.close(lifeline)
        if self._drain is not None:
            await reap(self._drain)
            self._drain = None


def embedded_port() -> int:
    """The embedded relay's first choice of port: ``XCHAT_EMBEDDED_RELAY_PORT``, else 7447
    (0: any free port, and no sharing with another X Chat relay on that port)."""
    text = os.environ.get("XCHAT_EMBEDDED_RELAY_PORT")
    if text is None:
        return DEFAULT_PORT
    if not text.isdigit() or int(text) > 65535:
        raise InvalidInput("XCHAT_EMBEDDED_RELAY_PORT must be a port number (0 to 65535).")
    return int(text)


async def _kill(process: asyncio.subprocess.Process, lifeline: int | None) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    await process.wait()
    if lifeline is not None:
        os.close(lifeline)


async def _drain(process: asyncio.subprocess.Process) -> None:
    assert process.stdout is not None
    while await process.stdout.readline():
        pass


async def _is_xchat_relay(url: str) -> bool:
    http = "http://" + url.removeprefix("ws://")
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                http, headers={"Accept": "application/nostr+json"}, timeout=aiohttp.ClientTimeout(3)
            ) as response,
        ):
            info = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return False
    return isinstance(info, dict) and "xchat" in str(info.get("software", "")).lower()


class NodeHost:
    """The node of one home, which exists only while the identity is unlocked.

    ``xchat up`` without a passphrase (or without an identity yet) serves X Chat Web in
    the *setup* or *locked* state; creating, restoring or unlocking the identity from
    the web app starts the node in this process; locking stops it and forgets the keys.
    """

    def __init__(self, home: Home, relays: tuple[str, ...], embedded: EmbeddedRelay) -> None:
        self.home = home
        self.relays = relays
        self.embedded = embedded
        self.node: Node | None = None
        self._lock = asyncio.Lock()

    @property
    def state(self) -> str:
        if self.node is not None:
            return "unlocked"
        return "locked" if self.home.exists() else "setup"

    async def start(self, unlocked: Unlocked, relays: Sequence[str] = ()) -> Node:
        """Start the node (once). ``relays`` and those chosen at setup (``xchat init``,
        left in ``setup-relays.json``) are added to its saved inbox relays."""
        async with self._lock:
            if self.node is None:
                chosen = read_setup_relays(self.home)
                node = Node(self.home, unlocked, config_from_env())
                try:
                    await node.start((*self.relays, *chosen, *relays), embedded=self._embedded_url)
                except BaseException:  # failed or cancelled half-way: close what opened
                    _take_back_cancellation()
                    await node.close()
                    raise
                self.node = node
                remove_setup_relays(self.home)  # saved by the node now
            return self.node

    async def _embedded_url(self) -> str:
        if self.embedded.url is None:
            self.embedded.url = await self.embedded.start()
        return self.embedded.url

    async def unlock(self, passphrase: str) -> Node:
        """WrongPassphrase if it does not open the keystore (Argon2id runs in a thread)."""
        loop = asyncio.get_running_loop()
        unlocked = await loop.run_in_executor(None, self.home.unlock, passphrase)
        return await self.start(unlocked)

    async def create(
        self, phrase: str, passphrase: str, relays: Sequence[str] | None = None
    ) -> Node:
        """A new identity from a phrase (fresh or restored) under a passphrase.

        ``relays``: the inbox relays accepted (or edited) at setup; ``[]`` or None: none,
        the embedded relay on this computer only."""
        chosen = tuple(normalize_relay_url(url) for url in relays or ())
        check_passphrase(passphrase)
        identity = Identity.from_phrase(phrase)
        loop = asyncio.get_running_loop()

        def create() -> Unlocked:
            return self.home.create(identity, passphrase, int(time.time()), os.urandom)

        async with self._lock:
            if self.home.exists():
                raise InvalidInput("an identity already exists here; unlock it instead")
            unlocked = await loop.run_in_executor(None, create)
        return await self.start(unlocked, chosen)

    async def lock(self) -> None:
        async with self._lock:
            node, self.node = self.node, None
            if node is not None:
                await node.close()

    async def change_passphrase(self, old: str, new: str) -> None:
        """Re-encrypt the keystore under a new passphrase (WrongPassphrase if ``old`` is
        not the current one; the new one must pass the passphrase rules)."""
        check_passphrase(new)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.home.change_passphrase, old, new, os.urandom)

    async def phrase(self, passphrase: str) -> str:
        """The recovery phrase, after the passphrase is given again."""
        loop = asyncio.get_running_loop()
        unlocked = await loop.run_in_executor(None, self.home.unlock, passphrase)
        return unlocked.identity.phrase or ""


def _take_back_cancellation() -> None:
    """While handling this task's cancellation, let the cleanup's awaits run to their end
    (``reap`` raises again while the task is being cancelled); the handler raises the
    CancelledError again afterwards."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        task.uncancel()


def _api_token(home: Home) -> str:
    """The API's bearer token: made once, kept owner-only in the home, so that an open
    X Chat Web tab reconnects after the node restarts. Delete the file to revoke it."""
    path = home.path / TOKEN_FILE
    try:
        token = path.read_text(encoding="ascii").strip()
        if len(token) >= 32:
            return token
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    token = secrets.token_urlsafe(32)
    write_private(path, token.encode())
    return token


async def run_node(
    home: Home,
    unlocked: Unlocked | None,
    *,
    relays: tuple[str, ...] = (),
    port: int = DEFAULT_API_PORT,
    open_browser: bool = False,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT; see the module docstring. Without ``unlocked`` the
    web app asks for the passphrase (or creates the identity) first.

    The signal handlers are installed first: a signal during the start (unlocking,
    connecting, starting the embedded relay) cancels the start and then shuts down in
    order, like one after it, so nothing is left running and no half-closed connection
    is reported. A second signal while shutting down is ignored."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    started: list[bool] = []
    serving = asyncio.create_task(
        _serve(
            home, unlocked, relays, port, open_browser, ready, stop, lambda: started.append(True)
        ),
        name="xchat-up",
    )

    def on_signal() -> None:
        if stop.is_set():
            return
        stop.set()
        if not started:
            serving.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    try:
        await serving
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _serve(
    home: Home,
    unlocked: Unlocked | None,
    relays: tuple[str, ...],
    port: int,
    open_browser: bool,
    ready: Callable[[str], None] | None,
    stop: asyncio.Event,
    on_started: Callable[[], None],
) -> None:
    home.path.mkdir(mode=0o700, parents=True, exist_ok=True)
    embedded = EmbeddedRelay(home.path / "relay.sqlite3")
    host = NodeHost(home, relays, embedded)
    runners: list[web.AppRunner] = []
    try:
        try:
            if unlocked is not None:
                await host.start(unlocked)
            login = await _listen(host, port, runners)
            on_started()
            if ready is not None:
                ready(login)
            if open_browser:
                with contextlib.suppress(Exception):
                    webbrowser.open(login)
            await stop.wait()
        except asyncio.CancelledError:
            if not stop.is_set():
                raise  # cancelled from outside, not by a signal
            _take_back_cancellation()  # a signal during the start: stop as after it
    finally:
        with contextlib.suppress(FileNotFoundError):
            (home.path / RUNTIME_FILE).unlink()
        for runner in runners:
            await runner.cleanup()
        await host.lock()
        await embedded.stop()


async def _listen(host: NodeHost, port: int, runners: list[web.AppRunner]) -> str:
    """Serve the API and X Chat Web on 127.0.0.1:``port``, write ``node.json``; the login
    URL."""
    token = _api_token(host.home)
    port_ref = [port]
    runner = web.AppRunner(make_app(host, token, port_ref), handle_signals=False, access_log=None)
    runners.append(runner)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    try:
        await site.start()
    except OSError as exc:
        raise InvalidInput(
            f"port {port} on 127.0.0.1 is taken ({exc.strerror}); choose another with --port"
        ) from None
    server = getattr(site, "_server", None)
    if server is not None and server.sockets:
        port_ref[0] = server.sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port_ref[0]}"
    runtime = {"url": url, "token": token, "pid": os.getpid()}
    write_private(host.home.path / RUNTIME_FILE, orjson.dumps(runtime))
    return f"{url}/#token={token}"
