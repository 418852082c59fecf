"""The fleet's store: PostgreSQL, through psycopg 3 and its connection pool.

Every transaction of ``transactions.py`` is a synchronous function of a ``Tx``, so each call
runs in a thread of an executor sized to the pool (a thread holds at most one connection, so no
thread waits for the pool while others are idle): writes inside one transaction (``BEGIN`` ..
``COMMIT``), reads in autocommit, each statement its own snapshot, as SQLite's readers are. The
claims take rows with ``FOR UPDATE SKIP LOCKED`` (``statements.py``), so concurrent workers in
any number of processes never wait for each other nor take the same task.

Why this driver, measured by ``bench/bench_postgres_driver.py`` (``bench/results/
postgres_driver.md``): on the status read, 64 concurrent readers on a 2-core machine,
psycopg's sync pool in threads gave ~3,400 reads/s at ~300 µs of the API process's CPU per
read; psycopg's ``AsyncConnectionPool`` ~6,500-7,300 and asyncpg ~8,500-9,100 at 100-150 µs.
An async driver could serve only the reads (the writes must run the shared synchronous
transactions), so it would mean a second pool per process (twice the connections a fleet takes
from ``max_connections``), bound to one event loop, and a second spelling of the reads outside
``transactions.py`` (a third spelling of the statements for asyncpg's ``$1``). That is not
worth ~150 µs per status read while a status request's HTTP handling costs more and API
processes scale out; if status polling ever bounds an API process, add psycopg's async pool for
``get_task`` alone behind ``_read``.

Errors are translated here: a database that cannot be reached or cannot take the work now
(connection refused, a server gone or shutting down, too many connections, a full disk, a
read-only server after a failover, no pooled connection within the timeout) raises
``StoreUnavailable``; a broken rule of the schema (a unique or foreign-key violation) is a bug
and raises as it is. A deadlock or serialization failure is retried a few times here (the
transactions are plain functions, safe to run again once rolled back), and so is a call whose
pooled connection turns out to be dropped before it committed. A connection lost during
``COMMIT`` is not retried: whether the change was made is unknown.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import psycopg.errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import DictRow, dict_row
from psycopg_pool import ConnectionPool

from imagegate.errors import ConfigError
from imagegate.store import statements
from imagegate.store.schema import POSTGRES_MIGRATIONS
from imagegate.store.sql import Dialect, Row, Tx
from imagegate.store.sql_store import SqlStore

__all__ = ["POSTGRES", "PostgresStore", "PostgresTx", "split_url"]

T = TypeVar("T")
Conn = psycopg.Connection[DictRow]

POSTGRES = Dialect("postgresql", statements.POSTGRES, POSTGRES_MIGRATIONS)

DEFAULT_POOL_SIZE = 8
DEFAULT_POOL_TIMEOUT_S = 5.0
DEFAULT_CONNECT_TIMEOUT_S = 5
OWN_OPTIONS = frozenset({"pool_size", "pool_timeout"})  # in the URL's query, not libpq's
CONFLICT_TRIES = 5  # a deadlock or serialization failure, then four more tries
DROPPED_TRIES = 2  # a pooled connection the server dropped, then one try on a fresh one

# Errors that say the database cannot do the work now, not that the work is wrong:
# OperationalError covers connection failures (class 08), insufficient resources (53: a full
# disk, too many connections), operator intervention (57: admin shutdown) and the pool's
# timeout; a read-only server is a standby after a failover.
_UNAVAILABLE = (psycopg.OperationalError, psycopg.errors.ReadOnlySqlTransaction)
_CONFLICT = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)


class PostgresStore(SqlStore):
    """``SqlStore`` over a pool of at most ``pool_size`` connections; a call waits at most
    ``pool_timeout_s`` for a connection, then raises ``StoreUnavailable``."""

    def __init__(self, conninfo: str, pool_size: int = DEFAULT_POOL_SIZE,
                 pool_timeout_s: float = DEFAULT_POOL_TIMEOUT_S) -> None:
        if pool_size < 1:
            raise ConfigError(f"the PostgreSQL pool size must be at least 1, not {pool_size}")
        super().__init__(read_batches=max(1, pool_size // 2))
        params = conninfo_to_dict(conninfo)
        params.setdefault("connect_timeout", DEFAULT_CONNECT_TIMEOUT_S)
        params.setdefault("application_name", "imagegate")
        self._pool = ConnectionPool(
            make_conninfo("", **params), connection_class=Conn,
            kwargs={"autocommit": True, "row_factory": dict_row},
            min_size=min(2, pool_size), max_size=pool_size, timeout=pool_timeout_s,
            name="imagegate", open=True)
        self._threads = ThreadPoolExecutor(pool_size, thread_name_prefix="postgres")

    @classmethod
    def from_url(cls, url: str) -> PostgresStore:
        """``postgresql://`` or ``postgres://`` URL as libpq reads it, plus ``pool_size`` and
        ``pool_timeout`` (seconds) in its query; ``ConfigError`` for values that are not."""
        conninfo, options = split_url(url)
        size = _positive(options.get("pool_size", str(DEFAULT_POOL_SIZE)), "pool_size")
        timeout = _positive(options.get("pool_timeout", str(DEFAULT_POOL_TIMEOUT_S)),
                            "pool_timeout")
        if not size.is_integer():
            raise ConfigError(f"the PostgreSQL URL's pool_size must be a whole number, not "
                              f"{size:g}")
        try:
            return cls(conninfo, pool_size=int(size), pool_timeout_s=timeout)
        except psycopg.ProgrammingError as exc:  # libpq could not parse it
            raise ConfigError(f"the PostgreSQL URL cannot be used: {exc}") from exc

    # Plumbing ---------------------------------------------------------------------------------

    async def _run_write(self, fn: Callable[[Tx], T]) -> T:
        return await self._in_thread(fn, write=True)

    async def _run_read(self, fn: Callable[[Tx], T]) -> T:
        return await self._in_thread(fn, write=False)

    def _is_unavailable(self, exc: Exception) -> bool:
        return isinstance(exc, _UNAVAILABLE)

    async def _close(self) -> None:
        """Wait for the calls under way, then close every connection."""
        await asyncio.to_thread(self._close_threads_and_pool)

    def _close_threads_and_pool(self) -> None:
        self._threads.shutdown(wait=True)
        self._pool.close()

    async def _in_thread(self, fn: Callable[[Tx], T], write: bool) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, self._call, fn, write)

    def _call(self, fn: Callable[[Tx], T], write: bool) -> T:
        """Run ``fn`` once to completion, trying again after a conflict or a dropped
        connection (neither of which kept anything of the failed try)."""
        tries = 0
        while True:
            tries += 1
            try:
                return self._try(fn, write)
            except _CONFLICT:
                if tries >= CONFLICT_TRIES:
                    raise
                time.sleep(random.uniform(0, 0.005 * 2**tries))  # let the winner commit
            except _Dropped as dropped:
                if tries >= DROPPED_TRIES:
                    raise dropped.error from None
                # A server that dropped one pooled connection (a restart, a failover)
                # dropped the idle ones too: replace them now, not one failed call each.
                self._pool.check()

    def _try(self, fn: Callable[[Tx], T], write: bool) -> T:
        with self._pool.connection() as conn:
            tx = PostgresTx(conn)
            try:
                if not write:
                    return fn(tx)
                # In pipeline mode: a statement goes out at once and its result is waited for
                # only when the transaction reads it, so the writes whose results it never
                # reads leave together with the COMMIT, in one round trip.
                with conn.pipeline() as pipeline, conn.transaction():
                    tx.pipeline = pipeline
                    result = fn(tx)
                    tx.committing = True
                return result
            except psycopg.OperationalError as exc:
                if conn.broken and not tx.committing:
                    raise _Dropped(exc) from exc
                raise


class _Dropped(Exception):
    """The connection was lost before anything was committed: safe to run again."""

    def __init__(self, error: psycopg.OperationalError) -> None:
        super().__init__(str(error))
        self.error = error


class PostgresTx:
    """``Tx`` over a psycopg connection (inside its transaction, in pipeline mode, for a write).
    Statements take ``%s`` or ``%(name)s`` parameters; a list of text values is a Python list
    (``text[]``)."""

    dialect = POSTGRES

    def __init__(self, conn: Conn) -> None:
        self._conn = conn
        self.pipeline: psycopg.Pipeline | None = None
        self.committing = False  # set once the work is done and COMMIT is next

    def run(self, name: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> _Result:
        return _Result(self._conn.execute(self.dialect.statement(name), params), self.pipeline)

    def many(self, name: str, params: Sequence[Sequence[Any]]) -> None:
        if params:  # sent together, in one round trip (psycopg's pipeline)
            with self._conn.cursor() as cursor:
                cursor.executemany(self.dialect.statement(name), params)

    def array(self, values: Sequence[str]) -> list[str]:
        return list(values)

    def script(self, sql: str) -> None:
        for statement in filter(str.strip, sql.split(";")):  # a pipeline takes one at a time
            self._conn.execute(statement.encode())


class _Result:
    def __init__(self, cursor: psycopg.Cursor[DictRow],
                 pipeline: psycopg.Pipeline | None) -> None:
        self._cursor = cursor
        self._pipeline = pipeline

    @property
    def rowcount(self) -> int:
        if self._pipeline is not None and self._cursor.pgresult is None:
            self._pipeline.sync()  # its result has not come back yet: wait for it
        return self._cursor.rowcount

    def one(self) -> Row | None:
        return self._cursor.fetchone()

    def all(self) -> list[Row]:
        return list(self._cursor.fetchall())


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """A ``postgresql://`` or ``postgres://`` URL as libpq takes it, and imagegate's own options
    taken out of its query (``pool_size``, ``pool_timeout``); ``ConfigError`` for another
    scheme."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"not a PostgreSQL URL: {parts.scheme}://...")
    query = parse_qsl(parts.query, keep_blank_values=True)
    options = {k: v for k, v in query if k in OWN_OPTIONS}
    libpq = [(k, v) for k, v in query if k not in OWN_OPTIONS]
    return urlunsplit(parts._replace(query=urlencode(libpq))), options


def _positive(value: str, name: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = 0
    if not 0 < number < float("inf"):
        raise ConfigError(f"the PostgreSQL URL's {name} must be a positive number, not "
                          f"{value!r}")
    return number
