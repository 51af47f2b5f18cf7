"""X Chat Web in Chromium: from ``xchat up`` to an interactive conversation list, and
opening a conversation of 10,000 messages (first paint, then scrolling back through it).

Run from the repository root::

    .venv/bin/python bench/web.py [--quick] [--runs N] [--walk-cap SECONDS]

Targets: under 1 s from ``xchat up`` to an interactive list of 100 conversations; a
10,000-message conversation opens (its newest messages painted) in under 300 ms.

A full run takes about 3 minutes (5 runs of everything, about 1 minute, then one walk
through the whole history, which alone takes about 2 minutes, capped by ``--walk-cap``,
default 130 s); ``--quick`` (2 runs, the walk stopped at 2,000 messages) about 30 s.
Before each run and before the walk it waits (up to 30 s) for the shared machine to use
under a quarter of a core, and before every measurement (its new tab open) up to 5 s for
the machine to settle (an idle browser, as when a user runs ``xchat up``).

**The home** is seeded directly through ``NodeStore`` before any node starts, in one
transaction: 100 accepted contacts (random valid x-only keys, "First Last" names), each
with 3 to 8 messages over the last 60 days (10 of them with an unread incoming last
message), and one, the most recent in the list, with 10,000 messages, incoming and
outgoing alternating over about a year (so a day separator every 25 messages or so), of
realistic lengths (log-normal, median ~40 characters, a few of several hundred), 3 %
replies to a recent message, 3 % with a reaction, 1 % edited. Every incoming message of
the big conversation is already read, so opening it writes nothing. The keystore is
sealed with the cheap Argon2id setting of the tests (8 MiB, one pass); a copy of the home
is re-sealed with the default setting (Argon2id, 128 MiB, 3 passes, 4 lanes: what users
get), and another copy is kept free of any relay for the embedded-relay case.

**The node** is ``python -m xchat --home H up --no-browser --port 0 --relay URL``, as a
user runs it, its passphrase in ``XCHAT_PASSPHRASE`` (so it starts unlocked) unless the
case says otherwise; the relay is an ``xchat relay`` on 127.0.0.1 that this script starts
once (a configured relay: the node connects to it and publishes its device bundle before
it prints the login URL, as it would to a relay on the network, minus the network).

**The browser** is Debian's Chromium (``/usr/bin/chromium``), launched once by Playwright
with the flags of the browser tests (headless, ``--disable-gpu``: software rendering),
each measurement in a fresh browser context (cold caches, as a new tab), viewport
1280x800. Times in the page come from ``performance.now()`` and event timestamps; a
screen counts as painted when the frame that first contains it has been committed by the
page's main thread: a ``requestAnimationFrame`` callback queued once the elements exist,
then a task posted from it (rasterizing and showing that frame follow on other threads).

**Measured:**

1. **Start-up to interactive** (wall clock in this process): ``node`` = from spawning
   ``xchat up`` to its ``Open X Chat Web:`` line (Python start-up, imports, the Argon2id
   unlock, opening the SQLCipher store, connecting to the relay, publishing the bundle,
   starting the HTTP server); ``browser`` = from ``page.goto(login URL)`` to the moment
   the page shows all 100 conversation entries, painted (detected in the page, reported
   back through a ``requestAnimationFrame`` poll). Their sum is the figure held against
   the 1 s target. That every entry is clickable is then checked with Playwright's
   actionability checks (``click(trial=True)`` on the 100th; each entry is a ``<button>``
   with its handler from the moment it exists). Cases: unlocked with the test KDF (the
   target's figure), unlocked with the default KDF, locked with the default KDF (the
   passphrase typed into X Chat Web's unlock screen: node until the URL, browser until
   the unlock screen shows, then from the form's submit event to the painted list;
   typing is not counted), and, for information, no relay configured (``xchat up`` first
   starts its embedded relay, another Python process, on port 7447).
   In-page breakdown (from navigation start): the document, the app's modules run
   (DOMContentLoaded), ``/api/session`` answered, the five start-up API calls answered,
   100 entries in the DOM, painted. Separately, in this process: ``python -c pass``,
   ``python -c "import xchat.cli.main, xchat.node.runner"`` and the keystore unlock.
2. **Opening the 10,000-message conversation** (in the page): from the click event on its
   entry (``event.timeStamp``, once Playwright clicks) to the paint of the newest message;
   it is checked to be inside the visible part of the conversation. Done in the same tab
   as (1), half a second after the list showed, so the node's SQLCipher page cache is as
   cold as after a start. Breakdown: the request for the newest 50 (Resource Timing),
   the messages in the DOM, painted.
3. **Scrolling back** in the just-opened conversation: a ``requestAnimationFrame`` loop
   scrolls it up by 50 px a frame (3,000 px/s at 60 Hz: a fast flick) for 2 s, the
   pointer over the messages; the app loads the next 50 older messages whenever the top
   comes within 600 px. Frame intervals (p50, p99, max, frames over 50 ms), pages loaded
   and each page's time from its request to its messages in the DOM, and frames spent at
   the very top waiting for a page.
4. **The whole history**, once (not repeated: it takes over a minute), on a node started
   afresh: open, then again and again jump to the top and wait for the older page to be
   in the DOM and painted, until the app shows the beginning of the conversation (or
   ``--walk-cap`` seconds, or 2,000 messages with ``--quick``); the time per page against
   the number of messages loaded, the DOM size and JS heap at the end (Chromium's
   ``Performance.getMetrics``), then 1 s of smooth scrolling (as in 3, downwards) with
   everything loaded. Where the main thread's time goes is read from Chromium traces
   (not counted in the figures: tracing slows it) of one open, of the last page of the
   walk and of 0.5 s of that scrolling: the self time of each trace event on the
   renderer's main thread, grouped (script, style, layout, pre-paint, paint, hit
   testing, compositing, GC, other).

**Anchors**, in the same run, in the same browser, each the floor of what it is set
against (the DOM X Chat Web produced, captured in the first run, with its stylesheet
inlined and its scripts removed, as a ``file://`` page):

* for the browser part of start-up: the static page of the list screen (100 entries),
  from navigation start to painted, against X Chat Web's navigation start to painted;
* for opening: the static list page with the open conversation's markup (header, the 50
  newest messages, composer) in a ``<template>``, inserted by a click on the same entry
  (``innerHTML``, scrolled to the end), from the click event to painted: the same
  elements, styles and layout as X Chat Web's, without the request, the JSON and the
  DOM built element by element.

Every case runs ``--runs`` times (default 5, ``--quick`` 2), the cases interleaved run by
run; the median and the max are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from _nodes import (
    PASSPHRASE,
    STARTED,
    BenchError,
    cpu_model,
    load,
    make_home,
    source,
    start_relay,
    stop_all,
    stop_group,
)
from xchat.core.message import new_message_id
from xchat.crypto.kdf import derive_key
from xchat.crypto.keys import SecretKey
from xchat.crypto.keystore import DEFAULT_KDF
from xchat.home import Home
from xchat.store.node import ContactRow, MessageRow, NodeStore

ROOT = Path(__file__).resolve().parents[1]
WEB_DIR = ROOT / "src" / "xchat" / "web"
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
VIEWPORT = {"width": 1280, "height": 800}
CONVERSATIONS = 100
BIG = 10_000
PAGE = 50
UNREAD_CONVERSATIONS = 10
SCROLL_STEP = 50  # px a frame
SCROLL_SECONDS = 2.0
TIMEOUT_MS = 30_000
QUIET_CPU = 25.0  # % of one core: the machine counts as quiet below this
QUIET_CAP = 30.0  # s to wait for it
TARGET_INTERACTIVE = 1.0  # s
TARGET_OPEN = 0.300  # s
TRACE_CATEGORIES = [
    "devtools.timeline",
    "disabled-by-default-devtools.timeline",
    "blink",
    "v8.execute",
]

# -- the seeded home ---------------------------------------------------------------------

FIRST_NAMES = (
    "Ada Ben Chloe Dmitri Elena Farid Grace Hugo Ines Jonas Kemi Liam Maya Noor Oscar "
    "Priya Quentin Rosa Sven Tara"
)
LAST_NAMES = "Adams Becker Costa Dubois Evans Fischer Garcia Hansen Ito Jensen"
WORDS_TEXT = (
    "the be to of and a in that have it for not on with he as you do at this but his by "
    "from they we say her she or an will my one all would there their what so up out if "
    "about who get which go me when make can like time no just him know take people into "
    "year your good some could them see other than then now look only come its over think "
    "also back after use two how our work first well way even new want because any these "
    "give day most us meeting tomorrow lunch train tonight weekend photos dinner call "
    "later sounds great thanks maybe station office coffee flight tickets address"
)
WORDS = WORDS_TEXT.split()
EMOJI = ("😂", "👍", "❤️", "🎉", "🙏", "😅")


def _text(rng: random.Random) -> str:
    """A chat message: log-normal length (median ~40 characters, rarely several hundred)."""
    target = int(min(900, max(2, rng.lognormvariate(3.7, 0.85))))
    words: list[str] = []
    length = 0
    while length < target:
        word = rng.choice(WORDS)
        words.append(word)
        length += len(word) + 1
        if rng.random() < 0.06:
            words[-1] += rng.choice((".", ",", "?", "!"))
    text = " ".join(words)
    text = text[0].upper() + text[1:]
    if rng.random() < 0.08:
        text += " " + rng.choice(EMOJI)
    return text


@dataclass
class Seeded:
    big: str  # the 10,000-message conversation's pubkey
    newest: str  # its newest message id
    messages: int
    seconds: float
    db_bytes: int


def seed(home: Home, rng: random.Random) -> Seeded:
    """Contacts and messages written straight into the node's database, one transaction."""
    began = time.perf_counter()
    unlocked = home.unlock(PASSPHRASE)
    me = unlocked.identity.public_key.hex
    store = NodeStore(home.path / "node.db", derive_key(unlocked.storage_key, "xchat/node-db/v1"))
    store.open()
    now_ms = int(time.time() * 1000)
    names = [f"{a} {b}" for a in FIRST_NAMES.split() for b in LAST_NAMES.split()]
    rng.shuffle(names)
    total = 0
    big = newest = ""
    try:
        with store.transaction():
            for c in range(CONVERSATIONS):
                pubkey = SecretKey.generate(os.urandom).public_key.hex
                created = now_ms // 1000 - 400 * 86_400
                store.upsert_contact(ContactRow(pubkey, names[c], "accepted", [], created))
                if c == 0:
                    big = pubkey
                    count, last_at, span = BIG, now_ms - 180_000, 365 * 86_400_000
                else:
                    count = rng.randint(3, 8)
                    last_at = now_ms - rng.randint(3_600_000, 60 * 86_400_000)
                    span = rng.randint(600_000, 3 * 86_400_000)
                gaps = [rng.expovariate(1.0) for _ in range(count)]
                scale = span / sum(gaps)
                at = float(last_at)
                times = []
                for gap in gaps:
                    times.append(int(at))
                    at -= gap * scale
                times.reverse()
                unread = 0 < c <= UNREAD_CONVERSATIONS
                ids: list[str] = []
                for i, sent_at in enumerate(times):
                    # alternating, and the newest message of an unread conversation incoming
                    outgoing = (count - 1 - i) % 2 == (1 if unread else 0)
                    last = i == count - 1
                    if outgoing:
                        state = "delivered" if i >= count - 3 else "read"
                    else:
                        state = "received" if unread and last else "read"
                    reply_to = None
                    if ids and rng.random() < 0.03:
                        reply_to = ids[-rng.randint(1, min(5, len(ids)))]
                    reactions = None
                    if rng.random() < 0.03:
                        reactions = {me if not outgoing else pubkey: rng.choice(EMOJI)}
                    message = MessageRow(
                        id=new_message_id(os.urandom),
                        conversation=pubkey,
                        outgoing=outgoing,
                        sender=me if outgoing else pubkey,
                        type="reply" if reply_to else "text",
                        body=_text(rng),
                        sent_at=sent_at,
                        received_at=sent_at if outgoing else sent_at + rng.randint(200, 3000),
                        state=state,
                        reply_to=reply_to,
                        edited_at=sent_at + 60_000 if rng.random() < 0.01 else None,
                        reactions=reactions,
                    )
                    store.insert_message(message)
                    ids.append(message.id)
                total += count
                if c == 0:
                    newest = ids[-1]
    finally:
        store.close()
    size = sum(p.stat().st_size for p in home.path.glob("node.db*"))
    return Seeded(big, newest, total, time.perf_counter() - began, size)


