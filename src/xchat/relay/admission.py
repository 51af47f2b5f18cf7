"""Connection admission: limits counted at accept, and deadlines before a WebSocket opens.

Theory of operation. Every TCP connection the relay accepts is counted at once, before
a byte is read: in total and per client address. Over either limit, the relay writes a
one-line HTTP answer (``503``, or ``429`` for one address) and closes the socket, so a
flood of half-open connections costs one file descriptor each for a moment, never the
service. An admitted connection has two deadlines, both counted from the accept: the
request line and headers must have arrived within ``header_timeout`` and the WebSocket
must be open (or the HTTP answer sent) within ``handshake_timeout``; a connection that
misses one is aborted, however busy it keeps the relay with a byte at a time. Once the
WebSocket is open, the relay pings a client that has been silent for ``idle_timeout``
seconds and closes the connection if no answer comes within half of that (aiohttp's
heartbeat): a vanished peer frees its slot, a quiet node that answers pings keeps it.
A plain HTTP request (the NIP-11 document) is answered and the connection closed.

aiohttp's server has no header timeout, so this is done where connections are made:
:class:`GuardedSite` creates the listening socket with a protocol factory whose
protocol, :class:`_GuardedHandler`, is aiohttp's request handler with an admission
check in ``connection_made`` and the deadlines on a timer.

Privacy: the relay keeps no metadata, so limits are logged as counts only (never an
address), at most one line per limit per :data:`LOG_INTERVAL` seconds.

The open-file limit is raised to the hard limit at start (:func:`raise_open_file_limit`)
and the total connection limit kept below it, so that accepting never fails with
"Too many open files".
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import Counter
from typing import Any, Final

from aiohttp import web

from xchat.relay.config import RelayLimits

__all__ = ["Admission", "GuardedSite", "raise_open_file_limit"]

log = logging.getLogger("xchat.relay")

#: Seconds between two log lines about the same limit (the hits between are counted).
LOG_INTERVAL: Final = 10.0
#: File descriptors kept free for the database, the log and the relay's own use.
RESERVED_FILES: Final = 64


def _answer(status: str, text: str) -> bytes:
    body = text.encode()
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body


_TOO_MANY_FROM_IP: Final = _answer(
    "429 Too Many Requests", "too many connections from this address\n"
)
_TOO_MANY: Final = _answer("503 Service Unavailable", "the relay has too many connections\n")


class _Tally:
    """Log a limit's first hit at once and the further hits at most every LOG_INTERVAL."""

    __slots__ = ("_flush", "_message", "_pending")

    def __init__(self, message: str) -> None:
        self._message = message  # with {count} and {interval}
        self._pending = 0
        self._flush: asyncio.TimerHandle | None = None

    def hit(self) -> None:
        if self._flush is not None:
            self._pending += 1
            return
        log.warning(self._message.format(count=1, interval="now"))
        self._flush = asyncio.get_running_loop().call_later(LOG_INTERVAL, self._report)

    def _report(self) -> None:
        self._flush = None
        if self._pending:
            count, self._pending = self._pending, 0
            log.warning(
                self._message.format(count=count, interval=f"in the last {LOG_INTERVAL:g} s")
            )
            self._flush = asyncio.get_running_loop().call_later(LOG_INTERVAL, self._report)


