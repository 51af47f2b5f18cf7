"""A 1:1 session with one peer device: the Olm ratchet plus mailbox state.

Theory of operation. A session is created either *outbound* (we fetched the peer's
device bundle and opened an Olm session with one of its keys) or *inbound* (a pre-key
message from the peer opened it). Both sides then exchange *frames*, the Olm
plaintexts::

    {"v": 1, "from": <sender identity hex>, "to": <recipient identity hex>,
     "mbx": <sender's receive seed hex, while the peer may not know it>,
     "app": <application message>}

``from`` and ``to`` bind the frame to both identities, so a frame cannot be replayed
into another conversation or claimed by another identity. Mailbox state changes only
after a frame has authenticated:

    send_seed:   None --(peer's frame carries mbx)--> seed --(new mbx)--> newer seed
    announcing:  True --(peer wrote to our current mailbox)--> False
                 False --(we rotate our seed)--> True

Sessions are saved explicitly by the caller with :meth:`Session.to_record` (sealed with
ChaCha20-Poly1305; the Olm state inside is also a vodozemac pickle under its own key)
and loaded with :meth:`Session.from_record`. The record format is versioned.

Spec: docs/protocol.md ("Sessions and frames").
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson

from xchat.core.device import DeviceCertificate
from xchat.core.mailbox import SEED_LIFETIME, MailboxSeed, epoch_of, mailbox_key
from xchat.core.message import AppMessage, decode_app_message, encode_app_message
from xchat.crypto.aead import RecordKey
from xchat.crypto.kdf import derive_key
from xchat.crypto.keys import PublicKey, Rng
from xchat.crypto.olm import OlmSession
from xchat.errors import DecodeError
from xchat.wire.event import is_hex

__all__ = ["FRAME_VERSION", "RECORD_VERSION", "Frame", "Session", "decode_frame", "encode_frame"]

FRAME_VERSION: Final = 1
RECORD_VERSION: Final = 1
#: Digests of recently decrypted Olm messages kept to name duplicates precisely.
REPLAY_WINDOW: Final = 64


@dataclass(frozen=True, slots=True)
class Frame:
    sender: str
    recipient: str
    mailbox_seed: bytes | None
    message: AppMessage


def encode_frame(frame: Frame) -> bytes:
    obj: dict[str, Any] = {"v": FRAME_VERSION, "from": frame.sender, "to": frame.recipient}
    if frame.mailbox_seed is not None:
        obj["mbx"] = frame.mailbox_seed.hex()
    obj["app"] = encode_app_message(frame.message)
    return orjson.dumps(obj)


def decode_frame(data: bytes) -> Frame:
    """Parse an Olm plaintext from a peer (DecodeError for anything unexpected)."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise DecodeError("the frame is not JSON") from None
    if not isinstance(obj, dict) or obj.get("v") != FRAME_VERSION:
        raise DecodeError("unsupported frame version")
    if set(obj) - {"v", "from", "to", "mbx", "app"}:
        raise DecodeError("the frame has unexpected fields")
    sender, recipient, mbx = obj.get("from"), obj.get("to"), obj.get("mbx")
    if not is_hex(sender, 64) or not is_hex(recipient, 64):
        raise DecodeError("frame from/to must be identity keys in hex")
    if mbx is not None and not is_hex(mbx, 64):
        raise DecodeError("frame mbx must be 32 bytes of hex")
    return Frame(
        sender,  # type: ignore[arg-type]  # is_hex checked the type
        recipient,  # type: ignore[arg-type]
        bytes.fromhex(mbx) if isinstance(mbx, str) else None,
        decode_app_message(obj.get("app")),
    )