# -- nodes ----------------------------------------------------------------------------------


def _env(passphrase: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XCHAT_")}
    if passphrase:
        env["XCHAT_PASSPHRASE"] = PASSPHRASE
    return env


@dataclass
class Node:
    process: subprocess.Popen[str]
    url: str
    started: float  # seconds from spawn to the login URL
    output: list[str] = field(default_factory=list)
    probe: dict[str, float] = field(default_factory=dict)  # NODE_PROBE's stamps, s

    def stop(self) -> None:
        stop_group(self.process, 20.0)  # type: ignore[arg-type]


#: ``xchat up`` with time stamps (``time.monotonic()``, one clock for every process on
#: Linux): once its modules are imported, and around the keystore unlock. The same
#: ``xchat.cli.main.main()`` as ``python -m xchat``; only the node-part breakdown uses it.
NODE_PROBE = """
import sys, time
import xchat.cli.main, xchat.home, xchat.node.runner
imported = time.monotonic()
unlock = xchat.home.Home.unlock
def timed(self, passphrase):
    began = time.monotonic()
    try:
        return unlock(self, passphrase)
    finally:
        print(f"probe: {imported!r} {began!r} {time.monotonic()!r}", flush=True)
xchat.home.Home.unlock = timed
sys.exit(xchat.cli.main.main(sys.argv[1:]))
"""


def start_node(
    home: Path, relay: str | None, passphrase: bool, timeout: float = 60.0, probe: bool = False
) -> Node:
    """Spawn ``xchat up``; returns once it prints the login URL (the clock starts at spawn)."""
    command = ["-c", NODE_PROBE] if probe else ["-m", "xchat"]
    args = [sys.executable, *command, "--home", str(home), "up", "--no-browser"]
    args += ["--port", "0"]
    if relay is not None:
        args += ["--relay", relay]
    lines: queue.Queue[str | None] = queue.Queue()
    output: list[str] = []
    began = time.perf_counter()
    spawned = time.monotonic()
    process = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=_env(passphrase),
        start_new_session=True,
    )
    STARTED.append(process)  # type: ignore[arg-type]

    def drain() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=drain, daemon=True).start()
    deadline = began + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.perf_counter()))
        except queue.Empty:
            line = None
        if line is None:
            stop_group(process)  # type: ignore[arg-type]
            raise BenchError("xchat up did not start:\n" + "".join(output)[-1500:])
        found = re.search(r"Open X Chat Web: (\S+)", line)
        if found:
            node = Node(process, found.group(1), time.perf_counter() - began, output)
            stamps = [line.split()[1:] for line in output if line.startswith("probe: ")]
            if probe and stamps:
                imported, unlocking, unlocked = (float(x) - spawned for x in stamps[0])
                url = time.monotonic() - spawned
                node.probe = {
                    "imports": imported,
                    "unlock": unlocked - unlocking,
                    "rest": url - unlocked,
                    "url": url,
                }
            return node


