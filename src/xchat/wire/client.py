"""The client side of one relay connection, sans I/O: NIP-01 sessions, NIP-42 AUTH, NIP-45 COUNT.

Theory of operation. :class:`ClientProtocol` holds what a client must remember about one
connection to one relay, and nothing else: no socket, no asyncio, no clock (the one time it
needs, an AUTH event's ``created_at``, is passed in). A driver (``xchat.node.relay_client``
over aiohttp) uses it in two directions:

1. **Sending.** :meth:`~ClientProtocol.send_event`, :meth:`~ClientProtocol.subscribe`,
   :meth:`~ClientProtocol.close`, :meth:`~ClientProtocol.count` and
   :meth:`~ClientProtocol.auth` (or :meth:`~ClientProtocol.auth_event`) record the request
   and return the text of the WebSocket message to send. They raise
   :class:`~xchat.errors.LocalProtocolError` for our own mistakes only (a bad subscription
   id or filter list, AUTH before any challenge).
2. **Receiving.** :meth:`~ClientProtocol.receive_text` takes one text message the relay
   sent and returns the typed events it causes (:data:`ClientEvent`). It never raises for
   what the relay sent: a malformed message gives :class:`Malformed` (counted in
   :attr:`~ClientProtocol.malformed`); a well-formed one that answers nothing we asked
   (an ``OK`` for an id we did not send or that was answered already, an ``EVENT``,
   ``EOSE`` or ``CLOSED`` for a subscription we never opened, a second ``EOSE``) gives
   :class:`Unexpected` (counted in :attr:`~ClientProtocol.unexpected`). Messages for a
   subscription we closed ourselves that were in flight when we did are dropped without an
   event (counted in :attr:`~ClientProtocol.late`).
3. **Losing the connection.** :meth:`~ClientProtocol.connection_lost` ends every pending
   request (:class:`PublishFailed`, :class:`SubscriptionClosed` with ``by_relay`` false,
   :class:`CountFailed`) and forgets the AUTH challenge; the object is then as new.

Events are checked as :func:`xchat.wire.messages.parse_relay_message` checks them
(fields, sizes, id), not their signatures, nor whether they match the subscription's
filters: that is the caller's, who knows what it expects.

Pending publishes (and AUTH events) are keyed by event id: sending the same event twice
before its answer waits for one ``OK`` (a relay answers an event it has once). An ``OK``'s
machine-readable prefix (NIP-01: ``duplicate``, ``blocked``, ``auth-required``, ...) is
split off into ``prefix`` ("" when the relay gave none); ``message`` keeps the whole text.

Subscriptions, by id::

    state     input                    next      event returned
    --------  -----------------------  --------  ---------------------------------------
    (none)    subscribe()              STORED    -
    STORED    EVENT                    STORED    EventReceived(stored=True)
    STORED    EOSE                     LIVE      EndOfStored
    STORED    CLOSED                   (none)    SubscriptionClosed(complete=False)
    LIVE      EVENT                    LIVE      EventReceived(stored=False)
    LIVE      EOSE                     LIVE      Unexpected (a second EOSE)
    LIVE      CLOSED                   (none)    SubscriptionClosed(complete=True)
    STORED/LIVE subscribe() (same id)  STORED    - (NIP-01: the REQ replaces the old one)
    STORED/LIVE close()                closing   - (returns the CLOSE text)
    closing   EVENT/EOSE               closing   - (late: counted, dropped)
    closing   CLOSED                   (none)    - (late: counted, dropped)
    (none)    EVENT/EOSE/CLOSED        (none)    Unexpected
    any       connection_lost()        (none)    SubscriptionClosed(by_relay=False)

At most :data:`MAX_CLOSING` closed ids are remembered as *closing* (the oldest is then
forgotten, and its late messages count as unexpected).

Publishes and AUTH events, by event id::

    (none)    send_event()/auth()      PENDING   -
    PENDING   OK                       (none)    PublishAnswered / AuthAnswered
    PENDING   forget()                 (none)    - (the caller gave up waiting)
    PENDING   connection_lost()        (none)    PublishFailed
    (none)    OK                       (none)    Unexpected

COUNT requests (NIP-45), by subscription id: ``count()`` makes one PENDING; ``COUNT``
answers it (:class:`CountReceived`), ``CLOSED`` refuses it (:class:`CountRefused`).

AUTH (NIP-42). The relay may send a challenge at any time, and a new one replaces the old
(:class:`AuthChallenge`, ``renewed`` true when a different challenge came before it).
:attr:`~ClientProtocol.challenge` is the one to answer; :meth:`~ClientProtocol.auth` builds
the kind-22242 event from it (:class:`AuthTemplate`), has the caller's ``sign`` callback
sign it and returns the ``AUTH`` text. :attr:`~ClientProtocol.authenticated` holds the keys
the relay accepted under the current challenge; a new challenge empties it (a relay that
re-challenges wants the answers again). ``auth-required`` refusals are only reported (the
``prefix`` of an OK or CLOSED): whether to authenticate and retry is the driver's policy.

Specs: https://github.com/nostr-protocol/nips/blob/master/01.md,
https://github.com/nostr-protocol/nips/blob/master/42.md,
https://github.com/nostr-protocol/nips/blob/master/45.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, TypeAlias

from xchat.errors import LocalProtocolError
from xchat.wire import messages as m
from xchat.wire.event import Event
from xchat.wire.filter import Filter
from xchat.wire.kinds import KIND_AUTH

__all__ = [
    "MAX_CLOSING",
    "MAX_NOTICES",
    "AuthAnswered",
    "AuthChallenge",
    "AuthTemplate",
    "ClientEvent",
    "ClientProtocol",
    "CountFailed",
    "CountReceived",
    "CountRefused",
    "EndOfStored",
    "EventReceived",
    "Malformed",
    "NoticeReceived",
    "PublishAnswered",
    "PublishFailed",
    "SubState",
    "SubscriptionClosed",
    "Unexpected",
]

#: Subscriptions we closed whose late messages are still recognised as such.
MAX_CLOSING: Final = 256
#: NOTICE texts kept (the newest), each cut to :data:`NOTICE_CHARS` characters.
MAX_NOTICES: Final = 100
NOTICE_CHARS: Final = 500
#: The reason given for requests ended by :meth:`ClientProtocol.connection_lost`.
LOST: Final = "error: connection closed"


class SubState(StrEnum):
    """A subscription's state (see the module's table)."""

    STORED = "stored"  # REQ sent; stored events arriving; no EOSE yet
    LIVE = "live"  # EOSE came: only new events from now on


# --- events returned by receive_text() and connection_lost() -----------------------------------


@dataclass(frozen=True, slots=True)
class PublishAnswered:
    """The relay's ``OK`` for an event we sent."""

    event_id: str
    accepted: bool
    prefix: str  # machine-readable prefix ("duplicate", "auth-required", ...), or ""
    message: str  # the whole text, prefix included


