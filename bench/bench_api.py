"""Measure the HTTP API of a real ``imagegate serve`` (or ``imagegate api``, the API alone)
against a bare Starlette app on the same server stack (granian, ASGI, one worker), with ``wrk``
as the load generator.

Run: ``.venv/bin/python bench/bench_api.py [--seconds 10] [--connections 64]
[--process serve|api] [--database-url postgresql://...]``. Needs ``wrk`` on PATH
(Debian/Ubuntu: ``apt-get install -y wrk``). Prints a Markdown table and appends it, dated,
with the machine, to ``bench/results/api.md``.

What is measured, each for ``--seconds`` after a short warm-up, ``-t THREADS -c CONNECTIONS``:

- status: ``GET /api/v1/statusTask/nano-banana-2?taskId=`` rotating over finished tasks;
- submit: ``POST /api/v1/generateTask/nano-banana-2`` (sandbox route, zero delay, limits lifted);
- the same two request shapes against ``bench/bare_app.py``'s ``/ok`` (``{"ok": true}``, the
  body never read): the floor the issue's ratios are computed against;
- context, not a target: the same POST against ``bench/bare_app.py``'s ``/json``, which reads
  and parses the JSON body (``await request.json()``), as the submit endpoint must;
- submit-to-success: tasks submitted one at a time, status polled every ``--poll-ms`` until the
  poller sees ``success``, on a fresh server.

With ``--process serve`` (the default) imagegate runs as it does embedded: the worker, sweeper
and callback dispatcher live in the server process, so during the submit phase the worker
renders the submitted tasks on the same CPUs that answer the submits. With ``--process api`` the
finished tasks for the status phase are made by an ``imagegate worker`` started beside the API
and stopped before anything is measured, so status and submit are measured on the API process
alone, as a fleet's API processes run (its submit rates counted in the database, the token
taken in the submit's own transaction); the submit-to-success phase runs one ``imagegate
worker`` beside the API. wrk runs on the same machine too.

``--database-url`` empty (the default) is SQLite in each server's data directory; a PostgreSQL
URL names a server on which each phase gets a scratch database of its own
(``imagegate_bench_<pid>_<phase>``), dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness
import httpx
from harness import Server, client_for, create_key, free_port, imagegate_env, start_server

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "api.md"
MODEL = "nano-banana-2"
SUBMIT_PATH = f"/api/v1/generateTask/{MODEL}"
STATUS_PATH = f"/api/v1/statusTask/{MODEL}?taskId="
BODY = {"request_type": "async", "input": {
    "mode": "text-to-image", "prompt": "a lighthouse on a cliff at dawn, watercolor",
    "aspect_ratio": "1:1", "resolution": "1k"}}
# What the issue asks of the API process, as imagegate / bare req/s: (status, submit).
TARGETS = {"sqlite": (0.5, 0.2), "postgresql": (0.4, 0.15)}
WRK_MISSING = ("bench_api.py needs wrk (https://github.com/wg/wrk) on PATH.\n"
               "  Debian/Ubuntu: sudo apt-get update && sudo apt-get install -y wrk\n"
               "  macOS:         brew install wrk")


# Processes ----------------------------------------------------------------------------------


@dataclass
class Deployment:
    """What to start: ``process`` (serve or api) over SQLite in the data directory, or over a
    scratch database on the PostgreSQL server ``database_url``; ``scratch`` lists the databases
    made, dropped at the end."""

    process: str
    database_url: str
    log_level: str
    scratch: list[str]

    @property
    def database(self) -> str:
        return "postgresql" if harness.is_postgres(self.database_url) else "sqlite"

    def env(self, phase: str) -> tuple[dict[str, str], str]:
        """The imagegate environment of a fresh database for ``phase``, and its URL (empty:
        SQLite in the data directory)."""
        if not harness.is_postgres(self.database_url):
            return imagegate_env(self.log_level), ""
        url = harness.create_scratch_database(self.database_url, phase)
        self.scratch.append(url)
        return imagegate_env(self.log_level, database_url=url), url

    def drop(self) -> None:
        for url in self.scratch:
            harness.drop_scratch_database(url)
        self.scratch.clear()


def start_imagegate(data_dir: Path, env: dict[str, str], process: str) -> tuple[Server, str]:
    """A fresh ``imagegate serve`` or ``imagegate api`` on ``data_dir`` (and ``env``'s
    database) and a key with (practically) endless credit."""
    key = create_key(data_dir, env)
    return harness.start_imagegate(data_dir, env, process=process,
                                   name=f"imagegate {process}"), key


def start_bare(work: Path) -> Server:
    port = free_port()
    return start_server([sys.executable, str(HERE / "bare_app.py"), "--port", str(port)], {},
                        port, "/ok", work / "bare.log")


# wrk ----------------------------------------------------------------------------------------

# Each wrk thread has its own Lua state: setup() keeps the thread handles so that done() can
# add up every thread's status counts, and done() prints exact percentiles as one JSON line.
LUA_COMMON = r"""
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {} end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  local parts = {}
  local counts = {}
  for _, t in ipairs(threads) do
    for code, n in pairs(t:get("statuses")) do counts[code] = (counts[code] or 0) + n end
  end
  for code, n in pairs(counts) do table.insert(parts, string.format('"%d": %d', code, n)) end
  local e = summary.errors
  io.write(string.format('BENCHJSON {"requests": %d, "duration_us": %d, "p50_us": %d, ' ..
    '"p99_us": %d, "mean_us": %.1f, "max_us": %d, "socket_errors": %d, "statuses": {%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.mean, latency.max, e.connect + e.read + e.write + e.timeout,
    table.concat(parts, ", ")))
