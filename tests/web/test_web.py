"""X Chat Web end to end: two users, each with their own node, in two browser contexts.

Every control is found by its role and accessible name (get_by_role, get_by_label), so
the names are tested too. Screenshots of the main screens go to ``artifacts/``.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, Route, expect
from playwright.sync_api import Error as PlaywrightError

from tests.node.faulty_relay import FaultyRelay
from tests.node.nodes import PASSPHRASE, wait_for
from tests.relay.conftest import RelayProcess
from tests.web.conftest import ARTIFACTS, TIMEOUT_MS, WebNode
from xchat.core.identity import ContactCard, Identity

XSS = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'

pytestmark = pytest.mark.timeout(300)


@dataclass
class User:
    """One person: their node and their browser tab."""

    node: WebNode
    page: Page
    errors: list[str] = field(default_factory=list)

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"))

    def conversation(self) -> Locator:
        return self.page.get_by_role("log", name="Messages")

    def message(self, text: str) -> Locator:
        return self.conversation().get_by_role("listitem").filter(has_text=text).last

    def box(self) -> Locator:
        return self.page.get_by_role("textbox", name="Message")

    def send(self, text: str) -> None:
        self.box().fill(text)
        self.box().press("Enter")
        expect(self.message(text)).to_be_visible()

    def open_chat(self, name: str | re.Pattern[str]) -> None:
        nav = self.page.get_by_role("navigation", name="Conversations")
        nav.get_by_role("button", name=name).first.click()
        expect(self.page.get_by_role("heading", level=2, name=name)).to_be_visible()

    def pwned(self) -> Any:
        return self.page.evaluate("() => window.__pwned")


def sidebar(page: Page) -> Locator:
    """The conversation list's side bar (the empty pane has its own "New chat" button)."""
    return page.get_by_role("navigation", name="Conversations")


def open_app(browser: Browser, node: WebNode, **context: Any) -> User:
    settings: dict[str, Any] = {"viewport": {"width": 1280, "height": 800}, **context}
    page = browser.new_context(**settings).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    user = User(node, page)
    page.on("pageerror", lambda error: user.errors.append(str(error)))
    page.on(
        "console",
        lambda msg: user.errors.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    page.goto(node.login_url)
    return user


def create_account(user: User) -> list[str]:
    """Onboarding, new account: phrase shown, three words confirmed, passphrase set."""
    page = user.page
    expect(page.get_by_role("heading", name="Welcome to X Chat")).to_be_visible()
    user.shot("onboarding-welcome")
    page.get_by_role("button", name="Create a new account").click()
    phrase = page.get_by_role("list", name="Recovery phrase").get_by_role("listitem")
    expect(phrase).to_have_count(12)
    words = [w.strip() for w in phrase.all_inner_texts()]
    user.shot("onboarding-phrase")
    page.get_by_role("button", name="I have written it down").click()
    labels = page.locator("form label").all_inner_texts()
    assert len(labels) == 3
    asked = [int(label.removeprefix("Word ")) for label in labels]
    # a wrong word is refused with a clear message
    page.get_by_label(labels[0], exact=True).fill("wrong")
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("alert")).to_contain_text(f"Word {asked[0]} does not match")
    for label, position in zip(labels, asked, strict=True):
        page.get_by_label(label, exact=True).fill(words[position - 1])
    page.get_by_role("button", name="Continue").click()
    page.get_by_label("Passphrase", exact=True).fill(PASSPHRASE)
    page.get_by_label("Repeat passphrase").fill(PASSPHRASE + "x")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("alert")).to_contain_text("not the same")
    page.get_by_label("Repeat passphrase").fill(PASSPHRASE)
    page.get_by_role("button", name="Create account").click()
    expect(sidebar(page).get_by_role("button", name="New chat")).to_be_visible()
    return words


def restore_account(user: User, phrase: str) -> None:
    page = user.page
    page.get_by_role("button", name="Restore from a recovery phrase").click()
    bad = phrase.split()
    bad[2] = "notaword"
    page.get_by_label("Recovery phrase").fill(" ".join(bad))
    page.get_by_label("Passphrase", exact=True).fill(PASSPHRASE)
    page.get_by_label("Repeat passphrase").fill(PASSPHRASE)
    page.get_by_role("button", name="Restore account").click()
    expect(page.get_by_role("alert")).to_contain_text("notaword")
    page.get_by_label("Recovery phrase").fill(phrase.upper())
    page.get_by_role("button", name="Restore account").click()
    expect(sidebar(page).get_by_role("button", name="New chat")).to_be_visible()


