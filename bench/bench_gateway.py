"""Measure imagegate's OpenAI Images path against LiteLLM's proxy on the same work: one
``POST /v1/images/generations`` relayed to the same fake OpenAI Images backend on loopback.

Run: ``.venv/bin/python bench/bench_gateway.py [--seconds 10] [--warmup 3]
[--connections 1,16,64] [--database-url postgresql://...] [--only imagegate|litellm]``.
Needs ``wrk`` on PATH (Debian/Ubuntu: ``apt-get install -y wrk``) and, the first time, PyPI:
LiteLLM is installed into its own virtual environment under
``~/.cache/imagegate-bench/litellm-<version>`` (``pip install 'litellm[proxy]==<version>'``).
Prints a Markdown table and appends it, dated, with the machine and versions, to
``bench/results/gateway.md``.

In one run:

1. ``bench/images_backend.py`` (a raw asyncio server, its own process) answers every
   generation at once with one fixed pre-encoded 1024x1024 PNG as ``b64_json`` (the sandbox
   picture of the prompt, encoded at zlib level 6).
2. imagegate: ``imagegate serve`` (SQLite in its data directory, or a scratch database on
   ``--database-url``) with a catalogue whose one model is served by an ``openai-images``
   route to the backend; every call is an ordinary task (stored with its hold, claimed by the
   process's worker, sent to the backend, its image stored, settled) that the facade waits
   for and answers. Limits lifted, one key with practically endless credit; after the run the
   script waits for every task to end and checks that each one succeeded and was charged the
   model's price exactly once (the balance's drop equals tasks x price).
3. LiteLLM: ``litellm --num_workers 1`` with ``LITELLM_LOCAL_MODEL_COST_MAP=True``, no
   database, a master key, one model ``openai/bench-image`` with ``api_base`` the backend
   (``drop_params``: LiteLLM refuses ``response_format`` for a model it does not know as a
   DALL-E; the backend answers ``b64_json`` either way).

The same request to both (``model``, ``prompt``, ``size`` 1024x1024, ``response_format``
b64_json), from ``wrk -t THREADS -c N`` with a Lua script (the POST body, the key, a count of
answers that carry the picture), for each N of ``--connections`` after a warm-up. Per row: the
server's process group's CPU (100 % is one core) and its peak resident memory, sampled every
0.25 s; the backend's CPU beside it. wrk, the backend and the server share the machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import bench_api
import harness
import httpx
from harness import Server, free_port, imagegate_env, start_server

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "gateway.md"
MODEL = "bench-image"
PROMPT = "a lighthouse on a cliff at dawn, watercolor"
BODY = {"model": MODEL, "prompt": PROMPT, "size": "1024x1024", "response_format": "b64_json"}
PRICE_MICROS = 10_000  # the model's 1k price, 0.01 USD
LITELLM_MASTER_KEY = "sk-bench-master"
TARGET = 10.0  # imagegate req/s over LiteLLM's

CATALOGUE = """
[routes.bench-backend]
type = "openai-images"
base_url = "{backend}"
model = "{model}"
sizes = ["1024x1024"]
{in_flight}
[models."{model}"]
routes = ["bench-backend"]
prices = {{ "1k" = "0.01", "2k" = "0.02", "4k" = "0.04" }}
"""

LITELLM_CONFIG = """
model_list:
  - model_name: {model}
    litellm_params:
      model: openai/{model}
      api_base: {backend}/v1
      api_key: sk-backend
      drop_params: true
    model_info:
      mode: image_generation
general_settings:
  master_key: {master_key}
"""

# Each wrk thread has its own Lua state: setup() keeps the thread handles so that done() can add
# up every thread's counts; an answer "with picture" is a 200 whose body holds "b64_json": and
# the base64 of a PNG signature; done() prints exact percentiles as one JSON line.
LUA = r"""
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {}; valid = 0 end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status == 200 and string.find(body, '"b64_json"%s*:%s*"iVBORw0KGgo') then
    valid = valid + 1
  end