def machine_busy() -> float:
    """CPU seconds this machine has spent busy (all cores) since boot."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, _steal = fields
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def wait_quiet(cap: float = QUIET_CAP, sample: float = 0.5) -> float:
    """Wait (up to ``cap`` s) until the machine uses under QUIET_CPU % of a core over
    ``sample`` s (it is shared: other jobs' load would show up in every figure here, and
    so would Chromium still tearing down the previous measurement's context)."""
    began = time.monotonic()
    while True:
        before = machine_busy()
        time.sleep(sample)
        busy = (machine_busy() - before) / sample * 100
        waited = time.monotonic() - began
        if busy < QUIET_CPU or waited >= cap:
            return waited


def python_floor(code: str) -> float:
    """From spawning ``python -c code`` to the end of ``code`` (not the interpreter's exit):
    the child prints ``time.monotonic()``, one clock for every process on Linux."""
    script = f"{code}\nimport sys, time\nsys.stdout.write(repr(time.monotonic()))"
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script], check=True, env=_env(False), capture_output=True
    )
    return float(done.stdout) - began


# -- in the page ----------------------------------------------------------------------------

#: Runs before anything else in every page: the list's and the open's paint marks.
INIT_JS = """
(() => {
  const b = (window.__bench = {});
  performance.setResourceTimingBufferSize(10000);
  const afterFrame = (key) => requestAnimationFrame(() => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => { b[key] = performance.now(); };
    channel.port2.postMessage(null);
  });
  document.addEventListener('submit', (e) => { b.submit = e.timeStamp; }, true);
  const listWatch = new MutationObserver(() => {
    const list = document.getElementById('conv-list');
    if (!list || list.querySelectorAll('button.conv').length < __N__) return;
    listWatch.disconnect();
    b.listDom = performance.now();
    afterFrame('listPainted');
  });
  listWatch.observe(document, { childList: true, subtree: true });
  b.armOpen = (newest) => {
    b.click = null; b.dom = null; b.painted = null;
    document.addEventListener('click', (e) => { b.click = e.timeStamp; },
      { capture: true, once: true });
    const selector = `li.msg[data-id="${newest}"]`;
    const watch = new MutationObserver(() => {
      if (!document.querySelector(selector)) return;
      watch.disconnect();
      b.dom = performance.now();
      afterFrame('painted');
    });
    watch.observe(document, { childList: true, subtree: true });
  };
})();
""".replace("__N__", str(CONVERSATIONS))

