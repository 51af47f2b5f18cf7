"""Relay URLs: normalization so equal relays compare equal, and errors a person can act on."""

from __future__ import annotations

import contextlib
import string
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xchat.errors import InvalidInput
from xchat.wire import nip19
from xchat.wire.relay_url import MAX_URL_LENGTH, normalize_relay_url


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("wss://relay.example.com", "wss://relay.example.com"),
        ("wss://Relay.Example.COM/", "wss://relay.example.com"),
        ("WSS://relay.example.com", "wss://relay.example.com"),
        ("wss://relay.example.com:443", "wss://relay.example.com"),
        ("wss://relay.example.com:443/", "wss://relay.example.com"),
        ("ws://relay.example.com:80", "ws://relay.example.com"),
        ("wss://relay.example.com:80", "wss://relay.example.com:80"),
        ("ws://relay.example.com:443", "ws://relay.example.com:443"),
        ("wss://relay.example.com:7777/", "wss://relay.example.com:7777"),
        ("wss://relay.example.com:", "wss://relay.example.com"),
        ("wss://relay.example.com/nostr/", "wss://relay.example.com/nostr"),
        ("wss://relay.example.com/Nostr//", "wss://relay.example.com/Nostr"),  # path keeps case
        ("wss://relay.example.com/?token=1", "wss://relay.example.com?token=1"),
        ("wss://relay.example.com/inbox?Q=A", "wss://relay.example.com/inbox?Q=A"),
        ("wss://relay.example.com#fragment", "wss://relay.example.com"),
        ("wss://relay.example.com/#fragment", "wss://relay.example.com"),
        ("  wss://relay.example.com  ", "wss://relay.example.com"),
        ("wss://relay.example.com\n", "wss://relay.example.com"),
        ("ws://127.0.0.1:8080/", "ws://127.0.0.1:8080"),
        ("ws://localhost:7447", "ws://localhost:7447"),
        ("wss://[::1]:7777", "wss://[::1]:7777"),
        ("wss://[::1]:443", "wss://[::1]"),
        ("wss://[2001:DB8::1]/", "wss://[2001:db8::1]"),
        ("wss://xn--bcher-kva.example", "wss://xn--bcher-kva.example"),
    ],
)
def test_normalization(url: str, normalized: str) -> None:
    assert normalize_relay_url(url) == normalized
    assert normalize_relay_url(normalized) == normalized


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("", id="empty"),
        pytest.param("relay.example.com", id="no-scheme"),
        pytest.param("http://relay.example.com", id="http"),
        pytest.param("https://relay.example.com", id="https"),
        pytest.param("wss:relay.example.com", id="no-slashes"),
        pytest.param("wss://", id="no-host"),
        pytest.param("wss:///nostr", id="empty-host"),
        pytest.param("wss://:443", id="port-only"),
        pytest.param("wss://user@relay.example.com", id="user"),
        pytest.param("wss://user:pass@relay.example.com", id="user-pass"),
        pytest.param("wss://:pass@relay.example.com", id="pass"),
        pytest.param("wss://relay.example.com:65536", id="port-too-big"),
        pytest.param("wss://relay.example.com:-1", id="port-negative"),
        pytest.param("wss://relay.example.com:abc", id="port-letters"),
        pytest.param("wss://relay.example.com:+80", id="port-plus"),
        pytest.param("wss://[::1", id="open-bracket"),
        pytest.param("wss://bücher.example", id="non-ascii"),
        pytest.param("wss://" + "a" * 250, id="too-long"),
        pytest.param(None, id="none"),
        pytest.param(b"wss://relay.example.com", id="bytes"),
        pytest.param(["wss://relay.example.com"], id="list"),
    ],
)
def test_rejected(url: Any) -> None:
    with pytest.raises(InvalidInput):
        normalize_relay_url(url)


def test_errors_say_what_was_expected() -> None:
    with pytest.raises(InvalidInput, match="expected ws://host or wss://host"):
        normalize_relay_url("https://relay.example.com")
    with pytest.raises(InvalidInput, match="at most 255 ASCII characters"):
        normalize_relay_url("wss://" + "a" * 250)
    with pytest.raises(InvalidInput, match="user name or password"):
        normalize_relay_url("wss://user:secret@relay.example.com")


def test_password_is_not_echoed() -> None:
    with pytest.raises(InvalidInput) as info:
        normalize_relay_url("wss://user:hunter2@relay.example.com")
    assert "hunter2" not in str(info.value)


def test_length_bound() -> None:
    longest = "wss://" + "a" * (MAX_URL_LENGTH - 6)
    assert len(longest) == 255
    assert normalize_relay_url(longest) == longest
    with pytest.raises(InvalidInput):
        normalize_relay_url(longest + "a")


hosts = st.from_regex(
    r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,20}[a-zA-Z0-9])?(\.[a-zA-Z]{2,6}){0,2}", fullmatch=True
)
urls = st.builds(
    lambda scheme, host, port, path, query: f"{scheme}://{host}{port}{path}{query}",
    st.sampled_from(["ws", "wss", "WS", "Wss"]),
    hosts,
    st.sampled_from(["", ":443", ":80", ":7777", ":1"]),
    st.from_regex(r"(/[a-zA-Z0-9._~-]{0,8}){0,3}/?", fullmatch=True),
    st.sampled_from(["", "?a=1", "?", "#frag"]),
)


@given(urls)
def test_normalization_is_idempotent(url: str) -> None:
    once = normalize_relay_url(url)
    assert normalize_relay_url(once) == once
    assert once == once.strip()
    assert once.startswith(("ws://", "wss://"))
    assert not once.endswith("/")
    assert "#" not in once
    # What we store can always travel in a NIP-19 relay hint.
    nip19.nprofile_encode(bytes(32), [once])


@given(st.text(alphabet=string.printable + "é[]@:", max_size=80))
def test_arbitrary_text_raises_only_invalid_input(text: str) -> None:
    with contextlib.suppress(InvalidInput):
        once = normalize_relay_url(text)
        assert normalize_relay_url(once) == once


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("wss://relay example.com", id="space-in-host"),
        pytest.param("wss://relay.example.com\x00", id="nul-in-host"),
        pytest.param("wss://relay.example.com\x7f", id="del-in-host"),
        pytest.param("wss://relay.example.com/a b", id="space-in-path"),
        pytest.param("wss://relay.example.com/\x1b[31m", id="escape-in-path"),
    ],
)
def test_spaces_and_control_characters_are_rejected(url: str) -> None:
    with pytest.raises(InvalidInput):
        normalize_relay_url(url)