end
"""


def lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal here


def post_script(path: str, key: str, more_keys: Sequence[str] = ()) -> str:
    """POST ``BODY`` to ``path`` with ``key``, or with ``key`` and ``more_keys`` in turn."""
    script = LUA_COMMON + f"""
wrk.method = "POST"
wrk.path = {lua_string(path)}
wrk.body = {lua_string(json.dumps(BODY))}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = {lua_string("Bearer " + key)}
"""
    if not more_keys:
        return script
    listed = ", ".join(lua_string("Bearer " + k) for k in (key, *more_keys))
    return script + f"""
local keys = {{{listed}}}
local k = 0
function request()
  k = k % #keys + 1
  wrk.headers["Authorization"] = keys[k]
  return wrk.format()
end
"""


def get_script(paths: Sequence[str], key: str) -> str:
    listed = ",\n".join(lua_string(p) for p in paths)
    return LUA_COMMON + f"""
wrk.headers["Authorization"] = {lua_string("Bearer " + key)}
local paths = {{{listed}}}
local i = 0
function request()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
"""


@dataclass(frozen=True)
class Load:
    seconds: float
    warmup: float
    threads: int
    connections: int


@dataclass(frozen=True)
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    statuses: dict[str, int]
    socket_errors: int

    @property
    def bad(self) -> int:
        """Responses other than 200, plus requests lost to socket errors and timeouts."""
        return sum(n for code, n in self.statuses.items() if code != "200") + self.socket_errors


def run_wrk(url: str, script: Path, seconds: float, load: Load) -> WrkResult:
    cmd = ["wrk", f"-t{load.threads}", f"-c{load.connections}", f"-d{seconds:g}s",
           "--timeout", "10s", "-s", str(script), url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCHJSON ")), None)
    if line is None:
        raise SystemExit(f"wrk printed no result:\n{out}")
    raw = json.loads(line.removeprefix("BENCHJSON "))
    return WrkResult(raw["requests"] / (raw["duration_us"] / 1e6), raw["p50_us"] / 1000,
                     raw["p99_us"] / 1000, raw["requests"], raw["statuses"], raw["socket_errors"])


def measure(name: str, base_url: str, lua: str, work: Path, load: Load) -> WrkResult:
    """Warm up, then measure; the URL's path is a placeholder when the script sets its own."""
    script = work / f"{name}.lua"
    script.write_text(lua)
    run_wrk(base_url + "/", script, load.warmup, load)
    result = run_wrk(base_url + "/", script, load.seconds, load)
    print(f"  {name}: {result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} ms, "
          f"p99 {result.p99_ms:.2f} ms, statuses {result.statuses}, "
          f"socket errors {result.socket_errors}", flush=True)
    return result


# The imagegate side -------------------------------------------------------------------------


def submit(client: httpx.Client) -> str:
    r = client.post(SUBMIT_PATH, json=BODY)
    r.raise_for_status()
    task_id: str = r.json()["data"]["taskId"]
    return task_id


