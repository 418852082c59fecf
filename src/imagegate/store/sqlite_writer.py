"""Group commit for the SQLite store: one connection writes, in rounds. The write transactions
queued while a round is being committed wait together; the next round runs each of them inside
its own savepoint and commits them all with one fsync.

A round's waits run on the writer's own thread: ``COMMIT`` (the fsync, and now and then a WAL
checkpoint), and ``BEGIN IMMEDIATE`` when another process holds the database's write lock (it
is tried on the event loop without waiting first; on the thread it waits up to the busy
timeout). The jobs' statements run on the event loop: with the write lock held they never wait
for anyone, and a job is a few statements on pages in memory, so running them where the caller
is costs less than handing each statement to another thread and back (every hand-off waits for
the interpreter's lock, and for the busy event loop to take the answer back).

Each caller gets its answer only after the COMMIT that made its writes durable, and a job that
raises is rolled back to its savepoint alone: the others in its round are unaffected. When the
COMMIT itself fails, or SQLite rolls the whole transaction back (a full disk, an I/O error),
every job of the round fails with that error. A job whose caller gave up before its round
started is skipped; once started it runs to the end.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
Job = tuple["asyncio.Future[Any]", Callable[[sqlite3.Connection], Any]]

MAX_ROUND = 128


class GroupCommitWriter:
    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._conn: sqlite3.Connection | None = None
        self._busy_timeout_ms = 0
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._queued: list[Job] = []
        self._rounds: asyncio.Task[None] | None = None

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in a write transaction; return once it is committed to disk."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queued.append((future, fn))
        if self._rounds is None:
            self._rounds = asyncio.get_running_loop().create_task(self._run_rounds())
        return await future

    async def close(self) -> None:
        """Finish the rounds under way and queued, then close the connection."""
        if self._rounds is not None:
            await asyncio.shield(self._rounds)
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close_conn)
        self._thread.shutdown(wait=True)

    def _close_conn(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def _run_rounds(self) -> None:
        try:
            while self._queued:
                round_, self._queued = self._queued[:MAX_ROUND], self._queued[MAX_ROUND:]
                round_ = [job for job in round_ if not job[0].done()]  # callers that gave up
                if round_:
                    await self._round(round_)
        finally:
            self._rounds = None

    async def _round(self, round_: list[Job]) -> None:
        try:
            conn = await self._begin()
        except BaseException as exc:  # not even begun: nothing to undo
            _fail(round_, exc)
            await self._in_thread(self._reset)
            if not isinstance(exc, Exception):
                raise
            return
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        try:
            for future, fn in round_:
                outcomes.append((future, *_in_savepoint(conn, fn)))
            await self._in_thread(conn.execute, "COMMIT")
        except BaseException as exc:  # the round could not be made durable
            _fail(round_, exc)
            await self._in_thread(self._reset)
            if not isinstance(exc, Exception):
                raise
            return
        for future, result, error in outcomes:
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the writer's thread. Once started it runs to the end even if this
        task is cancelled (the loop shutting down): the connection is never used by two threads
        at once."""
        work = asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            await asyncio.wait([work])
            raise

    async def _begin(self) -> sqlite3.Connection:
        """``BEGIN IMMEDIATE``: at once when no other process holds the write lock (the usual
        case), else waiting for it on the writer's thread."""
        if self._conn is None:
            self._conn = await self._in_thread(self._open)
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                raise
            await self._in_thread(self._begin_waiting, self._conn)
        return self._conn

    def _open(self) -> sqlite3.Connection:
        """The writing connection, which never waits on the event loop: its busy timeout is
        used only by ``_begin_waiting``."""
        conn = self._connect()
        self._busy_timeout_ms = int(conn.execute("PRAGMA busy_timeout").fetchone()[0])
        conn.execute("PRAGMA busy_timeout = 0")
        return conn

    def _begin_waiting(self, conn: sqlite3.Connection) -> None:
        conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        try:
            conn.execute("BEGIN IMMEDIATE")
        finally:
            conn.execute("PRAGMA busy_timeout = 0")

    def _reset(self) -> None:
        """After a failure the connection may be mid-transaction: roll back, or drop it so the
        next round opens a fresh one."""
        if self._conn is None:
            return
        try:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        except Exception:
            conn, self._conn = self._conn, None
            try:
                conn.close()
            except Exception:
                pass


def _in_savepoint(conn: sqlite3.Connection,
                  fn: Callable[[sqlite3.Connection], Any]) -> tuple[Any, BaseException | None]:
    conn.execute("SAVEPOINT job")
    try:
        result = fn(conn)
    except Exception as exc:
        if not conn.in_transaction:  # SQLite rolled everything back (a full disk, an I/O
            raise                    # error): the whole round fails with this error
        conn.execute("ROLLBACK TO job")
        conn.execute("RELEASE job")
        return None, exc
    conn.execute("RELEASE job")
    return result, None


def _fail(round_: list[Job], error: BaseException) -> None:
    for future, _ in round_:
        if future.done():
            continue
        if isinstance(error, asyncio.CancelledError):
            future.cancel()
        else:
            future.set_exception(error)