end
function done(summary, latency, requests)
  local parts, counts, n = {}, {}, 0
  for _, t in ipairs(threads) do
    n = n + t:get("valid")
    for code, k in pairs(t:get("statuses")) do counts[code] = (counts[code] or 0) + k end
  end
  for code, k in pairs(counts) do table.insert(parts, string.format('"%d": %d', code, k)) end
  local e = summary.errors
  io.write(string.format('BENCHJSON {"requests": %d, "duration_us": %d, "p50_us": %d, ' ..
    '"p99_us": %d, "socket_errors": %d, "valid": %d, "statuses": {%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, n, table.concat(parts, ", ")))
end
"""


# Processes ----------------------------------------------------------------------------------


def picture() -> bytes:
    """The backend's one picture: the sandbox picture of the prompt, PNG at zlib level 6."""
    import io

    from imagegate.routes.sandbox_picture import render_sandbox_picture

    out = io.BytesIO()
    render_sandbox_picture(PROMPT, 1024, 1024).save(out, "PNG", compress_level=6)
    return out.getvalue()


def start_backend(work: Path, png: bytes) -> Server:
    path = work / "picture.png"
    path.write_bytes(png)
    port = free_port()
    return start_server([sys.executable, str(HERE / "images_backend.py"), "--port", str(port),
                         "--png", str(path), "--model", MODEL], {}, port, "/v1/models",
                        work / "backend.log", name="images backend")


def backend_counts(backend: Server) -> tuple[int, int]:
    """The generations the backend answered and the connections it accepted, so far."""
    stats = httpx.get(backend.base_url + "/stats").json()
    return int(stats["generations"]), int(stats["connections"])


def litellm_dir(version: str) -> Path:
    return Path.home() / ".cache" / "imagegate-bench" / f"litellm-{version}"


def install_litellm(version: str) -> Path:
    """LiteLLM's proxy in its own virtual environment (made once); its ``litellm`` command."""
    venv = litellm_dir(version)
    command = venv / "bin" / "litellm"
    if command.exists():
        return command
    print(f"installing litellm[proxy]=={version} into {venv}", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"litellm[proxy]=={version}"],
                   check=True)
    return command


def start_litellm(work: Path, command: Path, backend: Server) -> Server:
    config = work / "litellm.yaml"
    config.write_text(LITELLM_CONFIG.format(model=MODEL, backend=backend.base_url,
                                            master_key=LITELLM_MASTER_KEY))
    port = free_port()
    return start_server([str(command), "--config", str(config), "--host", "127.0.0.1",
                         "--port", str(port), "--num_workers", "1"],
                        {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}, port, "/health/liveliness",
                        work / "litellm.log", timeout_s=180, name="litellm", poll_s=0.5)


@dataclass
class Imagegate:
    """The imagegate side: its server, key, data directory and database URL ("" SQLite)."""

    server: Server
    key: str
    data_dir: Path
    database_url: str


def start_imagegate(work: Path, backend: Server, args: argparse.Namespace,
                    scratch: list[str]) -> Imagegate:
    data_dir = work / "imagegate"
    data_dir.mkdir()
    config = data_dir / "imagegate.toml"
    in_flight = f"max_in_flight = {args.max_in_flight}\n" if args.max_in_flight else ""
    config.write_text(CATALOGUE.format(backend=backend.base_url, model=MODEL,
                                       in_flight=in_flight))
    extra = {"config": str(config), "worker_concurrency": str(args.worker_concurrency)}
    url = ""
    if harness.is_postgres(args.database_url):
        url = harness.create_scratch_database(args.database_url, "gateway")
        scratch.append(url)
        extra["database_url"] = url
    env = imagegate_env(args.log_level, **extra)
    key = harness.create_key(data_dir, env)
    server = harness.start_imagegate(data_dir, env, name="imagegate serve")
    return Imagegate(server, key, data_dir, url)


# Measuring ----------------------------------------------------------------------------------


def rss_bytes(server: Server) -> int:
    """Resident memory of every live process of the server's group, added up."""
    total = 0
    for pid in server.pids():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        total += next((int(ln.split()[1]) * 1024 for ln in status.splitlines()
                       if ln.startswith("VmRSS:")), 0)
    return total


class Sampler:
    """Peak resident memory of a server's group, sampled every 0.25 s while running."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.peak = rss_bytes(server)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            self.peak = max(self.peak, rss_bytes(self.server))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def cpu_s(server: Server) -> float:
    return sum(server.thread_cpu_s().values())


def lua_script(path: str, key: str) -> str:
    """POST ``BODY`` to ``path`` with ``key``."""
    return LUA + f"""
wrk.method = "POST"
wrk.path = {bench_api.lua_string(path)}
wrk.body = {bench_api.lua_string(json.dumps(BODY))}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = {bench_api.lua_string("Bearer " + key)}
"""


@dataclass
class Row:
    """One measurement: a gateway at one number of connections."""

    gateway: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    valid: int
    bad: int
    cpu_pct: float
    backend_cpu_pct: float
    peak_rss_mb: float


@dataclass
class Run:
    rows: list[Row] = field(default_factory=list)
    answered: dict[str, int] = field(default_factory=dict)  # 200s, warm-ups included
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class WrkRun:
    """What one wrk run printed."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    valid: int
    socket_errors: int
    statuses: dict[str, int]

    @property
    def ok(self) -> int:
        return self.statuses.get("200", 0)

    @property
    def bad(self) -> int:
        """Answers other than 200, plus requests lost to socket errors and timeouts."""
        return self.requests - self.ok + self.socket_errors


def run_wrk(url: str, script: Path, seconds: float, connections: int, threads: int) -> WrkRun:
    cmd = ["wrk", f"-t{min(threads, connections)}", f"-c{connections}", f"-d{seconds:g}s",
           "--timeout", "30s", "-s", str(script), url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCHJSON ")), None)
    if line is None:
        raise SystemExit(f"wrk printed no result:\n{out}")
    raw = json.loads(line.removeprefix("BENCHJSON "))
    return WrkRun(raw["requests"], raw["duration_us"] / 1e6, raw["p50_us"] / 1000,
                  raw["p99_us"] / 1000, raw["valid"], raw["socket_errors"], raw["statuses"])


def measure(gateway: str, server: Server, backend: Server, key: str, args: argparse.Namespace,
            work: Path, run: Run) -> None:
    script = work / f"{gateway}.lua"
    script.write_text(lua_script("/v1/images/generations", key))
    url = server.base_url + "/"
    for connections in args.connections:
        warm = run_wrk(url, script, args.warmup, connections, args.threads)
        cpu, backend_cpu = cpu_s(server), cpu_s(backend)
        with Sampler(server) as sampler:
            done = run_wrk(url, script, args.seconds, connections, args.threads)
        row = Row(gateway, connections, done.requests / done.seconds, done.p50_ms,
                  done.p99_ms, done.requests, done.valid, done.bad,
                  100 * (cpu_s(server) - cpu) / done.seconds,
                  100 * (cpu_s(backend) - backend_cpu) / done.seconds, sampler.peak / 2**20)
        run.rows.append(row)
        run.answered[gateway] = run.answered.get(gateway, 0) + warm.ok + done.ok
        print(f"  {gateway} c={connections}: {row.rps:,.1f} req/s, p50 {row.p50_ms:.1f} ms, "
              f"p99 {row.p99_ms:.1f} ms, CPU {row.cpu_pct:.0f} %, backend "
              f"{row.backend_cpu_pct:.0f} %, RSS {row.peak_rss_mb:.0f} MB, statuses "
              f"{done.statuses}, with picture {done.valid}", flush=True)


# The imagegate checks -----------------------------------------------------------------------


def balance(gate: Imagegate) -> int:
    sql = "SELECT SUM(balance_micros) FROM accounts"
    if gate.database_url:
        import psycopg

        with psycopg.connect(gate.database_url.partition("?")[0]) as conn:
            row = conn.execute(sql).fetchone()
    else:
        import sqlite3

        with sqlite3.connect(f"file:{gate.data_dir / 'imagegate.db'}?mode=ro", uri=True) as db:
            row = db.execute(sql).fetchone()
    return int(row[0]) if row else 0


def settle(gate: Imagegate, timeout_s: float = 120.0) -> dict[str, int]:
    """The task states once no task is queued or running (tasks whose client wrk cut off at
    the end of a run go on)."""
    deadline = time.monotonic() + timeout_s
    while True:
        states = harness.task_states(gate.data_dir, gate.database_url)
        if not (states.get("queued") or states.get("running")) or time.monotonic() > deadline:
            return states
        time.sleep(0.5)


def check_tasks(gate: Imagegate, backend: Server, before: tuple[int, int, int],
                answered: int, notes: list[str]) -> None:
    """Once every task has ended: each one succeeded, reached the backend once, and was charged
    the model's price once. ``before``: the balance and the backend's counts before the run."""
    states = settle(gate)
    dropped = before[0] - balance(gate)
    generations, connections = backend_counts(backend)
    generations -= before[1]
    succeeded, total = states.get("succeeded", 0), sum(states.values())
    checks = {"every task succeeded": succeeded == total,
              "one backend generation per task": generations == total,
              "balance dropped by tasks x price": dropped == total * PRICE_MICROS,
              "no 200 without its task": answered <= total}
    failed = [name for name, ok in checks.items() if not ok]
    notes.append(
        f"imagegate tasks after the run: {states} ({total:,} in all); {answered:,} calls "
        f"answered 200 (the other tasks are of calls wrk cut off at the end of a run, which go "
        f"on as any task does); backend generations {generations:,}; balance dropped by "
        f"{dropped:,} micro-USD ({PRICE_MICROS:,} per task); "
        + (f"checks MISSED: {', '.join(failed)}." if failed else "all checks met: every call "
           "a durable task, settled once."))
    notes.append(f"imagegate opened {connections - before[2]:,} connections to the backend.")


# Report -------------------------------------------------------------------------------------


def versions(litellm: Path | None) -> str:
    import PIL

    parts = [bench_api.machine(), f"Pillow {PIL.__version__}"]
    if litellm is not None:
        pip = litellm.parent / "pip"
        shown = subprocess.run([str(pip), "show", "litellm"], capture_output=True,
                               text=True).stdout
        version = next((ln.split(": ", 1)[1] for ln in shown.splitlines()
                        if ln.startswith("Version:")), "?")
        parts.append(f"LiteLLM {version}")
    return ", ".join(parts)


def table(rows: list[Row]) -> str:
    lines = ["| gateway | connections | req/s | p50 ms | p99 ms | requests | with picture | "
             "non-200 + errors | server CPU % | backend CPU % | server peak RSS MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.gateway} | {r.connections} | {r.rps:,.1f} | {r.p50_ms:.1f} | "
                     f"{r.p99_ms:.1f} | {r.requests:,} | {r.valid:,} | {r.bad:,} | "
                     f"{r.cpu_pct:.0f} | {r.backend_cpu_pct:.0f} | {r.peak_rss_mb:.0f} |")
    return "\n".join(lines)


def ratio_lines(rows: list[Row]) -> list[str]:
    by = {(r.gateway, r.connections): r for r in rows}
    lines = []
    for (gateway, connections), row in by.items():
        other = by.get(("litellm", connections))
        if gateway != "imagegate" or other is None or connections == 1:
            continue
        ratio = row.rps / other.rps if other.rps else float("inf")
        verdict = "met" if ratio >= TARGET else "MISSED"
        lines.append(f"Target imagegate >= {TARGET:g}x LiteLLM req/s at {connections} "
                     f"connections: {ratio:.1f}x, {verdict}.")
    return lines


def report(args: argparse.Namespace, run: Run, litellm: Path | None, png_bytes: int) -> str:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = " ".join(["python", "bench/bench_gateway.py", *sys.argv[1:]])
    database = "PostgreSQL" if harness.is_postgres(args.database_url) else "SQLite"
    setup = (f"`imagegate serve` on {database}, `worker_concurrency` "
             f"{args.worker_concurrency}"
             + (f", the route's `max_in_flight` {args.max_in_flight}" if args.max_in_flight
                else "")
             + ("; LiteLLM proxy, one worker, no database" if litellm is not None else "")
             + f"; wrk -t{args.threads}, {args.warmup:g} s warm-up then {args.seconds:g} s per "
             f"row; the backend's picture is a {png_bytes:,}-byte 1024x1024 PNG. wrk, the "
             "backend and the server share the machine's CPUs"
             + (" (and PostgreSQL's processes, whose CPU is not in the server's column)."
                if database == "PostgreSQL" else "."))
    notes = [*run.notes, *ratio_lines(run.rows)]
    return (f"## {stamp}\n\n{versions(litellm)}\n\nCommand: `{command}`; {setup}\n\n"
            f"{table(run.rows)}\n\n" + "\n".join(f"- {n}" for n in notes))


# Main ---------------------------------------------------------------------------------------


def imagegate_phase(work: Path, backend: Server, args: argparse.Namespace, run: Run,
                    scratch: list[str]) -> None:
    print("imagegate", flush=True)
    gate = start_imagegate(work, backend, args, scratch)
    try:
        before = (balance(gate), *backend_counts(backend))
        measure("imagegate", gate.server, backend, gate.key, args, work, run)
        check_tasks(gate, backend, before, run.answered.get("imagegate", 0), run.notes)
        print("  " + "\n  ".join(run.notes[-2:]), flush=True)
    finally:
        gate.server.stop()


def litellm_phase(work: Path, backend: Server, command: Path, args: argparse.Namespace,
                  run: Run) -> None:
    print("litellm", flush=True)
    server = start_litellm(work, command, backend)
    try:
        calls, connections = backend_counts(backend)
        measure("litellm", server, backend, LITELLM_MASTER_KEY, args, work, run)
        after = backend_counts(backend)
        run.notes.append(f"LiteLLM answered {run.answered.get('litellm', 0):,} calls 200; "
                         f"backend generations {after[0] - calls:,}; it opened "
                         f"{after[1] - connections:,} connections to the backend.")
    finally:
        server.stop()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--connections", default="1,16,64",
                        type=lambda s: [int(c) for c in s.split(",")])
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--worker-concurrency", type=int, default=64,
                        help="imagegate's worker_concurrency (tasks in flight at once)")
    parser.add_argument("--max-in-flight", type=int, default=0, help="the route's "
                        "max_in_flight (0: none)")
    parser.add_argument("--database-url", default="", help="empty: SQLite; a PostgreSQL URL: "
                        "a server on which imagegate gets a scratch database")
    parser.add_argument("--litellm-version", default="1.108.7")
    parser.add_argument("--only", choices=("imagegate", "litellm"), default=None)
    parser.add_argument("--log-level", default="warning", help="imagegate's log level")
    parser.add_argument("--no-write", action="store_true", help="print only; keep no results")
    return parser.parse_args()


def main() -> None:
    if shutil.which("wrk") is None:
        print(bench_api.WRK_MISSING.replace("bench_api", "bench_gateway"), file=sys.stderr)
        raise SystemExit(2)
    args = parse_args()
    harness.stop_on_sigterm()
    litellm = None if args.only == "imagegate" else install_litellm(args.litellm_version)
    run = Run()
    scratch: list[str] = []
    png = picture()
    print(versions(litellm), flush=True)
    with tempfile.TemporaryDirectory(prefix="imagegate-bench-") as tmp:
        work = Path(tmp)
        backend = start_backend(work, png)
        try:
            if args.only != "litellm":
                imagegate_phase(work, backend, args, run, scratch)
            if litellm is not None:
                litellm_phase(work, backend, litellm, args, run)
        finally:
            backend.stop()
            for url in scratch:
                harness.drop_scratch_database(url)
    text = report(args, run, litellm, len(png))
    print(text)
    if not args.no_write:
        harness.append_section(RESULTS, "imagegate against LiteLLM's proxy, OpenAI Images "
                               "path", "bench_gateway.py", text)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
