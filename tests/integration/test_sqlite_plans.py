"""The hot statements' plans on SQLite, which never gathers statistics: each finds its rows
through an index and stops at its limit, whatever the size of the backlog (a claim that sorted
every queued task cost 46 ms at 77,000 of them)."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path

import pytest

from imagegate.store.sqlite import SQLITE, SqliteStore

# statement -> the index its table access must use
HOT = {
    "claim_tasks": "tasks_queued",
    "overdue_queued": "tasks_queued",
    "expired_leases": "tasks_running",
    "expired_results": "tasks_expiring",
    "prunable_tasks": "tasks_prunable",
    "prune_delivery_attempts": "sqlite_autoindex_delivery_attempts_1",
    "prune_deliveries": "deliveries_task",
    "prune_tasks": "sqlite_autoindex_tasks_1",
    "claim_deliveries": "deliveries_pending",
    "task": "sqlite_autoindex_tasks_1",
    "tasks_by_ids": "sqlite_autoindex_tasks_1",
    "lock_keys": "sqlite_autoindex_api_keys_1",
    "lock_balances": "sqlite_autoindex_accounts_1",
    "tasks_of_key": "tasks_key_created",
}


@pytest.fixture(scope="module")
def conn(tmp_path_factory: pytest.TempPathFactory) -> sqlite3.Connection:
    path = Path(tmp_path_factory.mktemp("plans")) / "db.sqlite"
    store = SqliteStore(path)

    async def migrate() -> None:
        await store.migrate()
        await store.close()

    asyncio.run(migrate())
    return sqlite3.connect(path)


def plan(conn: sqlite3.Connection, name: str) -> list[str]:
    sql = SQLITE.statement(name)
    names = re.findall(r":(\w+)", sql)
    params: dict[str, None] | list[None] = (dict.fromkeys(names) if names
                                            else [None] * sql.count("?"))
    return [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]


@pytest.mark.parametrize("name", sorted(HOT))
def test_a_hot_statement_uses_its_index_and_never_sorts(conn: sqlite3.Connection,
                                                        name: str) -> None:
    steps = plan(conn, name)
    assert any(HOT[name] in step for step in steps), steps
    assert not any("TEMP B-TREE" in step for step in steps), steps
    # The only scans allowed: a list of ids, and an index walked in order up to a LIMIT.
    for step in steps:
        if step.startswith("SCAN"):
            assert "json_each" in step or f"USING INDEX {HOT[name]}" in step, steps


def test_the_claim_finds_the_tasks_it_takes_by_primary_key(conn: sqlite3.Connection) -> None:
    assert plan(conn, "claim_tasks")[0].startswith(
        "SEARCH tasks USING INDEX sqlite_autoindex_tasks_1 (id=?)")


def test_the_prune_checks_each_tasks_callbacks_by_its_index(conn: sqlite3.Connection) -> None:
    # Record retention walks tasks whose results are deleted, oldest first, and looks up
    # only the deliveries of each one it considers.
    steps = plan(conn, "prunable_tasks")
    assert steps[0] == "SEARCH tasks USING INDEX tasks_prunable (complete_ms<?)", steps
    assert "SEARCH deliveries USING INDEX deliveries_task (task_id=?)" in steps, steps


def test_the_task_list_reads_one_keys_range_of_its_index(conn: sqlite3.Connection) -> None:
    """A page of GET /api/v1/tasks: the key's tasks between the time window and the cursor,
    walked newest first in the index's own order (no sort), filters checked on each row."""
    steps = plan(conn, "tasks_of_key")
    assert steps[0] == ("SEARCH tasks USING INDEX tasks_key_created "
                        "(key_id=? AND created_ms>? AND (created_ms,id)<(?,?))"), steps
    assert len([s for s in steps if s.startswith(("SCAN", "SEARCH"))]) == 2, steps  # + states


def test_the_fleet_stats_read_only_the_partial_indexes_of_the_backlog(
        conn: sqlite3.Connection) -> None:
    """/metrics reads queued and running tasks and pending deliveries at every scrape: through
    their partial indexes, never a scan of every task ever submitted."""
    steps = plan(conn, "fleet_stats")
    reads = [step for step in steps if step.startswith(("SCAN", "SEARCH"))]
    assert len(reads) == 3, steps
    for step, index in zip(reads, ("tasks_queued", "tasks_running", "deliveries_pending"),
                           strict=True):
        assert f"USING INDEX {index}" in step or f"USING COVERING INDEX {index}" in step, steps
