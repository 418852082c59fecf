"""Group commit: jobs queued together commit together, and a failing job fails alone."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from imagegate.store.sqlite_writer import GroupCommitWriter


def connect(path: Path, statements: list[str] | None = None) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    if statements is not None:
        conn.set_trace_callback(statements.append)
    return conn


def insert(v: int) -> Callable[[sqlite3.Connection], int]:
    def job(c: sqlite3.Connection) -> int:
        c.execute("INSERT INTO t VALUES (?)", (v,))
        if v == 3:
            raise ValueError("job 3 fails after writing")
        return v
    return job


def stored(db: Path) -> list[int]:
    return sorted(v for (v,) in connect(db).execute("SELECT v FROM t"))


def test_jobs_queued_together_commit_together_and_a_failing_job_is_rolled_back_alone(
        tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    connect(db).execute("CREATE TABLE t (v INTEGER)")
    statements: list[str] = []
    writer = GroupCommitWriter(lambda: connect(db, statements))

    async def scenario() -> list[object]:
        try:
            return list(await asyncio.gather(*(writer.run(insert(v)) for v in range(1, 6)),
                                             return_exceptions=True))
        finally:
            await writer.close()

    results = asyncio.run(scenario())
    assert results[:2] == [1, 2] and results[3:] == [4, 5]
    assert isinstance(results[2], ValueError)
    assert stored(db) == [1, 2, 4, 5]
    assert statements.count("COMMIT") == 1  # one round, one fsync


def test_jobs_arriving_during_a_commit_wait_for_the_next_round(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    connect(db).execute("CREATE TABLE t (v INTEGER)")
    statements: list[str] = []
    writer = GroupCommitWriter(lambda: connect(db, statements))

    async def scenario() -> list[int]:
        first = asyncio.ensure_future(writer.run(insert(1)))
        await asyncio.sleep(0)  # the first round has begun
        later = [asyncio.ensure_future(writer.run(insert(v))) for v in (4, 5, 6)]
        try:
            return [await first, *await asyncio.gather(*later)]
        finally:
            await writer.close()

    assert asyncio.run(scenario()) == [1, 4, 5, 6]
    assert statements.count("COMMIT") == 2


def test_an_unopenable_database_fails_every_caller_and_the_next_round_tries_again(
        tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    opened: list[int] = []

    def flaky() -> sqlite3.Connection:
        opened.append(1)
        if len(opened) == 1:
            raise sqlite3.OperationalError("unable to open database file")
        return connect(db)

    writer = GroupCommitWriter(flaky)

    async def scenario() -> None:
        try:
            with pytest.raises(sqlite3.OperationalError):
                await writer.run(lambda c: None)
            await writer.run(lambda c: c.execute("CREATE TABLE t (v INTEGER)"))
        finally:
            await writer.close()

    asyncio.run(scenario())
    assert stored(db) == []


def test_a_failed_commit_fails_every_job_of_the_round_and_keeps_nothing(
        tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    setup = connect(db)
    setup.execute("PRAGMA foreign_keys = ON")
    setup.execute("CREATE TABLE p (id INTEGER PRIMARY KEY)")
    setup.execute("CREATE TABLE t (v INTEGER REFERENCES p (id) DEFERRABLE INITIALLY DEFERRED)")

    def fk_connect() -> sqlite3.Connection:
        conn = connect(db)
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    writer = GroupCommitWriter(fk_connect)

    async def scenario() -> list[object]:
        try:
            # The dangling reference is only checked at COMMIT: the whole round fails there.
            return list(await asyncio.gather(
                writer.run(lambda c: c.execute("INSERT INTO p VALUES (1)").rowcount),
                writer.run(lambda c: c.execute("INSERT INTO t VALUES (99)").rowcount),
                return_exceptions=True))
        finally:
            await writer.close()

    results = asyncio.run(scenario())
    assert all(isinstance(r, sqlite3.IntegrityError) for r in results), results
    assert [r for (r,) in connect(db).execute("SELECT COUNT(*) FROM p")] == [0]


def test_a_job_cancelled_before_its_round_is_skipped_and_the_writer_lives_on(
        tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    connect(db).execute("CREATE TABLE t (v INTEGER)")
    gate = threading.Event()

    def slow_connect() -> sqlite3.Connection:
        gate.wait(5)  # the first round waits to begin, on the writer's thread
        return connect(db)

    writer = GroupCommitWriter(slow_connect)

    async def scenario() -> None:
        try:
            first = asyncio.ensure_future(writer.run(insert(1)))
            await asyncio.sleep(0.05)
            doomed = asyncio.ensure_future(writer.run(insert(2)))
            await asyncio.sleep(0.01)
            doomed.cancel()  # its caller gives up while it waits for the next round
            gate.set()
            assert await first == 1
            with pytest.raises(asyncio.CancelledError):
                await doomed
            assert await writer.run(insert(4)) == 4
        finally:
            await writer.close()

    asyncio.run(scenario())
    assert stored(db) == [1, 4]


def test_while_another_connection_holds_the_write_lock_the_event_loop_keeps_running(
        tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    connect(db).execute("CREATE TABLE t (v INTEGER)")
    other = connect(db)
    other.execute("BEGIN IMMEDIATE")  # as another process would: the write lock is taken
    other.execute("INSERT INTO t VALUES (1)")

    def connect_with_timeout() -> sqlite3.Connection:
        conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False, timeout=10)
        conn.execute("PRAGMA journal_mode=WAL")
        return conn

    writer = GroupCommitWriter(connect_with_timeout)

    async def scenario() -> int:
        try:
            write = asyncio.ensure_future(writer.run(insert(2)))
            ticks = 0
            for _ in range(20):  # the loop is free while the writer waits for the lock
                await asyncio.sleep(0.005)
                ticks += 1
            assert not write.done()
            other.execute("COMMIT")
            assert await write == 2
            assert await writer.run(insert(4)) == 4  # and the next round begins at once
            return ticks
        finally:
            await writer.close()

    assert asyncio.run(scenario()) == 20
    assert stored(db) == [1, 2, 4]
