"""Measure the status read of ``imagegate api`` over a database of 1 thousand, then 1 million
finished tasks, on SQLite and on PostgreSQL: does it stay flat as the history grows?

Run: ``.venv/bin/python bench/bench_status_scale.py [--scales 1000,1000000]
[--databases sqlite,postgresql] [--postgres-url postgresql://...] [--seconds 10]``. Needs
``wrk`` on PATH and, for PostgreSQL, a server where it may create and drop a scratch database.
Prints a Markdown table and appends it, dated, with the machine, to
``bench/results/status_scale.md``.

For each database:

1. a key is created (``imagegate keys create``), then ``imagegate api`` and one ``imagegate
   worker`` run one real task to ``success``: that row, as the service wrote it, is the template;
2. the template is copied with SQL in bulk (``INSERT ... SELECT``) until the table holds the
   scale's count: each copy has its own id (32 hex characters, as ``new_task_id`` makes them),
   result token, times and result keys, the rest as written (state ``succeeded``, charge
   ``settled``, results, route attempts); PostgreSQL is then ``VACUUM ANALYZE``d;
3. ``imagegate api`` (no worker) answers ``GET /api/v1/statusTask/...`` for task ids drawn at
   random, uniformly, from every task in the table (wrk, each thread its own seed);
4. the same again with the process's cache of finished answers off (``uncached-api``: this
   script starting the same app with ``imagegate.app.tasks.FINISHED_CACHE = 0``), so every
   request reads the database, at both scales;
5. ``imagegate api`` as shipped again, the ids drawn uniformly from the newest ``--recent``
   (10,000) tasks by ``created_ms`` (read from the table): what clients polling their recent
   tasks ask. At a scale of at most ``--recent`` tasks that is every task.

The shipped process keeps the last 50,000 finished answers it rendered. So the rows answer three
questions apart: the cache-off rows, whether the database read itself stays flat from 1 thousand
to 1 million; the newest-tasks rows, whether the process as shipped stays flat when the polled
tasks fit its cache; the uniform rows of the shipped process, what a draw over every task costs
at 1 million, where most reads miss the cache. The "read the database" column says which share
of the measured requests missed the cache, from an LRU replay of the same number of uniform
draws over the same ids (warm-up included); on PostgreSQL the table's ``idx_scan`` counter over
the process's life (warm-up and measurement) is given as a check.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bench_api
import harness
from bench_api import LUA_COMMON, STATUS_PATH, Load, WrkResult, lua_string, run_wrk
from harness import POSTGRES_SERVER, Server, imagegate_env

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "status_scale.md"
CACHE = 50_000  # imagegate.app.tasks.FINISHED_CACHE, replayed below
ID_PREFIX = "imagegate-bench-"
CHUNK = 200_000


# The uncached API (started as this script's subcommand) ---------------------------------------


def create_uncached_app() -> Any:
    """``imagegate api``'s app with the cache of finished answers at ``BENCH_FINISHED_CACHE``
    entries (0, off, unless set: every status reads the database) and, when
    ``BENCH_SWITCH_INTERVAL`` is set, the interpreter's GIL switch interval at that many seconds
    (a diagnostic). Imported by name by granian's worker process."""
    import imagegate.app.tasks
    from imagegate.api.app import create_api_app_from_env

    # read by Tasks._remember at each call
    imagegate.app.tasks.FINISHED_CACHE = int(os.environ.get("BENCH_FINISHED_CACHE", "0"))
    if os.environ.get("BENCH_SWITCH_INTERVAL"):
        sys.setswitchinterval(float(os.environ["BENCH_SWITCH_INTERVAL"]))
    return create_api_app_from_env()


def uncached_api(data_dir: str, port: int, cache: int, switch_interval: float | None) -> None:
    """What ``imagegate api`` does, with ``create_uncached_app`` as the app."""
    from imagegate import serving
    from imagegate.config import Settings
    from imagegate.logs import configure_logging

    os.environ["BENCH_FINISHED_CACHE"] = str(cache)
    if switch_interval is not None:
        os.environ["BENCH_SWITCH_INTERVAL"] = str(switch_interval)
    settings = Settings.load(None, data_dir=data_dir, port=port)
    configure_logging(settings.log_level)
    sys.path.insert(0, str(HERE))  # granian's worker imports this module by name
    serving.run(settings, None, f"{Path(__file__).stem}:create_uncached_app")


