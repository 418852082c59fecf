"""Measure what 1,000 clients waiting on one ``imagegate api`` process cost (contract §15):
waiting with ``statusTask?wait=N``, then following their tasks with ``streamTask`` (Server-Sent
Events): the API process's CPU and the database's transactions and reads of ``tasks`` while
they wait, then while their tasks end.

Run: ``.venv/bin/python bench/bench_waiters.py [--clients 1000] [--window 12]
[--postgres-url postgresql://...]``. Creates a scratch database (dropped at the end), one
``imagegate api`` on it and ``--clients`` tasks submitted with no worker running. Then windows
of ``--window`` seconds each, measured from ``/proc`` (the API process's CPU) and PostgreSQL's
statistics views (``pg_stat_database.xact_commit`` of the scratch database,
``pg_stat_user_tables`` index and sequential scans of ``tasks``):

1. idle: nobody waits (the baseline);
2. waiting: every client has an open ``GET statusTask?taskId=...&wait=60`` on its own task
   (the API's ``imagegate_waiting_clients`` says so before the window starts);
3. ending: an ``imagegate worker`` is started and ends every task; the window lasts until the
   last client has its answer;
4. streaming: ``--clients`` new tasks are submitted (no worker) and every client has an open
   ``GET streamTask?taskId=...`` on its own one, each shown with its queue position (the
   process reads the positions of all of them in one query about once a second);
5. ending: a worker is started and ends every task; the window lasts until every stream has
   had its ``done`` event (on the way each stream sees its position fall as the tasks ahead are
   claimed, then its task's stages).

The tasks fail at once (``[sandbox:fail=PromptInvalid]``): the benchmark measures waiting, not
rendering, and a failed task ends, notifies and wakes its waiter exactly as one that succeeded.
Prints a Markdown table and appends it, dated, with the machine and commit, to
``bench/results/waiters.md``. PostgreSQL flushes a backend's statistics at most once a second
and an idle one's within 10 s, so the script pauses ``SETTLE_S`` before it reads the database's
counters at each window's edge (the time and CPU of an ending window are taken when the last
answer arrives), and a waiting window starts only once the commit count has been steady for a
few seconds (a pooled backend may flush the submits' statistics late). A run takes about two
and a half minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import bench_api
import harness
import httpx
import psycopg
from harness import Server

RESULTS = Path(__file__).parent / "results" / "waiters.md"
STATUS = "/api/v1/statusTask/nano-banana-2"
STREAM = "/api/v1/streamTask/nano-banana-2"
BODY = {"input": {"mode": "text-to-image", "prompt": "a fox [sandbox:fail=PromptInvalid]",
                  "aspect_ratio": "1:1", "resolution": "1k"}}
WAIT_S = 60
SETTLE_S = 11.0  # PostgreSQL flushes an idle backend's statistics within 10 s
# A window starts only once the database's commit count has been steady for STEADY_S (at most
# STEADY_XACTS more in that time; the streams' shared reads are about one a second), so that
# no earlier work's statistics, flushed late by a pooled backend, land in it.
STEADY_S, STEADY_XACTS, STEADY_MAX_S = 3.0, 10, 60.0


@dataclass
class Counters:
    at: float
    api_cpu_s: float
    xacts: int
    task_scans: int


@dataclass
class Row:
    phase: str
    seconds: float
    api_cpu_s: float
    xacts: int
    task_scans: int

    def cells(self, clients: int) -> str:
        per_s = 1 / self.seconds
        return (f"| {self.phase} | {self.seconds:.1f} | {self.api_cpu_s / self.seconds:.1%} | "
                f"{self.xacts * per_s:.1f} | {self.task_scans * per_s:.1f} | "
                f"{self.task_scans / clients:.2f} |")


class Database:
    """The scratch database's counters, read on one autocommit connection (its own reads add
    one transaction to each window)."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)

    def counters(self, api: Server) -> Counters:
        at, cpu = time.monotonic(), sum(api.thread_cpu_s().values())
        row = self.conn.execute(
            b"SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = "
            b"current_database()), (SELECT COALESCE(seq_scan, 0) + COALESCE(idx_scan, 0) "
            b"FROM pg_stat_user_tables WHERE relname = 'tasks')").fetchone()
        assert row is not None
        return Counters(at, cpu, int(row[0]), int(row[1]))


def between(phase: str, a: Counters, b: Counters) -> Row:
    return Row(phase, b.at - a.at, b.api_cpu_s - a.api_cpu_s, b.xacts - a.xacts,
               b.task_scans - a.task_scans)


async def submit_all(api: Server, key: str, count: int) -> list[str]:
    async with httpx.AsyncClient(base_url=api.base_url, timeout=30,
                                 headers={"Authorization": f"Bearer {key}"}) as http:
        ids = []
        for _ in range(count):
            r = await http.post(bench_api.SUBMIT_PATH, json=BODY)
            r.raise_for_status()
            ids.append(r.json()["data"]["taskId"])
        return ids


