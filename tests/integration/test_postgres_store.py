"""What the PostgreSQL store must do beyond the store contract (test_store_contract.py runs that
against it too): claims that stay apart under real concurrency across processes, migrations
serialized by the advisory lock, errors translated at the seam, dropped connections replaced.
Each test has its own scratch database (``tests/postgres_db.py``)."""

from __future__ import annotations

import asyncio
import multiprocessing
import re
import secrets
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import psycopg
import psycopg.errors
import pytest
from postgres_db import ADMIN_URL, fresh_database

from imagegate.contract import SubmitInput
from imagegate.errors import ConfigError, StoreUnavailable
from imagegate.idempotency import Idempotency
from imagegate.money import ChargeState
from imagegate.store.base import ApiKey
from imagegate.store.postgres import POSTGRES, PostgresStore
from imagegate.store.sql import Tx
from imagegate.tasks import Task, TaskState, new_task_id

T = TypeVar("T")
NOW = 1_700_000_000_000


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture
def url() -> Iterator[str]:
    with fresh_database() as database_url:
        yield database_url


@pytest.fixture
def store(url: str) -> Iterator[PostgresStore]:
    s = PostgresStore(url, pool_size=4)
    run(s.migrate())
    try:
        yield s
    finally:
        run(s.close())


def sql(url: str, statement: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(statement.encode())
        return cursor.fetchall() if cursor.description else []


def make_task(created_ms: int) -> Task:
    return Task(id=new_task_id(), account_id="acct", key_id="key", model="nano-banana-2",
                input=SubmitInput(mode="text-to-image", prompt="a fox", aspect_ratio="1:1",
                                  resolution="1k", output_format="png"),
                state=TaskState.QUEUED, created_ms=created_ms, price_micros=1_000,
                charge_state=ChargeState.HELD, result_token=secrets.token_urlsafe(16))


async def open_account(store: PostgresStore, micros: int) -> None:
    await store.create_account("acct", "Ada", NOW)
    await store.create_key(ApiKey(id="key", account_id="acct", name="k", prefix="k",
                                  created_ms=NOW), "hash")
    await store.credit("acct", micros, NOW, "opening")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Claims under real concurrency ------------------------------------------------------------------

CLAIMERS_PER_PROCESS = 4


def claim_until_empty(url: str, worker: str, start: Any) -> list[str]:
    """In a process of its own: claim in CLAIMERS_PER_PROCESS concurrent loops, two at a time,
    until nothing is left; every task id taken."""

    async def claimer(store: PostgresStore, n: int) -> list[str]:
        taken: list[str] = []
        while found := await store.claim_tasks(f"{worker}-{n}", NOW, 60_000, 2):
            taken += [t.id for t in found]
        return taken

    async def scenario() -> list[str]:
        store = PostgresStore(url, pool_size=CLAIMERS_PER_PROCESS)
        try:
            await store.ping()
            start.wait()
            found = await asyncio.gather(*(claimer(store, n)
                                           for n in range(CLAIMERS_PER_PROCESS)))
            return [task_id for ids in found for task_id in ids]
        finally:
            await store.close()

    return asyncio.run(scenario())


def test_concurrent_claims_in_several_processes_never_take_the_same_task(
        store: PostgresStore, url: str) -> None:
    tasks = [make_task(NOW - 10_000 + i) for i in range(240)]

    async def submit() -> None:
        await open_account(store, 10_000_000)
        for task in tasks:
            await store.insert_task(task, 1_000)

    run(submit())
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager, ctx.Pool(3) as pool:
        start = manager.Barrier(3)  # every process connected before any claims
        pending = [pool.apply_async(claim_until_empty, (url, f"w{p}", start)) for p in range(3)]
        taken = [result.get(timeout=60) for result in pending]
    every = [task_id for ids in taken for task_id in ids]
    assert len(every) == len(set(every)), "a task was claimed twice"
    assert set(every) == {t.id for t in tasks}
    assert sum(1 for ids in taken if ids) >= 2, "one process took all: no claims overlapped"
    rows = sql(url, "SELECT state, attempt, COUNT(*) FROM tasks GROUP BY state, attempt")
    assert rows == [("running", 1, len(tasks))]


# Submits under real concurrency -----------------------------------------------------------------

SUBMITS_PER_PROCESS = 60


def submit_all(url: str, max_unfinished: int, start: Any) -> list[str | None]:
    """In a process of its own: SUBMITS_PER_PROCESS concurrent submits of one key; for each,
    None when stored (answered with a task id) or the name of the error that refused it."""

    async def scenario() -> list[str | None]:
        store = PostgresStore(url, pool_size=4)
        try:
            await store.ping()
            start.wait()
            outcomes = await asyncio.gather(
                *(store.insert_task(make_task(NOW + i), max_unfinished)
                  for i in range(SUBMITS_PER_PROCESS)), return_exceptions=True)
            return [type(o).__name__ if isinstance(o, BaseException) else None
                    for o in outcomes]
        finally:
            await store.close()

    return asyncio.run(scenario())


@pytest.mark.parametrize(("balance", "limit", "admitted", "refusal"), [
    (100 * 1_000, 1_000, 100, "PaymentRequired"),
    (10_000_000, 70, 70, "TooManyRequests"),
])
def test_submits_in_several_processes_hold_the_balance_and_the_limit_exactly(
        store: PostgresStore, url: str, balance: int, limit: int, admitted: int,
        refusal: str) -> None:
    run(open_account(store, balance))
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager, ctx.Pool(3) as pool:
        start = manager.Barrier(3)
        pending = [pool.apply_async(submit_all, (url, limit, start)) for _ in range(3)]
        outcomes = [o for result in pending for o in result.get(timeout=60)]
    assert outcomes.count(None) == admitted
    assert set(outcomes) - {None} == {refusal}
    [(stored, held)] = sql(url, "SELECT COUNT(*), COALESCE(SUM(price_micros), 0) FROM tasks")
    assert (stored, held) == (admitted, admitted * 1_000)
    [(left, unfinished)] = sql(url, "SELECT balance_micros, unfinished_tasks "
                                    "FROM accounts, api_keys")
    assert (left, unfinished) == (balance - admitted * 1_000, admitted)
    lines = sql(url, "SELECT amount_micros, balance_after_micros FROM ledger ORDER BY id")
    running = 0
    for amount, after in lines:  # every line says the balance its change left
        running += amount
        assert after == running
    assert running == left


# Migrations -------------------------------------------------------------------------------------


def test_identical_submits_in_concurrent_transactions_store_exactly_one_task(
        store: PostgresStore, url: str) -> None:
    """Several stores (each its own pool, so its own transactions) submit the same request
    under one idempotency key at once: the loser of the race replays, never fails."""
    idem = Idempotency("order-1", "c" * 64)

    async def scenario() -> list[str | BaseException]:
        await open_account(store, 1_000_000)
        others = [PostgresStore(url, pool_size=2) for _ in range(3)]
        try:
            return await asyncio.gather(
                *(s.insert_task(make_task(NOW + i), 100, None, idem)
                  for s in (store, *others) for i in range(4)), return_exceptions=True)
        finally:
            for other in others:
                await other.close()

    answers = run(scenario())
    assert all(isinstance(a, str) for a in answers), answers
    assert len(set(answers)) == 1
    assert sql(url, "SELECT id FROM tasks") == [(answers[0],)]
    assert sql(url, "SELECT task_id FROM idempotency_keys") == [(answers[0],)]
    assert sql(url, "SELECT balance_micros FROM accounts") == [(1_000_000 - 1_000,)]


def test_migrations_apply_on_an_empty_database(url: str) -> None:
    store = PostgresStore(url, pool_size=1)
    try:
        run(store.migrate())
    finally:
        run(store.close())
    versions = [v for (v,) in sql(url, "SELECT version FROM schema_migrations ORDER BY 1")]
    assert versions == [v for v, _ in POSTGRES.migrations]
    tables = {t for (t,) in sql(url, "SELECT table_name FROM information_schema.tables "
                                     "WHERE table_schema = 'public'")}
    assert {"accounts", "api_keys", "ledger", "tasks", "deliveries", "delivery_attempts",
            "webhook_secrets", "store_probe", "schema_migrations"} <= tables


def test_a_second_migrate_changes_nothing(store: PostgresStore, url: str) -> None:
    before = sql(url, "SELECT version, applied_ms FROM schema_migrations ORDER BY 1")
    run(store.migrate())
    assert sql(url, "SELECT version, applied_ms FROM schema_migrations ORDER BY 1") == before


def test_migrate_waits_for_the_advisory_lock(url: str) -> None:
    """A migrate started while another holds the lock creates nothing until it is released."""
    store = PostgresStore(url, pool_size=1)
    try:
        with psycopg.connect(url) as holder:  # a transaction holding the migration lock
            holder.execute(POSTGRES.statement("lock_migrations").encode())
            migrating = threading.Thread(target=lambda: run(store.migrate()))
            migrating.start()
            time.sleep(0.5)
            assert migrating.is_alive()
            assert sql(url, "SELECT to_regclass('accounts') IS NULL") == [(True,)]
        migrating.join(10)
        assert not migrating.is_alive()
    finally:
        run(store.close())
    assert len(sql(url, "SELECT version FROM schema_migrations")) == len(POSTGRES.migrations)


def migrate_at(url: str, start: Any) -> None:
    async def scenario() -> None:
        store = PostgresStore(url, pool_size=1)
        try:
            await store.ping()
            start.wait()
            await store.migrate()
        finally:
            await store.close()

    asyncio.run(scenario())


def test_processes_migrating_at_once_apply_each_migration_once(url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager, ctx.Pool(3) as pool:
        start = manager.Barrier(3)
        pending = [pool.apply_async(migrate_at, (url, start)) for _ in range(3)]
        for result in pending:
            result.get(timeout=60)  # none fails on a table another is creating
    versions = [v for (v,) in sql(url, "SELECT version FROM schema_migrations ORDER BY 1")]
    assert versions == [v for v, _ in POSTGRES.migrations]


def test_a_database_with_a_newer_schema_is_refused(store: PostgresStore, url: str) -> None:
    sql(url, f"INSERT INTO schema_migrations VALUES ({POSTGRES.latest + 1}, 0)")
    with pytest.raises(ConfigError, match="newer"):
        run(store.migrate())


def numbered(statement: str) -> str:
    """The statement with PREPARE's ``$n`` for psycopg's ``%s`` and ``%(name)s``."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        key = match.group(1) or f"#{len(names)}"
        if key not in names:
            names.append(key)
        return f"${names.index(key) + 1}"

    return re.sub(r"%\((\w+)\)s|%s", number, statement)


def test_every_statement_is_valid_against_the_migrated_schema(store: PostgresStore,
                                                               url: str) -> None:
    """PostgreSQL parses and plans each statement, so a typo or a missing column fails here
    even for a statement no other test runs."""
    with psycopg.connect(url, autocommit=True) as conn:
        for name, statement in POSTGRES.statements.items():
            if name == "create_versions":
                continue  # DDL: cannot be prepared, and migrate runs it in every test
            conn.execute(f"PREPARE check_statement AS {numbered(statement)}".encode())
            conn.execute(b"DEALLOCATE check_statement")


# Plans ------------------------------------------------------------------------------------------

# 20,000 tasks of 50 keys over a day, mostly finished, enough that a scan would cost.
_HISTORY = """
INSERT INTO accounts (id, name, balance_micros, created_ms) VALUES ('acct', 'Ada', 0, 0);
INSERT INTO api_keys (id, account_id, key_hash, name, prefix, created_ms)
    SELECT 'key_' || k, 'acct', md5(k::text), 'k', 'k', 0 FROM generate_series(1, 50) AS k;
INSERT INTO tasks (id, account_id, key_id, model, input_json, request_type, provider, state,
    stage, created_ms, price_micros, charge_state, result_token)
SELECT md5(g::text), 'acct', 'key_' || (g % 50 + 1),
    (ARRAY['nano-banana-2', 'nano-banana-pro'])[g % 2 + 1], '{}', 'async', 'auto',
    CASE WHEN g % 97 = 0 THEN 'queued' WHEN g % 13 = 0 THEN 'failed' ELSE 'succeeded' END,
    'done', 1700000000000 + g * 4000, 50000, 'settled', 'token'
FROM generate_series(1, 20000) AS g;
ANALYZE;
"""
_PAGE = {"key": "key_7", "before_ms": 2**63 - 1, "before_id": "", "after_ms": 0,
         "states": ["queued", "running", "succeeded", "failed", "canceled"], "model": None,
         "limit": 21}
_PAGES = {
    "first page": _PAGE,
    "a later page": {**_PAGE, "before_ms": 1700000000000 + 10_000 * 4000, "before_id": "9"},
    "filtered": {**_PAGE, "states": ["failed"], "model": "nano-banana-2",
                 "after_ms": 1700000000000 + 2_000 * 4000},
}


def _plan(conn: psycopg.Connection[Any], params: dict[str, Any], generic: bool) -> str:
    statement = POSTGRES.statement("tasks_of_key")
    with conn.transaction(force_rollback=True):
        if not generic:
            found = conn.execute(f"EXPLAIN (COSTS OFF) {statement}".encode(), params)
            return "\n".join(str(row[0]) for row in found.fetchall())
        conn.execute(b"SET LOCAL plan_cache_mode = force_generic_plan")
        names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", statement)))
        conn.execute(f"PREPARE listing AS {numbered(statement)}".encode())
        values = psycopg.ClientCursor(conn).mogrify(", ".join(["%s"] * len(names)),
                                                    [params[n] for n in names])
        found = conn.execute(f"EXPLAIN (COSTS OFF) EXECUTE listing({values})".encode())
        plan = "\n".join(str(row[0]) for row in found.fetchall())
        conn.execute(b"DEALLOCATE listing")  # a session's, not the transaction's
        return plan


@pytest.mark.parametrize("generic", [False, True], ids=["custom", "generic"])
@pytest.mark.parametrize("page", sorted(_PAGES))
def test_a_page_of_the_task_list_walks_the_keys_index_backwards(
        store: PostgresStore, url: str, page: str, generic: bool) -> None:
    """GET /api/v1/tasks on PostgreSQL: the key's range of tasks_key_created below the cursor
    (never a scan of the table), with the values bound and in the generic plan a prepared
    statement may switch to. A page walks the range backwards in the index's order and stops
    at its size; only for a filter it expects to keep a few rows may the planner rather
    collect the range's matches and sort those."""
    sql(url, _HISTORY)
    with psycopg.connect(url, autocommit=True) as conn:
        plan = _plan(conn, _PAGES[page], generic)
    assert "Seq Scan" not in plan, plan
    key_range = r"Index Cond: \(\(key_id = .*\) AND \(ROW\(created_ms, id\) < ROW\("
    assert re.search(key_range, plan), plan
    if page != "filtered":
        assert "Index Scan Backward using tasks_key_created on tasks" in plan, plan
        assert "Sort" not in plan, plan
    else:
        assert "tasks_key_created" in plan, plan


# The ledger ------------------------------------------------------------------------------------


def test_the_ledger_id_numbers_itself(store: PostgresStore) -> None:
    async def scenario() -> list[int]:
        await open_account(store, 1_000)
        await store.credit("acct", 2_000, NOW, "more")
        await store.credit("acct", -500, NOW, "less")
        return [entry.id for entry in await store.ledger("acct")]

    ids = run(scenario())
    assert len(ids) == 3 and ids == sorted(ids) and len(set(ids)) == 3
    assert all(isinstance(i, int) for i in ids)


# Errors at the seam -----------------------------------------------------------------------------


def test_connection_refused_is_store_unavailable() -> None:
    store = PostgresStore(f"postgresql://postgres@127.0.0.1:{closed_port()}/imagegate",
                          pool_timeout_s=0.3)
    try:
        with pytest.raises(StoreUnavailable):
            run(store.ping())
        with pytest.raises(StoreUnavailable):
            run(store.create_account("acct", "Ada", NOW))
    finally:
        run(store.close())


def test_a_broken_rule_of_the_schema_stays_an_error(store: PostgresStore) -> None:
    run(store.create_account("acct", "Ada", NOW))
    with pytest.raises(psycopg.errors.UniqueViolation):
        run(store.create_account("acct", "Ada again", NOW))
    run(store.ping())  # not a trouble of the database: no probe needed, nothing refused


@pytest.mark.parametrize("error", [psycopg.errors.DiskFull, psycopg.errors.TooManyConnections,
                                   psycopg.errors.AdminShutdown,
                                   psycopg.errors.ReadOnlySqlTransaction])
def test_database_trouble_in_a_write_is_unavailable_until_a_write_succeeds(
        store: PostgresStore, url: str, error: type[psycopg.Error]) -> None:
    def trouble(tx: Tx) -> None:
        tx.run("insert_account", ("acct", "Ada", NOW))
        raise error("as the server would say it")

    with pytest.raises(StoreUnavailable, match="cannot be written"):
        run(store._write(trouble))
    assert sql(url, "SELECT COUNT(*) FROM accounts") == [(0,)]  # rolled back
    assert sql(url, "SELECT COUNT(*) FROM store_probe") == [(0,)]
    run(store.ping())  # writes (and deletes) the probe: the database takes writes again
    run(store.create_account("acct", "Ada", NOW))


def test_dropped_connections_are_replaced_without_failing_a_call(store: PostgresStore,
                                                                 url: str) -> None:
    run(open_account(store, 1_000))
    name = url.rpartition("/")[2]
    killed = sql(ADMIN_URL, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()")
    assert killed, "the pool held no connection to drop"
    assert run(store.get_account("acct")) is not None  # a read
    assert run(store.credit("acct", 1, NOW, "after")) == 1_001  # and a write


def test_a_database_gone_is_unavailable_until_it_takes_a_write_again(url: str) -> None:
    name = url.rpartition("/")[2]
    store = PostgresStore(url, pool_size=2, pool_timeout_s=0.5)
    try:
        run(store.migrate())
        run(open_account(store, 1_000))
        sql(ADMIN_URL, f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
        sql(ADMIN_URL, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       f"WHERE datname = '{name}'")
        with pytest.raises(StoreUnavailable):
            run(store.credit("acct", 1, NOW, "while gone"))
        with pytest.raises(StoreUnavailable):
            run(store.ping())
        sql(ADMIN_URL, f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
        deadline = time.monotonic() + 10
        while True:  # the pool reconnects in the background
            try:
                run(store.ping())  # reads, then writes the probe
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert run(store.credit("acct", 1, NOW, "back")) == 1_001
    finally:
        sql(ADMIN_URL, f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
        run(store.close())


def test_a_deadlock_is_retried_until_both_transactions_commit(store: PostgresStore) -> None:
    """Two transactions lock the same two rows in opposite orders: PostgreSQL aborts one, and the
    store runs it again once the other has committed."""
    async def accounts() -> None:
        await store.create_account("a", "A", NOW)
        await store.create_account("b", "B", NOW)

    run(accounts())
    both_hold_one = threading.Barrier(2, timeout=10)
    runs = {"ab": 0, "ba": 0}

    def transfer(first: str, second: str) -> Any:
        def fn(tx: Tx) -> None:
            runs[first + second] += 1
            assert tx.run("give_back", (1, first)).rowcount == 1  # its answer: the lock is held
            if runs[first + second] == 1:
                both_hold_one.wait()
            tx.run("give_back", (1, second))
        return fn

    async def scenario() -> None:
        await asyncio.gather(store._write(transfer("a", "b")), store._write(transfer("b", "a")))

    run(scenario())
    assert sorted(runs.values()) == [1, 2]
    async def balances() -> list[int]:
        found = [await store.get_account(account_id) for account_id in ("a", "b")]
        return [a.balance_micros for a in found if a is not None]

    assert run(balances()) == [2, 2]


# Configuration ----------------------------------------------------------------------------------


async def many_reads(store: PostgresStore) -> None:
    await asyncio.gather(*(store.count_accounts() for _ in range(40)))


def test_from_url_takes_both_schemes_and_the_pool_size(url: str) -> None:
    name = url.rpartition("/")[2]
    for scheme in ("postgresql", "postgres"):
        store = PostgresStore.from_url(url.replace("postgresql", scheme, 1) + "?pool_size=2")
        try:
            run(store.migrate())
            run(many_reads(store))
            connections = sql(ADMIN_URL, "SELECT COUNT(*) FROM pg_stat_activity "
                                         f"WHERE datname = '{name}'")
            assert connections[0][0] <= 2
        finally:
            run(store.close())


@pytest.mark.parametrize("query", ["pool_size=0", "pool_size=two", "pool_size=1.5",
                                   "pool_timeout=-1"])
def test_from_url_refuses_a_bad_pool_setting(query: str) -> None:
    with pytest.raises(ConfigError):
        PostgresStore.from_url(f"postgresql://postgres@127.0.0.1/imagegate?{query}")


def test_webhook_secrets_and_deliveries_round_trip(store: PostgresStore) -> None:
    """The store methods the contract suite does not reach, on PostgreSQL's statements."""
    async def scenario() -> None:
        await open_account(store, 0)
        first = await store.webhook_secrets("acct", NOW, create="s1")
        assert [s.secret for s in first] == ["s1"]
        assert [s.secret for s in await store.webhook_secrets("acct", NOW, create="s2")] == ["s1"]
        rotated = await store.rotate_webhook_secret("acct", "s3", NOW + 1, 60_000)
        assert [s.secret for s in rotated] == ["s3", "s1"]
        assert [s.secret for s in await store.webhook_secrets("acct", NOW + 60_002)] == ["s3"]
        assert await store.get_delivery("msg_none") is None

    run(scenario())
