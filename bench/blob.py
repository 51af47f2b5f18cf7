"""Encrypted blob format throughput: xchat-stream-v1 seal and open, against the bare AEAD.

Run from the repository root::

    .venv/bin/python bench/blob.py [--mb N] [--runs R]

One core, in memory: a random ``--mb`` MiB file (default 64) sealed with
:func:`xchat.crypto.blob.encrypt_blob` (padding, 1 MiB chunks, ChaCha20-Poly1305, and the
two sha256 of ``x`` and ``ox``) and opened with :func:`decrypt_blob` (every chunk checked,
padding, size and ``ox`` verified). The **anchor** is ``cryptography``'s ChaCha20-Poly1305
over the same 1 MiB chunks with nothing else, measured in the same run: the ratio says
what the format's own work costs. Best of ``--runs`` runs (the machine may be shared).
The targets of issue 11 (encrypt+upload >= 75 MB/s, download+verify+decrypt >= 300 MB/s)
include the network; these figures are the crypto's ceiling.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import time

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from xchat.crypto.blob import CHUNK, decrypt_blob, encrypt_blob


def best(runs: int, fn: object) -> float:
    assert callable(fn)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    data = os.urandom(args.mb * CHUNK)
    key = os.urandom(32)
    aead = ChaCha20Poly1305(key)
    nonce = bytes(12)
    chunks = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
    sealed_chunks = [aead.encrypt(nonce, c, b"") for c in chunks]
    sealed = encrypt_blob(data, key)
    mb = len(data) / 1e6
    print(f"xchat-stream-v1, {args.mb} MiB in memory, best of {args.runs}")
    print(f"  Python {platform.python_version()} on {platform.machine()}")
    rows = [
        ("seal (encrypt_blob)", best(args.runs, lambda: encrypt_blob(data, key))),
        (
            "anchor: bare AEAD encrypt",
            best(args.runs, lambda: [aead.encrypt(nonce, c, b"") for c in chunks]),
        ),
        (
            "open (decrypt_blob)",
            best(args.runs, lambda: decrypt_blob(sealed.blob, key, len(data), sealed.ox)),
        ),
        (
            "anchor: bare AEAD decrypt",
            best(args.runs, lambda: [aead.decrypt(nonce, c, b"") for c in sealed_chunks]),
        ),
    ]
    for name, seconds in rows:
        print(f"  {name:28} {mb / seconds:8,.0f} MB/s")
    hashing = best(args.runs, lambda: (hashlib.sha256(data), hashlib.sha256(sealed.blob)))
    print(f"  the two sha256 alone (x, ox)  {mb / hashing:8,.0f} MB/s")
    seal, bare_seal, open_, bare_open = (t for _, t in rows)
    print(f"  seal / anchor: {bare_seal / seal:.2f}x   open / anchor: {bare_open / open_:.2f}x")
    print(
        f"  with the hashes in the anchor: seal {(bare_seal + hashing) / seal:.2f}x, "
        f"open {(bare_open + hashing / 2) / open_:.2f}x"
    )


if __name__ == "__main__":
    main()