def own_address(user: User) -> str:
    """The npub shown on the user's card; checks the card's QR code and relay hints."""
    page = user.page
    sidebar(page).get_by_role("button", name="My address").click()
    card = page.get_by_role("dialog", name="Your address")
    expect(card.get_by_role("button", name="Copy address")).to_be_visible()
    qr = card.get_by_role("img", name="QR code of your address")
    expect(qr).to_have_attribute("src", re.compile(r"^blob:"))
    page.wait_for_function("() => (document.querySelector('img.qr')?.naturalWidth ?? 0) > 0")
    expect(card.get_by_text(user.node.relays[0])).to_be_visible()
    npub = card.locator(".address").inner_text().strip()
    assert npub.startswith("npub1")
    return npub


def start_chat(user: User, address: str, name: str) -> None:
    page = user.page
    sidebar(page).get_by_role("button", name="New chat").click()
    dialog = page.get_by_role("dialog", name="New chat")
    dialog.get_by_label("Contact address").fill("npub1notanaddress")
    dialog.get_by_role("button", name="Start chat").click()
    expect(dialog.get_by_role("alert")).to_be_visible()
    dialog.get_by_label("Contact address").fill(address)
    dialog.get_by_label("Name (optional)").fill(name)
    dialog.get_by_role("button", name="Start chat").click()
    expect(page.get_by_role("heading", level=2, name=name)).to_be_visible()


def state_of(user: User, text: str) -> Locator:
    return user.message(text).locator(".state-text")


def outbox(user: User) -> list[str]:
    """The sends waiting in the tab's outbox (sessionStorage), by their client_id."""
    return list(
        user.page.evaluate(
            """() => Object.keys(sessionStorage)
                .filter((key) => key.startsWith('xchat.outbox.'))
                .flatMap((key) => JSON.parse(sessionStorage.getItem(key)).map((m) => m.id))"""
        )
    )


def message_action(user: User, text: str, action: str) -> None:
    message = user.message(text)
    message.hover()
    message.get_by_role("button", name="Message actions").click()
    user.page.get_by_role("menu", name="Message actions").get_by_role(
        "menuitem", name=action
    ).click()


def two_users(
    web_nodes: Callable[..., WebNode], relay: str, bob_phrase: str | None = None
) -> tuple[WebNode, WebNode]:
    """Alice's and Bob's nodes, set up through the API, each the other's contact."""
    alice_node = web_nodes(relay, "alice")
    bob_node = web_nodes(relay, "bob")
    alice_node.setup()
    bob_node.setup(bob_phrase)
    alice_node.add(bob_node, "Bob")
    bob_node.add(alice_node, "Alice")
    return alice_node, bob_node


