"""Measure end-to-end tasks per second of a fleet on PostgreSQL with 1, 2 and 4 ``imagegate
worker`` processes: do workers scale on this machine?

Run: ``.venv/bin/python bench/bench_workers.py [--workers 1,2,4] [--tasks 2000]
[--postgres-url postgresql://...]``. Creates a scratch database (dropped at the end), one
``imagegate api`` on it, and for each worker count: ``--tasks`` tasks submitted through the API
with no worker running (sandbox route, zero delay, 1k 1:1 png as in ``bench_api.py``), then that
many ``imagegate worker`` processes started together, and the time until every task is done.
Prints a Markdown table and appends it, dated, with the machine, to
``bench/results/workers.md``.

Two rates per row: "wall" is the tasks over the time from starting the workers (process start
included) until the last task is done; "steady" is the tasks over the span from the first
``started_ms`` to the last ``complete_ms`` the database recorded, without process start. CPU
shares are from ``/proc``: the whole machine's busy share over the steady span, and the CPU
seconds the worker processes used per task.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import bench_api
import harness
import httpx
import psycopg
from harness import Server

RESULTS = Path(__file__).parent / "results" / "workers.md"


async def submit_all(server: Server, key: str, count: int, concurrency: int = 16) -> float:
    """``count`` submits from ``concurrency`` clients at once; the seconds it took."""
    left = count
    start = time.perf_counter()

    async def client() -> None:
        nonlocal left
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30,
                                     headers={"Authorization": f"Bearer {key}"}) as http:
            while left > 0:
                left -= 1
                r = await http.post(bench_api.SUBMIT_PATH, json=bench_api.BODY)
                r.raise_for_status()

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return time.perf_counter() - start


def cpu_busy() -> tuple[float, float]:
    """Busy and total jiffies of the whole machine so far."""
    fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


@dataclass
class Row:
    workers: int
    tasks: int
    failed: int
    wall_s: float
    steady_s: float
    busy: float
    worker_cpu_ms: float

    def cells(self, base: Row | None) -> str:
        rate = self.tasks / self.steady_s
        scale = f"{rate / (base.tasks / base.steady_s):.2f}" if base else "1.00"
        cores = self.worker_cpu_ms / 1000 * rate
        return (f"| {self.workers} | {self.tasks:,} | {self.failed} | {self.wall_s:.1f} | "
                f"{self.tasks / self.wall_s:.1f} | {rate:.1f} | {scale} | {self.busy:.0%} | "
                f"{self.worker_cpu_ms:.1f} | {cores:.2f} |")


def done_count(url: str, since_ms: int) -> tuple[int, int]:
    """Tasks submitted since ``since_ms`` that are finished, and how many of those failed."""
    with psycopg.connect(url) as conn:
        row = conn.execute(b"SELECT COUNT(*) FILTER (WHERE state IN ('succeeded', 'failed')), "
                           b"COUNT(*) FILTER (WHERE state = 'failed') FROM tasks "
                           b"WHERE created_ms >= %s", (since_ms,)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def span_s(url: str, since_ms: int) -> float:
    with psycopg.connect(url) as conn:
        row = conn.execute(b"SELECT MIN(started_ms), MAX(complete_ms) FROM tasks "
                           b"WHERE created_ms >= %s", (since_ms,)).fetchone()
    assert row is not None and row[0] is not None
    return (int(row[1]) - int(row[0])) / 1000


def run_round(workers: int, data_dir: Path, env: dict[str, str], url: str, api: Server,
              key: str, tasks: int, timeout_s: float) -> Row:
    since = int(time.time() * 1000)
    took = asyncio.run(submit_all(api, key, tasks))
    print(f"{workers} worker(s): {tasks:,} tasks submitted in {took:.1f} s", flush=True)
    started = time.perf_counter()
    busy0, total0 = cpu_busy()
    fleet = [harness.start_background(
        [*harness.IMAGEGATE_CLI, "worker", "--data-dir", str(data_dir)], env,
        data_dir / f"worker-{workers}-{n}.log", "imagegate worker running",
        name=f"worker {n}") for n in range(workers)]
    try:
        deadline = time.monotonic() + timeout_s
        cpu: dict[int, float] = {}
        while True:
            for w in fleet:
                cpu.update({(w.proc.pid << 20) + tid: s for tid, s in w.thread_cpu_s().items()})
            done, failed = done_count(url, since)
            if done >= tasks:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"only {done} of {tasks} tasks done after {timeout_s:.0f} s")
            time.sleep(0.2)
        wall = time.perf_counter() - started
        busy1, total1 = cpu_busy()
    finally:
        for w in fleet:
            w.stop()
    steady = span_s(url, since)
    row = Row(workers, tasks, failed, wall, steady, (busy1 - busy0) / (total1 - total0),
              sum(cpu.values()) / tasks * 1000)
    print(f"  all done in {wall:.1f} s (steady span {steady:.1f} s: "
          f"{tasks / steady:.1f} tasks/s), machine busy {row.busy:.0%}", flush=True)
    return row


def table(rows: list[Row]) -> str:
    out = ["| workers | tasks | failed | wall s | tasks/s (wall) | tasks/s (steady) | "
           "steady / 1 worker | machine CPU busy | worker CPU ms / task | CPUs the workers "
           "use |", "|---|---|---|---|---|---|---|---|---|---|"]
    base = next((r for r in rows if r.workers == 1), None)
    out += [r.cells(base) for r in rows]
    return "\n".join(out)


def report(args: argparse.Namespace, rows: list[Row]) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = " ".join(["python", "bench/bench_workers.py", *sys.argv[1:]])
    with psycopg.connect(args.postgres_url) as conn:
        found = conn.execute(b"SHOW server_version").fetchone()
    machine = (f"{bench_api.machine()}, PostgreSQL {found[0] if found else '?'} on the same "
               f"machine")
    notes = [
        "One `imagegate api` (idle while the workers run), the workers (each "
        f"`worker_concurrency` = {os.environ.get('IMAGEGATE_WORKER_CONCURRENCY', '4')} tasks "
        "at once), PostgreSQL and this script share the machine's CPUs; one scratch database "
        "for every row, the rows run one after another.",
        "Each task renders the sandbox picture (1k 1:1) and encodes it as PNG, then writes the "
        "file to the data directory: CPU-bound work, part of it (Pillow's encoding) outside "
        "the GIL, so one worker process can use more than one CPU. 'CPUs the workers use' is "
        "their CPU time per task times the steady rate.",
    ]
    return (f"## {now}\n\n{machine}\n\nCommand: `{command}`; sandbox route, zero delay\n\n"
            f"{table(rows)}\n\n" + "\n".join(f"- {n}" for n in notes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")],
                        default=[1, 2, 4])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per row at most")
    parser.add_argument("--postgres-url", default=harness.POSTGRES_SERVER)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    harness.stop_on_sigterm()
    print(bench_api.machine(), flush=True)
    url = harness.create_scratch_database(args.postgres_url, "workers")
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="imagegate-workers-") as tmp:
            data_dir = Path(tmp) / "data"
            env = harness.imagegate_env("warning", database_url=url)
            key = harness.create_key(data_dir, env)
            api = harness.start_imagegate(data_dir, env, process="api", name="imagegate api")
            try:
                for workers in args.workers:
                    rows.append(run_round(workers, data_dir, env, url.partition("?")[0], api,
                                          key, args.tasks, args.timeout))
            finally:
                api.stop()
    finally:
        harness.drop_scratch_database(url)
    text = report(args, rows)
    print("\n" + text)
    if not args.no_write:
        harness.append_section(RESULTS, "Workers on PostgreSQL", "bench_workers.py", text)
        print(f"\nappended to {RESULTS}")


if __name__ == "__main__":
    main()