STARTUP_JS = """
() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const api = performance.getEntriesByType('resource').filter((e) => e.name.includes('/api/'));
  const session = api.find((e) => e.name.endsWith('/api/session'));
  const rest = api.filter((e) => !e.name.endsWith('/api/session'));
  return {
    document: nav.responseEnd,
    dcl: nav.domContentLoadedEventEnd,
    session: session ? session.responseEnd : null,
    api: rest.length ? Math.max(...rest.map((e) => e.responseEnd)) : null,
    listDom: window.__bench.listDom,
    listPainted: window.__bench.listPainted,
    submit: window.__bench.submit ?? null,
  };
}
"""

OPEN_JS = """
([pk, newest]) => {
  const b = window.__bench;
  const fetch = performance.getEntriesByType('resource').find(
    (e) => e.name.includes(`/conversations/${pk}/messages?limit=`)
      && !e.name.includes('before_sent_at'));
  const s = document.querySelector('.messages').getBoundingClientRect();
  const li = document.querySelector(`li.msg[data-id="${newest}"]`).getBoundingClientRect();
  return {
    click: b.click, dom: b.dom, painted: b.painted,
    fetchStart: fetch ? fetch.startTime : null, fetchEnd: fetch ? fetch.responseEnd : null,
    visible: li.bottom <= s.bottom + 1 && li.top >= s.top - 1 && li.height > 0,
    messages: document.querySelectorAll('li.msg').length,
  };
}
"""

SCROLL_JS = """
async ([seconds, step]) => {
  const s = document.querySelector('.messages');
  const list = s.querySelector('.message-list');
  const msgs = () => list.querySelectorAll('li.msg').length;
  const before = msgs();
  const inserts = [];
  let children = list.childElementCount;
  const watch = new MutationObserver(() => {
    if (list.childElementCount > children) {
      children = list.childElementCount;
      inserts.push(performance.now());
    }
  });
  watch.observe(list, { childList: true });
  const deltas = [];
  let atTop = 0;
  const began = performance.now();
  await new Promise((resolve) => {
    let last = null;
    const frame = (ts) => {
      if (last !== null) deltas.push(ts - last);
      last = ts;
      if (step < 0 && s.scrollTop <= 0) atTop += 1;
      s.scrollTop += step;
      if (ts - began < seconds * 1000) requestAnimationFrame(frame);
      else resolve();
    };
    requestAnimationFrame(frame);
  });
  watch.disconnect();
  const fetches = performance.getEntriesByType('resource')
    .filter((e) => e.name.includes('before_sent_at') && e.startTime >= began)
    .map((e) => e.startTime);
  return { deltas, atTop, inserts, fetches, loaded: msgs() - before };
}
"""

WALK_JS = """
async ([until, capMs]) => {
  const s = document.querySelector('.messages');
  const list = s.querySelector('.message-list');
  const top = s.querySelector('.history-top');
  const msgs = () => list.querySelectorAll('li.msg').length;
  const done = () => top.textContent.includes('beginning');
  const frameDone = () => new Promise((resolve) => requestAnimationFrame(() => {
    const channel = new MessageChannel();
    channel.port1.onmessage = resolve;
    channel.port2.postMessage(null);
  }));
  const pages = [];
  const began = performance.now();
  let count = msgs();
  let stuck = false;
  while (count < until && !done() && performance.now() - began < capMs) {
    const children = list.childElementCount;
    const t = performance.now();
    s.scrollTop = 0;
    const changed = await new Promise((resolve) => {
      const timer = setTimeout(() => { watch.disconnect(); resolve(false); }, 15000);
      const watch = new MutationObserver(() => {
        if (list.childElementCount !== children || done()) {
          clearTimeout(timer);
          watch.disconnect();
          resolve(true);
        }
      });
      watch.observe(s, { childList: true, subtree: true });
    });
    if (!changed) { stuck = true; break; }
    const inserted = performance.now() - t;
    await frameDone();
    count = msgs();
    pages.push([count, inserted, performance.now() - t]);
  }
  return { pages, seconds: (performance.now() - began) / 1000, count, done: done(), stuck };
}
"""

#: A clone of the page without its scripts (for the static anchors).
SNAPSHOT_JS = """
() => {
  const doc = document.documentElement.cloneNode(true);
  for (const el of doc.querySelectorAll('script, link[rel=modulepreload]')) el.remove();
  return '<!doctype html>\\n' + doc.outerHTML;
}
"""

ANCHOR_CLICK_JS = """
<script>
document.querySelector('#conv-list button.conv').addEventListener('click', () => {
  const chat = document.querySelector('section.chat');
  chat.innerHTML = document.getElementById('bench-chat').innerHTML;
  document.querySelector('.layout').dataset.pane = 'chat';
  const s = chat.querySelector('.messages');
  s.scrollTop = s.scrollHeight;
});
</script>
"""


@dataclass
class Anchors:
    static_list: Path
    insert_chat: Path


def make_anchors(tmp: Path, list_html: str, chat_html: str) -> Anchors:
    css = (WEB_DIR / "style.css").read_text()
    shutil.copy(WEB_DIR / "icon.svg", tmp / "icon.svg")
    link = re.compile(r'<link rel="stylesheet" href="style.css">')
    if not link.search(list_html):
        raise BenchError("the captured page has no stylesheet link to inline")
    page = link.sub(lambda _: f"<style>{css}</style>", list_html)
    static_list = tmp / "anchor-list.html"
    static_list.write_text(page)
    template = f'<template id="bench-chat">{chat_html}</template>{ANCHOR_CLICK_JS}'
    insert_chat = tmp / "anchor-open.html"
    insert_chat.write_text(page.replace("</body>", template + "</body>"))
    return Anchors(static_list, insert_chat)


# -- measurements -----------------------------------------------------------------------------


