"""Compare PostgreSQL drivers on the status-read path: one SELECT of a task by primary key,
its row as a dict, from many concurrent coroutines of one event loop.

Run: ``.venv/bin/python bench/bench_postgres_driver.py [--url postgresql://...] [--seconds 5]
[--readers 64] [--pools 4,16]``. Creates a scratch database (dropped at the end) with the real
schema and ``--tasks`` finished tasks, then for each pool size measures:

- ``psycopg sync pool``: psycopg 3's ``ConnectionPool``, each read in a thread of an executor
  sized to the pool (how ``store/postgres.py`` runs every transaction);
- ``psycopg async pool``: psycopg 3's ``AsyncConnectionPool`` on the event loop;
- ``asyncpg pool``: asyncpg's pool on the event loop, its ``Record`` made a dict.

Prints a Markdown table and appends it, with the date and the machine, to
``bench/results/postgres_driver.md``. The server shares the machine's CPUs with the client, so
"client CPU" (this process's CPU time per read) says what each driver costs the API process.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import harness
import psycopg
import psycopg_pool
from psycopg.rows import dict_row

from imagegate.store.schema import POSTGRES_MIGRATIONS

RESULTS = Path(__file__).parent / "results" / "postgres_driver.md"
STATUS_SQL = "SELECT * FROM tasks WHERE id = %s"
SEED_SQL = """
INSERT INTO accounts (id, name, balance_micros, created_ms) VALUES ('acct', 'bench', 0, 0);
INSERT INTO tasks (id, account_id, key_id, model, input_json, request_type, provider, state,
    stage, created_ms, price_micros, charge_state, result_token, results_json, attempts_json)
SELECT 'tsk_' || g, 'acct', 'key', 'nano-banana-2',
    '{"mode": "text-to-image", "prompt": "a lighthouse on a cliff at dusk, gulls overhead, long '
    'exposure, film grain", "aspect_ratio": "1:1", "resolution": "1k", "output_format": "png", '
    '"image_urls": []}',
    'sync', 'auto', 'succeeded', 'done', g, 50000, 'settled', md5(g::text),
    '[{"key": "r/0.png", "name": "0.png", "content_type": "image/png", "size": 123456, '
    '"width": 1024, "height": 1024}]',
    '[{"number": 1, "route": "sandbox", "outcome": "success", "duration_ms": 900}]'