# The database ---------------------------------------------------------------------------------


@dataclass
class Database:
    kind: str  # sqlite or postgresql
    data_dir: Path
    url: str  # "" for SQLite in data_dir
    template_id: str = ""
    copies: int = 0  # bulk rows so far: copies 0 .. copies - 1 of the template

    @property
    def env(self) -> dict[str, str]:
        extra = {"database_url": self.url} if self.url else {}
        return imagegate_env("warning", **extra)

    def count(self) -> int:
        return self._one("SELECT COUNT(*) FROM tasks")

    def idx_scans(self) -> int:
        return self._one("SELECT COALESCE(idx_scan, 0) FROM pg_stat_user_tables "
                         "WHERE relname = 'tasks'")

    def _one(self, sql: str) -> int:
        if self.url:
            import psycopg

            with psycopg.connect(self.url) as conn:
                row = conn.execute(sql.encode()).fetchone()
        else:
            with sqlite3.connect(self.data_dir / "imagegate.db") as db:
                row = db.execute(sql).fetchone()
        assert row is not None
        return int(row[0])

    def template_row(self) -> dict[str, Any]:
        sql = "SELECT * FROM tasks WHERE id = "
        if self.url:
            import psycopg
            from psycopg.rows import dict_row

            with psycopg.connect(self.url, row_factory=dict_row) as conn:
                row = conn.execute((sql + "%s").encode(), (self.template_id,)).fetchone()
        else:
            with sqlite3.connect(self.data_dir / "imagegate.db") as db:
                db.row_factory = sqlite3.Row
                found = db.execute(sql + "?", (self.template_id,)).fetchone()
                row = dict(found) if found else None
        assert row is not None
        return dict(row)

    def grow_to(self, total: int) -> float:
        """Copy the template until the table holds ``total`` tasks; the seconds it took."""
        start = time.perf_counter()
        target = total - 1  # the template itself is one of them
        while self.copies < target:
            last = min(target, self.copies + CHUNK) - 1
            harness.copy_tasks(self.url or str(self.data_dir / "imagegate.db"),
                               self.template_id, self.copies, last, prefix=ID_PREFIX,
                               step_ms=-1000)
            self.copies = last + 1
            print(f"    {self.copies + 1:,} tasks", flush=True)
        if self.url:
            import psycopg

            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute(b"VACUUM ANALYZE tasks")
        return time.perf_counter() - start

    def write_ids(self, path: Path) -> int:
        """Every task's status path, one a line (the wrk script reads them); how many."""
        with path.open("w") as out:
            out.write(f"{STATUS_PATH}{self.template_id}\n")
            for g in range(self.copies):
                out.write(f"{STATUS_PATH}{harness.copy_id(ID_PREFIX, g)}\n")
        return self.copies + 1

    def write_newest_ids(self, path: Path, count: int) -> int:
        """The status paths of the newest ``count`` tasks by ``created_ms``, read from the
        table, one a line; how many."""
        sql = "SELECT id FROM tasks ORDER BY created_ms DESC, id LIMIT "
        if self.url:
            import psycopg

            with psycopg.connect(self.url) as conn:
                ids = [r[0] for r in conn.execute((sql + "%s").encode(), (count,))]
        else:
            with sqlite3.connect(self.data_dir / "imagegate.db") as db:
                ids = [r[0] for r in db.execute(sql + "?", (count,))]
        path.write_text("".join(f"{STATUS_PATH}{i}\n" for i in ids))
        return len(ids)


def prepare(kind: str, work: Path, postgres_url: str, scratch: list[str]) -> tuple[Database, str]:
    """A database with a key and one task the service ran to success; the key."""
    data_dir = work / kind
    data_dir.mkdir(parents=True)
    url = ""
    if kind == "postgresql":
        url = harness.create_scratch_database(postgres_url, "status")
        scratch.append(url)
    db = Database(kind, data_dir, url)
    key = harness.create_key(data_dir, db.env)
    api = harness.start_imagegate(data_dir, db.env, process="api", name="imagegate api")
    try:
        worker = harness.start_worker(data_dir, db.env)
        try:
            db.template_id = bench_api.seed_tasks(api, key, 1)[0]
        finally:
            worker.stop()
    finally:
        api.stop()
    return db, key