class Admission:
    """Connections counted at accept (in total and per address) and their deadlines."""

    def __init__(self, limits: RelayLimits) -> None:
        self.limits = limits
        self.max_connections = limits.max_connections
        self.open = 0
        self.per_ip: Counter[str] = Counter()
        self._tallies = {
            "per_ip": _Tally(
                "connection limit: refused {count} connection(s) {interval}: at most "
                f"{limits.max_connections_per_ip} per address"
            ),
            "header_timeout": _Tally(
                "timeout: closed {count} connection(s) {interval} that did not send "
                f"their request headers within {limits.header_timeout:g} s"
            ),
            "handshake_timeout": _Tally(
                "timeout: closed {count} connection(s) {interval} that did not finish "
                f"the handshake within {limits.handshake_timeout:g} s"
            ),
        }
        self._tallies["total"] = self._total_tally()

    def _total_tally(self) -> _Tally:
        return _Tally(
            "connection limit: refused {count} connection(s) {interval}: the relay has "
            f"its maximum of {self.max_connections} open"
        )

    def fit_to_open_files(self, open_files: int) -> None:
        """Keep the total limit below the process's open-file limit (logged if lowered)."""
        room = max(1, open_files - RESERVED_FILES)
        if room < self.max_connections:
            log.warning(
                "the open-file limit (%d) allows at most %d connections, not the "
                "configured max_connections %d",
                open_files,
                room,
                self.max_connections,
            )
            self.max_connections = room
            self._tallies["total"] = self._total_tally()

    def _hit(self, reason: str) -> None:
        self._tallies[reason].hit()

    def admit(self, ip: str) -> bytes | None:
        """Count a new connection, or the HTTP answer that refuses it."""
        if self.open >= self.max_connections:
            self._hit("total")
            return _TOO_MANY
        if self.per_ip[ip] >= self.limits.max_connections_per_ip:
            self._hit("per_ip")
            return _TOO_MANY_FROM_IP
        self.open += 1
        self.per_ip[ip] += 1
        return None

    def release(self, ip: str) -> None:
        self.open -= 1
        left = self.per_ip[ip] - 1
        if left > 0:
            self.per_ip[ip] = left
        else:
            del self.per_ip[ip]

    @staticmethod
    def headers_received(request: web.BaseRequest) -> None:
        """The request line and headers are in: the handshake deadline applies now."""
        protocol = request.protocol
        if isinstance(protocol, _GuardedHandler):
            protocol.headers_received()

    @staticmethod
    def opened(request: web.BaseRequest) -> None:
        """The WebSocket is open: no more deadlines (the idle ping takes over)."""
        protocol = request.protocol
        if isinstance(protocol, _GuardedHandler):
            protocol.opened()


class _GuardedHandler(web.RequestHandler):
    """aiohttp's request handler, admitted at ``connection_made`` and under deadlines."""

    __slots__ = ("_admission", "_admitted", "_deadline", "_ip", "_timer")

    def __init__(self, admission: Admission, manager: web.Server, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._admission = admission
        self._admitted = False
        self._ip = ""
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        refusal = self._admission.admit(ip)
        if refusal is not None:
            assert isinstance(transport, asyncio.Transport)
            transport.write(refusal)
            transport.close()
            return
        self._admitted = True
        self._ip = ip
        super().connection_made(transport)
        limits = self._admission.limits
        now = self._loop.time()
        self._deadline = now + limits.handshake_timeout
        self._timer = self._loop.call_at(
            now + min(limits.header_timeout, limits.handshake_timeout),
            self._expire,
            "header_timeout",
        )

    def headers_received(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._loop.call_at(self._deadline, self._expire, "handshake_timeout")

    def opened(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self, reason: str) -> None:
        self._timer = None
        transport = self.transport
        if transport is not None and not transport.is_closing():
            self._admission._hit(reason)
            transport.abort()

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self._admitted:
            return
        self._admitted = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._admission.release(self._ip)
        super().connection_lost(exc)


class GuardedSite(web.TCPSite):
    """A TCP site whose connections pass :class:`Admission` (see the module docstring)."""

    def __init__(
        self, runner: web.AppRunner, admission: Admission, host: str, port: int, **kwargs: Any
    ) -> None:
        super().__init__(runner, host, port, **kwargs)
        self._admission = admission

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with the runner
        loop = asyncio.get_running_loop()
        manager = self._runner.server
        assert manager is not None
        admission = self._admission

        def factory() -> _GuardedHandler:
            return _GuardedHandler(admission, manager, loop=loop, access_log=None)

        self._server = await loop.create_server(
            factory,
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
        )
        self._bound_port = self.sockets[0][1]

    @property
    def sockets(self) -> list[tuple[str, int]]:
        """The (host, port) of every listening socket."""
        server = self._server
        if not isinstance(server, asyncio.Server):
            return []
        return [(str(s.getsockname()[0]), int(s.getsockname()[1])) for s in server.sockets]


def raise_open_file_limit() -> tuple[int, str]:
    """Raise the soft open-file limit to the hard one where allowed.

    Returns the limit in force and a line saying what was done, for the log.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    unlimited = 1 << 30
    if soft == resource.RLIM_INFINITY:
        return unlimited, "open-file limit: unlimited"
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft >= target:
        return soft, f"open-file limit: {soft} (the hard limit)"
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        return soft, f"open-file limit stays at {soft} (raising it to {target} failed: {exc})"
    return target, f"open-file limit raised from {soft} to {target}"
