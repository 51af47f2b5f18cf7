"""X Chat Web, the 1:1 defects a new user found (issue 10), in a real browser.

The size limit named with a counter, toasts as sentences; an unnamed contact's short
address once and an identicon in a stable colour; the empty pane showing a waiting
message request and labelled buttons; clickable links with no previews and collapsible
long messages; changing the passphrase; status in plain words; the default relays offered
at onboarding (local relays standing in for public ones); drafts of an older version,
kept under the peer's key, moved to the conversation's id; the emoji font installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable

import pytest
from playwright.sync_api import Browser, Page, Request, expect

from tests.node.nodes import PASSPHRASE, wait_for
from tests.relay.conftest import RelayProcess
from tests.web.conftest import WebNode
from tests.web.test_web import (
    User,
    open_app,
    sidebar,
    two_users,
)
from xchat.core.identity import Identity
from xchat.core.message import MAX_TEXT_BYTES
from xchat.node.api.handlers import LIMITS

pytestmark = pytest.mark.timeout(300)


def outside_requests(page: Page) -> list[str]:
    """Every request the page makes to anything but its own node (filled as it goes)."""
    seen: list[str] = []

    def note(request: Request) -> None:
        local = re.match(r"^(https?|wss?)://(127\.0\.0\.1|localhost)[:/]", request.url)
        if not local and not request.url.startswith(("blob:", "data:")):
            seen.append(request.url)

    page.on("request", note)
    return seen


def open_chat_with(user: User, name: str) -> None:
    sidebar(user.page).get_by_role("button", name=re.compile(re.escape(name))).first.click()
    expect(user.page.get_by_role("heading", level=2, name=name)).to_be_visible()


def test_size_counter_links_and_long_messages(
    browser: Browser,
    relays: Callable[..., RelayProcess],
    web_nodes: Callable[..., WebNode],
) -> None:
    alice_node, bob_node = two_users(web_nodes, relays().url)
    assert (
        alice_node.call("GET", "/api/status")["limits"] == LIMITS == {"text_bytes": MAX_TEXT_BYTES}
    )
    alice = open_app(browser, alice_node)
    outside = outside_requests(alice.page)
    open_chat_with(alice, "Bob")
    counter = alice.page.locator("#byte-counter")
    expect(counter).to_be_hidden()

    # Past half the limit the counter shows, naming the limit; over it, why not.
    half = "é" * (MAX_TEXT_BYTES // 4 + 10)  # two bytes each: just over half
    alice.box().fill(half)
    size = len(half.encode())
    expect(counter).to_be_visible()
    expect(counter).to_have_text(
        f"{size:,} of {MAX_TEXT_BYTES:,} bytes: a message can be at most 32 KiB."
    )
    too_long = "x" * (MAX_TEXT_BYTES + 100)
    alice.box().fill(too_long)
    expect(counter).to_contain_text("Too long to send")
    expect(counter).to_contain_text("Shorten it by 100 bytes.")
    expect(alice.box()).to_have_attribute("aria-invalid", "true")
    alice.box().press("Enter")
    toast = alice.page.locator("#toasts")
    expect(toast).to_have_text(
        f"Not sent. A message can be at most 32 KiB ({MAX_TEXT_BYTES:,} bytes) of text; "
        f"this one has {MAX_TEXT_BYTES + 100:,} bytes."
    )
    expect(alice.box()).to_have_value(too_long)  # nothing typed is lost
    assert alice_node.messages(bob_node.pubkey) == []

    # Links: http(s) only, real anchors, no referrer, opened apart; no preview fetched.
    text = "see https://example.com/a?b=1. and (http://example.org/x) but not javascript:alert(1)"
    alice.box().fill(text)
    alice.box().press("Enter")
    expect(counter).to_be_hidden()
    message = alice.message("see https://example.com")
    links = message.locator(".body a")
    expect(links).to_have_count(2)
    first = links.nth(0)
    expect(first).to_have_attribute("href", "https://example.com/a?b=1")
    expect(first).to_have_text("https://example.com/a?b=1")
    expect(first).to_have_attribute("rel", "noopener noreferrer")
    expect(first).to_have_attribute("target", "_blank")
    expect(links.nth(1)).to_have_attribute("href", "http://example.org/x")
    expect(message.locator(".body")).to_have_text(text)
    bob = open_app(browser, bob_node)
    bob_outside = outside_requests(bob.page)
    open_chat_with(bob, "Alice")
    expect(bob.message("see https://example.com").locator(".body a")).to_have_count(2)

    # A long message starts collapsed behind "Show more", and opens and closes.
    long_text = "\n".join(f"line {i} of a long story" for i in range(40))
    bob.box().fill(long_text)
    bob.box().press("Enter")
    long_message = alice.message("line 39 of a long story")
    toggle = long_message.get_by_role("button", name="Show more")
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(long_message.locator(".body")).to_have_class(re.compile(r"\bcollapsed\b"))
    toggle.click()
    less = long_message.get_by_role("button", name="Show less")
    expect(less).to_have_attribute("aria-expanded", "true")
    expect(long_message.locator(".body")).not_to_have_class(re.compile(r"\bcollapsed\b"))
    less.click()
    expect(long_message.get_by_role("button", name="Show more")).to_be_visible()
    alice.shot("issue10-links-long")
    assert outside == [], outside
    assert bob_outside == [], bob_outside
    assert alice.errors == []
    assert bob.errors == []


def test_unnamed_contacts_and_a_waiting_request(
    browser: Browser,
    relays: Callable[..., RelayProcess],
    web_nodes: Callable[..., WebNode],
) -> None:
    relay = relays().url
    alice_node = web_nodes(relay, "alice")
    alice_node.setup()
    alice = open_app(browser, alice_node)
    page = alice.page
    chat = page.get_by_role("region", name="Conversation")
    expect(chat).to_contain_text("No conversations yet.")
    # the empty pane's buttons are labelled, real buttons
    chat.get_by_role("button", name="My address").click()
    expect(page.get_by_role("dialog", name="Your address")).to_be_visible()
    page.keyboard.press("Escape")
    chat.get_by_role("button", name="New chat").click()
    expect(page.get_by_role("dialog", name="New chat")).to_be_visible()
    page.keyboard.press("Escape")

    # Two strangers write: the pane names the waiting requests, each openable.
    strangers = []
    for name in ("bob", "carol"):
        node = web_nodes(relay, name)
        node.setup()
        node.add(alice_node)
        node.send(alice_node.pubkey, f"hello from {name}")
        strangers.append(node)
    expect(chat).to_contain_text("2 message requests are waiting")
    requests = chat.get_by_role("list", name="Message requests").get_by_role("button")
    expect(requests).to_have_count(2)
    bob_npub = strangers[0].home.card().npub
    short = f"{bob_npub[:12]}…{bob_npub[-6:]}"
    alice.shot("issue10-requests")
    chat.get_by_role("button", name=f"Message request from {short}").click()

    # The header names Bob once, by a short form of his address, with his identicon.
    heading = page.get_by_role("heading", level=2, name=short)
    expect(heading).to_be_visible()
    header = page.locator(".chat-head")
    assert header.inner_text().count(bob_npub[:12]) == 1
    avatar = header.locator(".avatar")
    expect(avatar.locator("svg.identicon")).to_have_count(1)
    assert avatar.inner_text().strip() == ""  # no "N"
    hue = str(int(strangers[0].pubkey[:2], 16) % 8)
    expect(avatar).to_have_attribute("data-hue", hue)

    # Each unnamed contact looks different, and the same after a reload.
    def drawings() -> list[str]:
        return list(
            page.locator("#conv-list .avatar").evaluate_all(
                "els => els.map((el) => el.dataset.hue + ':' + el.querySelector('svg').innerHTML)"
            )
        )

    before = drawings()
    assert len(before) == 2
    assert before[0] != before[1]
    page.reload()
    expect(page.locator("#conv-list .avatar")).to_have_count(2)
    assert sorted(drawings()) == sorted(before)

    # Named, the avatar is the name's letter (in the same colour), the address shown once.
    alice_node.call("PATCH", f"/api/contacts/{strangers[0].pubkey}", {"name": "Bob"})
    open_chat_with(alice, "Bob")
    avatar = page.locator(".chat-head .avatar")
    expect(avatar).to_have_text("B")
    expect(avatar).to_have_attribute("data-hue", hue)
    assert page.locator(".chat-head").inner_text().count(bob_npub[:12]) == 1
    assert alice.errors == []


def test_change_the_passphrase_and_read_the_status_in_words(
    browser: Browser,
    relays: Callable[..., RelayProcess],
    web_nodes: Callable[..., WebNode],
) -> None:
    node = web_nodes(relays().url, "solo")
    node.setup()
    user = open_app(browser, node)
    page = user.page
    sidebar(page).get_by_role("button", name="Settings").click()
    settings = page.get_by_role("dialog", name="Settings")
    facts = settings.locator("dl.facts")
    expect(facts).to_contain_text("Your X Chat node has been running for")
    connected = re.compile(r"Connected to (the relay|\d of the \d relays) that bring")
    expect(facts).to_contain_text(connected)
    expect(facts).to_contain_text("Nothing: every message you sent has left this computer.")
    assert "API" not in facts.inner_text()
    assert "up " not in facts.inner_text()

    new = PASSPHRASE + " and more"
    settings.get_by_role("button", name="Change passphrase").click()
    settings.get_by_label("Current passphrase").fill("not it at all")
    settings.get_by_label("New passphrase", exact=True).fill(new)
    settings.get_by_label("Repeat new passphrase").fill(new)
    settings.get_by_role("button", name="Save new passphrase").click()
    expect(settings.get_by_role("alert")).to_have_text("That is not your current passphrase.")
    settings.get_by_label("Current passphrase").fill(PASSPHRASE)
    settings.get_by_label("Repeat new passphrase").fill(new + "x")
    settings.get_by_role("button", name="Save new passphrase").click()
    expect(settings.get_by_role("alert")).to_have_text("The two new passphrases are not the same.")
    settings.get_by_label("Repeat new passphrase").fill(new)
    settings.get_by_role("button", name="Save new passphrase").click()
    expect(settings.get_by_role("status")).to_have_text(
        "Your passphrase is changed. Use the new one the next time you unlock X Chat."
    )
    user.shot("issue10-passphrase")
    settings.get_by_role("button", name="Lock now").click()
    expect(page.get_by_role("heading", name="X Chat is locked")).to_be_visible()
    page.get_by_label("Passphrase").fill(PASSPHRASE)
    page.get_by_role("button", name="Unlock").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong passphrase. Try again.")
    page.get_by_label("Passphrase").fill(new)
    page.get_by_role("button", name="Unlock").click()
    expect(sidebar(page).get_by_role("button", name="New chat")).to_be_visible()
    # the node keeps it: a restart unlocks with the new passphrase only
    node.stop()
    node.start(env_passphrase=False)
    assert node.call("POST", "/api/unlock", {"passphrase": new})["state"] == "unlocked"
    assert user.errors == []


def test_onboarding_offers_the_default_relays_to_accept_edit_or_decline(
    browser: Browser,
    relays: Callable[..., RelayProcess],
    web_nodes: Callable[..., WebNode],
) -> None:
    home_relay = relays().url
    public = [relays().url, relays().url]  # local relays standing in for public ones
    offer = {"XCHAT_DEFAULT_RELAYS": ",".join(public)}

    # Alice accepts the offer, edited: the first public relay only.
    alice = open_app(browser, web_nodes(home_relay, "alice", env=offer))
    page = alice.page
    page.get_by_role("button", name="Create a new account").click()
    phrase = page.get_by_role("list", name="Recovery phrase").get_by_role("listitem")
    expect(phrase).to_have_count(12)  # all_inner_texts() does not wait
    words = [w.strip() for w in phrase.all_inner_texts()]
    page.get_by_role("button", name="I have written it down").click()
    asked = page.locator("form label")
    expect(asked).to_have_count(3)
    for label in asked.all_inner_texts():
        page.get_by_label(label, exact=True).fill(words[int(label.removeprefix("Word ")) - 1])
    page.get_by_role("button", name="Continue").click()
    listed = page.get_by_label("Public relays, one per line")
    expect(listed).to_have_value("\n".join(public))
    expect(page.get_by_label("Use these public relays")).to_be_checked()
    alice.shot("issue10-onboarding-relays")
    listed.fill("relay.example.com")
    page.get_by_label("Passphrase", exact=True).fill(PASSPHRASE)
    page.get_by_label("Repeat passphrase").fill(PASSPHRASE)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("alert")).to_contain_text('"relay.example.com" is not a relay address')
    listed.fill(public[0])
    page.get_by_role("button", name="Create account").click()
    expect(sidebar(page).get_by_role("button", name="New chat")).to_be_visible()
    inbox = alice.node.call("GET", "/api/relays")["inbox"]
    assert public[0] in inbox, inbox
    assert public[1] not in inbox, inbox
    wait_for(
        lambda: any(
            h["url"] == public[0] and h["state"] == "connected"
            for h in alice.node.call("GET", "/api/relays")["health"]
        ),
        what="the accepted public relay connected",
    )

    # Bob declines: told plainly that only this computer's relay is used.
    bob = open_app(browser, web_nodes(home_relay, "bob", env=offer))
    page = bob.page
    page.get_by_role("button", name="Restore from a recovery phrase").click()
    page.get_by_label("Recovery phrase").fill(Identity.generate(os.urandom).phrase)
    page.get_by_label("Passphrase", exact=True).fill(PASSPHRASE)
    page.get_by_label("Repeat passphrase").fill(PASSPHRASE)
    expect(page.get_by_label("Public relays, one per line")).to_have_value("\n".join(public))
    page.get_by_label("Only the relay on this computer").check()
    expect(page.locator(".relay-declined")).to_have_text(
        "Only the relay on this computer: people on other computers cannot reach you, and you "
        "cannot reach them, until you add a public relay in Settings."
    )
    expect(page.get_by_label("Public relays, one per line")).to_be_disabled()
    page.get_by_role("button", name="Restore account").click()
    expect(sidebar(page).get_by_role("button", name="New chat")).to_be_visible()
    inbox = bob.node.call("GET", "/api/relays")["inbox"]
    assert not set(public) & set(inbox), inbox
    assert alice.errors == []
    assert bob.errors == []


def test_drafts_kept_under_the_peers_key_move_to_the_conversation(
    browser: Browser,
    relays: Callable[..., RelayProcess],
    web_nodes: Callable[..., WebNode],
) -> None:
    alice_node, bob_node = two_users(web_nodes, relays().url)
    conversation = alice_node.call("GET", "/api/contacts")[0]["conversation"]
    alice = open_app(browser, alice_node)
    page = alice.page
    expect(sidebar(page).get_by_role("button", name="New chat")).to_be_visible()
    # what an older X Chat Web left in this tab: a draft and the open chat, by Bob's key
    page.evaluate(
        """([peer, text]) => {
            sessionStorage.setItem(`xchat.draft.${peer}`, text);
            sessionStorage.setItem('xchat.current', peer);
        }""",
        [bob_node.pubkey, "typed before the upgrade"],
    )
    page.reload()
    expect(page.get_by_role("heading", level=2, name="Bob")).to_be_visible()
    expect(alice.box()).to_have_value("typed before the upgrade")
    stored = page.evaluate("() => Object.keys(sessionStorage)")
    assert f"xchat.draft.{conversation}" in stored
    assert f"xchat.draft.{bob_node.pubkey}" not in stored
    assert page.evaluate("() => sessionStorage.getItem('xchat.current')") == conversation
    alice.box().press("Enter")
    wait_for(
        lambda: (
            [m["body"] for m in bob_node.messages(alice_node.pubkey)]
            == ["typed before the upgrade"]
        ),
        what="the moved draft sent",
    )
    assert alice.errors == []


def test_the_emoji_font_is_installed() -> None:
    """test.sh installs fonts-noto-color-emoji (without it emoji render as boxes)."""
    fc_list = shutil.which("fc-list")
    found = (
        fc_list is not None
        and "Noto Color Emoji"
        in subprocess.run([fc_list], capture_output=True, text=True, check=False).stdout
    )
    if not found:
        if os.environ.get("CI"):
            pytest.fail("the Noto Color Emoji font is missing: test.sh must install it")
        pytest.skip("the Noto Color Emoji font is not installed (test.sh installs it as root)")