def test_two_users_onboard_add_each_other_and_chat(
    browser: Browser,
    relays: Callable[..., RelayProcess],
    web_nodes: Callable[..., WebNode],
) -> None:
    relay = relays().url
    alice = open_app(browser, web_nodes(relay, "alice"))
    bob = open_app(browser, web_nodes(relay, "bob"), color_scheme="dark")

    # Onboarding: Alice creates an account, Bob restores his from a phrase.
    create_account(alice)
    bob_phrase = Identity.generate(os.urandom).phrase
    restore_account(bob, bob_phrase)
    alice_npub = own_address(alice)
    alice.shot("card")
    alice.page.keyboard.press("Escape")
    assert alice_npub == alice.node.home.card().npub
    assert own_address(bob) == Identity.from_phrase(bob_phrase).npub
    bob.page.get_by_role("button", name="Close").click()

    # Bob starts a chat by pasting Alice's address; for Alice it is a message request.
    start_chat(bob, alice_npub, "Alice")
    expect(bob.box()).to_be_focused()
    bob.send("Hello Alice")
    expect(state_of(bob, "Hello Alice")).to_have_text(re.compile("Sent|Delivered"))
    nav = alice.page.get_by_role("navigation", name="Conversations")
    request = nav.get_by_role("button", name=re.compile("Request.*Hello Alice.*1 unread"))
    expect(request).to_be_visible()
    request.click()
    expect(alice.message("Hello Alice")).to_be_visible()
    alice.page.get_by_role("button", name="Accept").click()
    expect(alice.page.get_by_role("button", name="Accept")).to_have_count(0)
    # accepting sends the delivery receipt, and (the chat being open) the read receipt
    expect(state_of(bob, "Hello Alice")).to_have_text("Read")

    # Alice names Bob and answers with the Send button.
    alice.page.get_by_role("button", name="Conversation menu").click()
    alice.page.get_by_role("menuitem", name="Rename").click()
    alice.page.get_by_role("dialog").get_by_label("Name").fill("Bob")
    alice.page.get_by_role("button", name="Save").click()
    expect(alice.page.get_by_role("heading", level=2, name="Bob")).to_be_visible()
    alice.box().fill("Hi Bob")
    alice.page.get_by_role("button", name="Send").click()
    expect(bob.message("Hi Bob")).to_be_visible()
    expect(state_of(alice, "Hi Bob")).to_have_text("Read")
    expect(alice.box()).to_have_value("")

    # Shift+Enter breaks the line, Enter sends.
    bob.box().fill("line one")
    bob.box().press("Shift+Enter")
    bob.box().press_sequentially("line two")
    expect(bob.box()).to_have_value("line one\nline two")
    bob.box().press("Enter")
    body = alice.message("line two").locator(".body")
    expect(body).to_have_text("line one\nline two")

    # Markup and script from a peer are text, never HTML.
    bob.send(XSS)
    incoming = alice.message("window.__pwned=2")
    expect(incoming.locator(".body")).to_have_text(XSS)
    expect(nav.get_by_text(XSS)).to_be_visible()
    assert alice.page.locator('img[src="x"]').count() == 0
    assert alice.page.locator("script:not([src])").count() == 0
    assert alice.pwned() is None
    assert bob.pwned() is None

    # Reply, react, edit, delete for everyone.
    message_action(alice, "line two", "Reply")
    expect(alice.page.get_by_text("Replying to Alice")).to_have_count(0)
    expect(alice.page.get_by_text("Replying to Bob")).to_be_visible()
    alice.send("a reply")
    expect(bob.message("a reply").locator(".quote")).to_contain_text("line one")
    message_action(alice, "Hello Alice", "React with 👍")
    expect(bob.message("Hello Alice").get_by_role("list", name="Reactions")).to_contain_text("👍")
    bob.send("typo hree")
    message_action(bob, "typo hree", "Edit")
    expect(bob.page.get_by_text("Editing message")).to_be_visible()
    bob.box().fill("typo here")
    bob.box().press("Enter")
    expect(alice.message("typo here")).to_contain_text("edited")
    bob.send("regret this")
    expect(alice.message("regret this")).to_be_visible()
    message_action(bob, "regret this", "Delete for everyone")
    bob.page.get_by_role("dialog").get_by_role("button", name="Delete for everyone").click()
    expect(alice.page.get_by_text("This message was deleted")).to_be_visible()
    expect(alice.page.get_by_text("regret this")).to_have_count(0)

    # Verify: both see the same safety number; Alice marks it verified.
    alice.page.get_by_role("button", name="Verify", exact=True).click()
    dialog = alice.page.get_by_role("dialog", name="Verify Bob")
    number = dialog.locator(".safety-number")
    expect(number).to_have_attribute("aria-label", re.compile(r"Safety number: (\d{5} ){11}\d{5}"))
    expect(dialog.get_by_role("img", name="QR code of the safety number")).to_be_visible()
    bob.page.get_by_role("button", name="Verify", exact=True).click()
    bob_number = bob.page.get_by_role("dialog", name="Verify Alice").locator(".safety-number")
    assert number.get_attribute("aria-label") == bob_number.get_attribute("aria-label")
    bob.page.keyboard.press("Escape")
    dialog.get_by_role("button", name="Mark as verified").click()
    expect(dialog.get_by_role("button", name="Clear verification")).to_be_visible()
    alice.shot("verify")
    dialog.get_by_role("button", name="Close").click()
    expect(alice.page.locator(".chat-title .verified")).to_have_text("Verified")

    # Search runs over every conversation's text.
    search = alice.page.get_by_role("searchbox", name="Search")
    search.fill("line TWO")
    hit = nav.get_by_role("button", name=re.compile("line two"))
    expect(hit).to_be_visible()
    hit.click()
    expect(alice.message("line two")).to_be_visible()
    search.fill("")

    bob.shot("conversation-dark")

    # A reload keeps the history and reopens the conversation.
    alice.page.reload()
    expect(alice.message("Hi Bob")).to_be_visible()
    expect(alice.message("Hello Alice")).to_be_visible()
    expect(state_of(alice, "Hi Bob")).to_have_text("Read")
    expect(alice.page.locator(".chat-title .verified")).to_have_text("Verified")
    alice.shot("conversation")
    assert alice.errors == []
    assert bob.errors == []


