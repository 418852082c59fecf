"""The embedded store: SQLite in WAL mode.

One connection writes, committing the transactions queued for it in groups
(``sqlite_writer.py``), so writes never contend inside the process and many submits share one
fsync (``BEGIN IMMEDIATE`` plus a busy timeout handles other processes, such as the CLI).
Readers use their own connections on a small thread pool; under WAL they never wait for the
writer. ``synchronous=FULL``: a task is on disk before its taskId is returned.

A database that cannot be written or read (a full disk, an I/O error, a lock held past the busy
timeout) raises ``StoreUnavailable``: nothing of that transaction was kept. After a failed write
``ping`` writes (and deletes) a scratch row, so readiness follows the disk: not ready until a
write succeeds again.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from imagegate.store import statements
from imagegate.store.schema import SQLITE_MIGRATIONS
from imagegate.store.sql import Dialect, Row, Tx
from imagegate.store.sql_store import SqlStore
from imagegate.store.sqlite_writer import GroupCommitWriter

__all__ = ["SQLITE", "SqliteStore", "SqliteTx"]

T = TypeVar("T")
Conn = sqlite3.Connection

SQLITE = Dialect("sqlite", statements.SQLITE, SQLITE_MIGRATIONS)


class SqliteStore(SqlStore):
    def __init__(self, path: str | Path, readers: int = 4) -> None:
        super().__init__(read_batches=readers)
        self._path = str(path)
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="sqlite-reader")
        self._local = threading.local()
        self._conns: list[Conn] = []
        self._conns_lock = threading.Lock()
        self._writer = GroupCommitWriter(self._open)

    @classmethod
    def from_url(cls, url: str) -> SqliteStore:
        path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return cls(path)

    # Plumbing ---------------------------------------------------------------------------------

    def _conn(self) -> Conn:
        """This reader thread's connection."""
        conn: Conn | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._open()
        return conn

    def _open(self) -> Conn:
        conn = connect(self._path)
        with self._conns_lock:
            self._conns.append(conn)
        return conn

    async def _run_write(self, fn: Callable[[Tx], T]) -> T:
        return await self._writer.run(lambda conn: fn(SqliteTx(conn)))

    async def _run_read(self, fn: Callable[[Tx], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            self._readers, lambda: fn(SqliteTx(self._conn())))

    def _is_unavailable(self, exc: Exception) -> bool:
        return is_unavailable(exc)

    async def _close(self) -> None:
        await self._writer.close()
        self._readers.shutdown(wait=True)
        with self._conns_lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()


def connect(path: str) -> Conn:
    """A connection as every SQLite store uses it: WAL, full sync, foreign keys."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


class SqliteTx:
    """``Tx`` over an SQLite connection already inside its transaction."""

    dialect = SQLITE

    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    def run(self, name: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> _Result:
        return _Result(self._conn.execute(self.dialect.statement(name), params))

    def many(self, name: str, params: Sequence[Sequence[Any]]) -> None:
        if params:
            self._conn.executemany(self.dialect.statement(name), params)

    def array(self, values: Sequence[str]) -> str:
        return json.dumps(list(values))  # read with json_each()

    def script(self, sql: str) -> None:
        for statement in filter(str.strip, sql.split(";")):
            self._conn.execute(statement)


class _Result:
    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    def one(self) -> Row | None:
        row: Row | None = self._cursor.fetchone()
        return row

    def all(self) -> list[Row]:
        return list(self._cursor.fetchall())


def is_unavailable(exc: Exception) -> bool:
    """A full disk, an I/O error, a lock held too long: the database's trouble. A broken rule
    of the schema (IntegrityError) is a bug, not the disk."""
    return isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.IntegrityError)