@dataclass
class Startup:
    node: float  # s: spawn -> login URL
    browser: float  # s: goto -> list painted (or the unlock screen, for locked)
    unlock: float = 0.0  # s, locked only: submit -> list painted (in the page)
    page: dict[str, Any] = field(default_factory=dict)  # in-page times, ms

    @property
    def total(self) -> float:
        return self.node + self.browser + self.unlock


@dataclass
class OpenRun:
    painted: float  # ms: click event -> newest messages painted
    dom: float
    fetch_start: float | None
    fetch_end: float | None
    python: float  # ms: Playwright's click() call -> paint seen from Python


@dataclass
class ScrollRun:
    deltas: list[float]
    at_top: int
    page_loads: list[float]
    loaded: int


class Bench:
    def __init__(self, browser: Any, seeded: Seeded, relay: str) -> None:
        self.browser = browser
        self.seeded = seeded
        self.relay = relay
        self.errors: list[str] = []
        self.snapshot: tuple[str, str] | None = None

    def page(self) -> tuple[Any, Any]:
        context = self.browser.new_context(viewport=VIEWPORT)
        context.add_init_script(INIT_JS)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        wait_quiet(5.0, 0.2)  # the new tab idle, the previous measurement's processes gone
        return context, page

    def wait_list(self, page: Any) -> None:
        page.wait_for_function("() => window.__bench.listPainted", polling="raf")

    def check_clickable(self, page: Any) -> None:
        entries = page.locator("#conv-list button.conv")
        if entries.count() != CONVERSATIONS:
            raise BenchError(f"the list shows {entries.count()} conversations")
        entries.nth(CONVERSATIONS - 1).click(trial=True)

    # 1. start-up

    def startup(self, home: Path, *, relay: bool = True, locked: bool = False) -> Startup:
        context, page = self.page()
        node = None
        try:
            node = start_node(home, self.relay if relay else None, passphrase=not locked)
            began = time.perf_counter()
            page.goto(node.url, wait_until="commit")
            if locked:
                box = page.get_by_label("Passphrase", exact=True)
                box.wait_for(state="visible")
                browser = time.perf_counter() - began
                box.fill(PASSPHRASE)
                box.press("Enter")
                self.wait_list(page)
            else:
                self.wait_list(page)
                browser = time.perf_counter() - began
            times = page.evaluate(STARTUP_JS)
            self.check_clickable(page)
            unlock = (times["listPainted"] - times["submit"]) / 1000 if locked else 0.0
            return Startup(node.started, browser, unlock, times)
        finally:
            context.close()
            if node is not None:
                node.stop()

    def startup_and_open(self, home: Path, scroll: bool) -> tuple[Startup, OpenRun, ScrollRun]:
        """Case 1 (unlocked), then opening the big conversation in the same tab."""
        context, page = self.page()
        node = None
        try:
            node = start_node(home, self.relay, passphrase=True)
            began = time.perf_counter()
            page.goto(node.url, wait_until="commit")
            self.wait_list(page)
            startup = Startup(node.started, time.perf_counter() - began)
            startup.page = page.evaluate(STARTUP_JS)
            self.check_clickable(page)
            list_html = page.evaluate(SNAPSHOT_JS) if self.snapshot is None else ""
            page.wait_for_timeout(500)
            opened = self.open(page)
            if self.snapshot is None:
                chat = page.evaluate("() => document.querySelector('section.chat').innerHTML")
                self.snapshot = (list_html, chat)
            scrolled = self.scroll(page, -SCROLL_STEP, SCROLL_SECONDS) if scroll else None
            return startup, opened, scrolled  # type: ignore[return-value]
        finally:
            context.close()
            if node is not None:
                node.stop()

    def probe(self, home: Path) -> dict[str, float]:
        """One start of the probed ``xchat up`` (unlocked), for the node part's breakdown."""
        wait_quiet(5.0, 0.2)
        node = start_node(home, self.relay, passphrase=True, probe=True)
        node.stop()
        if not node.probe:
            raise BenchError("the probed node printed no time stamps")
        return node.probe

    # 2. open

    def open(self, page: Any) -> OpenRun:
        page.evaluate("(newest) => window.__bench.armOpen(newest)", self.seeded.newest)
        entry = page.locator(f'#conv-list button.conv[data-pk="{self.seeded.big}"]')
        began = time.perf_counter()
        entry.click()
        page.wait_for_function("() => window.__bench.painted", polling="raf")
        python = (time.perf_counter() - began) * 1000
        got = page.evaluate(OPEN_JS, [self.seeded.big, self.seeded.newest])
        if not got["visible"] or got["messages"] != PAGE:
            raise BenchError(f"the conversation did not open as expected: {got}")
        click = got["click"]

        def since(key: str) -> float | None:
            return None if got[key] is None else got[key] - click

        page.mouse.move(VIEWPORT["width"] * 0.65, VIEWPORT["height"] / 2)  # over the messages
        return OpenRun(
            got["painted"] - click,
            got["dom"] - click,
            since("fetchStart"),
            since("fetchEnd"),
            python,
        )

    # 3. scroll

    def scroll(self, page: Any, step: int, seconds: float) -> ScrollRun:
        got = page.evaluate(SCROLL_JS, [seconds, step])
        loads = [
            insert - start for start, insert in zip(got["fetches"], got["inserts"], strict=False)
        ]
        return ScrollRun(got["deltas"], got["atTop"], loads, got["loaded"])

    # anchors

    def anchor_list(self, anchors: Anchors) -> float:
        context, page = self.page()
        try:
            page.goto(anchors.static_list.as_uri(), wait_until="commit")
            self.wait_list(page)
            return float(page.evaluate("() => window.__bench.listPainted"))
        finally:
            context.close()

    def anchor_open(self, anchors: Anchors) -> float:
        context, page = self.page()
        try:
            page.goto(anchors.insert_chat.as_uri(), wait_until="commit")
            self.wait_list(page)
            page.wait_for_timeout(200)
            page.evaluate("(newest) => window.__bench.armOpen(newest)", self.seeded.newest)
            page.locator("#conv-list button.conv").first.click()
            page.wait_for_function("() => window.__bench.painted", polling="raf")
            got = page.evaluate(OPEN_JS, [self.seeded.big, self.seeded.newest])
            if not got["visible"]:
                raise BenchError("the anchor's newest message is not visible")
            return float(got["painted"] - got["click"])
        finally:
            context.close()

    # 4. the whole history, with traces

    def walk(self, home: Path, until: int, cap: float) -> dict[str, Any]:
        context, page = self.page()
        node = None
        try:
            node = start_node(home, self.relay, passphrase=True)
            page.goto(node.url, wait_until="commit")
            self.wait_list(page)
            page.wait_for_timeout(500)
            cdp = context.new_cdp_session(page)
            cdp.send("Performance.enable")
            self.browser.start_tracing(page=page, categories=TRACE_CATEGORIES)
            traced_open = self.open(page)
            open_trace = self.browser.stop_tracing()
            before_last = max(PAGE, until - PAGE)
            walked = page.evaluate(WALK_JS, [before_last, cap * 1000])
            pages = list(walked["pages"])
            last_trace = None
            last: dict[str, Any] = {}
            if not walked["stuck"] and not walked["done"]:
                # the next page (the last one, unless the cap stopped the walk), traced
                self.browser.start_tracing(page=page, categories=TRACE_CATEGORIES)
                last = page.evaluate(WALK_JS, [walked["count"] + 1, 30_000])
                last_trace = self.browser.stop_tracing()
                pages += last["pages"]
            count = page.evaluate("() => document.querySelectorAll('li.msg').length")
            if count >= BIG and not walked["stuck"] and not last.get("stuck"):
                # one more jump: the empty page after the oldest, and the beginning shown
                page.evaluate(WALK_JS, [BIG + 1, 15_000])
            metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
            scrolled = self.scroll(page, SCROLL_STEP, 1.0)
            self.browser.start_tracing(page=page, categories=TRACE_CATEGORIES)
            traced_scroll = self.scroll(page, SCROLL_STEP, 0.5)
            scroll_trace = self.browser.stop_tracing()
            begin = page.locator(".history-top").inner_text()
            return {
                "pages": pages,
                "seconds": walked["seconds"] + (last.get("seconds") or 0.0),
                "count": count,
                "beginning": "beginning" in begin,
                "capped": walked["seconds"] >= cap,
                "stuck": walked["stuck"] or last.get("stuck", False),
                "nodes": metrics.get("Nodes"),
                "heap": metrics.get("JSHeapUsedSize"),
                "scroll": scrolled,
                "open": traced_open,
                "open_trace": main_thread(open_trace),
                "last_trace": main_thread(last_trace) if last_trace else None,
                "scroll_frames": len(traced_scroll.deltas),
                "scroll_trace": main_thread(scroll_trace),
            }
        finally:
            context.close()
            if node is not None:
                node.stop()