FROM generate_series(1, %s) AS g;
ANALYZE tasks;
"""

Read = Callable[[str], Awaitable[dict[str, Any] | None]]


def create_database(url: str, name: str, tasks: int) -> str:
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name}")
    target = harness.with_database(url, name)
    with psycopg.connect(target, autocommit=True) as conn:
        for _, sql in POSTGRES_MIGRATIONS:
            conn.execute(sql.encode())
        conn.execute(SEED_SQL.replace("%s", str(tasks)).encode())
    return target


def drop_database(url: str, name: str) -> None:
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def measure(read: Read, tasks: int, readers: int, seconds: float) -> dict[str, float]:
    """Run ``readers`` coroutines reading random tasks for ``seconds``; reads/s, latencies in
    ms and this process's CPU microseconds per read."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def reader(seed: int) -> None:
        n = seed
        while time.perf_counter() < deadline:
            n = (n * 1103515245 + 12345) % 2**31
            start = time.perf_counter()
            row = await read(f"tsk_{n % tasks + 1}")
            latencies.append(time.perf_counter() - start)
            assert row is not None and row["state"] == "succeeded"

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(reader(i) for i in range(readers)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    ms = sorted(x * 1000 for x in latencies)
    return {"rps": len(ms) / wall, "p50": statistics.median(ms),
            "p99": ms[int(len(ms) * 0.99)], "cpu_us": cpu / len(ms) * 1e6}


async def psycopg_sync(url: str, size: int, run: Callable[[Read], Awaitable[dict[str, float]]],
                       ) -> dict[str, float]:
    pool = psycopg_pool.ConnectionPool(url, min_size=size, max_size=size, open=True,
                                       kwargs={"autocommit": True, "row_factory": dict_row})
    pool.wait()
    executor = ThreadPoolExecutor(size)
    loop = asyncio.get_running_loop()

    def blocking(task_id: str) -> dict[str, Any] | None:
        with pool.connection() as conn:
            return conn.execute(STATUS_SQL, (task_id,)).fetchone()

    async def read(task_id: str) -> dict[str, Any] | None:
        return await loop.run_in_executor(executor, blocking, task_id)

    try:
        return await run(read)
    finally:
        executor.shutdown()
        pool.close()


async def psycopg_async(url: str, size: int,
                        run: Callable[[Read], Awaitable[dict[str, float]]]) -> dict[str, float]:
    pool = psycopg_pool.AsyncConnectionPool(
        url, min_size=size, max_size=size, open=False,
        kwargs={"autocommit": True, "row_factory": dict_row})
    await pool.open(wait=True)

    async def read(task_id: str) -> dict[str, Any] | None:
        async with pool.connection() as conn:
            cursor = await conn.execute(STATUS_SQL, (task_id,))
            return await cursor.fetchone()

    try:
        return await run(read)
    finally:
        await pool.close()


async def asyncpg_pool(url: str, size: int,
                       run: Callable[[Read], Awaitable[dict[str, float]]]) -> dict[str, float]:
    pool = await asyncpg.create_pool(url, min_size=size, max_size=size)
    sql = STATUS_SQL.replace("%s", "$1")

    async def read(task_id: str) -> dict[str, Any] | None:
        async with pool.acquire() as conn:
            record = await conn.fetchrow(sql, task_id)
            return None if record is None else dict(record)

    try:
        return await run(read)
    finally:
        await pool.close()


DRIVERS = {"psycopg sync pool + threads": psycopg_sync, "psycopg async pool": psycopg_async,
           "asyncpg pool": asyncpg_pool}


async def bench(url: str, args: argparse.Namespace) -> list[str]:
    lines = []
    for size in args.pools:
        for name, driver in DRIVERS.items():
            async def run(read: Read) -> dict[str, float]:
                await measure(read, args.tasks, args.readers, args.warmup)
                return await measure(read, args.tasks, args.readers, args.seconds)

            r = await driver(url, size, run)
            line = (f"| {name} | {size} | {r['rps']:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} "
                    f"| {r['cpu_us']:.0f} |")
            print(line, flush=True)
            lines.append(line)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="a database to create the scratch database from")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--readers", type=int, default=64)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--pools", type=lambda s: [int(x) for x in s.split(",")],
                        default=[4, 16])
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    name = f"imagegate_bench_{os.getpid()}"
    header = ("| driver | pool | reads/s | p50 ms | p99 ms | client CPU µs/read |\n"
              "|---|---|---|---|---|---|")
    print(header)
    target = create_database(args.url, name, args.tasks)
    try:
        lines = asyncio.run(bench(target, args))
        with psycopg.connect(target) as conn:
            server = conn.execute("SHOW server_version").fetchone()
    finally:
        drop_database(args.url, name)
    if not args.no_write:
        write(args, header, lines, server[0] if server else "?")


def write(args: argparse.Namespace, header: str, lines: list[str], server: str) -> None:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = (f"{platform.machine()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
               f"PostgreSQL {server} on the same machine, psycopg {psycopg.__version__}, "
               f"psycopg_pool {psycopg_pool.__version__}, asyncpg {asyncpg.__version__}")
    if not RESULTS.exists():
        RESULTS.write_text("# PostgreSQL driver benchmark: the status read\n")
    section = (f"\n## {now}\n\n{machine} · {args.readers} concurrent readers, "
               f"{args.seconds:g} s each after {args.warmup:g} s warm-up, {args.tasks} tasks\n\n"
               f"Command: `python bench/bench_postgres_driver.py`\n\n{header}\n"
               + "\n".join(lines) + "\n")
    with RESULTS.open("a") as out:
        out.write(section)


if __name__ == "__main__":
    main()
