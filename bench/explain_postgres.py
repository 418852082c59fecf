"""Show PostgreSQL's plans for the store's hot statements over a large synthetic history.

Run: ``.venv/bin/python bench/explain_postgres.py [--url postgresql://...] [--tasks 200000]``.
Creates a scratch database (dropped at the end), migrates it with the real store, fills it with
``--tasks`` tasks (mostly finished, a backlog of queued ones, some running) and their callback
deliveries (each with one attempt), runs ``ANALYZE``, then prints for each hot path the plan
PostgreSQL picks with the values bound (custom plan) and the one it may switch to once psycopg
has prepared the statement (generic plan, ``plan_cache_mode = force_generic_plan``), each with
its execution time from ``EXPLAIN ANALYZE`` inside a transaction that is rolled back. Writes
them to ``bench/results/postgres_plans.md``. What to look for: every hot path an index scan
that stops at its ``LIMIT``, never a sequential scan or a sort of the whole table.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import re
from pathlib import Path
from typing import Any

import harness
import psycopg

from imagegate.store.postgres import POSTGRES, PostgresStore

RESULTS = Path(__file__).parent / "results" / "postgres_plans.md"
NOW = 1_700_000_000_000
DAY = 86_400_000

FILL = """
INSERT INTO accounts (id, name, balance_micros, created_ms)
    SELECT 'acct_' || a, 'account ' || a, 1000000000, 0 FROM generate_series(1, 100) AS a;
INSERT INTO api_keys (id, account_id, key_hash, name, prefix, created_ms)
    SELECT 'key_' || a, 'acct_' || a, md5(a::text), 'k', 'k', 0 FROM generate_series(1, 100) AS a;
-- Finished tasks over the last 30 days (results kept 15 days, older ones deleted), then a
-- backlog of queued tasks and some running ones.
INSERT INTO tasks (id, account_id, key_id, model, input_json, request_type, provider, state,
    stage, attempt, lease_until_ms, worker_id, not_before_ms, created_ms, complete_ms, expire_ms,
    price_micros, charge_state, result_token, results_json, results_deleted)
SELECT 'tsk_' || g, 'acct_' || (g % 100 + 1), 'key_' || (g % 100 + 1),
    (ARRAY['nano-banana-2', 'nano-banana-pro', 'seedream-4'])[g % 3 + 1],
    '{{"mode": "text-to-image", "prompt": "a lighthouse on a cliff at dusk"}}', 'callback', 'auto',
    CASE WHEN g > {done} + {queued} THEN 'running'
         WHEN g > {done} THEN 'queued'
         WHEN g % 20 = 0 THEN 'failed' ELSE 'succeeded' END,
    CASE WHEN g > {done} + {queued} THEN 'running' WHEN g > {done} THEN 'queued' ELSE 'done' END,
    CASE WHEN g > {done} THEN 0 ELSE 1 END,
    CASE WHEN g > {done} + {queued} THEN {now} + (g % 60) * 1000 - 30000 END,
    CASE WHEN g > {done} + {queued} THEN 'worker-' || (g % 8) END,
    CASE WHEN g > {done} AND g % 10 = 0 THEN {now} + 60000 ELSE 0 END,
    {now} - 30 * {day} + g::bigint * (30 * {day}) / {total},
    CASE WHEN g <= {done} THEN {now} - 30 * {day} + g::bigint * (30 * {day}) / {total} + 9000 END,
    CASE WHEN g <= {done} AND g % 20 <> 0
         THEN {now} - 15 * {day} + g::bigint * (30 * {day}) / {total} END,
    50000, CASE WHEN g > {done} THEN 'held' WHEN g % 20 = 0 THEN 'refunded' ELSE 'settled' END,
    md5(g::text), '[]',
    CASE WHEN g <= {done} AND g::bigint * 2 < {total} THEN 1 ELSE 0 END
FROM generate_series(1, {total}) AS g;
INSERT INTO deliveries (id, task_id, account_id, url, body, state, attempts, next_attempt_ms,
    created_ms)
