"""Opening the node database: the file, the key, the pragmas, the schema steps,
transactions, and the translation of database errors into X Chat errors.

:class:`Database` is the base of every part of :class:`~xchat.store.node.NodeStore`:
each part (contacts, messages, ...) reads and writes through ``self._db()`` inside
``with _GUARD:``, and groups writes with :meth:`Database.transaction`. The behaviour
is described in the package docstring (:mod:`xchat.store.node`).
"""

# Every SQL text in this module is assembled from this package's constants (column lists,
# placeholders); values are always bound, never formatted in.

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

import sqlcipher3.dbapi2 as _sqlcipher

from xchat.errors import (
    InvalidInput,
    KeystoreCorrupt,
    KeystoreError,
    LocalProtocolError,
    XChatError,
)
from xchat.store.migrations import NODE_MIGRATIONS, Migration, pending
from xchat.store.node.values import _contains

if TYPE_CHECKING:  # sqlcipher3 mirrors the sqlite3 module and ships no type information
    from sqlite3 import Connection

__all__ = ["Database"]

_KEY_BYTES: Final = 32

_SQLITE_CORRUPT: Final = 11  # primary result codes

_SQLITE_NOTADB: Final = 26

_DB_ERRORS: Final = (_sqlcipher.Error, sqlite3.Error)

_ARGUMENT_ERRORS: Final = (
    _sqlcipher.InterfaceError,
    _sqlcipher.ProgrammingError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
)

_INTEGRITY_ERRORS: Final = (_sqlcipher.IntegrityError, sqlite3.IntegrityError)

#: Raised by bindings and JSON encoding for values that cannot be stored.
_VALUE_ERRORS: Final = (TypeError, ValueError, OverflowError)

_TRANSLATED: Final = (*_DB_ERRORS, *_VALUE_ERRORS)

#: The schema's steps (:mod:`xchat.store.migrations.node`); read at open time, so that
#: tests can add a step.
_MIGRATIONS: tuple[Migration, ...] = NODE_MIGRATIONS


