"""NIP-42 on the relay: which ``relay`` tags name this relay, and signature checks.

The ``relay`` tag of an AUTH event says which relay the client meant to authenticate
to. It must name *this* relay, as the relay itself knows its address, never as the
client describes it (the ``Host`` header is the client's word): otherwise a malicious
relay that a victim also uses could pass our challenge to the victim and replay the
victim's signed answer here (docs/threat-model.md, "NIP-42 relayed"). So the tag,
normalized (:func:`~xchat.wire.relay_url.normalize_relay_url`: lower-case host, no
default port, no trailing slash), must be one of:

* the configured ``public_url`` (one or several), when there is one, and nothing else;
* else ``ws://HOST:PORT`` for the address the relay listens on, with the port it got
  (also after binding port 0); for a loopback address ``localhost`` too. A relay bound
  to every address (``0.0.0.0``, ``::``) accepts the local address that the connection
  arrived on (what the client dialled, as the kernel reports it), so a client that
  reached it by a name needs ``public_url`` to be configured.

Signatures are checked in a thread of their own (:class:`SignatureChecker`), in batches
across connections and pipelined per connection (:class:`Nip42`), so a client that
floods AUTH costs that thread, not the event loop or the ingest pipeline's verifier.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections import deque
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Final

from xchat.errors import InvalidInput
from xchat.relay.config import RelayLimits
from xchat.relay.ingest import verify_batch
from xchat.relay.ratelimit import TokenBucket
from xchat.wire import messages as m
from xchat.wire.event import Event
from xchat.wire.kinds import KIND_AUTH
from xchat.wire.relay_url import normalize_relay_url

if TYPE_CHECKING:
    from xchat.relay.server import Connection

__all__ = [
    "AUTH_WINDOW",
    "KIND_AUTH",
    "MAX_IN_FLIGHT",
    "AuthState",
    "Nip42",
    "RelayAddresses",
    "SignatureChecker",
]

AUTH_WINDOW: Final = 600  # seconds a NIP-42 auth event's created_at may be off
_WILDCARDS: Final = frozenset({"0.0.0.0", "::", ""})  # noqa: S104 - recognised, not bound
#: Signatures checked in one hand-over to the thread.
_BATCH: Final = 256
#: AUTH messages of one connection waiting for their signature check at once.
MAX_IN_FLIGHT: Final = 256


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _urls_for(host: str, port: int) -> set[str]:
    names = {host}
    if _is_loopback(host):
        names.add("localhost")
    out = set()
    for name in names:
        shown = f"[{name}]" if ":" in name else name
        out.add(normalize_relay_url(f"ws://{shown}:{port}"))
    return out


class RelayAddresses:
    """The URLs that a NIP-42 ``relay`` tag may name (see the module docstring)."""

    def __init__(self, public_urls: Iterable[str]) -> None:
        self._public = frozenset(normalize_relay_url(u) for u in public_urls)
        self._bound: set[str] = set()
        self._wildcard_ports: set[int] = set()

    def listening(self, sockets: Iterable[tuple[str, int]]) -> None:
        """Record the addresses bound (host, port), once the sockets are listening."""
        for host, port in sockets:
            if host in _WILDCARDS:
                self._wildcard_ports.add(port)
            else:
                self._bound |= _urls_for(host, port)

    @property
    def wildcard(self) -> bool:
        return not self._public and bool(self._wildcard_ports)

    def expected(self) -> str:
        """The URL to name in a refusal (the public one, else a bound one)."""
        for urls in (self._public, self._bound):
            if urls:
                return min(urls)
        return "ws://the address you connected to"

    def accepts(self, tag: str | None, local: tuple[str, int] | None) -> bool:
        """Whether ``tag`` names this relay; ``local`` is the connection's own address."""
        if tag is None:
            return False
        try:
            url = normalize_relay_url(tag)
        except InvalidInput:
            return False
        if self._public:
            return url in self._public
        if url in self._bound:
            return True
        if local is not None and local[1] in self._wildcard_ports:
            host = local[0]
            if host.startswith("::ffff:"):  # an IPv4 client on a dual-stack socket
                host = host.removeprefix("::ffff:")
            return url in _urls_for(host, local[1])
        return False