SELECT 'msg_' || g, 'tsk_' || g, 'acct_' || (g % 100 + 1), 'https://hooks.example.com/x', '{{}}',
    CASE WHEN g > {done} - {pending} THEN 'pending' WHEN g % 50 = 0 THEN 'failed'
         ELSE 'delivered' END,
    1, {now} - 1000 + (g % 5000) * 10, {now} - 30 * {day} + g::bigint * (30 * {day}) / {total}
FROM generate_series(1, {done}) AS g;
INSERT INTO delivery_attempts (delivery_id, attempt, started_ms, duration_ms, status)
SELECT 'msg_' || g, 1, {now} - 30 * {day} + g::bigint * (30 * {day}) / {total}, 120,
    CASE WHEN g % 50 = 0 THEN 500 ELSE 204 END
FROM generate_series(1, {done}) AS g;
ANALYZE;
"""

# A batch of the oldest tasks, as the record prune deletes them with their rows.
PRUNED = [f"tsk_{g}" for g in range(1, 101)]
# The hot paths: (title, statement name, its parameters).
CLAIM = {"lease_until": NOW + 30_000, "worker": "worker-1", "now": NOW, "limit": 8}
# A page of GET /api/v1/tasks (20 asked, one more read): key_7 has 2,000 of the tasks.
PAGE = {"key": "key_7", "before_ms": 2**63 - 1, "before_id": "", "after_ms": 0,
        "states": ["queued", "running", "succeeded", "failed", "canceled"], "model": None,
        "limit": 21}
PATHS: list[tuple[str, str, Any]] = [
    ("status read", "task", ("tsk_12345",)),
    ("claim, any model", "claim_tasks", {**CLAIM, "models": None}),
    ("claim, some models", "claim_tasks", {**CLAIM, "models": ["seedream-4"]}),
    ("expired leases (sweeper)", "expired_leases", (NOW, 100)),
    ("expired results (sweeper)", "expired_results", (NOW, 100)),
    ("overdue queued tasks (sweeper)", "overdue_queued", (NOW - 3_600_000, 100)),
    ("prunable records (sweeper)", "prunable_tasks", (NOW - 20 * DAY, 100)),
    ("prune a batch: delivery attempts", "prune_delivery_attempts", (PRUNED,)),
    ("prune a batch: deliveries", "prune_deliveries", (PRUNED,)),
    ("delivery claim", "claim_deliveries", {"lease_until": NOW + 30_000, "now": NOW,
                                            "limit": 16}),
    ("deliveries of a task", "deliveries_of_task", ("tsk_12345",)),
    ("unfinished-task slot (submit)", "take_unfinished_slot", ("key_7", 100)),
    ("fleet stats (each /metrics scrape)", "fleet_stats", ()),
    ("task list, first page", "tasks_of_key", PAGE),
    ("task list, a page 15 days back", "tasks_of_key",
     {**PAGE, "before_ms": NOW - 15 * DAY, "before_id": "tsk_9"}),
    ("task list, a filter none of the key's 2,000 tasks matches", "tasks_of_key",
     {**PAGE, "states": ["failed", "canceled"], "model": "nano-banana-pro"}),
]


def queue_paths(done: int, queued: int) -> list[tuple[str, str, Any]]:
    """The queue positions of the streams of a process: tasks near the front of the backlog
    (tsk_{done+1} is its oldest), and the same with one stream at its back."""
    front = [f"tsk_{done + g}" for g in range(1, 21)]
    return [
        ("queue positions, 20 streams near the front", "queue_positions",
         {"ids": front, "now": NOW}),
        ("queue positions, one of them at the back of the backlog", "queue_positions",
         {"ids": [*front, f"tsk_{done + queued - 1}"], "now": NOW}),
    ]


def numbered(sql: str, params: Any) -> tuple[str, list[Any]]:
    """The statement with ``$n`` placeholders, for PREPARE, and its values in order."""
    if isinstance(params, dict):
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            if match.group(1) not in names:
                names.append(match.group(1))
            return f"${names.index(match.group(1)) + 1}"

        return re.sub(r"%\((\w+)\)s", number, sql), [params[n] for n in names]
    counter = iter(range(1, 100))
    return re.sub(r"%s", lambda _: f"${next(counter)}", sql), list(params)


# What the prune transaction runs before a statement, in the same (rolled back) transaction:
# EXPLAIN ANALYZE executes the delete, which the rows' foreign keys refuse until their children
# are gone.
RUN_BEFORE = {"prune_deliveries": ("prune_delivery_attempts",)}


def explain(conn: psycopg.Connection[Any], name: str, params: Any, generic: bool) -> str:
    sql = POSTGRES.statement(name)
    with conn.transaction(force_rollback=True):
        for before in RUN_BEFORE.get(name, ()):
            conn.execute(POSTGRES.statement(before).encode(), params)
        if generic:
            conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            prepared, values = numbered(sql, params)
            conn.execute(f"PREPARE hot AS {prepared}".encode())
            args = psycopg.ClientCursor(conn).mogrify(", ".join(["%s"] * len(values)), values)
            call = f"hot({args})" if values else "hot"
            rows = conn.execute(f"EXPLAIN (ANALYZE, COSTS OFF) EXECUTE {call}".encode(),
                                ).fetchall()
            conn.execute("DEALLOCATE hot")
        else:
            rows = conn.execute(f"EXPLAIN (ANALYZE, COSTS OFF) {sql}".encode(),
                                params).fetchall()
    return "\n".join(r[0] for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--tasks", type=int, default=200_000)
    parser.add_argument("--pending", type=int, default=1000,
                        help="callback deliveries pending (of one per finished task)")
    parser.add_argument("--only", help="comma-separated statement names (default: every hot "
                        "path)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the plans")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    total = args.tasks
    queued, running = max(total // 50, 1), max(total // 200, 1)
    done = total - queued - running
    name = f"imagegate_plans_{os.getpid()}"
    with psycopg.connect(args.url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}".encode())
    target = harness.with_database(args.url, name)
    try:
        store = PostgresStore(target, pool_size=1)
        asyncio.run(store.migrate())
        asyncio.run(store.close())
        sections = []
        with psycopg.connect(target, autocommit=True) as conn:
            fill = FILL.format(total=total, done=done, queued=queued, pending=args.pending,
                               now=NOW, day=f"{DAY}::bigint")
            conn.execute(fill.encode())
            version = conn.execute("SHOW server_version").fetchone()
            only = set(args.only.split(",")) if args.only else None
            for title, statement, params in [*PATHS, *queue_paths(done, queued)]:
                if statement not in POSTGRES.statements or (only and statement not in only):
                    continue
                for generic in (False, True):
                    plan = explain(conn, statement, params, generic)
                    kind = "generic plan" if generic else "custom plan"
                    sections.append(f"### {title} ({statement}), {kind}\n\n```\n{plan}\n```\n")
                    print(sections[-1])
    finally:
        with psycopg.connect(args.url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())
    if not args.no_write:
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        head = (f"# PostgreSQL plans of the hot statements\n\n{now} · PostgreSQL "
                f"{version[0] if version else '?'} · {total:,} tasks ({queued:,} queued, "
                f"{running:,} running), {done:,} deliveries ({args.pending:,} pending)\n\n"
                f"Command: `python bench/explain_postgres.py{_flags(args)}`\n\n")
        args.out.write_text(head + "\n".join(sections))


def _flags(args: argparse.Namespace) -> str:
    """The options of this run that change what it measures, as typed."""
    flags = [f" --tasks {args.tasks}"] if args.tasks != 200_000 else []
    if args.only:
        flags.append(f" --only {args.only}")
    if args.out != RESULTS:
        flags.append(f" --out {args.out}")
    return "".join(flags)


if __name__ == "__main__":
    main()