class Session:
    """One Olm session with one peer device. ``repr()`` shows ids, never keys or seeds."""

    __slots__ = (
        "_send_cache",
        "announcing",
        "created_at",
        "olm",
        "peer",
        "receive_seeds",
        "recent",
        "send_seed",
    )

    def __init__(
        self,
        peer: DeviceCertificate,
        olm: OlmSession,
        created_at: int,
        receive_seeds: list[MailboxSeed],
        send_seed: bytes | None = None,
        announcing: bool = True,
        recent: deque[bytes] | None = None,
    ) -> None:
        self.peer = peer
        self.olm = olm
        self.created_at = created_at
        self.receive_seeds = receive_seeds
        self.send_seed = send_seed
        self.announcing = announcing
        self.recent: deque[bytes] = recent if recent is not None else deque(maxlen=REPLAY_WINDOW)
        self._send_cache: tuple[bytes, int, PublicKey] | None = None

    @classmethod
    def start(cls, peer: DeviceCertificate, olm: OlmSession, now: int, rng: Rng) -> Session:
        """A new session with a fresh receive seed."""
        return cls(peer, olm, now, [MailboxSeed(rng(32), now)])

    @property
    def session_id(self) -> str:
        return self.olm.session_id

    @property
    def peer_identity(self) -> PublicKey:
        return self.peer.identity

    def send_address(self, now: int) -> PublicKey:
        """Where our next envelope goes: the peer's mailbox, or its identity at first contact."""
        if self.send_seed is None:
            return self.peer.identity
        epoch = epoch_of(now)
        cached = self._send_cache
        if cached is None or cached[0] != self.send_seed or cached[1] != epoch:
            cached = (self.send_seed, epoch, mailbox_key(self.send_seed, epoch).public_key)
            self._send_cache = cached
        return cached[2]

    def announcement(self) -> bytes | None:
        """Our current receive seed while the peer may not know it yet."""
        return self.receive_seeds[0].seed if self.announcing else None

    def rotate_if_due(self, now: int, rng: Rng) -> bool:
        """Start a new receive seed when the current one is old; forget long-retired ones."""
        rotated = False
        if now - self.receive_seeds[0].created_at >= SEED_LIFETIME:
            self.receive_seeds[0].retired_at = now
            self.receive_seeds.insert(0, MailboxSeed(rng(32), now))
            self.announcing = True
            rotated = True
        self.receive_seeds = [s for s in self.receive_seeds if s.alive(now)]
        return rotated

    def to_record(self, storage_key: bytes, rng: Rng) -> bytes:
        """The session sealed for disk, bound to its id."""
        record = {
            "v": RECORD_VERSION,
            "peer": self.peer.to_json(),
            "olm": self.olm.pickle(derive_key(storage_key, "xchat/olm-pickle/v1")),
            "created_at": self.created_at,
            "receive_seeds": [
                {"seed": s.seed.hex(), "created_at": s.created_at, "retired_at": s.retired_at}
                for s in self.receive_seeds
            ],
            "send_seed": self.send_seed.hex() if self.send_seed is not None else None,
            "announcing": self.announcing,
            "recent": [d.hex() for d in self.recent],
        }
        sealer = RecordKey(derive_key(storage_key, "xchat/record/session/v1"))
        return sealer.seal(orjson.dumps(record), self._aad(self.session_id), rng)

    @staticmethod
    def _aad(session_id: str) -> bytes:
        return b"xchat/session/" + session_id.encode()

    @classmethod
    def from_record(cls, data: bytes, session_id: str, storage_key: bytes) -> Session:
        """Open a sealed session; DecryptionError if the key or id is wrong.

        The record's ``v`` picks its loader (:data:`_RECORD_LOADERS`); a version this
        code does not know raises DecodeError ("the session record has an unknown
        version ..."), as does a record that is not a JSON object.
        """
        sealer = RecordKey(derive_key(storage_key, "xchat/record/session/v1"))
        record = orjson.loads(sealer.open(data, cls._aad(session_id)))
        if not isinstance(record, dict):
            raise DecodeError("the session record is not a JSON object")
        version = record.get("v")
        load = _RECORD_LOADERS.get(version) if type(version) is int else None
        if load is None:
            raise DecodeError(
                f"the session record has an unknown version ({version!r}; this X Chat reads"
                f" {', '.join(map(str, _RECORD_LOADERS))}): upgrade X Chat to open it"
            )
        return load(record, storage_key)

    def __repr__(self) -> str:
        return f"Session(id={self.session_id}, peer_device={self.peer.device_id})"


def _load_record_v1(record: dict[str, Any], storage_key: bytes) -> Session:
    """Version 1 (the format :meth:`Session.to_record` writes, described above)."""
    olm = OlmSession.from_pickle(record["olm"], derive_key(storage_key, "xchat/olm-pickle/v1"))
    seeds = [
        MailboxSeed(bytes.fromhex(s["seed"]), s["created_at"], s["retired_at"])
        for s in record["receive_seeds"]
    ]
    send_seed = record["send_seed"]
    return Session(
        DeviceCertificate.from_json(record["peer"]),
        olm,
        record["created_at"],
        seeds,
        bytes.fromhex(send_seed) if send_seed is not None else None,
        bool(record["announcing"]),
        deque((bytes.fromhex(d) for d in record["recent"]), maxlen=REPLAY_WINDOW),
    )


#: Session record version -> loader. A new version gets a loader here; the old ones stay,
#: so records written by every released version keep opening (tests/fixtures/home-v1).
_RECORD_LOADERS: Final[dict[int, Callable[[dict[str, Any], bytes], Session]]] = {
    1: _load_record_v1,
}