def wait_success(client: httpx.Client, task_id: str, poll_s: float,
                 timeout_s: float = 60.0) -> dict[str, Any]:
    """Poll status until the task is finished; the finished status must be ``success``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        r = client.get(STATUS_PATH + task_id)
        r.raise_for_status()
        data: dict[str, Any] = r.json()["data"]
        if data["state"] != "processing":
            if data["state"] != "success":
                raise SystemExit(f"task {task_id} ended {data}")
            return data
        time.sleep(poll_s)
    raise SystemExit(f"task {task_id} still processing after {timeout_s:.0f}s")


def seed_tasks(server: Server, key: str, count: int) -> list[str]:
    """``count`` finished tasks for the status phase (a finished status is the larger answer)."""
    with client_for(server, key) as client:
        ids = [submit(client) for _ in range(count)]
        for task_id in ids:
            wait_success(client, task_id, poll_s=0.05)
    return ids


def submit_to_success(server: Server, key: str, count: int, poll_s: float,
                      ) -> tuple[list[float], list[float]]:
    """Per task: ms from sending the submit to the first poll that sees ``success``, and the
    server's own ``costTime``. Tasks go one at a time, so nothing queues behind another."""
    seen, cost = [], []
    with client_for(server, key) as client:
        for _ in range(count):
            start = time.perf_counter()
            data = wait_success(client, submit(client), poll_s)
            seen.append((time.perf_counter() - start) * 1000)
            cost.append(float(data["costTime"]))
    return seen, cost


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile: the smallest value with ``pct`` % of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


# Phases -------------------------------------------------------------------------------------


@dataclass
class Findings:
    imagegate: dict[str, WrkResult]
    bare: dict[str, WrkResult]  # status, submit: /ok; json: the POST to /json (context)
    seen_ms: list[float]
    cost_ms: list[float]
    notes: list[str]


def imagegate_phase(work: Path, deployment: Deployment, args: argparse.Namespace, load: Load,
                    findings: Findings) -> None:
    data_dir = work / "imagegate-load"
    process = deployment.process
    print(f"imagegate {process} on {deployment.database} (data in {data_dir}): seeding "
          f"{args.status_tasks} tasks", flush=True)
    env, url = deployment.env("load")
    server, key = start_imagegate(data_dir, env, process)
    worker = harness.start_worker(data_dir, env) if process == "api" else None
    try:
        more_keys = harness.create_keys(data_dir, env, args.keys - 1) if args.keys > 1 else []
        ids = seed_tasks(server, key, args.status_tasks)
        if worker is not None:
            worker.stop()  # the API alone from here on, as a fleet's API process
            worker = None
        status_lua = get_script([STATUS_PATH + i for i in ids], key)
        # Status first, while the worker is idle; the submit phase leaves it a backlog.
        findings.imagegate["status"] = measure("imagegate-status", server.base_url, status_lua,
                                               work, load)
        findings.imagegate["submit"] = measure("imagegate-submit", server.base_url,
                                               post_script(SUBMIT_PATH, key, more_keys), work,
                                               load)
        states = harness.task_states(data_dir, url)
    finally:
        if worker is not None:
            worker.stop()
        server.stop()
    stored = sum(states.values()) - args.status_tasks
    done = states.get("succeeded", 0) - args.status_tasks
    if process == "serve":
        findings.notes.append(
            f"Submit phase (warm-up included) stored {stored:,} tasks; the in-process worker "
            f"had finished {max(done, 0):,} of them when it ended (states: {states}).")
    else:
        findings.notes.append(
            f"Submit phase (warm-up included) stored {stored:,} tasks, all left queued: no "
            f"worker ran during the status and submit rows (states: {states}).")


def bare_phase(work: Path, load: Load, findings: Findings) -> None:
    print("bare Starlette app", flush=True)
    server = start_bare(work)
    try:
        findings.bare["status"] = measure("bare-get", server.base_url,
                                          get_script(["/ok"], "not-checked"), work, load)
        findings.bare["submit"] = measure("bare-post", server.base_url,
                                          post_script("/ok", "not-checked"), work, load)
        # Context only: a bare endpoint that reads and parses the same body.
        findings.bare["json"] = measure("bare-post-json", server.base_url,
                                        post_script("/json", "not-checked"), work, load)
    finally:
        server.stop()