def test_relay_killed_then_back_and_node_restarted(
    browser: Browser,
    relays: Callable[..., RelayProcess],
    web_nodes: Callable[..., WebNode],
) -> None:
    first = relays()
    port = int(first.url.rsplit(":", 1)[1])
    alice_node, bob_node = two_users(web_nodes, first.url)
    alice = open_app(browser, alice_node)
    alice.open_chat("Bob")
    alice.send("before the outage")
    expect(state_of(alice, "before the outage")).to_have_text(re.compile("Delivered|Read"))
    banner = alice.page.get_by_text("no relay connected")

    # The relay dies: the banner says so; what is sent now waits.
    first.stop(signal.SIGKILL)
    expect(banner).to_be_visible()
    alice.shot("offline-relay")
    alice.send("during the outage")
    expect(state_of(alice, "during the outage")).to_have_text("Queued")
    alice.box().fill("a draft being typed")

    # Back on the same port with the same database: the banner goes, the message goes out.
    relays(db=first.db, port=port)
    expect(banner).to_have_count(0, timeout=45_000)
    expect(state_of(alice, "during the outage")).to_have_text(
        re.compile("Sent|Delivered|Read"), timeout=45_000
    )
    wait_for(
        lambda: any(m["body"] == "during the outage" for m in bob_node.messages(alice_node.pubkey)),
        timeout=45,
        what="the message sent during the outage at Bob",
    )
    expect(alice.box()).to_have_value("a draft being typed")

    # The node stops: the app says it is offline; a send waits in the tab's outbox.
    alice_node.stop()
    offline = alice.page.get_by_text("Can't reach your X Chat node")
    expect(offline).to_be_visible()
    down = "typed while the node is down"
    alice.box().fill(down)
    alice.box().press("Enter")
    expect(state_of(alice, down)).to_have_text("Queued (waiting for your node)")
    expect(alice.box()).to_have_value("")
    alice.box().fill("a draft while it waits")
    alice.shot("offline-node")
    # it comes back with the same token (kept in the home): the tab reconnects by itself
    # and sends what waited, with the same client_id: it arrives once
    alice_node.start()
    expect(offline).to_have_count(0, timeout=45_000)
    expect(alice.message("during the outage")).to_be_visible()
    expect(state_of(alice, down)).to_have_text(re.compile("Sent|Delivered|Read"), timeout=45_000)
    expect(alice.page.get_by_text("Queued (waiting for your node)")).to_have_count(0)
    expect(alice.box()).to_have_value("a draft while it waits")
    assert outbox(alice) == []

    # An answer lost on the way although the node stored the message: the app sends it
    # again with the same client_id, and it is still one message.
    lost = "its answer was lost"

    lost_answers: list[str] = []

    def lose_the_answer(route: Route) -> None:
        if route.request.method != "POST" or lost_answers:
            route.fallback()
            return
        lost_answers.append(route.fetch().json()["id"])  # the node takes it...
        try:
            route.abort("connectionreset")  # ...and the tab never hears back
        except PlaywrightError as exc:
            # Playwright may count the route as handled once fetched (seen once under load,
            # "Route is already handled!"): the tab then gets no answer either way
            if "already handled" not in str(exc):
                raise

    tries: list[str] = []
    alice.page.on(
        "request",
        lambda r: (
            tries.append(r.post_data_json["client_id"])
            if r.method == "POST" and r.url.endswith("/messages")
            else None
        ),
    )
    alice.page.route("**/api/conversations/*/messages", lose_the_answer)
    alice.box().fill(lost)
    alice.box().press("Enter")
    expect(state_of(alice, lost)).to_have_text(re.compile("Sent|Delivered|Read"), timeout=45_000)
    alice.page.unroute("**/api/conversations/*/messages", lose_the_answer)
    assert len(lost_answers) == 1
    # the client_id became the message's id; the app either sent it again with the same
    # id, or learnt from the stream that the node had it (both are right: once either way)
    assert tries.count(lost_answers[0]) in (1, 2)
    assert all(t == lost_answers[0] for t in tries[-tries.count(lost_answers[0]) :])
    alice.send("the last one")

    def at_bob() -> list[str]:
        return [m["body"] for m in bob_node.messages(alice_node.pubkey)]

    wait_for(lambda: "the last one" in at_bob(), timeout=45, what="the last message at Bob")
    # sends go in order, so a second copy of either would have come before the last one
    assert at_bob().count(down) == 1
    assert at_bob().count(lost) == 1
    mine = [m["body"] for m in alice_node.messages(bob_node.pubkey)]
    assert mine.count(down) == mine.count(lost) == 1
    for text in (down, lost):
        expect(alice.conversation().locator("li.msg").filter(has_text=text)).to_have_count(1)
    assert outbox(alice) == []
    assert alice.errors == []


