"""Device certificates and bundles: what a peer must verify before opening a session."""

from __future__ import annotations

import os

import orjson
import pytest

from tests.conftest import make_device
from xchat.core.device import (
    KIND_DEVICE_BUNDLE,
    DeviceBundle,
    DeviceCertificate,
    LocalDevice,
)
from xchat.core.events import sign_event
from xchat.errors import DecodeError, DecryptionError, InvalidSignature, RemoteProtocolError
from xchat.wire.event import Event, event_from_json


def resigned(device: LocalDevice, event: Event, content: dict[str, object]) -> Event:
    """The bundle with new content, validly signed by the identity (a buggy or hostile peer)."""
    return sign_event(
        device.identity.secret,
        kind=event.kind,
        tags=event.tags,
        content=orjson.dumps(content).decode(),
        created_at=event.created_at,
        rng=os.urandom,
    )


def test_certificate_round_trip_and_repr(now: int) -> None:
    device = make_device("alice", now)
    cert = DeviceCertificate.from_json(orjson.loads(orjson.dumps(device.certificate.to_json())))
    assert cert == device.certificate
    assert cert.identity == device.identity.public_key
    assert device.identity.secret.to_bytes().hex() not in repr(device)
    assert "LocalDevice(npub1" in repr(device)


@pytest.mark.parametrize(
    "field", ["identity", "curve25519", "ed25519", "created_at", "sig", "device_sig"]
)
def test_a_changed_certificate_field_does_not_verify(field: str, now: int) -> None:
    device, other = make_device("alice", now), make_device("mallory", now)
    forged = device.certificate.to_json()
    forged[field] = other.certificate.to_json()[field]
    if field == "created_at":
        forged[field] = device.certificate.created_at + 1
    with pytest.raises(RemoteProtocolError):
        DeviceCertificate.from_json(forged)


def test_an_identity_cannot_certify_someone_elses_device(now: int) -> None:
    # Mallory signs a certificate for Alice's device keys: Alice's device never
    # counter-signed it, so it does not verify.
    alice, mallory = make_device("alice", now), make_device("mallory", now)
    cert = alice.certificate.to_json()
    claimed = DeviceCertificate.issue(mallory.identity, alice.account, now, os.urandom).to_json()
    claimed["device_sig"] = mallory.certificate.to_json()["device_sig"]
    cert["identity"] = claimed["identity"]
    cert["sig"] = claimed["sig"]
    with pytest.raises(InvalidSignature):
        DeviceCertificate.from_json(cert)


@pytest.mark.parametrize(
    "obj",
    [
        None,
        [],
        {},
        {"v": 2},
        {"v": 1, "identity": "00"},
        {
            "v": 1,
            "identity": 1,
            "curve25519": 2,
            "ed25519": 3,
            "created_at": 4,
            "sig": 5,
            "device_sig": 6,
        },
    ],
)
def test_malformed_certificates_are_decode_errors(obj: object) -> None:
    with pytest.raises(DecodeError):
        DeviceCertificate.from_json(obj)


def test_bundle_event_verifies_and_offers_keys(now: int) -> None:
    device = make_device("bob", now)
    event = event_from_json(device.bundle_event(now, os.urandom, one_time_keys=5).to_json())
    assert event.kind == KIND_DEVICE_BUNDLE
    assert event.first_tag("d") == device.certificate.device_id
    bundle = DeviceBundle.from_event(event)
    assert bundle.certificate == device.certificate
    assert len(bundle.one_time_keys) == 5
    assert bundle.fallback_key is not None
    chosen = {bundle.choose_key(os.urandom) for _ in range(50)}
    assert chosen <= set(bundle.one_time_keys.values())
    assert bundle.choose_key(os.urandom, frozenset(bundle.one_time_keys)) == bundle.fallback_key[1]


def test_bundle_signed_by_another_identity_is_rejected(now: int) -> None:
    device, mallory = make_device("bob", now), make_device("mallory", now)
    event = device.bundle_event(now, os.urandom)
    content = orjson.loads(event.content)
    with pytest.raises(InvalidSignature):
        DeviceBundle.from_event(resigned(mallory, event, content))


