"""secp256k1 keys: BIP-340 Schnorr signatures and x-only ECDH, on libsecp256k1.

Nostr identities, one-time gift-wrap keys and mailbox keys are all secp256k1 keys
with 32-byte x-only public keys (BIP-340). All curve arithmetic happens inside
libsecp256k1 through coincurve's bindings; this module only moves bytes and checks
lengths. We call the bindings directly rather than coincurve's ``PrivateKey`` class
because that class derives two public keys on construction and verifies every
signature it makes, which triples the cost of a one-time key (see docs/benchmarks.md).
Signatures by long-lived keys still get the sign-then-verify fault check.

Spec: https://github.com/bitcoin/bips/blob/master/bip-0340.mediawiki
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any, Final

from coincurve._libsecp256k1 import ffi, lib  # type: ignore[import-not-found]
from coincurve.context import GLOBAL_CONTEXT

from xchat.errors import DecodeError, LocalProtocolError

__all__ = [
    "CURVE_ORDER",
    "PublicKey",
    "Rng",
    "SecretKey",
    "verify_schnorr",
]

#: A source of randomness: ``rng(n)`` returns ``n`` uniformly random bytes.
#: Production code passes ``os.urandom``; tests pass a seeded generator.
Rng = Callable[[int], bytes]

CURVE_ORDER: Final = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

_CTX = GLOBAL_CONTEXT.ctx
_COMPRESSED = lib.SECP256K1_EC_COMPRESSED


class PublicKey:
    """A 32-byte x-only secp256k1 public key (BIP-340), as Nostr uses everywhere.

    Construction only checks the length; :meth:`is_valid` and every operation that
    needs the point check that it lies on the curve.
    """

    __slots__ = ("_hash", "_point", "raw")

    def __init__(self, raw: bytes) -> None:
        if type(raw) is not bytes or len(raw) != 32:
            raise DecodeError("a public key is 32 bytes")
        self.raw: Final = raw
        self._hash = hash(raw)
        self._point: Any = None  # parsed lazily, once: the square root costs ~4 µs

    def _parsed(self) -> Any:
        """The curve point lift_x(raw) (even y), or None if ``raw`` is not on the curve."""
        if self._point is None:
            point = ffi.new("secp256k1_pubkey *")
            ok = lib.secp256k1_ec_pubkey_parse(_CTX, point, b"\x02" + self.raw, 33)
            self._point = point if ok else False
        return self._point or None

    @classmethod
    def from_hex(cls, text: str) -> PublicKey:
        """Parse 64 lowercase or uppercase hex digits."""
        if not isinstance(text, str) or len(text) != 64:
            raise DecodeError("a public key is 64 hex digits")
        try:
            return cls(bytes.fromhex(text))
        except ValueError:
            raise DecodeError("a public key is 64 hex digits") from None

    @property
    def hex(self) -> str:
        return self.raw.hex()

    def is_valid(self) -> bool:
        """True if the key is the x coordinate of a point on the curve."""
        return self._parsed() is not None

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Check a BIP-340 signature over a 32-byte message; False for malformed input."""
        if type(signature) is not bytes or type(message) is not bytes:
            return False
        if len(signature) != 64 or len(message) != 32:
            return False
        point = self._parsed()
        if point is None:
            return False
        xonly = ffi.new("secp256k1_xonly_pubkey *")
        lib.secp256k1_xonly_pubkey_from_pubkey(_CTX, xonly, ffi.NULL, point)
        return bool(lib.secp256k1_schnorrsig_verify(_CTX, signature, message, 32, xonly))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and hmac.compare_digest(self.raw, other.raw)

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"PublicKey({self.raw.hex()})"