def test_lock_unlock_and_show_the_recovery_phrase(
    browser: Browser,
    relays: Callable[..., RelayProcess],
    web_nodes: Callable[..., WebNode],
) -> None:
    node = web_nodes(relays().url, "solo")
    user = open_app(browser, node)
    words = create_account(user)
    page = user.page
    page.get_by_role("button", name="Settings").click()
    settings = page.get_by_role("dialog", name="Settings")
    expect(settings.get_by_role("list", name="Relays")).to_contain_text("Connected")
    # relays: add one (live health shows it connecting, then connected), remove it
    extra = relays().url
    settings.get_by_label("Relay address").fill(extra)
    settings.get_by_role("button", name="Add relay").click()
    added = (
        settings.get_by_role("list", name="Relays").get_by_role("listitem").filter(has_text=extra)
    )
    expect(added).to_contain_text("Connected")
    assert extra in node.call("GET", "/api/relays")["inbox"]
    settings.get_by_role("button", name=f"Remove relay {extra}").click()
    expect(added).to_have_count(0)
    assert extra not in node.call("GET", "/api/relays")["inbox"]
    receipts = settings.get_by_role("switch", name="Send read receipts")
    expect(receipts).to_be_checked()
    receipts.uncheck()
    wait_for(
        lambda: node.call("GET", "/api/settings") == {"read_receipts": False},
        what="read receipts off",
    )
    settings.get_by_role("button", name="Show recovery phrase").click()
    settings.get_by_label("Passphrase").fill("not the passphrase")
    settings.get_by_role("button", name="Show", exact=True).click()
    expect(settings.get_by_role("alert")).to_have_text("Wrong passphrase.")
    settings.get_by_label("Passphrase").fill(PASSPHRASE)
    settings.get_by_role("button", name="Show", exact=True).click()
    shown = settings.get_by_role("list", name="Recovery phrase").get_by_role("listitem")
    expect(shown).to_have_count(12)
    assert [w.strip() for w in shown.all_inner_texts()] == words
    user.shot("settings")
    settings.get_by_role("button", name="Lock now").click()
    expect(page.get_by_role("heading", name="X Chat is locked")).to_be_visible()
    assert node.call("GET", "/api/session")["state"] == "locked"
    user.shot("locked")
    page.get_by_label("Passphrase").fill("wrong passphrase")
    page.get_by_role("button", name="Unlock").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong passphrase. Try again.")
    page.get_by_label("Passphrase").fill(PASSPHRASE)
    page.get_by_label("Passphrase").press("Enter")
    expect(sidebar(page).get_by_role("button", name="New chat")).to_be_visible()
    # a reload while unlocked goes straight to the chats (the token stays in this tab)
    page.reload()
    expect(sidebar(page).get_by_role("button", name="New chat")).to_be_visible()
    # a revoked token (the api-token file deleted, so the next start makes a new one) ends
    # the session; the new login link brings it back
    node.stop()
    (node.home.path / "api-token").unlink()
    node.start()
    expect(page.get_by_role("heading", name="This session has ended")).to_be_visible(timeout=30_000)
    user.shot("session-ended")
    page.goto(node.login_url)
    expect(sidebar(page).get_by_role("button", name="New chat")).to_be_visible()
    assert user.errors == []


