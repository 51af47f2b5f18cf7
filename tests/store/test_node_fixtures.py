"""The released node.db formats open with today's code, every row as it was written.

tests/fixtures/node-v1.db (schema version 1, written by commit da73fc5) and node-v2.db
(version 2, issue 9) were written once by tests/fixtures/make_node_db.py from the rows
in tests/fixtures/node_db_data.py. If a test here fails, the change broke the format:
fix the code, not the fixture.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlcipher3.dbapi2 as sqlcipher

from tests.fixtures import node_db_data as data
from xchat.errors import KeystoreCorrupt
from xchat.model import ConversationKind, JobKind, OutboxState
from xchat.store.migrations import NODE_SCHEMA_VERSION
from xchat.store.node import NodeStore

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
VERSIONS = [1, 2]


def raw(path: Path) -> Any:
    conn = sqlcipher.connect(str(path), isolation_level=None)
    conn.execute(f"PRAGMA key = \"x'{data.KEY.hex()}'\"")
    conn.execute("PRAGMA cipher_compatibility = 4")
    return conn


def copy(version: int, tmp_path: Path) -> Path:
    target = tmp_path / "node.db"
    shutil.copyfile(FIXTURES / f"node-v{version}.db", target)
    return target


@pytest.fixture(params=VERSIONS, ids=lambda v: f"v{v}")
def opened(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    path = copy(request.param, tmp_path)
    store = NodeStore(path, data.KEY)
    store.open()
    yield request.param, store, path
    store.close()


def peers_by_conversation(store: NodeStore) -> dict[str, str]:
    """Conversation id -> peer, for every peer of the fixture (step 3 gave each one)."""
    out = {}
    for peer in (data.ALICE, data.BOB, data.CAROL, data.DAVE, data.ERIN):
        conversation = store.direct_conversation(peer)
        assert conversation is not None
        out[conversation.id] = peer
    return out


def as_written(message: Any, store: NodeStore) -> dict[str, Any]:
    """A message row as the fixture wrote it: the conversation was the peer's key."""
    row = fields(message, data.MESSAGES[0])
    row["conversation"] = peers_by_conversation(store)[row["conversation"]]
    return row


def messages_of(version: int) -> list[dict[str, Any]]:
    """The messages a fixture holds, in insertion (seq) order."""
    return data.MESSAGES + (data.V2_MESSAGES if version >= 2 else [])


def fields(row: object, names: Any) -> dict[str, Any]:
    values = dataclasses.asdict(row)  # type: ignore[call-overload]
    return {name: values[name] for name in names}


@pytest.mark.parametrize("version", VERSIONS)
def test_fixture_is_the_released_version(version: int) -> None:
    """The committed file is encrypted under the known key and at its version."""
    blob = (FIXTURES / f"node-v{version}.db").read_bytes()
    assert b"SQLite format 3" not in blob[:16]
    assert b"message 1" not in blob
    assert data.ALICE.encode() not in blob
    conn = raw(FIXTURES / f"node-v{version}.db")
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == version
    finally:
        conn.close()


def test_settings_relays_contacts_devices(opened: Any) -> None:
    _, store, _ = opened
    for key, value in data.SETTINGS.items():
        assert store.get_setting(key) == value
    assert store.relays() == data.RELAYS
    contacts = store.contacts()
    assert [fields(c, data.CONTACTS[0]) for c in contacts] == data.CONTACTS
    for contact in data.CONTACTS:
        assert fields(store.get_contact(contact["pubkey"]), contact) == contact
    assert [fields(d, data.DEVICES[0]) for d in store.devices(data.ALICE)] == data.DEVICES
    assert store.devices(data.BOB) == []


def test_sessions(opened: Any) -> None:
    _, store, _ = opened
    assert [fields(s, data.SESSIONS[0]) for s in store.sessions()] == data.SESSIONS


def test_messages(opened: Any) -> None:
    version, store, _ = opened
    for position, expected in enumerate(messages_of(version)):
        row = store.get_message(expected["id"])
        assert row is not None
        assert as_written(row, store) == expected
        assert row.seq == position + 1
    by_peer: dict[str, list[str]] = {}
    for expected in messages_of(version):
        by_peer.setdefault(expected["conversation"], []).append(expected["id"])
    for conversation, peer in peers_by_conversation(store).items():
        assert [m.id for m in store.messages(conversation)] == by_peer.get(peer, [])[::-1]


def test_conversations(opened: Any) -> None:
    version, store, _ = opened
    conversations = {c.conversation.peer: c for c in store.conversations()}
    assert set(conversations) == {data.ALICE, data.BOB, data.DAVE, data.ERIN}  # not Carol
    v2 = int(version >= 2)  # the file message (Dave's) and the undecryptable item (Alice)
    assert {pk: c.unread for pk, c in conversations.items()} == {
        data.ALICE: 2 + v2,  # messages 4 and 6; 2 was read
        data.BOB: 1,
        data.DAVE: 1 + v2,
        data.ERIN: 2,
    }
    assert conversations[data.ERIN].state == "request"
    assert conversations[data.DAVE].forward_secret is False
    last = conversations[data.ERIN].last_message
    assert last is not None
    assert last.id == data.MESSAGES[-1]["id"]