def latency_phase(work: Path, deployment: Deployment, args: argparse.Namespace,
                  findings: Findings) -> None:
    if args.latency_tasks <= 0:
        return
    print(f"submit-to-success: {args.latency_tasks} tasks, one at a time, polling every "
          f"{args.poll_ms:g} ms", flush=True)
    data_dir = work / "imagegate-latency"
    env, _ = deployment.env("latency")
    server, key = start_imagegate(data_dir, env, deployment.process)
    worker = harness.start_worker(data_dir, env) if deployment.process == "api" else None
    try:
        seed_tasks(server, key, 5)  # warm-up: imports, connections, first render
        findings.seen_ms, findings.cost_ms = submit_to_success(
            server, key, args.latency_tasks, args.poll_ms / 1000)
    finally:
        if worker is not None:
            worker.stop()
        server.stop()


# Report -------------------------------------------------------------------------------------


def machine() -> str:
    import granian
    import starlette

    def sh(*cmd: str) -> str:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()

    mem_kb = next(int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()
                  if ln.startswith("MemTotal:"))
    wrk = sh("wrk", "-v").splitlines()[0].split(" [")[0] if shutil.which("wrk") else "no wrk"
    return (f"{sh('uname', '-m')}, {sh('nproc')} CPUs, {mem_kb / 2**20:.1f} GiB RAM, "
            f"Python {sys.version.split()[0]}, granian {granian.__version__}, "
            f"starlette {starlette.__version__}, {wrk}, {harness.source_version()}")


def table(f: Findings) -> str:
    rows = ["| measure | imagegate | bare Starlette | imagegate / bare |", "|---|---|---|---|"]
    cells: list[tuple[str, Callable[[WrkResult], float], str]] = [
        ("req/s", lambda r: r.rps, ",.0f"), ("p50 ms", lambda r: r.p50_ms, ".2f"),
        ("p99 ms", lambda r: r.p99_ms, ".2f"), ("requests", lambda r: r.requests, ",.0f"),
        ("non-200 + socket errors", lambda r: r.bad, ",.0f")]
    for phase, label in (("submit", "submit (POST)"), ("status", "status (GET)"),
                         ("json", "context: submit against bare /json (reads the body)")):
        ig = f.imagegate["submit" if phase == "json" else phase]
        bare = f.bare[phase]
        for name, get, fmt in cells:
            ratio = f"{get(ig) / get(bare):.3f}" if get(bare) and name != "requests" else "-"
            rows.append(f"| {label} {name} | {get(ig):{fmt}} | {get(bare):{fmt}} | {ratio} |")
    for name, values in (("submit to success seen by poller", f.seen_ms),
                         ("server costTime", f.cost_ms)):
        for pct in (50, 99) if values else ():
            rows.append(f"| {name} p{pct} ms | {percentile(values, pct):.1f} | - | - |")
    return "\n".join(rows)


def settings_line(deployment: Deployment, args: argparse.Namespace, load: Load,
                  findings: Findings) -> str:
    latency = (f"submit-to-success over {len(findings.seen_ms)} tasks submitted one at a time, "
               f"polled every {args.poll_ms:g} ms (mean "
               f"{statistics.fmean(findings.seen_ms):.1f} ms)" if findings.seen_ms
               else "no submit-to-success phase")
    keys = f"submits from {args.keys} keys in turn; " if args.keys > 1 else ""
    return (f"`imagegate {deployment.process}` on {deployment.database}; {keys}"
            f"wrk -t{load.threads} -c{load.connections}, {load.warmup:g} s warm-up then "
            f"{load.seconds:g} s per measurement; {args.status_tasks} finished task ids rotated "
            f"for status; {latency}")


def target_lines(deployment: Deployment, f: Findings) -> list[str]:
    """Whether the issue's ratios for this database are met by this run."""
    status_min, submit_min = TARGETS[deployment.database]
    lines = []
    for phase, wanted in (("status", status_min), ("submit", submit_min)):
        ratio = f.imagegate[phase].rps / f.bare[phase].rps
        lines.append(f"Target {deployment.database} {phase} >= {wanted:g}x bare req/s: "
                     f"{ratio:.3f}x, {'met' if ratio >= wanted else 'MISSED'}.")
    body = f.bare["json"]
    lines.append(f"Context, not a target: the bare POST that reads and parses the JSON body "
                 f"answers {body.rps:,.0f} req/s ({body.rps / f.bare['submit'].rps:.3f}x the "
                 f"bare POST that does not read it); imagegate submit is "
                 f"{f.imagegate['submit'].rps / body.rps:.3f}x of it.")
    return lines


