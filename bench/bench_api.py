"""Measure the HTTP API of a real ``imagegate serve`` against a bare Starlette app on the same
server stack (granian, ASGI, one worker), with ``wrk`` as the load generator.

Run: ``.venv/bin/python bench/bench_api.py [--seconds 10] [--connections 64]``. Needs ``wrk`` on
PATH (Debian/Ubuntu: ``apt-get install -y wrk``). Prints a Markdown table and appends it, dated,
with the machine, to ``bench/results/api.md``.

What is measured, each for ``--seconds`` after a short warm-up, ``-t THREADS -c CONNECTIONS``:

- status: ``GET /api/v1/statusTask/nano-banana-2?taskId=`` rotating over finished tasks;
- submit: ``POST /api/v1/generateTask/nano-banana-2`` (sandbox route, zero delay, limits lifted);
- the same two request shapes against ``bench/bare_app.py`` (``{"ok": true}``);
- submit-to-success: tasks submitted one at a time, status polled every ``--poll-ms`` until the
  poller sees ``success``, on a fresh server.

imagegate runs as it does in production: the worker, sweeper and callback dispatcher live in the
server process, so during the submit phase the worker renders the submitted tasks on the same
CPUs that answer the submits. wrk runs on the same machine too.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sqlite3
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
WRK_MISSING = ("bench_api.py needs wrk (https://github.com/wg/wrk) on PATH.\n"
               "  Debian/Ubuntu: sudo apt-get update && sudo apt-get install -y wrk\n"
               "  macOS:         brew install wrk")


# Processes ----------------------------------------------------------------------------------


def start_imagegate(data_dir: Path, log_level: str) -> tuple[Server, str]:
    """A fresh ``imagegate serve`` on ``data_dir`` and a key with (practically) endless credit."""
    env = imagegate_env(log_level)
    key = create_key(data_dir, env)
    return harness.start_imagegate(data_dir, env), key


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


def post_script(path: str, key: str) -> str:
    return LUA_COMMON + f"""
wrk.method = "POST"
wrk.path = {lua_string(path)}
wrk.body = {lua_string(json.dumps(BODY))}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = {lua_string("Bearer " + key)}
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


def task_states(data_dir: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{data_dir / 'imagegate.db'}?mode=ro", uri=True) as db:
        return dict(db.execute("SELECT state, COUNT(*) FROM tasks GROUP BY state").fetchall())


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
    bare: dict[str, WrkResult]
    seen_ms: list[float]
    cost_ms: list[float]
    notes: list[str]


def imagegate_phase(work: Path, args: argparse.Namespace, load: Load,
                    findings: Findings) -> None:
    data_dir = work / "imagegate-load"
    print(f"imagegate (data in {data_dir}): seeding {args.status_tasks} tasks", flush=True)
    server, key = start_imagegate(data_dir, args.log_level)
    try:
        ids = seed_tasks(server, key, args.status_tasks)
        status_lua = get_script([STATUS_PATH + i for i in ids], key)
        # Status first, while the worker is idle; the submit phase leaves it a backlog.
        findings.imagegate["status"] = measure("imagegate-status", server.base_url, status_lua,
                                               work, load)
        findings.imagegate["submit"] = measure("imagegate-submit", server.base_url,
                                               post_script(SUBMIT_PATH, key), work, load)
        states = task_states(data_dir)
    finally:
        server.stop()
    stored = sum(states.values()) - args.status_tasks
    done = states.get("succeeded", 0) - args.status_tasks
    findings.notes.append(
        f"Submit phase (warm-up included) stored {stored:,} tasks; the in-process worker had "
        f"finished {max(done, 0):,} of them when it ended (states: {states}).")


def bare_phase(work: Path, load: Load, findings: Findings) -> None:
    print("bare Starlette app", flush=True)
    server = start_bare(work)
    try:
        findings.bare["status"] = measure("bare-get", server.base_url,
                                          get_script(["/ok"], "not-checked"), work, load)
        findings.bare["submit"] = measure("bare-post", server.base_url,
                                          post_script("/ok", "not-checked"), work, load)
    finally:
        server.stop()


def latency_phase(work: Path, args: argparse.Namespace, findings: Findings) -> None:
    print(f"submit-to-success: {args.latency_tasks} tasks, one at a time, polling every "
          f"{args.poll_ms:g} ms", flush=True)
    server, key = start_imagegate(work / "imagegate-latency", args.log_level)
    try:
        seed_tasks(server, key, 5)  # warm-up: imports, connections, first render
        findings.seen_ms, findings.cost_ms = submit_to_success(
            server, key, args.latency_tasks, args.poll_ms / 1000)
    finally:
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
            f"starlette {starlette.__version__}, {wrk}")