def waiting_clients(api: Server) -> int:
    for line in httpx.get(api.base_url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("imagegate_waiting_clients "):
            return int(float(line.split()[1]))
    raise SystemExit("the API reports no imagegate_waiting_clients")


async def steady(api: Server, db: Database) -> Counters:
    """The counters once the commit count has stopped jumping (see STEADY_S)."""
    deadline = time.monotonic() + STEADY_MAX_S
    last = db.counters(api)
    while True:
        await asyncio.sleep(STEADY_S)
        now = db.counters(api)
        if now.xacts - last.xacts <= STEADY_XACTS or time.monotonic() > deadline:
            return now
        last = now


async def settled(api: Server, db: Database) -> Counters:
    """The counters once every backend has flushed its statistics (an idle one does within
    ``SETTLE_S``); the time and CPU are taken before the pause."""
    now = db.counters(api)
    await asyncio.sleep(SETTLE_S)
    later = db.counters(api)
    return Counters(now.at, now.api_cpu_s, later.xacts, later.task_scans)


async def measure(api: Server, key: str, ids: list[str], db: Database, window_s: float,
                  start_worker: Callable[[], Server]) -> list[Row]:
    rows = []
    await asyncio.sleep(SETTLE_S)  # the submits' statistics flushed
    a = await steady(api, db)
    await asyncio.sleep(window_s)
    b = db.counters(api)
    rows.append(between("idle: nobody waits", a, b))
    limits = httpx.Limits(max_connections=len(ids) + 10, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=api.base_url, timeout=WAIT_S + 30, limits=limits,
                                 headers={"Authorization": f"Bearer {key}"}) as http:
        waits = [asyncio.ensure_future(http.get(STATUS, params={"taskId": t, "wait": WAIT_S}))
                 for t in ids]
        deadline = time.monotonic() + 30
        while (waiting := await asyncio.to_thread(waiting_clients, api)) < len(ids):
            if time.monotonic() > deadline:
                raise SystemExit(f"only {waiting} of {len(ids)} clients are waiting")
            await asyncio.sleep(0.2)
        print(f"{waiting} clients waiting", flush=True)
        await asyncio.sleep(SETTLE_S)  # the statistics of their first reads flushed
        a = await steady(api, db)
        await asyncio.sleep(window_s)
        b = db.counters(api)
        rows.append(between(f"waiting: {len(ids):,} clients", a, b))
        worker = await asyncio.to_thread(start_worker)
        try:
            answers = await asyncio.gather(*waits)
        finally:
            worker.stop()  # a backend that ends flushes its statistics
        c = await settled(api, db)
    rows.append(between("ending: a worker ends every task", b, c))
    states = [r.json()["data"]["state"] for r in answers]
    print(f"answers: {states.count('failed')} ended, {states.count('processing')} still "
          "processing", flush=True)
    if states.count("processing"):
        raise SystemExit("some clients' wait ran out: the ending window is not comparable")
    return rows


@dataclass
class Followed:
    """What one stream received: its status events, keep-alives, and whether it ended with
    ``done``."""

    statuses: int = 0
    keep_alives: int = 0
    done: bool = False


async def follow(http: httpx.AsyncClient, task_id: str, opened: asyncio.Event,
                 count: list[int], total: int) -> Followed:
    """Read one task's stream to its end; ``opened`` is set once ``total`` streams have had
    their first event."""
    seen = Followed()
    async with http.stream("GET", STREAM, params={"taskId": task_id}) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if line == "event: status":
                seen.statuses += 1
                if seen.statuses == 1:
                    count[0] += 1
                    if count[0] == total:
                        opened.set()
            elif line == "event: done":
                seen.done = True
            elif line.startswith(": keep-alive"):
                seen.keep_alives += 1
    return seen


async def measure_streams(api: Server, key: str, ids: list[str], db: Database,
                          window_s: float, start_worker: Callable[[], Server],
                          ) -> tuple[list[Row], list[Followed]]:
    rows = []
    limits = httpx.Limits(max_connections=len(ids) + 10, max_keepalive_connections=0)
    timeout = httpx.Timeout(30, read=120)
    async with httpx.AsyncClient(base_url=api.base_url, timeout=timeout, limits=limits,
                                 headers={"Authorization": f"Bearer {key}"}) as http:
        opened, count = asyncio.Event(), [0]
        streams = [asyncio.ensure_future(follow(http, t, opened, count, len(ids)))
                   for t in ids]
        try:
            await asyncio.wait_for(opened.wait(), 60)
        except TimeoutError:
            raise SystemExit(f"only {count[0]} of {len(ids)} streams opened") from None
        print(f"{count[0]} streams open, {await asyncio.to_thread(waiting_clients, api)} "
              "subscriptions", flush=True)
        await asyncio.sleep(SETTLE_S)  # the statistics of their first reads flushed
        a = await steady(api, db)
        await asyncio.sleep(window_s)
        b = db.counters(api)
        rows.append(between(f"streaming: {len(ids):,} streams of queued tasks", a, b))
        worker = await asyncio.to_thread(start_worker)
        try:
            followed = await asyncio.gather(*streams)
        finally:
            worker.stop()
        c = await settled(api, db)
    rows.append(between("ending: a worker ends every streamed task", b, c))
    ended = sum(f.done for f in followed)
    print(f"streams: {ended} ended with done, "
          f"{sum(f.statuses for f in followed) / len(followed):.1f} status events each",
          flush=True)
    if ended < len(ids):
        raise SystemExit("some streams ended without done: the ending window is not "
                         "comparable")
    return rows, followed


def table(rows: list[Row], clients: int) -> str:
    out = ["| window | seconds | API process CPU | database transactions/s | reads of tasks/s "
           "| reads of tasks per client |", "|---|---|---|---|---|---|"]
    return "\n".join(out + [r.cells(clients) for r in rows])


def report(args: argparse.Namespace, rows: list[Row], followed: list[Followed]) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = " ".join(["python", "bench/bench_waiters.py", *sys.argv[1:]])
    with psycopg.connect(args.postgres_url) as conn:
        found = conn.execute(b"SHOW server_version").fetchone()
    machine = (f"{bench_api.machine()}, PostgreSQL {found[0] if found else '?'} on the same "
               "machine")
    notes = [
        "API process CPU is its CPU time over the window's length (100% = one CPU). Database "
        "transactions are every commit in the scratch database (the API's, this script's one "
        "read of the statistics per window and, in the last window, the worker's claims and "
        "finishes), reads of tasks its index and sequential scans.",
        "While the clients wait, the API costs no query per waiting client per tick: the "
        "database's counters stay at the idle baseline (the idle window's few transactions "
        "are this script's reads and PostgreSQL's own background work). Each client costs "
        "the API one read of its task when it starts waiting and one when its task ends "
        "(woken by the worker's NOTIFY); the ending window's reads of tasks also count the "
        "worker's claims and fenced finishes.",
        "The streams cost no query per stream per tick either: while they wait the API reads "
        "the queue positions of all of them in one statement about once a second (its reads "
        "of tasks/s), and each stream's only read of its own task is when it opens and when "
        "it ends; the stages in between come with the worker's notifications. On the way "
        f"each stream received {_mean(f.statuses for f in followed):.1f} status events on "
        f"average (queued, then each time its queue position changed as the tasks ahead were "
        f"claimed, then running and generating) and "
        f"{_mean(f.keep_alives for f in followed):.1f} keep-alives.",
        "The machine is shared: CPU figures may be inflated by other work on it.",
    ]
    return (f"## {now}\n\n{machine}\n\nCommand: `{command}`; each client waits with "
            f"`wait={WAIT_S}` on its own task\n\n{table(rows, args.clients)}\n\n"
            + "\n".join(f"- {n}" for n in notes))


def _mean(values: Iterable[int]) -> float:
    found = list(values)
    return sum(found) / max(1, len(found))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--window", type=float, default=12.0, help="seconds per window")
    parser.add_argument("--postgres-url", default=harness.POSTGRES_SERVER)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    harness.stop_on_sigterm()
    print(bench_api.machine(), flush=True)
    url = harness.create_scratch_database(args.postgres_url, "waiters")
    try:
        with tempfile.TemporaryDirectory(prefix="imagegate-waiters-") as tmp:
            data_dir = Path(tmp) / "data"
            env = harness.imagegate_env("warning", database_url=url, worker_concurrency="16")
            key = harness.create_key(data_dir, env)
            api = harness.start_imagegate(data_dir, env, process="api", name="imagegate api")
            db = Database(url.partition("?")[0])
            try:
                ids = asyncio.run(submit_all(api, key, args.clients))
                print(f"{len(ids):,} tasks submitted", flush=True)
                start = lambda: harness.start_worker(data_dir, env)  # noqa: E731
                rows = asyncio.run(measure(api, key, ids, db, args.window, start))
                ids = asyncio.run(submit_all(api, key, args.clients))
                more, followed = asyncio.run(measure_streams(api, key, ids, db, args.window,
                                                             start))
                rows += more
            finally:
                db.conn.close()
                api.stop()
    finally:
        harness.drop_scratch_database(url)
    text = report(args, rows, followed)
    print("\n" + text)
    if not args.no_write:
        harness.append_section(RESULTS, "Clients waiting for their tasks", "bench_waiters.py", text)


if __name__ == "__main__":
    main()
