"""Writes blob.json: known answers for xchat-stream-v1 (src/xchat/crypto/blob.py).

Run once, from the repository root: ``python tests/vectors/make_blob.py``. The file is a
pinned fixture, written by X Chat at the commit that added the format; the test also
recomputes every blob from the format's description with ``cryptography`` directly."""

from __future__ import annotations

import json
from pathlib import Path

from xchat.crypto.blob import CHUNK, encrypt_blob


def long_plaintext(size: int) -> bytes:
    """The plaintext of the long vectors: byte i is i mod 251."""
    return bytes(i % 251 for i in range(size))


def main() -> None:
    key = bytes(range(32))
    cases = []
    for name, plaintext in (
        ("empty", b""),
        ("hello", b"hello, blob"),
        ("one bucket exactly", b"\x80" * 1023),
        ("two chunks", long_plaintext(CHUNK + 5)),
    ):
        sealed = encrypt_blob(plaintext, key)
        case = {"name": name, "key": key.hex(), "size": len(plaintext)}
        if len(plaintext) <= 2048:
            case["plaintext"] = plaintext.hex()
            case["blob"] = sealed.blob.hex()
        else:
            case["plaintext_rule"] = "byte i is i mod 251"
        case |= {"stored": len(sealed.blob), "x": sealed.x, "ox": sealed.ox}
        cases.append(case)
    out = Path(__file__).with_name("blob.json")
    out.write_text(json.dumps({"scheme": "xchat-stream-v1", "cases": cases}, indent=1) + "\n")


if __name__ == "__main__":
    main()