# -- Chromium traces ---------------------------------------------------------------------------

BUCKETS = (
    ("GC", ("GC", "Scavenge", "MarkCompact")),
    ("hit testing", ("HitTest",)),
    ("compositing", ("Composit", "Commit")),
    ("pre-paint", ("PrePaint", "CullRect")),
    ("paint", ("Paint",)),
    ("style", ("UpdateLayoutTree", "Style", "style")),
    ("layout", ("Layout", "layout")),
    ("parse HTML", ("ParseHTML", "Parse")),
    (
        "script",
        (
            "FunctionCall",
            "EvaluateScript",
            "v8",
            "V8",
            "Microtask",
            "EventDispatch",
            "FireAnimationFrame",
            "TimerFire",
            "Script",
            "Intersection",
            "MutationObserver",
        ),
    ),
)


def _bucket(name: str) -> str:
    for bucket, marks in BUCKETS:
        if any(mark in name for mark in marks):
            return bucket
    return "other"


def main_thread(trace: bytes) -> dict[str, float]:
    """Self time (ms) of the renderer main threads' trace events, grouped by kind."""
    events = json.loads(trace)["traceEvents"]
    mains = {
        (e["pid"], e["tid"])
        for e in events
        if e.get("ph") == "M"
        and e.get("name") == "thread_name"
        and e.get("args", {}).get("name") == "CrRendererMain"
    }
    spans: dict[tuple[int, int], list[tuple[float, float, str]]] = {}
    for e in events:
        key = (e.get("pid"), e.get("tid"))
        if e.get("ph") == "X" and key in mains and e.get("dur"):
            spans.setdefault(key, []).append((float(e["ts"]), float(e["dur"]), e["name"]))
    totals: Counter[str] = Counter()
    for items in spans.values():
        items.sort(key=lambda s: (s[0], -s[1]))
        stack: list[list[Any]] = []  # [end, self, name]
        for ts, dur, name in items:
            while stack and stack[-1][0] <= ts:
                _, own, done_name = stack.pop()
                totals[_bucket(done_name)] += own
            if stack:
                stack[-1][1] -= min(dur, stack[-1][0] - ts)
            stack.append([ts + dur, dur, name])
        for _, own, name in stack:
            totals[_bucket(name)] += own
    return {k: v / 1000 for k, v in totals.items() if v > 0}


# -- report ---------------------------------------------------------------------------------


def med(values: list[float]) -> float:
    return statistics.median(values)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def mm(values: list[float], scale: float = 1000.0, width: int = 6) -> str:
    """median / max, in ms by default."""
    return f"{med(values) * scale:>{width},.0f} / {max(values) * scale:>{width},.0f}"


def trace_line(totals: dict[str, float] | None) -> str:
    if not totals:
        return "(no trace)"
    busy = sum(totals.values())
    parts = [f"{k} {v:,.0f}" for k, v in sorted(totals.items(), key=lambda kv: -kv[1]) if v >= 1]
    return f"{busy:,.0f} ms busy: " + ", ".join(parts)