# wrk ------------------------------------------------------------------------------------------


def random_status_script(ids_file: Path, key: str) -> str:
    """GET status of a uniformly drawn id of ``ids_file`` per request, each thread its seed."""
    return LUA_COMMON + f"""
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("seed", counter * 7919 + os.time())
  table.insert(threads, thread)
end
wrk.headers["Authorization"] = {lua_string("Bearer " + key)}
function init(args)
  statuses = {{}}
  math.randomseed(seed)
  paths = {{}}
  for line in io.lines({lua_string(str(ids_file))}) do paths[#paths + 1] = line end
end
function request()
  return wrk.format("GET", paths[math.random(#paths)])
end
"""


def measure_both(name: str, base_url: str, lua: str, work: Path,
                 load: Load) -> tuple[WrkResult, WrkResult]:
    """The warm-up's result and the measurement's."""
    script = work / f"{name}.lua"
    script.write_text(lua)
    warm = run_wrk(base_url + "/", script, load.warmup, load)
    result = run_wrk(base_url + "/", script, load.seconds, load)
    print(f"  {name}: {result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} ms, p99 "
          f"{result.p99_ms:.2f} ms, statuses {result.statuses}, socket errors "
          f"{result.socket_errors}", flush=True)
    return warm, result


def cache_misses(ids: int, warm: int, measured: int, seed: int = 1) -> float:
    """Share of ``measured`` uniform draws over ``ids`` ids (after ``warm`` of them) that an LRU
    of ``CACHE`` entries misses: the status reads that go to the database."""
    rng = random.Random(seed)
    lru: OrderedDict[int, None] = OrderedDict()
    misses = 0
    for n in range(warm + measured):
        i = rng.randrange(ids)
        if i in lru:
            lru.move_to_end(i)
        else:
            misses += n >= warm
            lru[i] = None
            if len(lru) > CACHE:
                lru.popitem(last=False)
    return misses / measured if measured else 0.0


# Phases ---------------------------------------------------------------------------------------


@dataclass
class Row:
    database: str
    tasks: int
    process: str
    draw: str  # "all" (uniform over every task) or "newest" (the newest --recent tasks)
    drawn: int  # how many ids the draw is over
    result: WrkResult
    db_share: float
    pg_check: str

    @property
    def draw_label(self) -> str:
        if self.draw == "all":
            return f"uniform, all {self.drawn:,}"
        return f"uniform, newest {self.drawn:,} by created_ms"


def start_uncached(data_dir: Path, env: dict[str, str], *, cache: int = 0,
                   switch_interval: float | None = None) -> Server:
    """``uncached-api``: ``imagegate api`` with a cache of ``cache`` finished answers (off by
    default) and, given, the GIL switch interval."""
    port = harness.free_port()
    extra = [] if switch_interval is None else ["--switch-interval", str(switch_interval)]
    return harness.start_server([sys.executable, str(Path(__file__).resolve()), "uncached-api",
                                 "--data-dir", str(data_dir), "--port", str(port), "--cache",
                                 str(cache), *extra], env, port, "/readyz",
                                data_dir / "uncached-api.log", name="uncached api")


