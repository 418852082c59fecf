"""Group commit for the SQLite store: one thread owns the writing connection and runs the write
transactions queued for it. Those that arrive while a commit is being made to disk wait
together; the next round runs each of them inside its own savepoint and commits them all with
one fsync.

Each caller still gets its answer only after the COMMIT that made its writes durable, and a job
that raises is rolled back to its savepoint alone: the others in its round are unaffected. When
the COMMIT itself fails, every job of the round fails with that error.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")
Job = tuple["Future[Any]", Callable[[sqlite3.Connection], Any]]

MAX_ROUND = 128


class GroupCommitWriter:
    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="sqlite-writer", daemon=True)
        self._thread.start()

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in a write transaction; return once it is committed to disk."""
        future: Future[T] = Future()
        self._jobs.put((future, fn))
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join()

    def _serve(self) -> None:
        conn: sqlite3.Connection | None = None
        while True:
            first = self._jobs.get()
            if first is None:
                return
            round_, stopping = self._gather(first)
            # A job whose caller gave up before it started is skipped; once started, a job can
            # no longer be cancelled, so its caller's future is always settled by this thread.
            round_ = [job for job in round_ if job[0].set_running_or_notify_cancel()]
            if not round_:
                if stopping:
                    return
                continue
            try:
                conn = conn or self._connect()
                self._commit(conn, round_)
            except BaseException as exc:  # nothing may stop this thread: fail the round
                for future, _ in round_:
                    _settle(future, None, exc)
                conn = _reset(conn)
            if stopping:
                return

    def _gather(self, first: Job) -> tuple[list[Job], bool]:
        round_ = [first]
        while len(round_) < MAX_ROUND:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return round_, True
            round_.append(job)
        return round_, False

    def _commit(self, conn: sqlite3.Connection, round_: list[Job]) -> None:
        outcomes: list[tuple[Future[Any], Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for future, fn in round_:
                outcomes.append((future, *_in_savepoint(conn, fn)))
            conn.execute("COMMIT")
        except BaseException as exc:  # the round could not be made durable
            for future, _ in round_:
                _settle(future, None, exc)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return
        for future, result, error in outcomes:
            _settle(future, result, error)


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


def _settle(future: Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _reset(conn: sqlite3.Connection | None) -> sqlite3.Connection | None:
    """After a failure the connection may be mid-transaction: roll back, or drop it so the next
    round opens a fresh one."""
    if conn is None:
        return None
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        return conn
    except Exception:
        return None