class SignatureChecker:
    """BIP-340 checks of AUTH events in one thread of their own, batched, in order."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xchat-auth")
        self._queue: deque[tuple[tuple[str, str, str], asyncio.Future[bool]]] = deque()
        self._task: asyncio.Task[None] | None = None
        self.checked = 0

    def submit(self, pubkey: str, event_id: str, sig: str) -> asyncio.Future[bool]:
        """Queue a check; futures resolve in the order submitted."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._queue.append(((pubkey, event_id, sig), future))
        if self._task is None:
            self._task = loop.create_task(self._run(), name="relay-auth")
        return future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        queue = self._queue
        try:
            while queue:
                batch = [queue.popleft() for _ in range(min(len(queue), _BATCH))]
                try:
                    valid = await loop.run_in_executor(
                        self._executor, verify_batch, [item for item, _ in batch]
                    )
                except RuntimeError:  # the executor was shut down: the relay is stopping
                    valid = [False] * len(batch)
                self.checked += len(batch)
                for ok, (_, future) in zip(valid, batch, strict=True):
                    if not future.done():
                        future.set_result(ok)
        finally:
            self._task = None
            for _, future in queue:
                future.cancel()
            queue.clear()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class AuthState:
    """A connection's AUTH bookkeeping: its rate bucket and the checks in flight."""

    __slots__ = ("bucket", "last", "pending")

    def __init__(self, bucket: TokenBucket) -> None:
        self.bucket = bucket
        self.pending = 0
        #: The check submitted last: it resolves after all the earlier ones.
        self.last: asyncio.Future[bool] | None = None

    async def settled(self) -> None:
        """Wait until every AUTH sent so far on this connection has been answered."""
        last = self.last
        if last is not None and not last.done():
            await asyncio.wait([last])


class Nip42:
    """The relay's AUTH policy: rate, key cap, challenge, ``relay`` tag, signature.

    AUTH messages on one connection are pipelined: each is checked cheaply at once and its
    signature queued; up to :data:`MAX_IN_FLIGHT` wait at a time (then the connection's
    reading waits), and any other message waits until they have all been answered, so a
    REQ sent after an AUTH sees its outcome.
    """

    def __init__(self, addresses: RelayAddresses, limits: RelayLimits) -> None:
        self.addresses = addresses
        self.limits = limits
        self.signatures = SignatureChecker()

    def _relay_tag_ok(self, conn: Connection, relay_url: str | None) -> bool:
        local = None
        if self.addresses.wildcard:
            sockname = conn.transport.get_extra_info("sockname")
            if isinstance(sockname, tuple) and len(sockname) >= 2:
                local = (str(sockname[0]), int(sockname[1]))
        return self.addresses.accepts(relay_url, local)

    def _refusal(self, conn: Connection, state: AuthState, event: Event, now: int) -> str | None:
        limits = self.limits
        if event.kind != KIND_AUTH:
            return "invalid: an AUTH event has kind 22242"
        if abs(event.created_at - now) > AUTH_WINDOW:
            return "invalid: the AUTH event's created_at is not close to now"
        if event.first_tag("challenge") != conn.challenge.hex():
            return "invalid: the challenge does not match the one this relay sent"
        if not self._relay_tag_ok(conn, event.first_tag("relay")):
            return f"invalid: the relay tag does not name this relay ({self.addresses.expected()})"
        if (
            event.pubkey not in conn.authed
            and len(conn.authed) + state.pending >= limits.max_auth_keys
        ):
            return (
                f"blocked: at most {limits.max_auth_keys} keys per connection; "
                "authenticate the others on another connection"
            )
        return None

    async def on_auth(self, conn: Connection, event: Event, now: int) -> None:
        """Answer an AUTH message (``OK``), now or once its signature is checked."""
        state = conn.auth
        if state is None:
            limits = self.limits
            state = conn.auth = AuthState(TokenBucket(limits.auth_per_second, limits.auth_burst))
        if state.pending >= MAX_IN_FLIGHT:
            await state.settled()
        if not state.bucket.take():
            reason: str | None = (
                f"rate-limited: at most {self.limits.auth_per_second:g} AUTH messages per "
                "second on one connection"
            )
        else:
            reason = self._refusal(conn, state, event, now)
        if reason is not None:
            conn.send(m.ok_message(event.id, False, reason))
            return
        future = self.signatures.submit(event.pubkey, event.id, event.sig)
        state.pending += 1
        state.last = future
        future.add_done_callback(lambda f: self._checked(conn, state, event, f))

    @staticmethod
    def _checked(
        conn: Connection, state: AuthState, event: Event, future: asyncio.Future[bool]
    ) -> None:
        state.pending -= 1
        if future.cancelled():
            return  # the relay is stopping
        if future.result():
            conn.authenticate(event.pubkey)
            conn.send(m.ok_message(event.id, True, ""))
        else:
            conn.send(m.ok_message(event.id, False, "invalid: signature does not verify"))

    def close(self) -> None:
        self.signatures.close()