def run(args: argparse.Namespace) -> bool:
    from playwright.sync_api import sync_playwright

    runs = args.runs or (2 if args.quick else 5)
    until = 2_000 if args.quick else BIG
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="xchat-web-") as root:
        tmp = Path(root)
        home = make_home(tmp / "home")
        seeded = seed(home, rng)
        default_home = tmp / "home-default-kdf"
        shutil.copytree(home.path, default_home)
        Home(default_home).change_passphrase(PASSPHRASE, PASSPHRASE, os.urandom, DEFAULT_KDF)
        embedded_home = tmp / "home-no-relay"
        shutil.copytree(home.path, embedded_home)
        _relay, relay_url = start_relay(tmp, "relay")

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
            print(f"  Chromium {browser.version}, Playwright {metadata.version('playwright')}")
            print(
                f"  seeded {CONVERSATIONS} contacts, {seeded.messages:,} messages (one"
                f" conversation of {BIG:,}) in {seeded.seconds:.2f} s; node.db"
                f" {seeded.db_bytes / 2**20:.1f} MiB"
            )
            print(f"  {runs} runs of each case, interleaved; median / max", flush=True)
            bench = Bench(browser, seeded, relay_url)
            cases: dict[str, list[Startup]] = {
                "fast": [],
                "default": [],
                "locked": [],
                "embedded": [],
            }
            opens: list[OpenRun] = []
            scrolls: list[ScrollRun] = []
            anchor_list: list[float] = []
            anchor_open: list[float] = []
            anchors: Anchors | None = None
            floors: dict[str, list[float]] = {"pass": []}
            probes: dict[str, list[dict[str, float]]] = {"fast": [], "default": []}
            for i in range(runs):
                waited = wait_quiet()
                if waited >= 1:
                    print(f"  (waited {waited:.0f} s for the machine to quieten)", flush=True)
                startup, opened, scrolled = bench.startup_and_open(home.path, scroll=True)
                cases["fast"].append(startup)
                opens.append(opened)
                scrolls.append(scrolled)
                if anchors is None:
                    assert bench.snapshot is not None
                    anchors = make_anchors(tmp, *bench.snapshot)
                anchor_list.append(bench.anchor_list(anchors))
                anchor_open.append(bench.anchor_open(anchors))
                cases["default"].append(bench.startup(default_home))
                cases["locked"].append(bench.startup(default_home, locked=True))
                cases["embedded"].append(bench.startup(embedded_home, relay=False))
                wait_quiet(5.0, 0.2)
                floors["pass"].append(python_floor("pass"))
                for key, path in (("fast", home.path), ("default", default_home)):
                    probes[key].append(bench.probe(path))
                print(f"  run {i + 1}/{runs} done", file=sys.stderr, flush=True)
            print("  walking the whole history ...", file=sys.stderr, flush=True)
            waited = wait_quiet()
            if waited >= 1:
                print(f"  (waited {waited:.0f} s for the machine to quieten)", flush=True)
            walk = bench.walk(home.path, until, args.walk_cap)
            browser.close()
        stop_all(2.0)
        if bench.errors:
            print(f"\nerrors in the page: {bench.errors[:5]}")
        return report(runs, floors, probes, cases, opens, scrolls, anchor_list, anchor_open, walk)