def measure_scale(db: Database, key: str, total: int, work: Path, load: Load,
                  uncached: bool, recent: int) -> list[Row]:
    ids_file = work / f"ids-{db.kind}-{total}.txt"
    ids = db.write_ids(ids_file)
    draws = {"all": (ids, random_status_script(ids_file, key))}
    if recent > 0:
        newest_file = work / f"ids-{db.kind}-{total}-newest.txt"
        newest = db.write_newest_ids(newest_file, recent)
        draws["newest"] = (newest, random_status_script(newest_file, key))
    rows: list[Row] = []

    def shipped() -> Server:
        return harness.start_imagegate(db.data_dir, db.env, process="api", name="imagegate api")

    variants: list[tuple[str, str, Any]] = [("imagegate api", "all", shipped)]
    if uncached:
        variants.append(("imagegate api, cache off", "all",
                         lambda: start_uncached(db.data_dir, db.env)))
    if recent > 0:
        variants.append(("imagegate api", "newest", shipped))
    for process, draw, start in variants:
        drawn, lua = draws[draw]
        before = db.idx_scans() if db.url else 0
        server = start()
        try:
            warm, result = measure_both(f"{db.kind}-{total}-{len(rows)}-{draw}",
                                        server.base_url, lua, work, load)
        finally:
            server.stop()
        if "cache off" in process:
            share = 1.0
        else:
            share = cache_misses(drawn, warm.requests, result.requests)
        check = "-"
        if db.url:
            time.sleep(1.0)  # the server's statistics of the closed connections
            scans = db.idx_scans() - before
            check = f"{scans:,} of {warm.requests + result.requests:,}"
        rows.append(Row(db.kind, ids, process, draw, drawn, result, share, check))
    return rows


# Report ---------------------------------------------------------------------------------------