def write_results(report: str) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    harness.append_section(RESULTS, "API benchmark", "bench_api.py", report)


def report(deployment: Deployment, args: argparse.Namespace, load: Load,
           findings: Findings) -> str:
    stamp = subprocess.run(["date", "-u", "+%Y-%m-%d %H:%M UTC"], capture_output=True,
                           text=True).stdout.strip()
    command = " ".join(["python", "bench/bench_api.py", *sys.argv[1:]])
    if deployment.process == "serve":
        where = ("imagegate's worker, sweeper and dispatcher run inside the server process "
                 "(the real embedded configuration): during the submit rows the worker renders "
                 "and stores the submitted tasks on the same CPUs. wrk runs on the same machine.")
    else:
        where = ("`imagegate api` alone during the status and submit rows (an `imagegate "
                 "worker` made the finished tasks and was stopped first), its submit rate "
                 "counted in the database: the key's token is taken in the submit's own write "
                 "transaction (the submits that arrive together share one). Submit-to-success "
                 "runs one `imagegate worker` beside it. wrk runs on the same machine.")
        if deployment.database == "sqlite":
            where += (" On SQLite the worker process hears of a new task only by polling "
                      "(`worker_poll_seconds`, 1 s): submit-to-success is that wait.")
    notes = [
        "Sandbox route with zero delay; submit rate, burst and concurrent-task limits lifted, "
        "key credit effectively unlimited.", where,
        "The bare rows use the same wrk scripts (same headers, same POST body) against "
        "`bench/bare_app.py`'s `/ok`, which never reads the body; the targets are computed "
        "against them. The context rows POST the same to its `/json`, which reads and parses "
        "the body (`await request.json()`).",
        *findings.notes, *target_lines(deployment, findings)]
    setup = settings_line(deployment, args, load, findings)
    return (f"## {stamp}\n\n{machine()}\n\nCommand: `{command}`; {setup}\n\n"
            f"{table(findings)}\n\n" + "\n".join(f"- {n}" for n in notes))


# Main ---------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measurement")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up before each one")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--status-tasks", type=int, default=256, help="task ids for status")
    parser.add_argument("--latency-tasks", type=int, default=200)
    parser.add_argument("--poll-ms", type=float, default=5.0, help="status poll interval")
    parser.add_argument("--log-level", default="info", help="imagegate's log level")
    parser.add_argument("--process", choices=("serve", "api"), default="serve",
                        help="serve: all in one process; api: the API alone, no worker "
                        "during the measurements")
    parser.add_argument("--keys", type=int, default=1,
                        help="submit with this many keys in turn, each on its own account "
                        "(status always uses the first)")
    parser.add_argument("--database-url", default="",
                        help="empty: SQLite in the data directory; a PostgreSQL URL: a server "
                        "on which each phase gets a scratch database")
    parser.add_argument("--no-write", action="store_true", help="print only; keep no results")
    return parser.parse_args()


def main() -> None:
    if shutil.which("wrk") is None:
        print(WRK_MISSING, file=sys.stderr)
        raise SystemExit(2)
    args = parse_args()
    harness.stop_on_sigterm()
    load = Load(args.seconds, args.warmup, args.threads, args.connections)
    findings = Findings({}, {}, [], [], [])
    deployment = Deployment(args.process, args.database_url, args.log_level, [])
    print(machine(), flush=True)
    with tempfile.TemporaryDirectory(prefix="imagegate-bench-") as tmp:
        work = Path(tmp)
        try:
            imagegate_phase(work, deployment, args, load, findings)
            bare_phase(work, load, findings)
            latency_phase(work, deployment, args, findings)
        finally:
            deployment.drop()
    text = report(deployment, args, load, findings)
    print("\n" + text)
    if not args.no_write:
        write_results(text)
        print(f"\nappended to {RESULTS}")


if __name__ == "__main__":
    main()
