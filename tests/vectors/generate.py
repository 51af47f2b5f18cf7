"""Write X Chat's published test vectors: ``python tests/vectors/generate.py``.

Every random byte our code draws is recorded, in order, so a second implementation can
feed the same bytes and must produce the same events byte for byte. Olm is the one
exception: vodozemac draws its own randomness, so the Olm layer is given as captured
data (a pickled account and the Olm message) that a vodozemac-based implementation can
load and decrypt. Re-running this script produces new vectors; the committed ones are
the reference, checked by tests/core/test_vectors.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from xchat.core.channel import Channel
from xchat.core.device import DeviceBundle, LocalDevice
from xchat.core.envelope import gift_wrap
from xchat.core.identity import Identity
from xchat.core.message import (
    Reaction,
    Read,
    Reply,
    Text,
    encode_app_message,
)
from xchat.core.nip17 import make_rumor, wrap_rumor
from xchat.crypto import nip44
from xchat.crypto.keys import SecretKey

HERE = Path(__file__).resolve().parent
NOW = 1_800_000_000
PICKLE_KEY = bytes(range(32))


class Recording:
    """SHAKE-256 of a label, handed out in chunks that are written into the vector."""

    def __init__(self, label: str) -> None:
        self.label = label.encode()
        self.offset = 0
        self.chunks: list[str] = []

    def __call__(self, n: int) -> bytes:
        out = hashlib.shake_256(self.label).digest(self.offset + n)[self.offset :]
        self.offset += n
        self.chunks.append(out.hex())
        return out


def secret(label: str) -> SecretKey:
    return SecretKey(hashlib.sha256(label.encode()).digest())


def gift_wrap_vectors() -> list[dict[str, Any]]:
    vectors = []
    for label, plaintext in (
        ("short", b'{"hello":"world"}'),
        ("unicode", '{"text":"¡hola! 你好 👋"}'.encode()),
        ("bucket 8192", b'{"x":"' + b"a" * 5000 + b'"}'),
    ):
        recipient = secret(f"recipient {label}")
        rng = Recording(f"gift wrap {label}")
        event = gift_wrap(plaintext, recipient.public_key, NOW, rng)
        vectors.append(
            {
                "description": f"gift wrap, {label}",
                "recipient_secret": recipient.to_bytes().hex(),
                "recipient_pubkey": recipient.public_key.hex,
                "now": NOW,
                "plaintext": plaintext.decode(),
                "rng": rng.chunks,
                "event": event.to_dict(),
            }
        )
    return vectors


def xchat_envelope_vectors() -> list[dict[str, Any]]:
    alice = LocalDevice.create(Identity.generate(Recording("alice identity")), NOW, os.urandom)
    bob = LocalDevice.create(Identity.generate(Recording("bob identity")), NOW, os.urandom)
    bundle_event = bob.bundle_event(NOW, os.urandom, one_time_keys=3)
    bob_account_before = bob.account.pickle(PICKLE_KEY)
    sender = Channel(alice)
    session = sender.open_session(DeviceBundle.from_event(bundle_event), NOW, os.urandom)
    message = Text("0123456789abcdef0123456789abcdef", NOW * 1000, "Hello Bob! Olá 👋")
    rng = Recording("first envelope")
    event = sender.seal(session, message, NOW, rng)
    inner = nip44.decrypt_bytes(
        event.content, nip44.conversation_key(bob.identity.secret, _pub(event.pubkey))
    )
    receiver = Channel(bob)
    incoming = receiver.open(event, NOW, os.urandom)
    assert incoming.message == message
    return [
        {
            "description": "first contact: a pre-key Olm message to Bob's identity key",
            "now": NOW,
            "alice_phrase": alice.identity.phrase,
            "bob_phrase": bob.identity.phrase,
            "bob_identity_secret": bob.identity.secret.to_bytes().hex(),
            "bob_bundle_event": bundle_event.to_dict(),
            "bob_account_pickle": bob_account_before,
            "pickle_key": PICKLE_KEY.hex(),
            "rng": rng.chunks,
            "inner_padded_length": len(inner),
            "inner_json": inner.rstrip(b" ").decode(),
            "app_message": encode_app_message(message),
            "event": event.to_dict(),
        }
    ]


def _pub(hex_key: str) -> Any:
    from xchat.crypto.keys import PublicKey

    return PublicKey.from_hex(hex_key)


def nip17_vectors() -> list[dict[str, Any]]:
    sender = Identity(secret("nip17 sender"))
    recipient = secret("nip17 recipient")
    out = []
    for label, message in (
        ("text", Text("aa" * 16, NOW * 1000, "Hola, que tal?")),
        ("reply", Reply("bb" * 16, NOW * 1000, "bien", "cc" * 32)),
        ("reaction", Reaction("dd" * 16, NOW * 1000, "cc" * 32, "🤙")),
    ):
        rumor = make_rumor(message, sender.public_key, recipient.public_key)
        rng = Recording(f"nip17 {label}")
        event = wrap_rumor(
            sender, recipient.public_key, rumor, NOW, rng, nip44.ConversationKeyCache()
        )
        out.append(
            {
                "description": f"NIP-17 {label}",
                "sender_secret": sender.secret.to_bytes().hex(),
                "recipient_secret": recipient.to_bytes().hex(),
                "now": NOW,
                "rumor": rumor.to_dict(),
                "rng": rng.chunks,
                "event": event.to_dict(),
            }
        )
    return out


def app_message_vectors() -> list[dict[str, Any]]:
    messages = [
        Text("00" * 16, 1_700_000_000_000, "hi"),
        Reply("01" * 16, 1_700_000_000_001, "yes", "00" * 16),
        Reaction("02" * 16, 1_700_000_000_002, "00" * 16, "❤️"),
        Read("03" * 16, 1_700_000_000_003, ("00" * 16, "01" * 16)),
    ]
    return [
        {"json": json.dumps(encode_app_message(m), ensure_ascii=False, separators=(",", ":"))}
        for m in messages
    ]


def main() -> None:
    document = {
        "source": "X Chat protocol v1 vectors, written by tests/vectors/generate.py; "
        "see docs/protocol.md for the formats and the order of random draws",
        "gift_wrap": gift_wrap_vectors(),
        "xchat_envelope": xchat_envelope_vectors(),
        "nip17": nip17_vectors(),
        "app_messages": app_message_vectors(),
    }
    path = HERE / "envelope.json"
    path.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