@dataclass(frozen=True, slots=True)
class AuthAnswered:
    """The relay's ``OK`` for an AUTH event; ``pubkey`` is the key it authenticated (or not)."""

    event_id: str
    pubkey: str
    accepted: bool
    prefix: str
    message: str


@dataclass(frozen=True, slots=True)
class PublishFailed:
    """A publish or AUTH ended without an answer (the connection was lost)."""

    event_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class EventReceived:
    """An event for one of our subscriptions; ``stored`` while before its EOSE."""

    sub_id: str
    event: Event
    stored: bool


@dataclass(frozen=True, slots=True)
class EndOfStored:
    """``EOSE``: every stored event of the subscription was sent; it stays open (LIVE)."""

    sub_id: str


@dataclass(frozen=True, slots=True)
class SubscriptionClosed:
    """The subscription ended: the relay's ``CLOSED`` (``by_relay``) or a lost connection.

    ``complete`` says whether its EOSE had come: a CLOSED after EOSE is no refusal (some
    relays end a REQ they answered in full)."""

    sub_id: str
    prefix: str
    message: str
    complete: bool
    by_relay: bool = True


@dataclass(frozen=True, slots=True)
class CountReceived:
    """The answer to a COUNT request (NIP-45)."""

    sub_id: str
    count: int
    approximate: bool


@dataclass(frozen=True, slots=True)
class CountRefused:
    """A ``CLOSED`` answering a COUNT request."""

    sub_id: str
    prefix: str
    message: str


@dataclass(frozen=True, slots=True)
class CountFailed:
    """A COUNT request ended without an answer (the connection was lost)."""

    sub_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class AuthChallenge:
    """An ``AUTH`` challenge (NIP-42); ``renewed``: it replaced a different one."""

    challenge: str
    renewed: bool


@dataclass(frozen=True, slots=True)
class NoticeReceived:
    """A ``NOTICE``, cut to :data:`NOTICE_CHARS` characters (untrusted text)."""

    message: str


