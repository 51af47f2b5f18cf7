"""X Chat Web in a real browser: Playwright for Python driving Debian's Chromium.

The browser is ``/usr/bin/chromium`` from the Debian package (``test.sh`` installs it when
run as root); Playwright never downloads one. Without it the tests are skipped, except
under CI (``CI`` set), where they fail. Nodes and relays are real processes
(tests/node/conftest.py); every browser context is a separate user.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.node.conftest import faulty_relays, relay_fronts, relays
from tests.node.nodes import PASSPHRASE, NodeProcess
from xchat.core.identity import Identity
from xchat.home import Home

__all__ = [
    "ARTIFACTS",
    "PASSPHRASE",
    "WebNode",
    "browser",
    "faulty_relays",
    "relay_fronts",
    "relays",
    "web_nodes",
]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
TIMEOUT_MS = 15_000


def _missing() -> str | None:
    if not CHROMIUM.exists():
        return (
            "Chromium is not installed (no /usr/bin/chromium): install Debian's `chromium` "
            "package (apt-get install chromium); test.sh does it when run as root"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed: run scripts/install.sh dev"
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the session; each test opens its own contexts."""
    missing = _missing()
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{missing}; CI must run the browser tests")
        pytest.skip(missing)
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


@dataclass
class WebNode(NodeProcess):
    """A node whose identity X Chat Web (or :meth:`setup`) creates."""

    def setup(self, phrase: str | None = None) -> str:
        """Create the identity through the API (what the web app's setup does); its npub."""
        phrase = phrase or Identity.generate(os.urandom).phrase
        session = self.call("POST", "/api/setup", {"phrase": phrase, "passphrase": PASSPHRASE})
        return str(session["npub"])


@pytest.fixture
def web_nodes(tmp_path: Path) -> Iterator[Callable[..., WebNode]]:
    """``web_nodes(relay_url, name, env=None)``: a node with no identity yet (X Chat Web
    sets it up), started without a passphrase; SIGKILLed at the end of the test if still running."""
    started: list[WebNode] = []

    def start(relay_url: str, name: str, env: dict[str, str] | None = None) -> WebNode:
        node = WebNode(Home(tmp_path / name), (relay_url,), env=dict(env or {}))
        started.append(node)
        return node.start(env_passphrase=False)

    yield start
    for node in started:
        if node.process is not None and node.process.poll() is None:
            node.stop(signal.SIGKILL)
