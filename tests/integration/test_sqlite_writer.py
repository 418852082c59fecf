"""Group commit: jobs queued together commit together, and a failing job fails alone."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from imagegate.store.sqlite_writer import GroupCommitWriter


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


def test_a_failing_job_is_rolled_back_alone(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    connect(db).execute("CREATE TABLE t (v INTEGER)")
    gate = threading.Event()
    writer = GroupCommitWriter(lambda: connect(db))

    def insert(v: int):  # type: ignore[no-untyped-def]
        def job(c: sqlite3.Connection) -> int:
            c.execute("INSERT INTO t VALUES (?)", (v,))
            if v == 3:
                raise ValueError("job 3 fails after writing")
            return v
        return job

    def hold(c: sqlite3.Connection) -> None:
        gate.wait(5)  # the writer is busy: the next jobs queue up into one round

    async def scenario() -> list[object]:
        first = asyncio.ensure_future(writer.run(hold))
        await asyncio.sleep(0.05)
        jobs = [asyncio.ensure_future(writer.run(insert(v))) for v in range(1, 6)]
        await asyncio.sleep(0.05)
        gate.set()
        await first
        return list(await asyncio.gather(*jobs, return_exceptions=True))

    results = asyncio.run(scenario())
    writer.close()
    assert results[:2] == [1, 2] and results[3:] == [4, 5]
    assert isinstance(results[2], ValueError)
    stored = sorted(v for (v,) in connect(db).execute("SELECT v FROM t"))
    assert stored == [1, 2, 4, 5]


def test_an_unopenable_database_fails_every_caller(tmp_path: Path) -> None:
    def broken() -> sqlite3.Connection:
        raise sqlite3.OperationalError("unable to open database file")

    writer = GroupCommitWriter(broken)
    with pytest.raises(sqlite3.OperationalError):
        asyncio.run(writer.run(lambda c: None))
    writer.close()


def test_a_job_cancelled_before_it_runs_is_skipped_and_the_writer_lives_on(
        tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    connect(db).execute("CREATE TABLE t (v INTEGER)")
    gate = threading.Event()
    writer = GroupCommitWriter(lambda: connect(db))

    def hold(c: sqlite3.Connection) -> None:
        gate.wait(5)

    def insert(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO t VALUES (1)")

    async def scenario() -> None:
        first = asyncio.ensure_future(writer.run(hold))
        await asyncio.sleep(0.05)
        doomed = asyncio.ensure_future(writer.run(insert))
        await asyncio.sleep(0.01)
        doomed.cancel()  # its caller gives up while it waits in the queue
        await asyncio.sleep(0.05)  # the cancellation reaches the queued job
        gate.set()
        await first
        await writer.run(lambda c: c.execute("INSERT INTO t VALUES (2)"))

    asyncio.run(scenario())
    writer.close()
    assert [v for (v,) in connect(db).execute("SELECT v FROM t")] == [2]
