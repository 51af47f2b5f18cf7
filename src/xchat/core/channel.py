"""The secure channel: sealing application messages into envelopes and opening them.

This is the sans-I/O heart of X Chat. A :class:`Channel` holds this device and its
sessions; the node feeds it relay events and the current time, and it returns events
to publish and messages to store. It never touches sockets, files or clocks.

Theory of operation (receiving). An incoming gift wrap is opened in four steps, and
no state changes until the last one succeeds:

1. *Route*: its ``p`` tag must be a key we read mail for: our identity (first contact
   and NIP-17) or a mailbox key of one of our sessions.
2. *Unwrap*: verify the one-time signature and decrypt NIP-44 (a relay cannot forge or
   alter anything past this point).
3. *Authenticate*: X Chat envelopes carry the sender device's certificate (verified,
   then cached) and an Olm message; it is decrypted by the matching session, or opens a
   new session if it is a pre-key message. NIP-17 envelopes carry a seal signed by the
   sender's identity.
4. *Commit*: the frame's ``from``/``to`` must name the certificate's identity and ours;
   then the session's mailbox state is updated and the message returned.

A replay of an envelope already processed raises :class:`ReplayError`; a forgery or a
tampered envelope raises :class:`DecryptionError` or :class:`InvalidSignature`; anything
malformed raises :class:`DecodeError`. In every case sessions are left as they were.

Ordering (receiving). Relays return gift wraps in the order of their randomised
timestamps, and a ratchet keeps at most :data:`SKIPPED_KEYS` skipped message keys per
chain (vodozemac's bound: a message further behind than that can never be decrypted).
:meth:`Channel.open_batch` therefore opens each chain in chain-index order (read from
the Olm message's clear header, used for nothing else), and *holds back* an envelope
whose opening would push keys of still-missing messages out of that bound, following
the rules of :mod:`xchat.core.holdback`: it waits, unbounded in time, until the gap
fills, and is opened anyway only on the caller's evidence that the missing envelopes
are on no relay (``give_up_before``); the messages then given up are reported on the
first message opened after them (:attr:`Incoming.lost`). Held envelopes are bounded in
bytes; one that does not fit is *deferred* (neither opened nor held). The caller keeps
held envelopes on disk and marks nothing seen for held or deferred ones
(:meth:`Channel.take_held_changes`, :meth:`Channel.take_deferred`, restored with
:meth:`Channel.restore_held`), and persists chain progress
(:meth:`Channel.take_chain_changes`, restored with :meth:`Channel.restore_chains`).

The caller persists what :class:`Incoming` and :meth:`Channel.seal` report as changed:
the session after every send and receive, the device after a new inbound session
(its one-time key is used up).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import orjson

from xchat.core.catchup import event_size
from xchat.core.device import DeviceBundle, DeviceCertificate, LocalDevice
from xchat.core.envelope import gift_wrap, recipient_of, unwrap
from xchat.core.holdback import SKIPPED_KEYS, ChainState, HoldBack
from xchat.core.mailbox import LIVE_LOOKBACK, epoch_of, epoch_window
from xchat.core.message import AppMessage
from xchat.core.nip17 import (
    check_recipients,
    make_rumor,
    message_from_rumor,
    open_seal,
    wrap_rumor,
)
from xchat.core.session import Frame, Session, decode_frame, encode_frame
from xchat.crypto import nip44, safety
from xchat.crypto.keys import PublicKey, Rng, SecretKey
from xchat.crypto.olm import MESSAGE_PRE_KEY, OlmAccount, OlmMessage
from xchat.errors import (
    DecodeError,
    DecryptionError,
    InvalidSignature,
    RemoteProtocolError,
    ReplayError,
)
from xchat.wire.b64 import b64decode, b64encode
from xchat.wire.event import Event, Rumor

__all__ = ["ENVELOPE_VERSION", "SKIPPED_KEYS", "Channel", "Incoming"]

ENVELOPE_VERSION: Final = 1
#: Oldest epoch (days) whose mailbox keys are kept: longer than relays keep gift wraps.
MAX_LOOKBACK: Final = 40
_CERT_CACHE_SIZE: Final = 4096


@dataclass(frozen=True, slots=True)
class _Mailbox:
    key: SecretKey
    session_id: str
    seed: bytes


@dataclass(frozen=True, slots=True)
class _Unwrapped:
    """A gift wrap after routing and unwrapping, before authentication."""

    inner: bytes
    obj: dict[str, Any] | None  # an X Chat envelope, or None for NIP-17
    key: SecretKey
    mailbox: _Mailbox | None
    position: tuple[bytes, int] | None  # the Olm message's (ratchet key, chain index)


def _position(obj: dict[str, Any]) -> tuple[bytes, int] | None:
    """Where an envelope's Olm message sits in its chain, if its header parses."""
    field = obj.get("olm")
    if not isinstance(field, list) or len(field) != 2 or type(field[0]) is not int:
        return None
    try:
        return OlmMessage(field[0], b64decode(field[1], max_bytes=65535)).chain_position()
    except DecodeError:
        return None