def verify_schnorr(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Check a BIP-340 signature; False for any malformed input, never an exception."""
    if not (
        type(public_key) is bytes
        and type(signature) is bytes
        and type(message) is bytes
        and len(public_key) == 32
        and len(signature) == 64
        and len(message) == 32
    ):
        return False
    xonly = ffi.new("secp256k1_xonly_pubkey *")
    if not lib.secp256k1_xonly_pubkey_parse(_CTX, xonly, public_key):
        return False
    return bool(lib.secp256k1_schnorrsig_verify(_CTX, signature, message, 32, xonly))


class SecretKey:
    """A secp256k1 secret key with its BIP-340 key pair.

    ``repr()`` shows only the public key. The secret leaves the object only through
    :meth:`to_bytes`, which callers use to encrypt it at rest or derive from it.
    """

    __slots__ = ("_keypair", "_secret", "public_key")

    def __init__(self, secret: bytes) -> None:
        if type(secret) is not bytes or len(secret) != 32:
            raise LocalProtocolError("a secret key is 32 bytes")
        value = int.from_bytes(secret, "big")
        if not 0 < value < CURVE_ORDER:
            raise LocalProtocolError("a secret key must be between 1 and the curve order")
        keypair = ffi.new("secp256k1_keypair *")
        if not lib.secp256k1_keypair_create(_CTX, keypair, secret):  # pragma: no cover
            raise LocalProtocolError("libsecp256k1 rejected the secret key")
        xonly = ffi.new("secp256k1_xonly_pubkey *")
        lib.secp256k1_keypair_xonly_pub(_CTX, xonly, ffi.NULL, keypair)
        out = ffi.new("unsigned char[32]")
        lib.secp256k1_xonly_pubkey_serialize(_CTX, out, xonly)
        self._secret = secret
        self._keypair = keypair
        self.public_key: Final = PublicKey(bytes(ffi.buffer(out, 32)))

    @classmethod
    def generate(cls, rng: Rng) -> SecretKey:
        """A fresh key from ``rng``; draws 32 bytes until they form a valid scalar."""
        while True:
            candidate = rng(32)
            if 0 < int.from_bytes(candidate, "big") < CURVE_ORDER:
                return cls(candidate)

    @classmethod
    def from_hex(cls, text: str) -> SecretKey:
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise LocalProtocolError("a secret key is 64 hex digits") from None
        return cls(raw)

    def to_bytes(self) -> bytes:
        """The 32 secret bytes. Only for encryption at rest and key derivation."""
        return self._secret

    def sign(self, message: bytes, aux_random: bytes, *, check: bool = True) -> bytes:
        """BIP-340 signature over a 32-byte message with 32 bytes of auxiliary randomness.

        ``check`` verifies the signature before returning it, a guard against faults
        that could leak a long-lived key; one-time keys skip it.
        """
        if len(message) != 32 or len(aux_random) != 32:
            raise LocalProtocolError(
                "BIP-340 signs 32-byte messages with 32 bytes of aux randomness"
            )
        sig = ffi.new("unsigned char[64]")
        if not lib.secp256k1_schnorrsig_sign32(_CTX, sig, message, self._keypair, aux_random):
            raise LocalProtocolError("libsecp256k1 failed to sign")  # pragma: no cover
        signature = bytes(ffi.buffer(sig, 64))
        if check and not verify_schnorr(self.public_key.raw, message, signature):
            raise LocalProtocolError("signature self-check failed")  # pragma: no cover
        return signature

    def shared_x(self, peer: PublicKey) -> bytes:
        """The x coordinate of ``secret * lift_x(peer)``: unhashed ECDH, as NIP-44 uses it.

        Raises :class:`DecodeError` if ``peer`` is not on the curve.
        """
        parsed = peer._parsed()
        if parsed is None:
            raise DecodeError("the public key is not a point on secp256k1")
        point = ffi.new("secp256k1_pubkey *", parsed[0])  # tweak_mul works in place
        if not lib.secp256k1_ec_pubkey_tweak_mul(_CTX, point, self._secret):
            raise DecodeError("ECDH produced the point at infinity")  # pragma: no cover
        out = ffi.new("unsigned char[33]")
        size = ffi.new("size_t *", 33)
        lib.secp256k1_ec_pubkey_serialize(_CTX, out, size, point, _COMPRESSED)
        return bytes(ffi.buffer(out, 33))[1:]

    def tweak_add(self, tweak: bytes) -> SecretKey:
        """``(self + tweak) mod n`` as a new key: the BIP-32 private child step."""
        out = ffi.new("unsigned char[32]", self._secret)
        if len(tweak) != 32 or not lib.secp256k1_ec_seckey_tweak_add(_CTX, out, tweak):
            raise LocalProtocolError("tweak is out of range")
        return SecretKey(bytes(ffi.buffer(out, 32)))

    def compressed_public_key(self) -> bytes:
        """The 33-byte SEC1 compressed public key (BIP-32 fingerprints and serialization)."""
        point = ffi.new("secp256k1_pubkey *")
        lib.secp256k1_ec_pubkey_create(_CTX, point, self._secret)
        out = ffi.new("unsigned char[33]")
        size = ffi.new("size_t *", 33)
        lib.secp256k1_ec_pubkey_serialize(_CTX, out, size, point, _COMPRESSED)
        return bytes(ffi.buffer(out, 33))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretKey) and hmac.compare_digest(self._secret, other._secret)

    def __hash__(self) -> int:
        return hash(self.public_key)

    def __repr__(self) -> str:
        return f"SecretKey(public={self.public_key.hex})"