def test_small_screen_and_keyboard_only(
    browser: Browser,
    relays: Callable[..., RelayProcess],
    web_nodes: Callable[..., WebNode],
) -> None:
    alice_node, bob_node = two_users(web_nodes, relays().url)
    for i in range(60):
        bob_node.send(alice_node.pubkey, f"message number {i}")
    wait_for(
        lambda: len(alice_node.messages(bob_node.pubkey)) == 60, timeout=60, what="60 messages"
    )
    user = open_app(browser, alice_node, viewport={"width": 360, "height": 740})
    page = user.page

    def no_sideways_scroll() -> None:
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 360

    nav = page.get_by_role("navigation", name="Conversations")
    expect(nav.get_by_role("button", name=re.compile("Bob.*60 unread"))).to_be_visible()
    no_sideways_scroll()
    user.shot("mobile-list")
    # keyboard only: the search field has focus; arrow down to the chat, Enter opens it
    expect(page.get_by_role("searchbox", name="Search")).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(nav.get_by_role("button", name=re.compile("Bob"))).to_be_focused()
    page.keyboard.press("Enter")
    expect(user.message("message number 59")).to_be_visible()
    expect(nav).to_be_hidden()
    expect(user.box()).to_be_focused()
    no_sideways_scroll()
    # the newest page is shown; older ones load when scrolled up
    expect(user.conversation().locator("li.msg")).to_have_count(50)
    user.conversation().evaluate("el => { el.scrollTop = 0; }")
    expect(user.conversation().locator("li.msg")).to_have_count(60)
    expect(page.get_by_text("This is the beginning of your conversation")).to_be_visible()
    page.keyboard.type("typed on a phone")
    page.keyboard.press("Enter")
    expect(user.message("typed on a phone")).to_be_visible()
    wait_for(
        lambda: bob_node.messages(alice_node.pubkey)[-1]["body"] == "typed on a phone",
        what="the message at Bob",
    )
    # message actions by keyboard: Escape from the box, arrows through messages, Enter
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("ArrowUp")
    expect(user.message("typed on a phone")).to_be_focused()
    page.keyboard.press("Enter")
    menu = page.get_by_role("menu", name="Message actions")
    expect(menu.get_by_role("menuitem").first).to_be_focused()
    page.keyboard.press("Escape")
    expect(menu).to_have_count(0)
    user.shot("mobile-conversation")
    page.get_by_role("button", name="Back to conversations").click()
    expect(nav).to_be_visible()
    bob_item = nav.get_by_role("button", name=re.compile("Bob"))
    expect(bob_item).not_to_have_accessible_name(re.compile("unread"))
    # block: the conversation leaves the list; Settings can unblock
    bob_item.click()
    page.get_by_role("button", name="Conversation menu").click()
    page.get_by_role("menuitem", name="Block").click()
    page.get_by_role("dialog", name="Block Bob?").get_by_role("button", name="Block").click()
    expect(page.get_by_text("You blocked Bob.")).to_be_visible()
    expect(user.box()).to_be_hidden()
    page.get_by_role("button", name="Back to conversations").click()
    expect(nav).to_be_visible()
    expect(bob_item).to_have_count(0)
    listed = alice_node.call("GET", "/api/conversations")
    assert bob_node.pubkey not in [c["pubkey"] for c in listed]
    page.get_by_role("button", name="Settings").click()
    page.get_by_role("dialog", name="Settings").get_by_role("button", name="Unblock Bob").click()
    page.get_by_role("dialog", name="Settings").get_by_role("button", name="Close").click()
    expect(bob_item).to_be_visible()
    assert user.errors == []


