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

from xchat.core.identity import Identity
from xchat.errors import InvalidInput, XChatError
from xchat.home import RUNTIME_FILE, Home, Unlocked, check_passphrase, read_runtime, write_private
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
    """An ``xchat relay`` child process for a node that has no relay configured."""

    def __init__(self, db: Path, port: int = DEFAULT_PORT) -> None:
        self.db = db
        self.port = port
        self.process: asyncio.subprocess.Process | None = None
        self.url: str | None = None

    async def start(self) -> str:
        url = await self._spawn(self.port)
        if url is not None:
            return url
        existing = f"ws://127.0.0.1:{self.port}"
        if await _is_xchat_relay(existing):
            log.info("using the X Chat relay already running on port %d", self.port)
            return existing
        url = await self._spawn(0)
        if url is None:
            raise XChatError("the embedded relay could not be started")
        return url

    async def _spawn(self, port: int) -> str | None:
        env = {k: v for k, v in os.environ.items() if k != "XCHAT_PASSPHRASE"}
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
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
        )
        assert process.stdout is not None
        try:
            async with asyncio.timeout(30):
                while line := (await process.stdout.readline()).decode(errors="replace"):
                    if "listening on " in line:
                        self.process = process
                        asyncio.get_running_loop().create_task(_drain(process))
                        return line.split("listening on ", 1)[1].split()[0]
        except TimeoutError:
            pass
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        return None

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.terminate()
        try:
            async with asyncio.timeout(20):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


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

    async def start(self, unlocked: Unlocked, chosen: Sequence[str] = ()) -> Node:
        async with self._lock:
            if self.node is None:
                node = Node(self.home, unlocked, config_from_env())
                await node.start((*self.relays, *chosen), embedded=self._embedded_url)
                self.node = node
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

        ``relays``: the public relays the user accepted at onboarding (stored as their
        inbox relays); None or empty: only the relay on this computer."""
        chosen = [normalize_relay_url(url) for url in relays or ()]
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
    web app asks for the passphrase (or creates the identity) first."""
    home.path.mkdir(mode=0o700, parents=True, exist_ok=True)
    embedded = EmbeddedRelay(home.path / "relay.sqlite3")
    host = NodeHost(home, relays, embedded)
    if unlocked is not None:
        await host.start(unlocked)
    token = _api_token(home)
    port_ref = [port]
    app = make_app(host, token, port_ref)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    try:
        await site.start()
    except OSError as exc:
        await host.lock()
        await embedded.stop()
        await runner.cleanup()
        raise InvalidInput(
            f"port {port} on 127.0.0.1 is taken ({exc.strerror}); choose another with --port"
        ) from None
    server = getattr(site, "_server", None)
    if server is not None and server.sockets:
        port_ref[0] = server.sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port_ref[0]}"
    runtime = home.path / RUNTIME_FILE
    write_private(runtime, orjson.dumps({"url": url, "token": token, "pid": os.getpid()}))
    login = f"{url}/#token={token}"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready(login)
    if open_browser:
        with contextlib.suppress(Exception):
            webbrowser.open(login)
    try:
        await stop.wait()
    finally:
        with contextlib.suppress(FileNotFoundError):
            runtime.unlink()
        await runner.cleanup()
        await host.lock()
        await embedded.stop()
