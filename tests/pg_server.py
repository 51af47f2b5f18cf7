"""A throwaway PostgreSQL server for the store tests and ``bench/store.py``.

It runs the Debian ``postgresql`` package's binaries (``/usr/lib/postgresql/N/bin``) on a
data directory in a fresh temporary folder, listening on 127.0.0.1 on a free port with
trust authentication, its unix socket in the same folder, ``fsync`` on. PostgreSQL
refuses to run as root, so when we are root the folder is given to the ``postgres``
system user and the binaries run as that user through ``runuser``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg

__all__ = ["PostgresServer", "find_bindir"]


def find_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/N/bin`` that has initdb, pg_ctl and postgres."""
    found = []
    for initdb in Path("/usr/lib/postgresql").glob("*/bin/initdb"):
        bindir = initdb.parent
        version = re.fullmatch(r"\d+", bindir.parent.name)
        if version and (bindir / "pg_ctl").exists() and (bindir / "postgres").exists():
            found.append((int(version.group()), bindir))
    return max(found)[1] if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class PostgresServer:
    bindir: Path
    root: Path
    port: int

    @classmethod
    def start(cls, bindir: Path) -> PostgresServer:
        root = Path(tempfile.mkdtemp(prefix="xchat-pg-"))
        server = cls(bindir, root, _free_port())
        try:
            server._init()
            options = [
                "-c listen_addresses=127.0.0.1",
                f"-c port={server.port}",
                f"-c unix_socket_directories={root}",
                "-c fsync=on",
                "-c synchronous_commit=on",
                "-c max_connections=200",
            ]
            log = str(root / "server.log")
            server._ctl("start", "-w", "-t", "60", "-l", log, "-o", " ".join(options))
        except BaseException:
            server._log_tail()
            shutil.rmtree(root, ignore_errors=True)
            raise
        return server

    def _as_owner(self, *argv: str) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *argv]
        return list(argv)

    def _init(self) -> None:
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError(
                    "running as root, PostgreSQL needs the 'postgres' system user "
                    "(Debian's postgresql package creates it)"
                ) from None
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        # --no-sync: initdb's own files need no fsync for a throwaway cluster; the
        # server itself runs with fsync on.
        subprocess.run(
            self._as_owner(
                str(self.bindir / "initdb"),
                "-D",
                str(self.root / "data"),
                "--username=postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ),
            check=True,
            capture_output=True,
        )
        hba = self.root / "data" / "pg_hba.conf"
        hba.write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            self._as_owner(str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), *args),
            check=True,
            capture_output=True,
            timeout=120,
        )

    def _log_tail(self) -> None:
        with contextlib.suppress(OSError):
            print((self.root / "server.log").read_text()[-4000:])

    def stop(self) -> None:
        try:
            try:
                self._ctl("stop", "-m", "fast", "-w", "-t", "110")
            except subprocess.CalledProcessError as exc:
                # the shutdown checkpoint (fsync on) can outlast the wait on a loaded
                # machine: say why, then stop it hard
                print("pg_ctl stop -m fast failed:", exc.stderr, exc.stdout)
                self._log_tail()
                self._ctl("stop", "-m", "immediate", "-w")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    async def create_database(self) -> str:
        """A new empty database; its DSN."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        conn = await asyncpg.connect(self.dsn())
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.dsn(name)