class Database:
    """The connection and its lifecycle; the base of NodeStore's parts.

    ``key`` is the 32-byte database key (derived from the keystore's storage key); it
    appears in no repr or error message.
    """

    def __init__(self, path: Path, key: bytes) -> None:
        if type(key) not in (bytes, bytearray) or len(key) != _KEY_BYTES:
            raise InvalidInput("the node database key must be 32 bytes")
        self._path = Path(path)
        self._key = bytes(key)
        self._conn: Connection | None = None
        self._depth = 0  # transaction nesting: 0 outside, 1 in BEGIN, 2+ in savepoints
        #: Conversations read outside a transaction, by ("id" or "peer", value): their
        #: rows never change once written (conversations.py), so a send or a receipt
        #: does not read them again. Cleared on every add and on close.
        self._conversations: dict[tuple[str, str], Any] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self._path)!r}, {'open' if self._conn else 'closed'})"

    def open(self) -> None:
        """Open (creating or migrating) the encrypted database; KeystoreCorrupt if the
        key does not open it or it is damaged."""
        if self._conn is not None:
            raise LocalProtocolError("the node store is already open")
        _create_private(self._path)
        conn = self._connect()
        try:
            with _GUARD:
                _setup(conn, self._path)
            _restrict_companions(self._path)
        except BaseException:
            with _GUARD:
                conn.close()
            raise
        self._conn = conn
        self._depth = 0

    def _connect(self) -> Connection:
        """A connection that the key opens (KeystoreCorrupt otherwise). The benchmark
        overrides this to measure the same store on plain SQLite."""
        try:
            conn: Connection = _sqlcipher.connect(
                str(self._path), isolation_level=None, check_same_thread=False
            )
        except _sqlcipher.Error as exc:
            raise KeystoreError(f"cannot open the node database {self._path}: {exc}") from exc
        try:
            conn.execute("PRAGMA cipher_log_level = NONE")  # a wrong key is our error to report
            conn.execute(f"PRAGMA key = \"x'{self._key.hex()}'\"")
            conn.execute("PRAGMA cipher_compatibility = 4")  # the page format, pinned
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except _sqlcipher.Error as exc:
            conn.close()
            if _primary_code(exc) in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
                raise KeystoreCorrupt(
                    f"the node database {self._path} cannot be opened: the key is wrong or"
                    f" the file is damaged ({exc})"
                ) from None
            raise KeystoreError(f"cannot open the node database {self._path}: {exc}") from None
        return conn

    def close(self) -> None:
        """Close the database (a transaction still open is rolled back); idempotent."""
        conn, self._conn = self._conn, None
        self._depth = 0
        self._conversations.clear()
        if conn is None:
            return
        with _GUARD:
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            finally:
                conn.close()

    def _db(self) -> Connection:
        if self._conn is None:
            raise LocalProtocolError("the node store is not open")
        return self._conn

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes: all committed at the end, or none if an exception escapes.

        Nested, it joins the outer transaction as a savepoint: its writes are committed
        with the outer one, and undone alone if an exception escapes the inner block.
        """
        conn = self._db()
        depth = self._depth
        if depth:
            name = f"xchat_nested_{depth}"
            with _GUARD:
                conn.execute(f"SAVEPOINT {name}")
            self._depth = depth + 1
            try:
                yield
            except BaseException:
                self._depth = depth
                _quietly(conn, f"ROLLBACK TO {name}", f"RELEASE {name}")
                raise
            self._depth = depth
            with _GUARD:
                conn.execute(f"RELEASE {name}")
            return
        with _GUARD:
            conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            _quietly(conn, "ROLLBACK")
            raise
        self._depth = 0
        try:
            with _GUARD:
                conn.execute("COMMIT")
        except XChatError:
            _quietly(conn, "ROLLBACK")
            raise


# -- opening ---------------------------------------------------------------------------


def _create_private(path: Path) -> None:
    """Create the file owner-only before SQLite opens it (its -wal and -shm files take
    the database file's mode), and take group and other access away from an old one."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
                os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
    except OSError as exc:
        raise KeystoreError(f"cannot create the node database {path}: {exc.strerror}") from None


def _restrict_companions(path: Path) -> None:
    for suffix in ("-wal", "-shm"):
        companion = path.with_name(path.name + suffix)
        try:
            if stat.S_IMODE(companion.stat().st_mode) & 0o077:
                companion.chmod(0o600)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise KeystoreError(f"cannot restrict {companion}: {exc.strerror}") from None


def _setup(conn: Connection, path: Path) -> None:
    """Pragmas, our SQL function, and the schema brought to the current version."""
    _check_version(_user_version(conn), path)
    mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
    if mode.lower() != "wal":
        raise KeystoreError(f"the node database {path} cannot use WAL mode ({mode})")
    for pragma in (
        "PRAGMA synchronous = FULL",  # committed = on disk, before a message is sent
        "PRAGMA foreign_keys = ON",
        "PRAGMA busy_timeout = 5000",
        "PRAGMA temp_store = MEMORY",  # no temporary files next to the encrypted one
        # Pages are decrypted when read into the cache: 16 MiB (SQLite's default is 2)
        # keeps the recent conversations of a large history decrypted once.
        "PRAGMA cache_size = -16384",
    ):
        conn.execute(pragma)
    conn.create_function("xchat_contains", 2, _contains, deterministic=True)
    if _user_version(conn) < _MIGRATIONS[-1].version:
        _migrate(conn, path)


def _user_version(conn: Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _newer(path: Path) -> Callable[[int, int], XChatError]:
    def error(version: int, latest: int) -> XChatError:
        return KeystoreCorrupt(
            f"the node database {path} was written by a newer X Chat (schema version"
            f" {version}; this one knows up to {latest}): upgrade X Chat to open it"
        )

    return error


def _check_version(version: int, path: Path) -> None:
    pending(version, _MIGRATIONS, _newer(path))


def _migrate(conn: Connection, path: Path) -> None:
    """Apply the missing steps in one transaction: all of them, or none."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        # The version again, now that we hold the write lock.
        for step in pending(_user_version(conn), _MIGRATIONS, _newer(path)):
            for statement in step.statements:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {int(step.version)}")
        conn.execute("COMMIT")
    except BaseException:
        _quietly(conn, "ROLLBACK")
        raise


# -- errors ----------------------------------------------------------------------------


class _Guard:
    """Translates database and value errors into X Chat errors; others pass unchanged."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None or isinstance(exc, XChatError):
            return
        if isinstance(exc, _TRANSLATED):
            raise _translate(exc) from exc


_GUARD: Final = _Guard()


def _primary_code(exc: BaseException) -> int | None:
    """SQLite's primary result code of a database error (extended codes stripped)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def _translate(exc: BaseException) -> XChatError:
    if isinstance(exc, _DB_ERRORS):
        if _primary_code(exc) in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
            return KeystoreCorrupt(f"the node database is damaged ({exc})")
        if isinstance(exc, _INTEGRITY_ERRORS):
            return InvalidInput(f"the node database refused the row ({exc})")
        if isinstance(exc, _ARGUMENT_ERRORS):
            return InvalidInput(f"a value cannot be stored in the node database ({exc})")
        return KeystoreError(f"the node database failed ({exc})")
    # From bindings and orjson; their messages may quote the value, so they are left out.
    return InvalidInput(f"a value cannot be stored in the node database ({type(exc).__name__})")


def _quietly(conn: Connection, *statements: str) -> None:
    """Roll back while an exception is already on its way: never mask it."""
    try:
        for statement in statements:
            if not conn.in_transaction:
                return
            conn.execute(statement)
    except _DB_ERRORS:
        return
