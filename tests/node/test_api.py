"""The local API against its OpenAPI document, its guards, and the CLI on top of it."""

from __future__ import annotations

import stat
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from tests.node.nodes import PASSPHRASE, NodeProcess, run_cli, wait_for
from tests.relay.conftest import RelayProcess
from xchat.cli.client import printable
from xchat.home import Home
from xchat.node.api import openapi


def _raw(
    node: NodeProcess,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    token: str | None = "default",
) -> tuple[int, Any]:
    client = node.api
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if token == "default":
        token = client.token
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        client.url + path, data=body, method=method, headers=all_headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


class Checker:
    """Validates responses against the schemas of the served OpenAPI document."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def check(self, path: str, method: str, status: int, body: Any) -> None:
        operation = self.document["paths"][path][method.lower()]
        response = operation["responses"][str(status)]
        schema = response["content"]["application/json"]["schema"]
        resolver_doc = {**schema, "components": self.document["components"]}
        jsonschema.validate(body, resolver_doc, cls=jsonschema.Draft202012Validator)


@pytest.fixture
def pair(
    node_factory: Callable[..., NodeProcess], relays: Callable[..., RelayProcess]
) -> tuple[NodeProcess, NodeProcess]:
    url = relays().url
    return node_factory((url,)), node_factory((url,))


def test_every_response_matches_the_openapi_document(pair: tuple[NodeProcess, NodeProcess]) -> None:
    alice, bob = pair
    status, document = _raw(alice, "GET", "/api/openapi.json", token=None)
    assert status == 200
    assert document == openapi.document()
    check = Checker(document).check
    jsonschema.Draft202012Validator.check_schema(document["components"]["schemas"]["Message"])

    def call(method: str, path: str, template: str, body: Any = None, expect: int = 200) -> Any:
        code, answer = _raw(
            alice, method, path, body=orjson.dumps(body) if body is not None else None
        )
        assert code == expect, answer
        check(template, method, code, answer)
        return answer

    peer = bob.pubkey
    call("GET", "/api/identity", "/api/identity")
    call("GET", "/api/status", "/api/status")
    call("POST", "/api/contacts", "/api/contacts", {"address": bob.card(), "name": "Bob"}, 201)
    call("GET", "/api/contacts", "/api/contacts")
    call("PATCH", f"/api/contacts/{peer}", "/api/contacts/{pubkey}", {"name": "Bobby"})
    call("GET", f"/api/contacts/{peer}/safety-number", "/api/contacts/{pubkey}/safety-number")
    verified = call(
        "POST", f"/api/contacts/{peer}/verify", "/api/contacts/{pubkey}/verify", {"verified": True}
    )
    assert verified["verified"] is True
    listed = call("GET", "/api/contacts", "/api/contacts")[0]
    assert listed["verified"] is True
    assert listed["verification_changed"] is False
    sent = call(
        "POST",
        f"/api/conversations/{peer}/messages",
        "/api/conversations/{id}/messages",
        {"text": "hi"},
        201,
    )
    reply = call(
        "POST",
        f"/api/conversations/{peer}/messages",
        "/api/conversations/{id}/messages",
        {"text": "re", "reply_to": sent["id"]},
        201,
    )
    assert reply["reply_to"] == sent["id"]
    page = call(
        "GET", f"/api/conversations/{peer}/messages?limit=1", "/api/conversations/{id}/messages"
    )
    older = call(
        "GET",
        f"/api/conversations/{peer}/messages?limit=5&before_sent_at={page[0]['sent_at']}"
        f"&before_seq={page[0]['seq']}",
        "/api/conversations/{id}/messages",
    )
    assert [m["id"] for m in page + older] == [reply["id"], sent["id"]]
    call("GET", "/api/conversations", "/api/conversations")
    call("POST", f"/api/conversations/{peer}/read", "/api/conversations/{id}/read")
    found = call("GET", "/api/search?q=HI", "/api/search")
    assert [m["id"] for m in found] == [sent["id"]]
    call("GET", f"/api/messages/{sent['id']}", "/api/messages/{id}")
    edited = call("PATCH", f"/api/messages/{sent['id']}", "/api/messages/{id}", {"text": "hey"})
    assert edited["body"] == "hey"
    assert edited["edited_at"]
    call(
        "POST",
        f"/api/messages/{sent['id']}/reactions",
        "/api/messages/{id}/reactions",
        {"emoji": "👍"},
    )
    deleted = call("DELETE", f"/api/messages/{reply['id']}", "/api/messages/{id}")
    assert deleted["deleted"] is True
    assert deleted["body"] == ""
    code, _ = _raw(alice, "POST", f"/api/messages/{sent['id']}/retry")
    assert code == 400  # only failed messages can be retried
    call("GET", "/api/relays", "/api/relays")
    call("GET", "/api/settings", "/api/settings")
    assert call("PATCH", "/api/settings", "/api/settings", {"read_receipts": False}) == {
        "read_receipts": False
    }

    # Bob sees the edit, the reaction and the deletion.
    def bob_view() -> list[dict[str, Any]]:
        return bob.messages(alice.pubkey)

    wait_for(
        lambda: (
            [(m["body"], m["deleted"], m["reactions"]) for m in bob_view()]
            == [("hey", False, {alice.pubkey: "👍"}), ("", True, {})]
        ),
        what="edit and delete at bob",
    )
    # every documented path and method is served
    for path, methods in document["paths"].items():
        concrete = path.replace("{pubkey}", peer).replace("{id}", sent["id"])
        for method in methods:
            if method == "get" and path == "/api/stream":
                continue
            code, _ = _raw(alice, "OPTIONS" if False else method.upper(), concrete, body=b"{}")
            assert code not in (404, 405), (method, path)


def test_guards_host_origin_token(pair: tuple[NodeProcess, NodeProcess]) -> None:
    alice, _ = pair
    assert _raw(alice, "GET", "/api/status", token=None)[0] == 401
    assert _raw(alice, "GET", "/api/status", token="wrong")[0] == 401
    assert _raw(alice, "GET", "/api/stream", token=None)[0] == 401
    rebinding = _raw(alice, "GET", "/api/status", headers={"Host": "evil.example:80"})
    assert rebinding[0] == 403
    assert rebinding[1]["error"]["code"] == "forbidden_host"
    cross = _raw(
        alice, "POST", "/api/contacts", body=b"{}", headers={"Origin": "http://evil.example"}
    )
    assert cross[0] == 403
    assert cross[1]["error"]["code"] == "forbidden_origin"
    port = alice.api.url.rsplit(":", 1)[1]
    same = _raw(alice, "GET", "/api/status", headers={"Origin": f"http://localhost:{port}"})
    assert same[0] == 200
    runtime = alice.home.path / "node.json"
    assert stat.S_IMODE(runtime.stat().st_mode) == 0o600
    # the login URL carries the token (that is its purpose); nothing else secret is printed
    assert PASSPHRASE not in "".join(alice.output)
    assert alice.home.permissions_ok()


def test_bad_input_gets_clear_errors(pair: tuple[NodeProcess, NodeProcess]) -> None:
    alice, bob = pair
    cases = [
        ("POST", "/api/contacts", b"not json", "not JSON"),
        ("POST", "/api/contacts", b"[1]", "JSON object"),
        ("POST", "/api/contacts", b'{"address": "npub1qqqq"}', "not a contact address"),
        ("POST", "/api/contacts", orjson.dumps({"address": alice.npub}), "your own"),
        ("POST", f"/api/conversations/{bob.pubkey}/messages", b'{"text": "x"}', "not one of"),
        ("POST", f"/api/conversations/{'zz' * 32}/messages", b'{"text": "x"}', "64-hex"),
        ("POST", "/api/contacts", b'{"address": 5}', "must be a str"),
        ("GET", f"/api/conversations/{bob.pubkey}/messages?limit=x", None, "integers"),
        ("POST", "/api/relays", b'{"url": "http://x"}', "not a relay address"),
        ("POST", "/api/contacts", b"{" + b" " * 300_000 + b"}", "too large"),
    ]
    for method, path, body, fragment in cases:
        code, answer = _raw(alice, method, path, body=body)
        assert code in (400, 413), (path, answer)
        if code == 400:
            assert fragment.lower() in answer["error"]["message"].lower(), (fragment, answer)
    alice.add(bob)
    long = "x" * 40_000
    code, answer = _raw(
        alice,
        "POST",
        f"/api/conversations/{bob.pubkey}/messages",
        body=orjson.dumps({"text": long}),
    )
    assert code == 400
    assert "longer than" in answer["error"]["message"]
    assert alice.status()["relays"]  # the node still serves


def test_cli_is_a_thin_client(pair: tuple[NodeProcess, NodeProcess]) -> None:
    alice, bob = pair
    added = run_cli(alice, "contacts", "add", bob.card(), "--name", "Bob", "--json")
    assert added.returncode == 0, added.stderr
    assert orjson.loads(added.stdout)["name"] == "Bob"
    assert run_cli(bob, "contacts", "add", alice.npub, "--name", "Alice").returncode == 0
    listed = orjson.loads(run_cli(alice, "contacts", "--json").stdout)
    assert [c["name"] for c in listed] == ["Bob"]
    sent = run_cli(alice, "send", "Bob", "hello", "from", "the", "cli", "--json")
    assert sent.returncode == 0, sent.stderr
    message = orjson.loads(sent.stdout)
    assert message["body"] == "hello from the cli"
    assert message["state"] == "queued"
    wait_for(
        lambda: [m["body"] for m in bob.messages(alice.pubkey)] == ["hello from the cli"],
        what="cli message at bob",
    )
    # Terminal escapes from a peer are shown escaped, never interpreted.
    bob.send(alice.pubkey, "\x1b[2J\x1b]0;pwned\x07red\u202eevil")
    wait_for(lambda: len(alice.messages(bob.pubkey)) == 2, what="escape message")
    shown = run_cli(alice, "messages", "Bob")
    assert shown.returncode == 0
    assert "\x1b" not in shown.stdout
    assert "\u202e" not in shown.stdout
    assert "\\x1b[2J" in shown.stdout
    assert "\\u202e" in shown.stdout
    as_json = orjson.loads(run_cli(alice, "messages", bob.npub, "--json").stdout)
    assert next(m["body"] for m in as_json) == "hello from the cli"  # oldest first
    status = orjson.loads(run_cli(alice, "status", "--json").stdout)
    assert status["npub"] == alice.npub
    verify = run_cli(alice, "verify", "Bob")
    assert verify.returncode == 0
    assert "Safety number" in verify.stdout
    relays = run_cli(alice, "relays")
    assert "connected" in relays.stdout
    unknown = run_cli(alice, "send", "Nobody", "hi")
    assert unknown.returncode == 1
    assert "no contact by that name" in unknown.stderr
    # chat: history, a line typed is sent
    chat = run_cli(alice, "chat", "Bob", stdin="typed in chat\n")
    assert chat.returncode == 0, chat.stderr
    assert "hello from the cli" in chat.stdout
    assert "\x1b" not in chat.stdout
    wait_for(lambda: bob.messages(alice.pubkey)[-1]["body"] == "typed in chat", what="chat line")
    alice.stop()
    down = run_cli(alice, "status")
    assert down.returncode == 1
    assert "not running" in down.stderr
    assert "xchat up" in down.stderr


def test_up_without_relays_starts_an_embedded_relay(
    node_factory: Callable[..., NodeProcess],
) -> None:
    node = node_factory(())
    status = node.status()
    embedded = status["embedded_relay"]
    assert embedded
    assert embedded.startswith("ws://127.0.0.1:")
    wait_for(
        lambda: any(r["state"] == "connected" for r in node.status()["relays"]),
        what="connected to the embedded relay",
    )
    assert node.call("GET", "/api/identity")["relays"] == [embedded]
    assert node.stop() == 0
    assert PASSPHRASE not in "".join(node.output)


def test_printable_escapes_controls() -> None:
    assert printable("a\x1b[31mb\nc\u202ed") == "a\\x1b[31mb\nc\\u202ed"
    assert printable("tab\there", multiline=False) == "tab\\x09here"


def _start_bare(path: Path, relay_url: str) -> NodeProcess:
    """``xchat up`` with no passphrase given: X Chat Web would ask for it."""
    node = NodeProcess(Home(path), (relay_url,))
    node.start(env_passphrase=False)
    return node


def test_setup_lock_unlock_through_the_api(
    node_factory: Callable[..., NodeProcess], relays: Callable[..., RelayProcess], tmp_path: Path
) -> None:
    relay = relays().url
    node = _start_bare(tmp_path / "fresh", relay)
    assert node.call("GET", "/api/session") == {"state": "setup", "npub": None}
    code, answer = _raw(node, "GET", "/api/contacts")
    assert code == 423
    assert answer["error"]["code"] == "locked"
    phrase = node.call("POST", "/api/setup/phrase", {})["phrase"]
    assert len(phrase.split()) == 12
    bad = phrase.split()
    bad[3] = "notaword"
    code, answer = _raw(
        node,
        "POST",
        "/api/setup",
        body=orjson.dumps({"phrase": " ".join(bad), "passphrase": PASSPHRASE}),
    )
    assert code == 400
    assert "notaword" in answer["error"]["message"]
    code, answer = _raw(
        node, "POST", "/api/setup", body=orjson.dumps({"phrase": phrase, "passphrase": "short"})
    )
    assert code == 400
    session = node.call("POST", "/api/setup", {"phrase": phrase, "passphrase": PASSPHRASE})
    assert session["state"] == "unlocked"
    assert session["npub"].startswith("npub1")
    assert node.call("GET", "/api/contacts") == []
    wrong = _raw(node, "POST", "/api/phrase", body=orjson.dumps({"passphrase": "wrong one!"}))
    assert wrong[0] == 400
    assert wrong[1]["error"]["code"] == "wrong_passphrase"
    assert node.call("POST", "/api/phrase", {"passphrase": PASSPHRASE}) == {"phrase": phrase}
    assert node.call("POST", "/api/lock")["state"] == "locked"
    assert _raw(node, "GET", "/api/contacts")[0] == 423
    wrong = _raw(node, "POST", "/api/unlock", body=orjson.dumps({"passphrase": "wrong one!"}))
    assert wrong[1]["error"]["code"] == "wrong_passphrase"
    assert node.call("POST", "/api/unlock", {"passphrase": PASSPHRASE})["state"] == "unlocked"
    assert node.call("GET", "/api/identity")["npub"] == session["npub"]
    # the same phrase restores the same identity elsewhere
    other = _start_bare(tmp_path / "restored", relay)
    restored = other.call("POST", "/api/setup", {"phrase": phrase, "passphrase": PASSPHRASE})
    assert restored["npub"] == session["npub"]
    node.stop()
    other.stop()


def test_web_app_is_served_with_a_strict_csp(pair: tuple[NodeProcess, NodeProcess]) -> None:
    alice, _ = pair
    request = urllib.request.Request(alice.api.url + "/")
    with urllib.request.urlopen(request, timeout=10) as response:
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert response.headers["X-Frame-Options"] == "DENY"
    for name in ("../pyproject.toml", ".hidden.js", "nothing.js"):
        code, _ = _raw(alice, "GET", "/" + name, token=None)
        assert code == 404
    qr = urllib.request.Request(
        alice.api.url + "/api/identity/qr.svg",
        headers={"Authorization": f"Bearer {alice.api.token}"},
    )
    with urllib.request.urlopen(qr, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("image/svg+xml")
        assert b"<svg" in response.read()


def test_send_with_a_client_id_is_idempotent(pair: tuple[NodeProcess, NodeProcess]) -> None:
    alice, bob = pair
    alice.add(bob)
    path = f"/api/conversations/{bob.pubkey}/messages"
    body = {"text": "only once", "client_id": "ab" * 16}
    first = alice.call("POST", path, body)
    again = alice.call("POST", path, body)
    assert again["id"] == first["id"] == "ab" * 16
    wait_for(
        lambda: [m["body"] for m in bob.messages(alice.pubkey)] == ["only once"],
        what="the message at bob",
    )
    assert [m["body"] for m in alice.messages(bob.pubkey)] == ["only once"]
    code, _ = _raw(alice, "POST", path, body=orjson.dumps({"text": "x", "client_id": "X"}))
    assert code == 400
    # the token survives a restart: an open tab reconnects
    token = alice.api.token
    alice.stop()
    alice.start()
    assert alice.api.token == token
    assert stat.S_IMODE((alice.home.path / "api-token").stat().st_mode) == 0o600


def test_conversations_are_named_by_their_ids(pair: tuple[NodeProcess, NodeProcess]) -> None:
    """Issue 10: a conversation has an id; the API, contacts and messages use it; the
    contact's key is only an alias; adding a contact again does not rename it."""
    alice, bob = pair
    status, document = _raw(alice, "GET", "/api/openapi.json", token=None)
    check = Checker(document).check
    added = alice.call("POST", "/api/contacts", {"address": bob.card(), "name": "Bob"})
    conv = added["conversation"]
    assert conv is not None
    assert len(conv) == 32
    assert conv != bob.pubkey
    code, again = _raw(
        alice, "POST", "/api/contacts", body=orjson.dumps({"address": bob.card(), "name": "X"})
    )
    assert code == 200
    assert again["already_contact"] is True
    assert again["name"] == "Bob"
    check("/api/contacts", "POST", 200, again)
    listed = alice.call("GET", "/api/conversations")
    assert [(c["id"], c["kind"], c["peer"], c["members"]) for c in listed] == [
        (conv, "direct", bob.pubkey, [bob.pubkey])
    ]
    one = alice.call("GET", f"/api/conversations/{conv}")
    check("/api/conversations/{id}", "GET", 200, one)
    assert one["id"] == conv
    assert one["name"] == "Bob"
    sent = alice.call("POST", f"/api/conversations/{conv}/messages", {"text": "by id"})
    assert sent["conversation"] == conv
    by_alias = alice.call("GET", f"/api/conversations/{bob.pubkey}/messages")
    assert [m["id"] for m in by_alias] == [sent["id"]]
    # the receiver files it under its own id for the conversation, not the sender's
    wait_for(lambda: bool(bob.messages(alice.pubkey)), timeout=30)
    theirs = bob.messages(alice.pubkey)[0]
    bob_conv = bob.call("GET", "/api/conversations")[0]
    assert theirs["conversation"] == bob_conv["id"] != conv
    assert bob_conv["state"] == "request"
    for path, fragment in (
        (f"/api/conversations/{'ab' * 16}/messages", "no such conversation"),
        ("/api/conversations/nope/messages", "32 hex digits"),
    ):
        code, answer = _raw(alice, "GET", path)
        assert code == 400, answer
        assert fragment in answer["error"]["message"].lower(), answer
    for text, fragment in (("   \n\t", "empty"), ("é" * 20_000, "32 kib (32,768 bytes)")):
        code, answer = _raw(
            alice,
            "POST",
            f"/api/conversations/{conv}/messages",
            body=orjson.dumps({"text": text}),
        )
        assert code == 400, answer
        assert fragment in answer["error"]["message"].lower(), answer
        assert answer["error"]["message"].endswith(".")
    status = alice.call("GET", "/api/status")
    check("/api/status", "GET", 200, status)
    assert status["limits"] == {"text_bytes": 32 * 1024}