def table(f: Findings) -> str:
    rows = ["| measure | imagegate | bare Starlette | imagegate / bare |", "|---|---|---|---|"]
    cells: list[tuple[str, Callable[[WrkResult], float], str]] = [
        ("req/s", lambda r: r.rps, ",.0f"), ("p50 ms", lambda r: r.p50_ms, ".2f"),
        ("p99 ms", lambda r: r.p99_ms, ".2f"), ("requests", lambda r: r.requests, ",.0f"),
        ("non-200 + socket errors", lambda r: r.bad, ",.0f")]
    for phase, label in (("submit", "submit (POST)"), ("status", "status (GET)")):
        ig, bare = f.imagegate[phase], f.bare[phase]
        for name, get, fmt in cells:
            ratio = f"{get(ig) / get(bare):.3f}" if get(bare) and name != "requests" else "-"
            rows.append(f"| {label} {name} | {get(ig):{fmt}} | {get(bare):{fmt}} | {ratio} |")
    for name, values in (("submit to success seen by poller", f.seen_ms),
                         ("server costTime", f.cost_ms)):
        for pct in (50, 99):
            rows.append(f"| {name} p{pct} ms | {percentile(values, pct):.1f} | - | - |")
    return "\n".join(rows)


def settings_line(args: argparse.Namespace, load: Load, findings: Findings) -> str:
    return (f"wrk -t{load.threads} -c{load.connections}, {load.warmup:g} s warm-up then "
            f"{load.seconds:g} s per measurement; {args.status_tasks} finished task ids rotated "
            f"for status; submit-to-success over {len(findings.seen_ms)} tasks submitted one at "
            f"a time, polled every {args.poll_ms:g} ms (mean "
            f"{statistics.fmean(findings.seen_ms):.1f} ms)")


def write_results(report: str) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    if not RESULTS.exists():
        RESULTS.write_text("# API benchmark\n\nWritten by `bench/bench_api.py`; each run "
                           "appends a dated section. See `bench/README.md`.\n")
    with RESULTS.open("a") as f:
        f.write("\n" + report + "\n")


def report(args: argparse.Namespace, load: Load, findings: Findings) -> str:
    stamp = subprocess.run(["date", "-u", "+%Y-%m-%d %H:%M UTC"], capture_output=True,
                           text=True).stdout.strip()
    command = " ".join(["python", "bench/bench_api.py", *sys.argv[1:]])
    notes = [
        "Sandbox route with zero delay; submit rate, burst and concurrent-task limits lifted, "
        "key credit effectively unlimited.",
        "imagegate's worker, sweeper and dispatcher run inside the server process (the real "
        "embedded configuration): during the submit rows the worker renders and stores the "
        "submitted tasks on the same CPUs. wrk runs on the same machine.",
        "The bare rows use the same wrk scripts (same headers, same POST body) against "
        "`bench/bare_app.py`, which never reads the body.",
        *findings.notes]
    setup = settings_line(args, load, findings)
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
    parser.add_argument("--no-write", action="store_true", help="print only; keep no results")
    return parser.parse_args()


def main() -> None:
    if shutil.which("wrk") is None:
        print(WRK_MISSING, file=sys.stderr)
        raise SystemExit(2)
    args = parse_args()
    load = Load(args.seconds, args.warmup, args.threads, args.connections)
    findings = Findings({}, {}, [], [], [])
    print(machine(), flush=True)
    with tempfile.TemporaryDirectory(prefix="imagegate-bench-") as tmp:
        work = Path(tmp)
        imagegate_phase(work, args, load, findings)
        bare_phase(work, load, findings)
        latency_phase(work, args, findings)
    text = report(args, load, findings)
    print("\n" + text)
    if not args.no_write:
        write_results(text)
        print(f"\nappended to {RESULTS}")


if __name__ == "__main__":
    main()