@dataclass(frozen=True, slots=True)
class Incoming:
    """A message that authenticated, and what the caller must persist.

    ``device`` and ``session`` are None for NIP-17 messages, which are not
    forward-secret (``forward_secret`` is False). ``peer`` is the other party of the
    conversation: the sender, except for a NIP-17 copy of a message we wrote (from
    another client with our key, or our own copy), where it is the recipient.
    """

    sender: PublicKey
    message: AppMessage
    forward_secret: bool
    device: DeviceCertificate | None
    session: Session | None
    new_session: bool
    wrap_id: str
    peer: str = ""
    #: Messages of this envelope's chain, before it, given up on as never coming: they
    #: can no longer be decrypted (see :mod:`xchat.core.holdback`).
    lost: int = 0


class Channel:
    """This device's sessions, mailboxes and the sealing/opening of envelopes."""

    def __init__(self, device: LocalDevice, sessions: list[Session] | None = None) -> None:
        self.device = device
        self._sessions: dict[str, Session] = {}
        self._by_device: dict[str, list[Session]] = {}
        self._mailboxes: dict[str, _Mailbox] = {}  # mailbox public key hex -> its key
        self._windows: set[int] = set()
        # verified certificates by signature, with their JSON to compare field by field
        self._certs: OrderedDict[str, tuple[dict[str, Any], DeviceCertificate]] = OrderedDict()
        # held envelopes (by event id) and the progress of each ratchet chain
        self._hold: HoldBack[tuple[Event, _Unwrapped]] = HoldBack()
        self._held_added: dict[str, tuple[Event, int]] = {}
        self._held_removed: set[str] = set()
        self._deferred: list[Event] = []
        self._untracked: set[str] = set()  # session ids (see restore_chains)
        self._now_tracked: list[str] = []
        self.conversation_keys = nip44.ConversationKeyCache()
        for session in sessions or ():
            self._add(session)

    # -- sessions ---------------------------------------------------------------

    @property
    def identity(self) -> PublicKey:
        return self.device.identity.public_key

    def sessions(self) -> list[Session]:
        return list(self._sessions.values())

    def sessions_with(self, identity: PublicKey) -> list[Session]:
        """Sessions with every device of ``identity``, the newest per device first."""
        return [
            s for group in self._by_device.values() for s in group if s.peer.identity == identity
        ]

    def session(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def _add(self, session: Session) -> None:
        self._sessions[session.session_id] = session
        self._by_device.setdefault(session.peer.curve25519, []).insert(0, session)
        for epoch in self._windows:
            self._index(session, epoch)

    def _index(self, session: Session, epoch: int) -> None:
        for seed in session.receive_seeds:
            key = seed.key(epoch)
            self._mailboxes[key.public_key.hex] = _Mailbox(key, session.session_id, seed.seed)

    def peer_devices(self, identity: PublicKey) -> dict[str, DeviceCertificate]:
        """Every device of ``identity`` we have a session with, by device id."""
        return {s.peer.device_id: s.peer for s in self.sessions_with(identity)}

    def safety_number(self, identity: PublicKey) -> tuple[str, bytes]:
        """The safety number and QR payload with ``identity`` over the devices we know.

        A new or replaced device on either side changes it: compare it with the one
        the person verified to notice (docs/protocol.md, "Safety numbers").
        """
        mine = (self.identity.raw, [b64decode(self.device.certificate.ed25519)])
        theirs = (identity.raw, [b64decode(k) for k in self.peer_devices(identity)])
        return safety.safety_number(mine, theirs), safety.qr_payload(mine, theirs)

    def open_session(self, bundle: DeviceBundle, now: int, rng: Rng) -> Session:
        """Start an outbound session with a peer device from its verified bundle."""
        olm = self.device.account.outbound(bundle.certificate.curve25519, bundle.choose_key(rng))
        session = Session.start(bundle.certificate, olm, now, rng)
        self._add(session)
        return session

    # -- mailboxes --------------------------------------------------------------

    def receive_keys(self, now: int, lookback: int = LIVE_LOOKBACK) -> dict[str, SecretKey]:
        """Every key we read mail for in the window: identity plus mailbox keys.

        The node subscribes to gift wraps tagged with these and authenticates to relays
        (NIP-42) as them. Envelopes for any epoch requested since the process started
        (back to :data:`MAX_LOOKBACK` epochs) can be opened.
        """
        window = self._ensure_window(now, lookback)
        keys = {self.identity.hex: self.device.identity.secret}
        for session in self._sessions.values():
            for seed in session.receive_seeds:
                if seed.alive(now):
                    for epoch in window:
                        key = seed.key(epoch)
                        keys[key.public_key.hex] = key
        return keys

    def _ensure_window(self, now: int, lookback: int) -> range:
        """Index mailbox keys for every epoch of the window (and forget very old ones)."""
        window = epoch_window(now, lookback)
        oldest = epoch_of(now) - MAX_LOOKBACK
        if any(e < oldest for e in self._windows):
            self._windows = {e for e in self._windows if e >= oldest}
            self._reindex(now)
        for epoch in window:
            if epoch not in self._windows:
                self._windows.add(epoch)
                for session in self._sessions.values():
                    self._index(session, epoch)
        return window

    def _reindex(self, now: int) -> None:
        self._mailboxes.clear()
        for session in self._sessions.values():
            session.receive_seeds = [s for s in session.receive_seeds if s.alive(now)]
            for epoch in self._windows:
                self._index(session, epoch)

    def rotate_mailboxes(self, now: int, rng: Rng) -> list[Session]:
        """Rotate due receive seeds; returns the sessions that changed (to persist)."""
        changed = [s for s in self._sessions.values() if s.rotate_if_due(now, rng)]
        for session in changed:
            for epoch in self._windows:
                self._index(session, epoch)
        return changed

    # -- sending ----------------------------------------------------------------

    def seal(self, session: Session, message: AppMessage, now: int, rng: Rng) -> Event:
        """Encrypt ``message`` for one peer device and gift-wrap it.

        The session's ratchet advances: persist the session before publishing the event.
        """
        frame = Frame(self.identity.hex, session.peer.identity.hex, session.announcement(), message)
        olm = session.olm.encrypt(encode_frame(frame))
        inner = {
            "xchat": ENVELOPE_VERSION,
            "cert": self.device.certificate.to_json(),
            "to": session.peer.curve25519,
            "olm": [olm.type, b64encode(olm.body)],
        }
        return gift_wrap(orjson.dumps(inner), session.send_address(now), now, rng)

    def seal_nip17(
        self, recipient: PublicKey, message: AppMessage, now: int, rng: Rng
    ) -> tuple[Rumor, Event, Event]:
        """A NIP-17 message: its rumor, the wrap for the recipient and the copy for us."""
        rumor = make_rumor(message, self.identity, recipient)
        identity = self.device.identity
        to_peer = wrap_rumor(identity, recipient, rumor, now, rng, self.conversation_keys)
        to_self = wrap_rumor(identity, self.identity, rumor, now, rng, self.conversation_keys)
        return rumor, to_peer, to_self

    # -- receiving --------------------------------------------------------------

    def open(self, event: Event, now: int, rng: Rng) -> Incoming:
        """Authenticate and decrypt a gift wrap; see the module docstring for the steps.

        ``rng`` draws the receive seed of a session that this envelope opens.
        """
        item = self._unwrap(event, now)
        incoming = self._finish(item, event, now, rng)
        if item.position is not None:
            self._hold.opened(item.position)
        return incoming

    @property
    def holding(self) -> int:
        """Envelopes held back, waiting for earlier ones of their chain."""
        return self._hold.count

    @property
    def held_bytes(self) -> int:
        return self._hold.bytes

    def oldest_held_since(self) -> int | None:
        """When the longest-held envelope was first held (None: none is)."""
        return self._hold.oldest_since()

    def is_held(self, event_id: str) -> bool:
        return event_id in self._hold

    def open_batch(
        self,
        events: list[Event],
        now: int,
        rng: Rng,
        give_up_before: int | None = None,
    ) -> list[tuple[Event, Incoming | RemoteProtocolError]]:
        """Open many gift wraps, each Olm chain in order; every result or error, in the
        order they were processed. Envelopes held back (see the module docstring) are
        not in the result: they come out of a later call, with the envelopes that filled
        their gap, or once held since before ``give_up_before`` (the caller's evidence
        that the gap never fills; call with no events to let them go). Envelopes
        deferred for want of room are in neither (:meth:`take_deferred`). An envelope
        already held is ignored if given again.
        """
        unwrapped: list[tuple[Event, _Unwrapped | RemoteProtocolError, int]] = []
        before: set[str] = set()
        for key, (held_event, held_item), _, since, _ in self._hold.take():
            before.add(key)
            unwrapped.append((held_event, held_item, since))
        for event in events:
            if event.id in before:
                continue
            try:
                unwrapped.append((event, self._unwrap(event, now), now))
            except RemoteProtocolError as exc:
                unwrapped.append((event, exc, now))
        first: dict[bytes, int] = {}
        keys: list[tuple[int, int]] = []
        for i, (_, item, _) in enumerate(unwrapped):
            position = item.position if isinstance(item, _Unwrapped) else None
            if position is None:
                keys.append((i, -1))
            else:
                keys.append((first.setdefault(position[0], i), position[1]))
        order = sorted(range(len(unwrapped)), key=keys.__getitem__)
        results: list[tuple[Event, Incoming | RemoteProtocolError]] = []
        for i in order:
            event, item, since = unwrapped[i]
            if isinstance(item, RemoteProtocolError):
                results.append((event, item))
                continue
            result = self._open_in_order(event, item, since, now, rng, give_up_before)
            if result is not None:
                results.append((event, result))
        for key in before:
            if key not in self._hold:
                self._held_removed.add(key)
                self._held_added.pop(key, None)
        return results

    def _open_in_order(
        self,
        event: Event,
        item: _Unwrapped,
        since: int,
        now: int,
        rng: Rng,
        give_up_before: int | None,
    ) -> Incoming | RemoteProtocolError | None:
        """Open, hold or defer one envelope (None: held or deferred)."""
        lost = 0
        # A session from before chain progress was kept: its first chain seen is taken
        # as it comes (its progress is unknown; holding it as if it began at 0 would
        # wait for, and then report lost, messages opened long ago).
        untracked = (
            item.position is not None
            and item.mailbox is not None
            and item.mailbox.session_id in self._untracked
            and not self._hold.knows(item.position[0])
        )
        if item.position is not None and not untracked:
            size = event_size(event)
            decision = self._hold.decide(item.position, since, size, give_up_before)
            if decision.action == "hold":
                self._hold.hold(event.id, (event, item), item.position, since, size)
                if since == now:
                    self._held_added[event.id] = (event, since)
                return None
            if decision.action == "defer":
                self._deferred.append(event)
                return None
            lost = decision.lost
        try:
            incoming = self._finish(item, event, now, rng)
        except RemoteProtocolError as exc:
            return exc
        if item.position is not None:
            self._hold.opened(item.position, give_up=lost > 0 or untracked)
        if untracked and item.mailbox is not None:
            self._untracked.discard(item.mailbox.session_id)
            self._now_tracked.append(item.mailbox.session_id)
        return dataclasses.replace(incoming, lost=lost) if lost else incoming

    def take_held_changes(self) -> tuple[list[tuple[Event, int]], list[str]]:
        """Envelopes newly held (with the time they were held) and ids no longer held,
        since the last call: the caller's copy on disk follows these."""
        added = [v for k, v in self._held_added.items() if k in self._hold]
        removed = sorted(self._held_removed)
        self._held_added.clear()
        self._held_removed.clear()
        return added, removed

    def take_deferred(self) -> list[Event]:
        """Envelopes neither opened nor held since the last call (no room): the caller
        must let a later read of the relays deliver them again."""
        deferred, self._deferred = self._deferred, []
        return deferred

    def restore_held(self, held: list[tuple[Event, int]], now: int) -> list[str]:
        """Hold again what the caller kept on disk (envelope, time first held); the
        next :meth:`open_batch` decides on them. Returns the ids that no longer unwrap
        (their key is gone): the caller drops them."""
        failed = []
        for event, since in held:
            try:
                item = self._unwrap(event, now)
            except RemoteProtocolError:
                failed.append(event.id)
                continue
            if item.position is None:
                failed.append(event.id)
                continue
            self._hold.hold(event.id, (event, item), item.position, since, event_size(event))
        return failed

    def take_chain_changes(self) -> dict[bytes, ChainState]:
        """Chain progress changed since the last call, by ratchet key (to persist)."""
        return self._hold.take_changed()

    def restore_chains(
        self, chains: dict[bytes, ChainState], untracked: Iterable[str] = ()
    ) -> None:
        """Chain progress kept on disk, and the sessions that predate it (their first
        chain seen opens as it comes)."""
        self._hold.restore(chains)
        self._untracked.update(untracked)

    def take_tracked(self) -> list[str]:
        """Sessions no longer untracked since the last call (to persist)."""
        tracked, self._now_tracked = self._now_tracked, []
        return tracked

    def _unwrap(self, event: Event, now: int) -> _Unwrapped:
        """Steps 1 and 2: route by recipient and unwrap (no state changes)."""
        recipient = recipient_of(event)
        if recipient == self.identity.hex:
            key, mailbox = self.device.identity.secret, None
        else:
            self._ensure_window(now, LIVE_LOOKBACK)
            mailbox = self._mailboxes.get(recipient)
            if mailbox is None:
                raise DecryptionError("the gift wrap is addressed to no key we read mail for")
            key = mailbox.key
        inner = unwrap(event, key)
        try:
            obj = orjson.loads(inner)
        except orjson.JSONDecodeError:
            raise DecodeError("the gift wrap does not hold JSON") from None
        if isinstance(obj, dict) and "xchat" in obj:
            return _Unwrapped(inner, obj, key, mailbox, _position(obj))
        return _Unwrapped(inner, None, key, mailbox, None)

    def _finish(self, item: _Unwrapped, event: Event, now: int, rng: Rng) -> Incoming:
        """Steps 3 and 4: authenticate, decrypt, commit."""
        if item.obj is not None:
            return self._open_xchat(item.obj, event.id, item.mailbox, now, rng)
        if item.key is not self.device.identity.secret:
            raise DecodeError("NIP-17 messages are only accepted at the identity key")
        rumor = open_seal(item.inner, item.key, self.conversation_keys)
        peer = check_recipients(rumor, self.identity.hex)  # no group into a 1:1 chat
        sender = PublicKey.from_hex(rumor.pubkey)
        message = message_from_rumor(rumor)
        return Incoming(sender, message, False, None, None, False, event.id, peer)

    def _certificate(self, obj: object) -> DeviceCertificate:
        """Verify a peer's certificate once; later envelopes with the same fields reuse it."""
        signature = obj.get("sig") if isinstance(obj, dict) else None
        cached = self._certs.get(signature) if isinstance(signature, str) else None
        if cached is not None and cached[0] == obj:
            self._certs.move_to_end(signature)  # type: ignore[arg-type]  # str, checked above
            return cached[1]
        cert = DeviceCertificate.from_json(obj)
        self._certs[cert.signature] = (cert.to_json(), cert)
        if len(self._certs) > _CERT_CACHE_SIZE:
            self._certs.popitem(last=False)
        return cert

    def _open_xchat(
        self, obj: dict[str, Any], wrap_id: str, mailbox: _Mailbox | None, now: int, rng: Rng
    ) -> Incoming:
        if obj.get("xchat") != ENVELOPE_VERSION or set(obj) != {"xchat", "cert", "to", "olm"}:
            raise DecodeError("unsupported X Chat envelope")
        if obj["to"] != self.device.account.curve25519:
            raise DecryptionError("the envelope is for another device of this identity")
        olm_field = obj["olm"]
        if not isinstance(olm_field, list) or len(olm_field) != 2 or type(olm_field[0]) is not int:
            raise DecodeError("envelope olm field must be [type, base64 body]")
        message = OlmMessage(olm_field[0], b64decode(olm_field[1], max_bytes=65535))
        cert = self._certificate(obj["cert"])
        digest = hashlib.sha256(message.body).digest()[:16]
        candidates = self._by_device.get(cert.curve25519, [])
        if any(digest in s.recent for s in candidates):
            raise ReplayError("this message was already received")

        session, plaintext, new = self._decrypt(cert, message, candidates, now, rng)
        frame = decode_frame(plaintext)
        if frame.sender != cert.identity.hex or frame.recipient != self.identity.hex:
            raise InvalidSignature("the frame names other identities than its envelope")
        if session.peer.identity != cert.identity:
            raise InvalidSignature("the certificate names another identity than the session")

        # Commit: nothing above changed our state except Olm itself, which vodozemac
        # only advances for messages that authenticated.
        if new:
            self._add(session)
        if frame.mailbox_seed is not None:
            session.send_seed = frame.mailbox_seed
        if (
            mailbox is not None
            and mailbox.session_id == session.session_id
            and mailbox.seed == session.receive_seeds[0].seed
        ):
            session.announcing = False  # the peer wrote to our newest mailbox: it knows it
        session.recent.append(digest)
        return Incoming(
            cert.identity, frame.message, True, cert, session, new, wrap_id, cert.identity.hex
        )

    def _decrypt(
        self,
        cert: DeviceCertificate,
        message: OlmMessage,
        candidates: list[Session],
        now: int,
        rng: Rng,
    ) -> tuple[Session, bytes, bool]:
        if message.type == MESSAGE_PRE_KEY:
            for session in candidates:
                if session.olm.matches(message):
                    try:
                        return session, session.olm.decrypt(message), False
                    except DecryptionError:
                        raise ReplayError("this pre-key message was already received") from None
            if OlmAccount.pre_key_session_id(message) in self._sessions:
                raise ReplayError("this pre-key message opened a session already")
            olm, plaintext = self.device.account.inbound(cert.curve25519, message)
            return Session.start(cert, olm, now, rng), plaintext, True
        for session in candidates:
            try:
                return session, session.olm.decrypt(message), False
            except DecryptionError:
                continue
        raise DecryptionError("no session with this device decrypts the message")