def test_a_contacts_new_device_is_a_clear_warning(
    browser: Browser,
    relays: Callable[..., RelayProcess],
    web_nodes: Callable[..., WebNode],
) -> None:
    relay = relays().url
    bob_phrase = Identity.generate(os.urandom).phrase
    alice_node, bob_node = two_users(web_nodes, relay, bob_phrase)
    bob_node.send(alice_node.pubkey, "from my first computer")
    wait_for(lambda: alice_node.messages(bob_node.pubkey), what="the first message")
    alice_node.call("POST", f"/api/contacts/{bob_node.pubkey}/verify", {"verified": True})
    alice = open_app(browser, alice_node)
    nav = alice.page.get_by_role("navigation", name="Conversations")
    in_list = nav.get_by_role("button", name=re.compile("Bob"))
    expect(in_list).to_have_accessible_name(re.compile("Bob Verified"))
    alice.open_chat("Bob")
    mark = alice.page.locator(".chat-title .verified")
    expect(mark).to_have_text("Verified")
    warning = alice.page.get_by_role("alert").filter(has_text="safety number has changed")
    expect(warning).to_have_count(0)

    # Bob restores his account on a second computer and writes from there.
    second = web_nodes(relay, "bob-again")
    second.setup(bob_phrase)
    second.add(alice_node, "Alice")
    second.send(alice_node.pubkey, "from my new computer")
    expect(alice.message("from my new computer")).to_be_visible()
    expect(warning).to_be_visible()
    expect(mark).to_have_count(0)
    expect(in_list).to_have_accessible_name(re.compile("Bob Safety number changed"))
    alice.shot("key-change")
    # the node knows it too: a new tab (nothing in its sessionStorage) warns the same way
    other = open_app(browser, alice_node)
    other.open_chat("Bob")
    expect(other.page.get_by_role("alert")).to_contain_text("safety number has changed")
    expect(other.page.locator(".chat-title .verified")).to_have_count(0)
    other.page.context.close()
    warning.get_by_role("button", name="Verify safety number").click()
    dialog = alice.page.get_by_role("dialog", name="Verify Bob")
    expect(dialog.get_by_role("alert")).to_contain_text("changed since you verified")
    dialog.get_by_role("button", name="Mark as verified").click()
    expect(dialog.get_by_role("button", name="Clear verification")).to_be_visible()
    dialog.get_by_role("button", name="Close").click()
    expect(warning).to_have_count(0)
    expect(mark).to_have_text("Verified")
    expect(in_list).to_have_accessible_name(re.compile("Bob Verified"))
    # after a reload the number is still the verified one: no warning
    alice.page.reload()
    expect(alice.message("from my new computer")).to_be_visible()
    expect(mark).to_have_text("Verified")
    expect(warning).to_have_count(0)
    assert alice.errors == []


def test_the_conversation_shows_whether_it_is_forward_secret_and_why_not(
    browser: Browser,
    relays: Callable[..., RelayProcess],
    web_nodes: Callable[..., WebNode],
) -> None:
    relay = relays().url
    alice_node = web_nodes(relay, "alice")
    alice_node.setup()
    bob_node = web_nodes(relay, "bob")  # in setup: no identity yet, no keys published
    bob = Identity.generate(os.urandom)
    card = ContactCard.create(bob.public_key, (relay,)).nprofile
    alice_node.call("POST", "/api/contacts", {"address": card, "name": "Bob"})
    alice = open_app(browser, alice_node)
    alice.open_chat("Bob")
    badge = alice.page.locator("#forward-secrecy")
    notice = alice.page.get_by_role("note")
    expect(badge).to_have_text("Not forward-secret")
    expect(notice).to_contain_text("Not forward-secret")
    expect(notice).to_contain_text("Bob's app has not published its X Chat keys yet")
    expect(notice).to_contain_text("X Chat keeps looking")
    alice.send("before bob's keys")
    alice.shot("chat-not-forward-secret")
    bob_node.setup(bob.phrase)  # Bob's node starts and publishes its bundle
    expect(badge).to_have_text("Forward-secret", timeout=90_000)
    expect(notice).to_have_count(0)
    expect(alice.page.get_by_text("is now forward-secret")).to_be_visible()
    alice.send("after bob's keys")
    wait_for(
        lambda: (
            [m["forward_secret"] for m in alice_node.messages(bob_node.pubkey)] == [False, True]
        ),
        what="the second message forward-secret",
    )
    assert alice.errors == []


def test_a_relay_that_refuses_our_keys_is_a_banner(
    browser: Browser,
    relays: Callable[..., RelayProcess],
    faulty_relays: Callable[..., FaultyRelay],
    web_nodes: Callable[..., WebNode],
) -> None:
    # content over 2000 bytes refused, and the limit hidden (no NIP-11 through the proxy)
    small = faulty_relays(relays("[limits]\nmax_content_length = 2000\n").url)
    node = web_nodes(small.url, "alice")
    node.setup()
    wait_for(lambda: node.status()["warnings"], what="the node's warning")
    user = open_app(browser, node)
    banner = user.page.locator(".banner-relay-warning")
    expect(banner).to_contain_text("A relay refused your keys")
    expect(banner).to_contain_text("device bundle")
    banner.get_by_role("button", name="Relays").click()
    dialog = user.page.get_by_role("dialog", name="Settings")
    expect(dialog.get_by_role("list", name="Relays")).to_contain_text("Warning: refused your")
    user.shot("relay-refused-keys")
    assert user.errors == []