def test_the_passphrase_changes_and_the_old_one_stops_working(
    pair: tuple[NodeProcess, NodeProcess],
) -> None:
    alice, _ = pair
    code, answer = _raw(
        alice, "POST", "/api/passphrase", body=orjson.dumps({"old": "wrong one!", "new": "x" * 12})
    )
    assert code == 403, answer
    assert answer["error"]["code"] == "wrong_passphrase", answer
    code, answer = _raw(
        alice, "POST", "/api/passphrase", body=orjson.dumps({"old": PASSPHRASE, "new": "short"})
    )
    assert code == 400, answer
    new = "a new and longer passphrase"
    code, _ = _raw_empty(alice, "/api/passphrase", {"old": PASSPHRASE, "new": new})
    assert code == 204
    alice.call("POST", "/api/lock")
    code, answer = _raw(alice, "POST", "/api/unlock", body=orjson.dumps({"passphrase": PASSPHRASE}))
    assert code == 400
    assert answer["error"]["code"] == "wrong_passphrase"
    assert alice.call("POST", "/api/unlock", {"passphrase": new})["state"] == "unlocked"


def test_default_relays_come_from_the_environment(
    node_factory: Callable[..., NodeProcess], relays: Callable[..., RelayProcess]
) -> None:
    """The default public set is offered as documented; tests put local relays in its
    place (nothing in the suite reaches the internet)."""
    stand_ins = [relays().url, relays().url]
    node = node_factory((), env={"XCHAT_DEFAULT_RELAYS": ",".join(stand_ins)})
    answer = node.call("GET", "/api/relays/defaults")
    assert answer["relays"] == stand_ins
    assert "never what is said" in answer["about"]


def _raw_empty(node: NodeProcess, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
    request = urllib.request.Request(
        node.api.url + path,
        data=orjson.dumps(body),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {node.api.token}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.read()
