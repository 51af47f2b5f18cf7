"""Olm sessions (sealed records) and the devices of our contacts."""

# Every SQL text in this module is assembled from this package's constants (column lists,
# placeholders); values are always bound, never formatted in.
# ruff: noqa: S608

from __future__ import annotations

from typing import Final

from xchat.model import (
    Device,
    SessionRecord,
)
from xchat.store.node.db import _GUARD, Database

_DEVICE_COLUMNS: Final = "device_id, pubkey, curve25519, certificate, first_seen, bundle"

_SESSION_COLUMNS: Final = "session_id, pubkey, device_curve, record, updated_at"


class Sessions(Database):
    """Sessions and devices (:class:`xchat.core.stores.SessionStore`; the devices of
    :class:`xchat.core.stores.ContactStore`)."""

    def save_session(self, record: SessionRecord) -> None:
        """Store a session record, replacing the one with the same session_id."""
        with _GUARD:
            self._db().execute(
                f"INSERT INTO sessions ({_SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (session_id) DO UPDATE SET pubkey = excluded.pubkey,"
                " device_curve = excluded.device_curve, record = excluded.record,"
                " updated_at = excluded.updated_at",
                (
                    record.session_id,
                    record.pubkey,
                    record.device_curve,
                    bytes(record.record),
                    record.updated_at,
                ),
            )

    def sessions(self) -> list[SessionRecord]:
        """Every stored session, least recently updated first."""
        with _GUARD:
            rows = (
                self._db()
                .execute(f"SELECT {_SESSION_COLUMNS} FROM sessions ORDER BY updated_at, session_id")
                .fetchall()
            )
        return [SessionRecord(r[0], r[1], r[2], bytes(r[3]), r[4]) for r in rows]

    def upsert_device(self, device: Device) -> bool:
        """Store a device; True if it was not known before (a new device of that person).

        A known device (same person, same device id) gets the new curve25519 key and
        certificate, and the new bundle unless that is None; it keeps its first_seen.
        """
        with _GUARD:
            conn = self._db()
            inserted = conn.execute(
                f"INSERT INTO devices ({_DEVICE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (pubkey, device_id) DO NOTHING",
                (
                    device.device_id,
                    device.pubkey,
                    device.curve25519,
                    device.certificate,
                    device.first_seen,
                    device.bundle,
                ),
            ).rowcount
            if inserted:
                return True
            conn.execute(
                "UPDATE devices SET curve25519 = ?, certificate = ?, bundle = coalesce(?, bundle)"
                " WHERE pubkey = ? AND device_id = ?",
                (
                    device.curve25519,
                    device.certificate,
                    device.bundle,
                    device.pubkey,
                    device.device_id,
                ),
            )
            return False

    def devices(self, pubkey: str) -> list[Device]:
        """That person's devices, in the order they were first seen."""
        with _GUARD:
            rows = (
                self._db()
                .execute(
                    f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE pubkey = ?"
                    " ORDER BY first_seen, device_id",
                    (pubkey,),
                )
                .fetchall()
            )
        return [Device(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]
