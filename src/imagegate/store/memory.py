"""``MemoryStore``: the store in memory, for tests and experiments (``database_url =
"memory:"``). Nothing survives the process.

It is SQLite on an in-memory database running the same transactions as every other store, so
it holds the same rules by construction: not a second copy of them. Each transaction runs at
once on the event loop's thread (no fsync, no thread hop), so a test that drives the service
through it runs in milliseconds and in a fixed order.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TypeVar

from imagegate.store.sql import Tx
from imagegate.store.sql_store import SqlStore
from imagegate.store.sqlite import SqliteTx, connect, is_unavailable

__all__ = ["MemoryStore"]

T = TypeVar("T")


class MemoryStore(SqlStore):
    def __init__(self) -> None:
        super().__init__(read_batches=1)
        self._conn = connect(":memory:")

    async def _run_write(self, fn: Callable[[Tx], T]) -> T:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(SqliteTx(self._conn))
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")
        return result

    async def _run_read(self, fn: Callable[[Tx], T]) -> T:
        return fn(SqliteTx(self._conn))

    def _is_unavailable(self, exc: Exception) -> bool:
        return is_unavailable(exc)

    async def _close(self) -> None:
        self._conn.close()

    @property
    def connection(self) -> sqlite3.Connection:
        """The database itself, for a test that needs to look underneath."""
        return self._conn