@dataclass(frozen=True, slots=True)
class Malformed:
    """A message that is not NIP-01 (bad JSON, an unknown verb, wrong fields, a bad event)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Unexpected:
    """A well-formed message that answers nothing we asked (see the module docstring)."""

    verb: str
    ref: str  # the event or subscription id it names
    reason: str


ClientEvent: TypeAlias = (
    PublishAnswered
    | AuthAnswered
    | PublishFailed
    | EventReceived
    | EndOfStored
    | SubscriptionClosed
    | CountReceived
    | CountRefused
    | CountFailed
    | AuthChallenge
    | NoticeReceived
    | Malformed
    | Unexpected
)


@dataclass(frozen=True, slots=True)
class AuthTemplate:
    """The unsigned NIP-42 event that answers ``challenge``: sign it as the key to authenticate."""

    kind: int
    created_at: int
    tags: list[list[str]]
    content: str


# --- the protocol --------------------------------------------------------------------------------


class ClientProtocol:
    """One connection's NIP-01 client state (see the module docstring)."""

    def __init__(self, relay_url: str, limits: m.MessageLimits = m.DEFAULT_MESSAGE_LIMITS) -> None:
        self.relay_url = relay_url
        self._limits = limits
        self._subs: dict[str, SubState] = {}
        self._closing: dict[str, None] = {}  # insertion order: the oldest is forgotten first
        self._publishes: set[str] = set()  # event ids waiting for OK
        self._auths: dict[str, str] = {}  # AUTH event id -> pubkey, waiting for OK
        self._counts: set[str] = set()
        self.challenge: str | None = None
        self.authenticated: set[str] = set()
        self.notices: list[str] = []
        self.malformed = 0
        self.unexpected = 0
        self.late = 0
        self._handlers: dict[type[Any], Callable[[Any], ClientEvent | None]] = {
            m.RelayEvent: self._on_event,
            m.RelayOk: self._on_ok,
            m.RelayEose: self._on_eose,
            m.RelayClosed: self._on_closed,
            m.RelayCount: self._on_count,
            m.RelayAuth: self._on_auth,
            m.RelayNotice: self._on_notice,
        }

    # -- what we send ----------------------------------------------------------------

    def send_event(self, event: Event) -> str:
        """``["EVENT", event]``; its ``OK`` will come as :class:`PublishAnswered`."""
        self._publishes.add(event.id)
        return m.publish_message(event)

    def forget(self, event_id: str) -> None:
        """Stop waiting for ``event_id``'s OK (a late one is then :class:`Unexpected`)."""
        self._publishes.discard(event_id)
        self._auths.pop(event_id, None)

    def pending(self, event_id: str) -> bool:
        """True while an OK for ``event_id`` (a publish or AUTH) is awaited."""
        return event_id in self._publishes or event_id in self._auths

    def subscribe(self, sub_id: str, filters: Sequence[Filter | dict[str, Any]]) -> str:
        """``["REQ", sub_id, ...filters]``; an open ``sub_id`` is replaced (NIP-01)."""
        if sub_id in self._counts:
            raise LocalProtocolError("that id names a COUNT request in flight")
        text = m.req_message(sub_id, filters)
        self._closing.pop(sub_id, None)
        self._subs[sub_id] = SubState.STORED
        return text

    def state(self, sub_id: str) -> SubState | None:
        """The subscription's state; None if it is not open."""
        return self._subs.get(sub_id)

    def close(self, sub_id: str) -> str:
        """``["CLOSE", sub_id]``; messages in flight for it are then dropped as late."""
        text = m.close_message(sub_id)
        if self._subs.pop(sub_id, None) is not None:
            self._closing[sub_id] = None
            if len(self._closing) > MAX_CLOSING:
                del self._closing[next(iter(self._closing))]
        return text

    def count(self, sub_id: str, filters: Sequence[Filter | dict[str, Any]]) -> str:
        """``["COUNT", sub_id, ...filters]`` (NIP-45)."""
        if sub_id in self._subs or sub_id in self._counts:
            raise LocalProtocolError("that id names a request in flight")
        text = m.count_request(sub_id, filters)
        self._counts.add(sub_id)
        return text

    def forget_count(self, sub_id: str) -> None:
        """Stop waiting for a COUNT answer (a late one is then :class:`Unexpected`)."""
        self._counts.discard(sub_id)

    def auth_template(self, now: int) -> AuthTemplate:
        """The NIP-42 event answering the current challenge, unsigned, dated ``now``."""
        if self.challenge is None:
            raise LocalProtocolError("the relay has sent no AUTH challenge")
        return AuthTemplate(
            kind=KIND_AUTH,
            created_at=now,
            tags=[["relay", self.relay_url], ["challenge", self.challenge]],
            content="",
        )

    def auth(self, sign: Callable[[AuthTemplate], Event], now: int) -> str:
        """``["AUTH", event]`` for the current challenge, signed by ``sign``; its OK comes
        as :class:`AuthAnswered`."""
        return self.auth_event(sign(self.auth_template(now)))

    def auth_event(self, event: Event) -> str:
        """``["AUTH", event]`` for an event signed already (not checked: the relay judges)."""
        self._auths[event.id] = event.pubkey
        return m.auth_message(event)

    # -- what the relay sends ----------------------------------------------------------------

    def receive_text(self, text: str | bytes) -> list[ClientEvent]:
        """The events one message from the relay causes (never raises for its content)."""
        try:
            message = m.parse_relay_message(text, self._limits)
        except m.MessageError as exc:
            self.malformed += 1
            return [Malformed(exc.reason)]
        event = self._handlers[type(message)](message)
        if event is None:
            return []
        if type(event) is Unexpected:
            self.unexpected += 1
        return [event]

    def _late(self, sub_id: str) -> bool:
        if sub_id in self._closing:
            self.late += 1
            return True
        return False

    def _on_event(self, message: m.RelayEvent) -> ClientEvent | None:
        state = self._subs.get(message.sub_id)
        if state is None:
            if self._late(message.sub_id):
                return None
            return Unexpected("EVENT", message.sub_id, "no such subscription")
        return EventReceived(message.sub_id, message.event, state is SubState.STORED)

    def _on_ok(self, message: m.RelayOk) -> ClientEvent:
        prefix = m.split_prefixed(message.message)[0]
        if message.event_id in self._publishes:
            self._publishes.discard(message.event_id)
            return PublishAnswered(message.event_id, message.accepted, prefix, message.message)
        pubkey = self._auths.pop(message.event_id, None)
        if pubkey is not None:
            if message.accepted:
                self.authenticated.add(pubkey)
            return AuthAnswered(message.event_id, pubkey, message.accepted, prefix, message.message)
        return Unexpected("OK", message.event_id, "no event with this id awaits an answer")

    def _on_eose(self, message: m.RelayEose) -> ClientEvent | None:
        state = self._subs.get(message.sub_id)
        if state is SubState.STORED:
            self._subs[message.sub_id] = SubState.LIVE
            return EndOfStored(message.sub_id)
        if state is SubState.LIVE:
            return Unexpected("EOSE", message.sub_id, "a second EOSE")
        if self._late(message.sub_id):
            return None
        return Unexpected("EOSE", message.sub_id, "no such subscription")

    def _on_closed(self, message: m.RelayClosed) -> ClientEvent | None:
        prefix = m.split_prefixed(message.message)[0]
        state = self._subs.pop(message.sub_id, None)
        if state is not None:
            complete = state is SubState.LIVE
            return SubscriptionClosed(message.sub_id, prefix, message.message, complete)
        if message.sub_id in self._counts:
            self._counts.discard(message.sub_id)
            return CountRefused(message.sub_id, prefix, message.message)
        if self._late(message.sub_id):
            del self._closing[message.sub_id]  # the relay confirmed our CLOSE
            return None
        return Unexpected("CLOSED", message.sub_id, "no such subscription")

    def _on_count(self, message: m.RelayCount) -> ClientEvent:
        if message.sub_id not in self._counts:
            return Unexpected("COUNT", message.sub_id, "no COUNT request with this id")
        self._counts.discard(message.sub_id)
        return CountReceived(message.sub_id, message.count, message.approximate)

    def _on_auth(self, message: m.RelayAuth) -> ClientEvent:
        renewed = self.challenge is not None and self.challenge != message.challenge
        if renewed:
            self.authenticated.clear()
        self.challenge = message.challenge
        return AuthChallenge(message.challenge, renewed)

    def _on_notice(self, message: m.RelayNotice) -> ClientEvent:
        text = message.message[:NOTICE_CHARS]
        self.notices.append(text)
        del self.notices[:-MAX_NOTICES]
        return NoticeReceived(text)

    # -- the end ------------------------------------------------------------------------------

    def connection_lost(self) -> list[ClientEvent]:
        """End every pending request; the protocol is then as new (no challenge)."""
        events: list[ClientEvent] = [
            PublishFailed(event_id, LOST) for event_id in [*self._publishes, *self._auths]
        ]
        events += [
            SubscriptionClosed(sub_id, "error", LOST, state is SubState.LIVE, by_relay=False)
            for sub_id, state in self._subs.items()
        ]
        events += [CountFailed(sub_id, LOST) for sub_id in self._counts]
        self._publishes.clear()
        self._auths.clear()
        self._subs.clear()
        self._closing.clear()
        self._counts.clear()
        self.challenge = None
        self.authenticated.clear()
        return events