def outbox_as_written(entry: Any) -> dict[str, Any]:
    """An outbox entry as the fixture wrote it (before step 3's job kinds)."""
    row = fields(entry, [k for k in data.OUTBOX[0] if k not in ("event", "state")])
    if entry.kind is JobKind.SEAL_LATER:
        row["event"] = orjson.dumps({"pending": True, "message": entry.message}).decode()
        row["state"] = "unsealed" if entry.state is OutboxState.PENDING else entry.state
    else:
        row["event"] = entry.event.to_json().decode()
        row["state"] = entry.state
    return row


def test_outbox(opened: Any) -> None:
    """Every outbox row is kept, with its envelope or message; the {"pending": ...} rows
    are seal_later jobs (pending), the others envelope jobs."""
    _, store, path = opened
    message_ids = dict.fromkeys(o["message_id"] for o in data.OUTBOX)
    rows = sorted((r for m in message_ids for r in store.outbox_for(m)), key=lambda r: r.id)
    assert [outbox_as_written(r) for r in rows] == data.OUTBOX
    assert [r.id for r in rows] == list(range(1, len(data.OUTBOX) + 1))
    assert [r.kind for r in rows] == [
        JobKind.SEAL_LATER if o["event"].startswith('{"pending"') else JobKind.ENVELOPE
        for o in data.OUTBOX
    ]
    assert rows[1].message == {
        "v": 1,
        "type": "text",
        "id": data.MESSAGES[7]["id"],
        "ts": 1_800_000_008_000,
        "body": "message 8",
    }
    assert store.outbox_waiting() == 3
    assert [r.id for r in store.due_outbox(2**62)] == [2, 6, 1]
    store.close()
    conn = raw(path)  # the stored text itself is unchanged, byte for byte
    try:
        stored = conn.execute("SELECT event FROM outbox ORDER BY id").fetchall()
    finally:
        conn.close()
    assert [r[0] for r in stored] == [o["event"] for o in data.OUTBOX]
    store.open()


def test_step_3_gives_each_peer_one_direct_conversation(opened: Any) -> None:
    """Step 3: one direct conversation per peer known by a contact row or a message,
    the peer its only member, created when the first of them was; messages point at
    it; no message, state or receipt lost."""
    version, store, path = opened
    ids = peers_by_conversation(store)
    assert len(ids) == 5
    first_seen: dict[str, int] = {}
    for contact in data.CONTACTS:
        first_seen[contact["pubkey"]] = contact["created_at"]
    for message in messages_of(version):
        at = message["received_at"] // 1000
        first_seen[message["conversation"]] = min(first_seen.get(message["conversation"], at), at)
    for conversation_id, peer in ids.items():
        conversation = store.get_conversation(conversation_id)
        assert conversation is not None
        assert len(conversation_id) == 32
        assert int(conversation_id, 16) >= 0
        assert conversation_id == conversation_id.lower()
        assert conversation.kind is ConversationKind.DIRECT
        assert (conversation.peer, conversation.members) == (peer, (peer,))
        assert conversation.created_at == first_seen[peer]
    for contact in store.contacts():
        assert ids[contact.conversation] == contact.pubkey
    store.close()
    conn = raw(path)
    try:
        rows = conn.execute("SELECT id, conversation, state FROM messages ORDER BY seq").fetchall()
        assert conn.execute("SELECT count(*) FROM conversations").fetchone()[0] == 5
    finally:
        conn.close()
    assert [(i, ids[c], s) for i, c, s in rows] == [
        (m["id"], m["conversation"], m["state"]) for m in messages_of(version)
    ]
    store.open()


def test_seen_held_chains_untracked(opened: Any) -> None:
    version, store, _ = opened
    for event_id, _at in data.SEEN:
        assert store.seen(event_id)
    if version == 1:  # step 2 ran on it: every session is untracked, nothing held
        assert store.held() == []
        assert store.chains() == []
        assert sorted(store.untracked()) == sorted(s["session_id"] for s in data.SESSIONS)
    else:
        assert store.held() == [(i, e, at) for i, e, _size, at in data.HELD]
        assert store.chains() == [(r, s) for r, s, _at in data.CHAINS]
        assert store.untracked() == data.UNTRACKED


def test_migrates_to_the_fresh_schema(opened: Any, tmp_path: Path) -> None:
    """After opening, the fixture is at the newest version with exactly the tables and
    indexes a new database gets."""
    _, store, path = opened
    store.close()
    fresh = NodeStore(tmp_path / "fresh.db", data.KEY)
    fresh.open()
    fresh.close()
    schemas = []
    for file in (path, tmp_path / "fresh.db"):
        conn = raw(file)
        try:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == NODE_SCHEMA_VERSION
            schemas.append(
                conn.execute(
                    "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name"
                ).fetchall()
            )
        finally:
            conn.close()
    assert schemas[0] == schemas[1]
    store.open()


@pytest.mark.parametrize("version", VERSIONS)
def test_wrong_key_is_refused(version: int, tmp_path: Path) -> None:
    store = NodeStore(copy(version, tmp_path), bytes(32))
    with pytest.raises(KeystoreCorrupt):
        store.open()
