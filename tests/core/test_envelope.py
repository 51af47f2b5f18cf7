"""Gift wraps: what a relay sees, and what it cannot do."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import SeededRng
from xchat.core.envelope import (
    BUCKETS,
    KIND_GIFT_WRAP,
    MAX_TIME_SPREAD,
    gift_wrap,
    pad_to_bucket,
    random_past_time,
    recipient_of,
    unwrap,
)
from xchat.core.events import verify_event
from xchat.crypto.keys import SecretKey
from xchat.errors import DecodeError, DecryptionError, LocalProtocolError


@given(st.binary(max_size=70000))
def test_padding_picks_the_smallest_bucket(data: bytes) -> None:
    if len(data) > BUCKETS[-1]:
        with pytest.raises(LocalProtocolError):
            pad_to_bucket(data)
        return
    padded = pad_to_bucket(data)
    assert len(padded) in BUCKETS
    assert padded.startswith(data)
    assert padded[len(data) :].strip(b" ") == b""
    assert all(size < len(data) for size in BUCKETS if size < len(padded))


def test_times_are_spread_over_two_days_in_the_past() -> None:
    now = 1_800_000_000
    rng = SeededRng("times")
    times = [random_past_time(now, rng) for _ in range(2000)]
    assert all(now - MAX_TIME_SPREAD <= t <= now for t in times)
    assert max(times) - min(times) > MAX_TIME_SPREAD * 0.9
    assert random_past_time(5, rng) >= 0


def test_a_wrap_is_signed_once_and_opens_only_for_its_recipient() -> None:
    now = 1_800_000_000
    recipient = SecretKey.generate(os.urandom)
    wraps = [gift_wrap(b'{"hello":1}', recipient.public_key, now, os.urandom) for _ in range(5)]
    assert len({w.pubkey for w in wraps}) == 5  # a fresh key every time
    for wrap in wraps:
        verify_event(wrap)
        assert wrap.kind == KIND_GIFT_WRAP
        assert recipient_of(wrap) == recipient.public_key.hex
        assert unwrap(wrap, recipient).rstrip(b" ") == b'{"hello":1}'
        with pytest.raises(DecryptionError):
            unwrap(wrap, SecretKey.generate(os.urandom))


def test_a_wrap_must_name_exactly_one_recipient() -> None:
    from xchat.core.events import sign_event

    key = SecretKey.generate(os.urandom)
    for tags in ([], [["p", "00" * 32], ["p", "11" * 32]]):
        event = sign_event(
            key, kind=KIND_GIFT_WRAP, tags=tags, content="x", created_at=1, rng=os.urandom
        )
        with pytest.raises(DecodeError):
            recipient_of(event)
    not_a_wrap = sign_event(key, kind=1, tags=[], content="x", created_at=1, rng=os.urandom)
    with pytest.raises(DecodeError):
        recipient_of(not_a_wrap)


def test_same_rng_same_envelope() -> None:
    recipient = SecretKey(b"\x01" * 32).public_key
    first = gift_wrap(b"{}", recipient, 1_800_000_000, SeededRng("wrap"))
    second = gift_wrap(b"{}", recipient, 1_800_000_000, SeededRng("wrap"))
    assert first == second
