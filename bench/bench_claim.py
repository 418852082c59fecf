"""Measure the queue claim: what one ``claim_tasks`` of 4 tasks costs with 1 thousand and with
77 thousand tasks queued, on SQLite and on PostgreSQL.

Run: ``.venv/bin/python bench/bench_claim.py [--queued 1000,77000] [--claims 300]
[--databases sqlite,postgresql] [--postgres-url postgresql://...]``. In process: the real
stores (``SqliteStore``, ``PostgresStore``), no HTTP. For PostgreSQL it creates a scratch
database and drops it at the end. Prints a Markdown table and appends it, dated, with the
machine, to ``bench/results/claim.md``.

For each database: one task is submitted through the store as the service does it
(``insert_task``: the hold and the row in one transaction), then copied with SQL in bulk
(``INSERT ... SELECT``, each copy its own id and a later ``created_ms``) until the queue holds
the count; PostgreSQL is then ``VACUUM ANALYZE``d. Two measurements per count:

- ``store.claim_tasks(limit=4)``: the whole call as a worker makes it (thread hop, the write
  transaction with its commit, which syncs the log to disk in both databases, and the rows made
  ``Task`` records). After each claim, outside the timing, 4 new queued tasks are added at the
  tail, so the queue keeps its length and claims keep taking its head, as in a running service;
- the claim statement alone: ``UPDATE ... RETURNING`` of the dialect's ``claim_tasks`` inside a
  transaction that is rolled back (no commit, no sync), on a connection of the script's own.

It also prints how each database plans the statement (SQLite's ``EXPLAIN QUERY PLAN``,
PostgreSQL's ``EXPLAIN (ANALYZE)`` in a rolled-back transaction). For SQLite one more row is a
diagnostic: the statement alone on a copy of the database after ``ANALYZE`` (which the service
never runs), to show what the plan costs once the planner has statistics.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness
import psycopg

from imagegate import accounts
from imagegate.clock import SystemClock
from imagegate.config import Settings
from imagegate.contract import parse_submit
from imagegate.money import MAX_MOVE_MICROS, ChargeState, task_price
from imagegate.store import statements
from imagegate.store.base import Store
from imagegate.tasks import Task, TaskState, new_task_id

RESULTS = Path(__file__).parent / "results" / "claim.md"
MODEL = "nano-banana-2"
BODY = {"request_type": "async", "input": {
    "mode": "text-to-image", "prompt": "a lighthouse on a cliff at dawn, watercolor",
    "aspect_ratio": "1:1", "resolution": "1k"}}
LIMIT = 4
LEASE_MS = 30_000
PREFIX = "imagegate-claim-"
# The template is claimed like any other task: its copies are queued whatever it is now.
QUEUED = {"state": "'queued'", "stage": "'queued'", "attempt": "0", "lease_until_ms": "NULL",
          "worker_id": "NULL", "started_ms": "NULL"}


def new_task(settings: Settings, account_id: str, key_id: str) -> Task:
    """A queued task as ``Tasks.submit`` builds it."""
    model = settings.models[MODEL]
    request = parse_submit(BODY, model.limits)
    return Task(id=new_task_id(), account_id=account_id, key_id=key_id, model=MODEL,
                input=request.input, state=TaskState.QUEUED, created_ms=SystemClock().now_ms(),
                price_micros=task_price(model.prices, request.input.resolution,
                                        request.input.num_images),
                charge_state=ChargeState.HELD, result_token="t" * 24,
                request_type=request.request_type, provider=request.provider)


@dataclass
class Timings:
    ms: list[float]

    def cells(self) -> str:
        ordered = sorted(self.ms)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return (f"{statistics.median(ordered):.2f} | {ordered[int(len(ordered) * 0.9)]:.2f} | "
                f"{p99:.2f} | {statistics.fmean(ordered):.2f}")


@dataclass
class Row:
    database: str
    queued: int
    what: str
    timings: Timings


class Bench:
    """One database: the store, a connection of the script's own, and the queue's template."""

    def __init__(self, kind: str, store: Store, target: str, settings: Settings) -> None:
        self.kind = kind
        self.store = store
        self.target = target  # the SQLite file or the PostgreSQL URL
        self.settings = settings
        self.template_id = ""
        self.copies = 0

    async def prepare(self) -> None:
        await self.store.migrate()
        new = await accounts.create_key(self.store, SystemClock(), name="bench",
                                        credit_micros=MAX_MOVE_MICROS)
        task = new_task(self.settings, new.account.id, new.key.id)
        await self.store.insert_task(task, 10**9)
        self.template_id = task.id

    def queued(self) -> int:
        return self.scalar("SELECT COUNT(*) FROM tasks WHERE state = 'queued'")

    def scalar(self, sql: str) -> int:
        if self.kind == "postgresql":
            with psycopg.connect(self.target) as conn:
                row = conn.execute(sql.encode()).fetchone()
        else:
            with sqlite3.connect(self.target) as db:
                row = db.execute(sql).fetchone()
        assert row is not None
        return int(row[0])

    def add(self, count: int) -> None:
        """``count`` more queued copies of the template, at the tail of the queue."""
        first = self.copies
        self.copies += count
        harness.copy_tasks(self.target, self.template_id, first, self.copies - 1,
                           prefix=PREFIX, step_ms=1, overrides=QUEUED)

    def fill_to(self, queued: int) -> None:
        missing = queued - self.queued()
        while missing > 0:
            step = min(missing, 100_000)
            self.add(step)
            missing -= step
        if self.kind == "postgresql":
            with psycopg.connect(self.target, autocommit=True) as conn:
                conn.execute(b"VACUUM ANALYZE tasks")

    async def store_claims(self, claims: int) -> Timings:
        ms = []
        for _ in range(claims):
            start = time.perf_counter()
            got = await self.store.claim_tasks("bench-worker", SystemClock().now_ms(), LEASE_MS,
                                               LIMIT)
            ms.append((time.perf_counter() - start) * 1000)
            assert len(got) == LIMIT, len(got)
            self.add(LIMIT)  # the queue keeps its length
        return Timings(ms)

    def params(self) -> dict[str, Any]:
        now = SystemClock().now_ms()
        return {"lease_until": now + LEASE_MS, "worker": "bench-statement", "now": now,
                "models": None, "limit": LIMIT}

    def statement_claims(self, claims: int) -> Timings:
        ms = []
        if self.kind == "postgresql":
            sql = statements.POSTGRES["claim_tasks"].encode()
            with psycopg.connect(self.target) as conn:
                for _ in range(claims):
                    params = self.params()
                    with conn.cursor() as cur:
                        start = time.perf_counter()
                        cur.execute(sql, params)
                        got = cur.fetchall()
                        ms.append((time.perf_counter() - start) * 1000)
                    conn.rollback()
                    assert len(got) == LIMIT
            return Timings(ms)
        db = sqlite3.connect(self.target, isolation_level=None)
        try:
            for _ in range(claims):
                params = self.params()
                db.execute("BEGIN IMMEDIATE")
                start = time.perf_counter()
                got = db.execute(statements.SQLITE["claim_tasks"], params).fetchall()
                ms.append((time.perf_counter() - start) * 1000)
                db.execute("ROLLBACK")
                assert len(got) == LIMIT
        finally:
            db.close()
        return Timings(ms)

    def analyzed_copy(self, path: Path) -> Bench:
        """(SQLite) This database copied to ``path`` and ``ANALYZE``d: a diagnostic."""
        with sqlite3.connect(self.target) as src, sqlite3.connect(path) as dst:
            src.backup(dst)
            dst.execute("ANALYZE")
        copy = Bench(self.kind, self.store, str(path), self.settings)
        copy.template_id = self.template_id
        return copy

    def plan(self) -> str:
        if self.kind == "postgresql":
            sql = b"EXPLAIN (ANALYZE, COSTS OFF) " + statements.POSTGRES["claim_tasks"].encode()
            with psycopg.connect(self.target) as conn:
                lines = [str(r[0]) for r in conn.execute(sql, self.params()).fetchall()]
                conn.rollback()
            return "\n".join(lines)
        with sqlite3.connect(self.target) as db:
            rows = db.execute("EXPLAIN QUERY PLAN " + statements.SQLITE["claim_tasks"],
                              self.params()).fetchall()
        return "\n".join(str(r[-1]) for r in rows)


async def run_database(kind: str, work: Path, args: argparse.Namespace,
                       scratch: list[str]) -> tuple[list[Row], list[str]]:
    data_dir = work / kind
    data_dir.mkdir()
    settings = Settings.load(None, env={}, data_dir=str(data_dir))
    store: Store
    if kind == "postgresql":
        url = harness.create_scratch_database(args.postgres_url, "claim")
        scratch.append(url)
        from imagegate.store.postgres import PostgresStore

        store = PostgresStore.from_url(url)
        target = url.partition("?")[0]
    else:
        from imagegate.store.sqlite import SqliteStore

        target = str(data_dir / "imagegate.db")
        store = SqliteStore(target)
    bench = Bench(kind, store, target, settings)
    rows: list[Row] = []
    plans = []
    try:
        await bench.prepare()
        for queued in args.queued:
            started = time.perf_counter()
            bench.fill_to(queued)
            print(f"{kind}: {bench.queued():,} queued (filled in "
                  f"{time.perf_counter() - started:.1f} s)", flush=True)
            await bench.store_claims(args.warmup)
            stored = await bench.store_claims(args.claims)
            alone = bench.statement_claims(args.claims)
            left = bench.queued()
            measured = [("store.claim_tasks (commit included)", stored),
                        ("claim statement alone (rolled back)", alone)]
            plans.append(f"{kind}, {left:,} queued:\n\n" + indent(bench.plan()))
            if kind == "sqlite":
                analyzed = bench.analyzed_copy(data_dir / f"analyzed-{queued}.db")
                measured.append(("diagnostic: statement alone after ANALYZE",
                                 analyzed.statement_claims(args.claims)))
                plans.append(f"{kind}, {left:,} queued, after ANALYZE (diagnostic):\n\n"
                             + indent(analyzed.plan()))
                os.remove(analyzed.target)
            for what, timings in measured:
                rows.append(Row(kind, left, what, timings))
                print(f"  {what}: median {statistics.median(timings.ms):.2f} ms", flush=True)
    finally:
        await store.close()
    return rows, plans


def indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def table(rows: list[Row]) -> str:
    out = ["| database | queued | measured | median ms | p90 ms | p99 ms | mean ms |",
           "|---|---|---|---|---|---|---|"]
    out += [f"| {r.database} | {r.queued:,} | {r.what} | {r.timings.cells()} |" for r in rows]
    return "\n".join(out)


def machine(args: argparse.Namespace) -> str:
    text = (f"{platform.machine()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
            f"SQLite {sqlite3.sqlite_version}")
    if "postgresql" in args.databases:
        with psycopg.connect(args.postgres_url) as conn:
            row = conn.execute(b"SHOW server_version").fetchone()
        text += f", PostgreSQL {row[0] if row else '?'} on the same machine"
    return f"{text}, {harness.source_version()}"


def report(args: argparse.Namespace, rows: list[Row], plans: list[str]) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = " ".join(["python", "bench/bench_claim.py", *sys.argv[1:]])
    return (f"## {now}\n\n{machine(args)}\n\nCommand: `{command}`; {args.claims} claims of "
            f"{LIMIT} per row after {args.warmup} unmeasured ones; the queue topped up by "
            f"{LIMIT} after each store claim, so 'queued' holds through the row\n\n"
            f"{table(rows)}\n\nPlans of the claim statement:\n\n" + "\n\n".join(plans))


def write_results(text: str) -> None:
    harness.append_section(RESULTS, "Queue claim", "bench_claim.py", text)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ints: Callable[[str], list[int]] = lambda s: [int(x) for x in s.split(",")]  # noqa: E731
    parser.add_argument("--queued", type=ints, default=[1_000, 77_000],
                        help="queue lengths, ascending")
    parser.add_argument("--claims", type=int, default=300, help="measured claims per row")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured claims first")
    parser.add_argument("--databases", type=lambda s: s.split(","),
                        default=["sqlite", "postgresql"])
    parser.add_argument("--postgres-url", default=harness.POSTGRES_SERVER,
                        help="a server where a scratch database may be created")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.queued != sorted(args.queued) or set(args.databases) - {"sqlite", "postgresql"}:
        parser.error("--queued takes ascending counts, --databases sqlite,postgresql")
    return args


def main() -> None:
    args = parse_args()
    harness.stop_on_sigterm()
    print(machine(args), flush=True)
    rows: list[Row] = []
    plans: list[str] = []
    scratch: list[str] = []
    with tempfile.TemporaryDirectory(prefix="imagegate-claim-") as tmp:
        try:
            for kind in args.databases:
                found, planned = asyncio.run(run_database(kind, Path(tmp), args, scratch))
                rows += found
                plans += planned
        finally:
            for url in scratch:
                harness.drop_scratch_database(url)
    text = report(args, rows, plans)
    print("\n" + text)
    if not args.no_write:
        write_results(text)
        print(f"\nappended to {RESULTS}")


if __name__ == "__main__":
    main()