def test_bundle_with_a_foreign_one_time_key_is_rejected(now: int) -> None:
    device, other = make_device("bob", now), make_device("carol", now)
    event = device.bundle_event(now, os.urandom, one_time_keys=2)
    content = orjson.loads(event.content)
    foreign = orjson.loads(other.bundle_event(now, os.urandom, one_time_keys=2).content)
    key_id = next(iter(content["one_time_keys"]))
    content["one_time_keys"][key_id]["key"] = next(iter(foreign["one_time_keys"].values()))["key"]
    with pytest.raises(InvalidSignature):
        DeviceBundle.from_event(resigned(device, event, content))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c.update(v=2),
        lambda c: c.update(one_time_keys=[]),
        lambda c: c.update(one_time_keys={}, fallback_key=None),
        lambda c: c.update(fallback_key={"id": 1}),
        lambda c: c.update(cert="nope"),
        lambda c: c.update(one_time_keys={str(i): {"key": "x", "sig": "y"} for i in range(101)}),
    ],
)
def test_malformed_bundles_are_refused(mutate: object, now: int) -> None:
    device = make_device("bob", now)
    event = device.bundle_event(now, os.urandom, one_time_keys=2)
    content = orjson.loads(event.content)
    mutate(content)  # type: ignore[operator]
    with pytest.raises(RemoteProtocolError):
        DeviceBundle.from_event(resigned(device, event, content))


def test_bundle_with_wrong_d_tag_or_kind_is_refused(now: int) -> None:
    device = make_device("bob", now)
    event = device.bundle_event(now, os.urandom)
    for kind, tags in ((KIND_DEVICE_BUNDLE, [["d", "another-device"]]), (1, event.tags)):
        bad = sign_event(
            device.identity.secret,
            kind=kind,
            tags=tags,
            content=event.content,
            created_at=now,
            rng=os.urandom,
        )
        with pytest.raises(DecodeError):
            DeviceBundle.from_event(bad)


def test_device_record_round_trip_and_wrong_key(now: int) -> None:
    device = make_device("alice", now)
    storage = os.urandom(32)
    record = device.to_record(storage, os.urandom)
    restored = LocalDevice.from_record(device.identity, record, storage)
    assert restored.certificate == device.certificate
    assert restored.account.curve25519 == device.account.curve25519
    assert device.account.curve25519.encode() not in record
    with pytest.raises(DecryptionError):
        LocalDevice.from_record(device.identity, record, os.urandom(32))


@pytest.mark.parametrize("limit", [4096, 8196, 20_000])
def test_a_bundle_fits_the_content_limit_it_is_given(now: int, limit: int) -> None:
    device = make_device("alice", now)
    event = device.bundle_event(now, os.urandom, 50, max_content=limit)
    bundle = DeviceBundle.from_event(event)
    assert len(event.content) <= limit
    full = DeviceBundle.from_event(device.bundle_event(now, os.urandom, 50))
    assert len(full.one_time_keys) == 50
    if len(device.bundle_event(now, os.urandom, 50).content) > limit:
        # as many keys as fit: one more would not
        assert len(bundle.one_time_keys) < 50
        assert len(event.content) + 163 > limit  # an entry is 163 characters
    assert bundle.fallback_key is not None


def test_a_bundle_fits_the_message_limit_and_keeps_its_fallback_key(now: int) -> None:
    device = make_device("alice", now)
    event = device.bundle_event(now, os.urandom, 50, max_message=3000)
    assert len(b'["EVENT",' + event.to_json() + b"]") <= 3000
    assert DeviceBundle.from_event(event).one_time_keys
    tiny = DeviceBundle.from_event(device.bundle_event(now, os.urandom, 50, max_content=100))
    assert tiny.one_time_keys == {}
    assert tiny.fallback_key is not None  # a session can still be opened


def test_a_default_bundle_is_under_4096_characters(now: int) -> None:
    from xchat.node.oneshot import DEFAULT_MAX_CONTENT

    device = make_device("alice", now)
    event = device.bundle_event(now, os.urandom, 50, max_content=DEFAULT_MAX_CONTENT)
    assert len(event.content) < 4096
    assert len(DeviceBundle.from_event(event).one_time_keys) >= 15
