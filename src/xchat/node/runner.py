"""``xchat up``: run a node, its local API and (when needed) an embedded relay.

The node writes ``<home>/node.json`` (owner-only) while it runs: the API's URL, the
bearer token (new at every start) and its process id. The CLI reads it to talk to the
node; the file is removed at shutdown. With no relay configured anywhere, an
``xchat relay`` child process is started on 127.0.0.1 (port 7447, database
``<home>/relay.sqlite3``); if that port is taken by another X Chat relay on this
machine, that one is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import sys
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import aiohttp
import orjson
from aiohttp import web

from xchat.errors import InvalidInput, XChatError
from xchat.home import Home, Unlocked, write_private
from xchat.node.api import make_app
from xchat.node.service import Node, NodeConfig
from xchat.relay.config import DEFAULT_PORT

__all__ = ["DEFAULT_API_PORT", "RUNTIME_FILE", "read_runtime", "run_node"]

log = logging.getLogger("xchat.node")

DEFAULT_API_PORT: Final = 7440
RUNTIME_FILE: Final = "node.json"


def read_runtime(home: Home) -> dict[str, Any] | None:
    """The running node's URL, token and pid, or None when no node runs for this home."""
    try:
        data = orjson.loads((home.path / RUNTIME_FILE).read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("url"), str):
        return None
    pid = data.get("pid")
    if isinstance(pid, int):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
    return data


class EmbeddedRelay:
    """An ``xchat relay`` child process for a node that has no relay configured."""

    def __init__(self, db: Path, port: int = DEFAULT_PORT) -> None:
        self.db = db
        self.port = port
        self.process: asyncio.subprocess.Process | None = None

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


async def run_node(
    home: Home,
    unlocked: Unlocked,
    *,
    relays: tuple[str, ...] = (),
    port: int = DEFAULT_API_PORT,
    open_browser: bool = False,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT; see the module docstring."""
    node = Node(home, unlocked, NodeConfig())
    embedded = EmbeddedRelay(home.path / "relay.sqlite3")
    await node.start(relays, embedded=embedded.start)
    token = secrets.token_urlsafe(32)
    port_ref = [port]
    app = make_app(node, token, port_ref)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    try:
        await site.start()
    except OSError as exc:
        await node.close()
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
        await node.close()
        await embedded.stop()