def postgres_version(url: str) -> str:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(b"SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def table(rows: list[Row], bare: WrkResult) -> str:
    out = ["| database | tasks | process | ids drawn | req/s | / bare req/s | p50 ms | p99 ms | "
           "read the database | pg idx_scan (warm-up + measured) | non-200 + socket errors |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r.database} | {r.tasks:,} | {r.process} | {r.draw_label} | "
                   f"{r.result.rps:,.0f} | {r.result.rps / bare.rps:.3f} | "
                   f"{r.result.p50_ms:.2f} | {r.result.p99_ms:.2f} | {r.db_share:.1%} | "
                   f"{r.pg_check} | {r.result.bad:,} |")
    out.append(f"| - | - | bare Starlette GET | - | {bare.rps:,.0f} | 1.000 | "
               f"{bare.p50_ms:.2f} | {bare.p99_ms:.2f} | - | - | {bare.bad:,} |")
    return "\n".join(out)


def flatness(rows: list[Row]) -> list[str]:
    """Per database, process and draw: req/s and p99 at the largest scale against the
    smallest."""
    lines = []
    for key in dict.fromkeys((r.database, r.process, r.draw) for r in rows):
        same = sorted((r for r in rows if (r.database, r.process, r.draw) == key),
                      key=lambda r: r.tasks)
        if len(same) < 2:
            continue
        small, large = same[0], same[-1]
        draw = "ids from all tasks" if key[2] == "all" else "ids from the newest tasks"
        lines.append(f"{key[0]}, {key[1]}, {draw}: {large.tasks:,} tasks against "
                     f"{small.tasks:,}: "
                     f"req/s x{large.result.rps / small.result.rps:.2f}, p50 "
                     f"x{large.result.p50_ms / small.result.p50_ms:.2f}, p99 "
                     f"x{large.result.p99_ms / small.result.p99_ms:.2f}.")
    return lines


def report(args: argparse.Namespace, load: Load, rows: list[Row], bare: WrkResult,
           notes: list[str]) -> str:
    stamp = subprocess.run(["date", "-u", "+%Y-%m-%d %H:%M UTC"], capture_output=True,
                           text=True).stdout.strip()
    command = " ".join(["python", "bench/bench_status_scale.py", *sys.argv[1:]])
    newest = (f", or from the newest {args.recent:,} by created_ms" if args.recent > 0 else "")
    setup = (f"wrk -t{load.threads} -c{load.connections}, {load.warmup:g} s warm-up then "
             f"{load.seconds:g} s per row, a fresh process per row; ids drawn uniformly from "
             f"every task in the table{newest}")
    all_notes = [
        "Every task a copy of one the service ran (sandbox, 1k 1:1 png, succeeded, settled); "
        "the API alone, no worker, no submits while measuring.",
        "What the rows show apart: cache off, whether the database read stays flat as the "
        "history grows; ids from the newest tasks (they fit the cache), whether the process as "
        "shipped stays flat when the polled tasks fit its cache; ids from all tasks with the "
        "cache on, what a uniform draw over the whole history costs (at 1 million mostly "
        "cache misses, so the database read's rate).",
        "'read the database': share of the measured requests that missed the process's cache "
        "of 50,000 finished answers (LRU replay of as many uniform draws over the same ids, "
        "warm-up included; cache off: all). On PostgreSQL, the tasks table's idx_scan "
        "counter over the process's life is the check (it also counts nothing else: no other "
        "statement of the API reads tasks by an index while only status is asked).",
        "The database files are in the page cache (the machine's RAM holds them): this is the "
        "read path's CPU cost and B-tree depth, not disk latency.",
        *notes, *flatness(rows)]
    return (f"## {stamp}\n\n{machine(args)}\n\nCommand: `{command}`; {setup}\n\n"
            f"{table(rows, bare)}\n\n" + "\n".join(f"- {n}" for n in all_notes))


def machine(args: argparse.Namespace) -> str:
    text = bench_api.machine()
    if "postgresql" in args.databases:
        text += f", PostgreSQL {postgres_version(args.postgres_url)} on the same machine"
    return text


def write_results(text: str) -> None:
    harness.append_section(RESULTS, "Status at scale", "bench_status_scale.py", text)


# Main -----------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    internal = sub.add_parser("uncached-api", help="(internal) imagegate api, cache off")
    internal.add_argument("--data-dir", required=True)
    internal.add_argument("--port", type=int, required=True)
    internal.add_argument("--cache", type=int, default=0, help="finished answers kept")
    internal.add_argument("--switch-interval", type=float, help="sys.setswitchinterval")
    parser.add_argument("--scales", type=lambda s: [int(x) for x in s.split(",")],
                        default=[1_000, 1_000_000], help="task counts, ascending")
    parser.add_argument("--databases", type=lambda s: s.split(","),
                        default=["sqlite", "postgresql"])
    parser.add_argument("--postgres-url", default=POSTGRES_SERVER,
                        help="a server where a scratch database may be created")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-uncached", action="store_true",
                        help="measure only the process as shipped")
    parser.add_argument("--recent", type=int, default=10_000,
                        help="also draw from the newest this many tasks by created_ms, cache "
                        "on (0: leave out)")
    parser.add_argument("--no-write", action="store_true")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.command == "uncached-api":
        uncached_api(args.data_dir, args.port, args.cache, args.switch_interval)
        return
    harness.stop_on_sigterm()
    unknown = set(args.databases) - {"sqlite", "postgresql"}
    if unknown or args.scales != sorted(args.scales) or args.scales[0] < 1:
        raise SystemExit("--databases takes sqlite,postgresql; --scales ascending counts")
    load = Load(args.seconds, args.warmup, args.threads, args.connections)
    rows: list[Row] = []
    notes: list[str] = []
    scratch: list[str] = []
    print(machine(args), flush=True)
    with tempfile.TemporaryDirectory(prefix="imagegate-status-scale-") as tmp:
        work = Path(tmp)
        try:
            bare_server = bench_api.start_bare(work)
            try:
                _, bare = measure_both("bare", bare_server.base_url,
                                       bench_api.get_script(["/ok"], "not-checked"), work, load)
            finally:
                bare_server.stop()
            for kind in args.databases:
                print(f"{kind}: preparing", flush=True)
                db, key = prepare(kind, work, args.postgres_url, scratch)
                template = db.template_row()
                print(f"  template row: {json.dumps(template, default=str)}", flush=True)
                for total in args.scales:
                    took = db.grow_to(total)
                    size = database_size(db)
                    notes.append(f"{kind}: {db.count():,} tasks, built in {took:.0f} s, "
                                 f"database {size}.")
                    rows += measure_scale(db, key, total, work, load, not args.no_uncached,
                                          args.recent)
        finally:
            for url in scratch:
                harness.drop_scratch_database(url)
    text = report(args, load, rows, bare, notes)
    print("\n" + text)
    if not args.no_write:
        write_results(text)
        print(f"\nappended to {RESULTS}")


def database_size(db: Database) -> str:
    if db.url:
        size = db._one("SELECT pg_database_size(current_database())")
    else:
        size = sum(p.stat().st_size for p in db.data_dir.glob("imagegate.db*"))
    return f"{size / 2**20:,.0f} MiB"


if __name__ == "__main__":
    main()