def report(
    runs: int,
    floors: dict[str, list[float]],
    probes: dict[str, list[dict[str, float]]],
    cases: dict[str, list[Startup]],
    opens: list[OpenRun],
    scrolls: list[ScrollRun],
    anchor_list: list[float],
    anchor_open: list[float],
    walk: dict[str, Any],
) -> bool:
    print()
    print(
        "1. From spawning `xchat up` to 100 conversations painted and clickable (ms, median / max)"
    )
    print(f"{'case':<48} {'node':>15} {'browser':>15} {'unlock':>15} {'total':>15}")
    print("-" * 112)
    titles = {
        "fast": "unlocked (XCHAT_PASSPHRASE), test KDF",
        "default": "unlocked, default KDF (Argon2id 128 MiB)",
        "locked": "locked, passphrase typed in X Chat Web, default",
        "embedded": "no relay configured (embedded relay), test KDF",
    }
    for key, title in titles.items():
        rows = cases[key]
        unlock = mm([r.unlock for r in rows]) if key == "locked" else f"{'-':>15}"
        print(
            f"{title:<48} {mm([r.node for r in rows])} {mm([r.browser for r in rows])} "
            f"{unlock} {mm([r.total for r in rows])}"
        )
    print("-" * 112)
    print(
        "  locked: browser = goto -> unlock screen shown; unlock = the form's submit event ->"
        " list painted (in the page)"
    )
    fast = cases["fast"]
    print("  node part, where it goes (a probed `xchat up`, see NODE_PROBE; median ms from spawn):")
    for key, label in (("fast", "test KDF"), ("default", "default KDF")):
        rows = probes[key]

        def stamp(name: str, rows: list[dict[str, float]] = rows) -> float:
            return med([r[name] for r in rows]) * 1000

        print(
            f"    {label + ':':<13} modules imported {stamp('imports'):.0f} (an empty"
            f" `python -c pass`: {med(floors['pass']) * 1000:.0f}); unlock (Argon2id)"
            f" {stamp('unlock'):.0f}; then store, relay, bundle, HTTP server"
            f" {stamp('rest'):.0f}; URL printed {stamp('url'):.0f}"
        )
    marks = (
        ("document", "document"),
        ("dcl", "modules run (DOMContentLoaded)"),
        ("session", "/api/session answered"),
        ("api", "5 start-up API calls answered"),
        ("listDom", "100 entries in the DOM"),
        ("listPainted", "painted"),
    )
    print("  browser part, in the page from navigation start (median ms):")
    print(
        "    "
        + "; ".join(
            f"{label} {med([r.page[k] for r in fast if r.page.get(k) is not None]):.0f}"
            for k, label in marks
        )
    )
    app_list = [r.page["listPainted"] for r in fast]
    ratio_list = med(app_list) / med(anchor_list)
    print(
        f"  anchor: the same list screen as a static page (file://), navigation start ->"
        f" painted: {mm(anchor_list, 1)} ms; X Chat Web {mm(app_list, 1)}"
        f" ms; X Chat Web / anchor {ratio_list:.1f}x"
    )

    print()
    print(
        "2. Opening the 10,000-message conversation: click -> newest messages painted (in the page)"
    )
    painted = [o.painted / 1000 for o in opens]
    open_ratio = med(painted) / (med(anchor_open) / 1000)
    print(f"  X Chat Web:                                   {mm(painted)} ms")
    print(
        "  anchor, the same 50 messages' markup inserted on click: "
        f"{mm(anchor_open, 1)} ms; X Chat Web / anchor {open_ratio:.1f}x"
    )
    starts = [o.fetch_start for o in opens if o.fetch_start is not None]
    ends = [o.fetch_end for o in opens if o.fetch_end is not None]
    print(
        f"  breakdown (median ms after the click): request sent {med(starts):.0f}, answered"
        f" {med(ends):.0f}, 50 messages in the DOM {med([o.dom for o in opens]):.0f}, painted"
        f" {med([o.painted for o in opens]):.0f}; Playwright click() -> paint seen"
        f" {med([o.python for o in opens]):.0f}"
    )

    print()
    print(
        f"3. Scrolling back from the newest, {SCROLL_STEP} px a frame for {SCROLL_SECONDS:g} s,"
        " right after opening (all runs pooled)"
    )
    deltas = [d for s in scrolls for d in s.deltas]
    loads = [x for s in scrolls for x in s.page_loads]
    print(
        f"  frame interval p50 {pct(deltas, 0.5):.1f} ms, p99 {pct(deltas, 0.99):.1f} ms, max"
        f" {max(deltas):.0f} ms; frames over 50 ms: {sum(d > 50 for d in deltas)} of"
        f" {len(deltas)}; frames stuck at the top: {sum(s.at_top for s in scrolls)}"
    )
    if loads:
        print(
            f"  older pages loaded: {len(loads)} ({med([s.loaded for s in scrolls]):.0f} messages"
            f" a run); request -> in the DOM: median {med(loads):.0f} ms, max {max(loads):.0f} ms"
        )

    print()
    pages = walk["pages"]
    print(
        f"4. The whole history, page after page (jump to the top, wait for the older page"
        f" painted): {walk['count']:,} messages loaded in {walk['seconds']:.1f} s"
        f"{', beginning shown' if walk['beginning'] else ''}{', STUCK' if walk['stuck'] else ''}"
        f"{', stopped by --walk-cap' if walk['capped'] else ''}"
    )
    buckets: dict[int, list[float]] = {}
    for count, _inserted, total in pages:
        buckets.setdefault((count - 1) // 1000, []).append(total)
    print(
        "  per page (median ms) with messages loaded: "
        + "; ".join(
            f"{k * 1000:,}-{(k + 1) * 1000:,}: {med(v):.0f}" for k, v in sorted(buckets.items())
        )
    )
    nodes = walk["nodes"]
    heap = walk["heap"]
    sw = walk["scroll"]
    print(
        f"  at the end: {nodes:,.0f} DOM nodes, JS heap {heap / 2**20:.0f} MiB; scrolling"
        f" {SCROLL_STEP} px a frame for 1 s: frame p50 {pct(sw.deltas, 0.5):.1f} ms, p99"
        f" {pct(sw.deltas, 0.99):.1f} ms, max {max(sw.deltas):.0f} ms"
    )
    print(
        f"  main thread, traced open ({walk['open'].painted:.0f} ms traced): "
        + trace_line(walk["open_trace"])
    )
    print(
        f"  main thread, traced scrolling with everything loaded ({walk['scroll_frames']} frames"
        f" in 0.5 s, ~{sum(walk['scroll_trace'].values()) / max(1, walk['scroll_frames']):.0f}"
        " ms busy a frame): " + trace_line(walk["scroll_trace"])
    )
    if walk["last_trace"]:
        last = pages[-1]
        print(
            f"  main thread, traced last page ({last[0]:,} loaded, {last[2]:.0f} ms traced): "
            + trace_line(walk["last_trace"])
        )

    print()
    ok = True
    for key, label in (("fast", "test KDF"), ("default", "default KDF")):
        total = max(r.total for r in cases[key])
        median = med([r.total for r in cases[key]])
        passed = median < TARGET_INTERACTIVE
        ok &= passed
        print(
            f"start-up to interactive, unlocked, {label + ':':<13} median {median * 1000:,.0f} ms"
            f" (max {total * 1000:,.0f})  target < {TARGET_INTERACTIVE * 1000:,.0f} ms"
            f"  {'PASS' if passed else 'FAIL'}"
        )
    median = med(painted)
    passed = median < TARGET_OPEN
    ok &= passed
    print(
        f"open a {BIG:,}-message conversation:        median {median * 1000:,.0f} ms (max"
        f" {max(painted) * 1000:,.0f})  target < {TARGET_OPEN * 1000:,.0f} ms"
        f"  {'PASS' if passed else 'FAIL'}"
    )
    return ok


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="2 runs, walk 2,000 messages")
    parser.add_argument("--runs", type=int, default=0, help="runs of each case (default 5)")
    parser.add_argument(
        "--walk-cap", type=float, default=130.0, help="seconds the history walk may take"
    )
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        raise SystemExit(f"{CHROMIUM} is missing: apt-get install chromium")
    print(
        "X Chat Web in Chromium: start-up to an interactive list, and a 10,000-message conversation"
    )
    print(f"  Python {platform.python_version()} on {platform.machine()}, {cpu_model()}")
    print(
        f"  {os.cpu_count()} cores shared by the node, its relay, Chromium and this process;"
        " Chromium headless, --disable-gpu (software rendering), viewport 1280x800"
    )
    print(f"  xchat from {source()}")
    print(f"  load average before the run: {load()}", flush=True)
    began = time.monotonic()
    ok = False
    try:
        ok = run(args)
    finally:
        stop_all(2.0)
    print(f"\nwhole run: {time.monotonic() - began:.0f} s; load average after: {load()}")
    print(f"overall: {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
