"""Schema steps of X Chat's databases, and the one mechanism that applies them.

* :mod:`.common`: :class:`Migration`, :func:`pending`, :func:`fingerprint`;
* :mod:`.node`: the node database's steps (``NODE_MIGRATIONS``);
* :mod:`.relay`: the relay's event database's steps, for SQLite and PostgreSQL.

``from xchat.store.migrations import SQLITE_MIGRATIONS, pending, ...`` keeps working.
"""

from xchat.store.migrations.common import Migration, fingerprint, pending, step_list
from xchat.store.migrations.node import NODE_MIGRATIONS, NODE_SCHEMA_VERSION
from xchat.store.migrations.relay import POSTGRES_MIGRATIONS, SCHEMA_VERSION, SQLITE_MIGRATIONS

__all__ = [
    "NODE_MIGRATIONS",
    "NODE_SCHEMA_VERSION",
    "POSTGRES_MIGRATIONS",
    "SCHEMA_VERSION",
    "SQLITE_MIGRATIONS",
    "Migration",
    "fingerprint",
    "pending",
    "step_list",
]
