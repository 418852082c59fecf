"""Where an ``imagegate api`` process spends a request: py-spy samples of the process under
``wrk`` load, its CPU per request next to PostgreSQL's, and (on PostgreSQL) what the database
sessions were waiting for.

Run: ``.venv/bin/python bench/profile_api.py --request submit|status|status-db
[--database-url postgresql://...] [--seconds 15]``. Needs ``wrk`` and ``py-spy`` on PATH or in
the virtual environment (``pip install py-spy``; it needs ptrace permission over the server).
Prints a Markdown report and appends it, dated, with the machine, to
``bench/results/profile_api.md``; the raw collapsed stacks stay in ``--keep DIR`` if given.

Requests, each against a fresh ``imagegate api`` (no worker running while it is measured):

- ``submit``: ``POST /api/v1/generateTask/nano-banana-2`` as in ``bench_api.py``;
- ``status``: ``GET /api/v1/statusTask/...`` rotating over 256 finished tasks (made by a worker
  stopped before the load), answered from the process's cache of finished answers after the
  first round, as in ``bench_api.py``;
- ``status-db``: the same with the cache off (``bench_status_scale.py``'s ``uncached-api``):
  every request reads its task from the database;
- ``bare``: ``GET /ok`` of ``bench/bare_app.py``, the floor the ratios are taken against.

``--switch-interval S`` (a diagnostic) runs every kind through ``uncached-api`` with the cache
as shipped (off for ``status-db``) and the interpreter's GIL switch interval at S seconds
(Python's default is 0.005): how much of a request's time is threads waiting to get the GIL
back.

After ``--warmup`` seconds of load, py-spy records the server's processes for ``--seconds`` (at
``--rate`` Hz, without pausing them, only the thread holding the GIL: the Python work one
process can do at a time) while wrk goes on. The report gives the share of the sampled stacks
in which each function appears (inclusive) and at the top (self), and by thread kind; the CPU
time of the server, of PostgreSQL's backends and of the whole machine per request in the same
window; and, on PostgreSQL, the share of samples (every 10 ms) of this database's sessions in
each state and wait event.
"""

from __future__ import annotations

import argparse
import datetime
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import bench_api
import harness
from bench_status_scale import start_uncached

import imagegate.app.tasks

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "profile_api.md"
TOP = 25


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise SystemExit("profile_api.py needs py-spy: .venv/bin/pip install py-spy")
    return found


# CPU from /proc -------------------------------------------------------------------------------


def machine_jiffies() -> tuple[float, float]:
    fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(fields) - fields[3] - fields[4], sum(fields)


def postgres_backends_cpu(database: str) -> float:
    """CPU seconds used so far by the live PostgreSQL backends connected to ``database``."""
    import os

    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes()
            if not cmdline.startswith(b"postgres: ") or f" {database} ".encode() not in cmdline:
                continue
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            continue
    return total


def context_switches(server: harness.Server) -> int:
    """Context switches (voluntary and not) of every live thread of the server's group."""
    total = 0
    for pid in server.pids():
        for status in Path(f"/proc/{pid}/task").glob("*/status"):
            try:
                for line in status.read_text().splitlines():
                    if "ctxt_switches:" in line:
                        total += int(line.split()[1])
            except (OSError, ValueError, IndexError):
                continue
    return total


# PostgreSQL wait events -----------------------------------------------------------------------


class WaitSampler(threading.Thread):
    """Samples ``pg_stat_activity`` for ``database`` every ``every_s`` until stopped."""

    def __init__(self, url: str, database: str, every_s: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.url, self.database, self.every_s = url, database, every_s
        self.counts: Counter[str] = Counter()
        self.samples = 0
        self._halt = threading.Event()

    def run(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._halt.is_set():
                rows = conn.execute(
                    b"SELECT state, wait_event_type, wait_event FROM pg_stat_activity "
                    b"WHERE datname = %s AND pid <> pg_backend_pid() "
                    b"AND backend_type = 'client backend'", (self.database,)).fetchall()
                self.samples += 1
                for state, kind, event in rows:
                    if state == "active" and kind is None:
                        label = "active, on CPU (no wait event)"
                    elif kind is None:
                        label = str(state)
                    else:
                        label = f"{state}, waiting {kind}:{event}"
                    self.counts[label] += 1
                time.sleep(self.every_s)

    def stop(self) -> None:
        self._halt.set()
        self.join()


# Stacks ---------------------------------------------------------------------------------------

_FRAME_LINE = re.compile(r" \((?P<file>[^()]*?)(?P<line>:\d+)?\)$")


# Frames every stack of a kind of thread has: how the thread started, not what it does.
PLUMBING = ("threading.py", "concurrent/futures/", "multiprocessing/", "granian/server/",
            "imagegate/cli.py", "imagegate/serving.py", "<frozen runpy>",
            "bench_status_scale.py", "run_forever (", "run_until_complete (")


def thread_kind(label: str) -> str:
    """A thread's kind from py-spy's label (``thread (123): name_4``): its name without the
    number; a thread without a name is one granian's runtime started."""
    found = re.match(r"thread \(\d+\)(?:: (.*))?$", label)
    name = found.group(1) if found and found.group(1) else ""
    name = re.sub(r"_\d+$", "", name)
    return name or "unnamed (granian's runtime)"


def read_stacks(raw: Path) -> list[tuple[str, list[str], int]]:
    """(thread kind, frames outermost first, samples) per line of py-spy's raw output."""
    found = []
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        parts = stack.split(";")
        # With --subprocesses and --threads a stack starts with the processes from the one
        # py-spy was given down to the sampled one, then the thread: granian's supervisor is
        # the first process, the worker serving the app its child.
        processes = [p for p in parts if p.startswith(("process ", "Process "))]
        frames = [p for p in parts if not p.startswith(("process ", "Process "))]
        thread = next((p for p in frames if p.startswith("thread ")), "")
        frames = [f for f in frames if not f.startswith("thread ")]
        kind = thread_kind(thread)
        if len(processes) == 1:
            kind = f"{kind} (granian's supervisor process)"
        found.append((kind, [short(f) for f in frames], int(count)))
    return found


def short(frame: str) -> str:
    """``function (path/file.py:line)`` with the path cut to the package."""
    match = _FRAME_LINE.search(frame)
    if match is None:
        return frame
    name = frame[:match.start()]
    path = match.group("file")
    for marker in ("site-packages/", "/lib/python3", "src/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path}{match.group('line') or ''})"


def no_line(frame: str) -> str:
    return re.sub(r":\d+\)$", ")", frame)


def summarise(stacks: list[tuple[str, list[str], int]], every_thread: bool) -> str:
    total = sum(n for _, _, n in stacks)
    if not total:
        return "py-spy recorded no samples."
    by_thread: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    leaf_by_thread: dict[str, Counter[str]] = {}
    ours_by_thread: dict[str, Counter[str]] = {}
    for thread, raw_frames, n in stacks:
        frames = [no_line(f) for f in raw_frames]
        by_thread[thread] += n
        for frame in set(frames):
            if not any(p in frame for p in PLUMBING):
                inclusive[frame] += n
        if frames:
            own[frames[-1]] += n
            leaf_by_thread.setdefault(thread, Counter())[raw_frames[-1]] += n
        ours = ours_by_thread.setdefault(thread, Counter())
        for frame in set(frames):
            if "(imagegate/" in frame and not any(p in frame for p in PLUMBING):
                ours[frame] += n
    if every_thread:
        return per_thread(by_thread, leaf_by_thread, ours_by_thread)
    lines = [f"{total:,} samples of the thread holding the GIL.", "",
             "| thread kind | share of samples |", "|---|---|"]
    lines += [f"| {t} | {n / total:.1%} |" for t, n in by_thread.most_common()]
    lines += ["", f"Top {TOP} functions by inclusive share (in the stack; how threads start "
              "left out):", "",
              "| function | inclusive | self |", "|---|---|---|"]
    lines += [f"| `{f}` | {n / total:.1%} | {own[f] / total:.1%} |"
              for f, n in inclusive.most_common(TOP)]
    lines += ["", f"Top {TOP} functions by self share (at the top of the stack):", "",
              "| function | self |", "|---|---|"]
    lines += [f"| `{f}` | {n / total:.1%} |" for f, n in own.most_common(TOP)]
    return "\n".join(lines)


def per_thread(by_thread: Counter[str], leaves: dict[str, Counter[str]],
               ours: dict[str, Counter[str]]) -> str:
    """Every thread's time, idle included: where each kind of thread is, sample by sample, and
    which of imagegate's functions it is in."""
    lines = ["Every thread, idle or not (wall time): the line each kind of thread is at, and "
             "the imagegate functions in its stack, as shares of that kind's samples (a thread "
             "shown in a system call may be waiting for the GIL to come back).", ""]
    for thread, n in by_thread.most_common():
        lines += [f"{thread} ({n:,} samples):", "", "| at | share |", "|---|---|"]
        lines += [f"| `{f}` | {c / n:.1%} |" for f, c in leaves[thread].most_common(12)]
        if ours.get(thread):
            lines += ["", "| imagegate function in the stack | share |", "|---|---|"]
            lines += [f"| `{f}` | {c / n:.1%} |" for f, c in ours[thread].most_common(10)]
        lines.append("")
    return "\n".join(lines)


# Main -----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--request", choices=("submit", "status", "status-db", "bare"),
                        required=True)
    parser.add_argument("--database-url", default="", help="empty: SQLite; a PostgreSQL URL: a "
                        "server where a scratch database may be created")
    parser.add_argument("--keys", type=int, default=1, help="submit: this many keys in turn, "
                        "each on its own account")
    parser.add_argument("--seconds", type=float, default=15.0, help="recorded load")
    parser.add_argument("--warmup", type=float, default=3.0, help="load before recording")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--switch-interval", type=float,
                        help="(diagnostic) the server's GIL switch interval, seconds")
    parser.add_argument("--keep", help="a directory to keep py-spy's raw stacks in")
    parser.add_argument("--every-thread", action="store_true", help="sample every thread, "
                        "idle ones included, and say where each kind of thread spends its time "
                        "(instead of the GIL holder's functions)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    harness.stop_on_sigterm()
    if shutil.which("wrk") is None:
        raise SystemExit(bench_api.WRK_MISSING)
    spy = py_spy()
    print(bench_api.machine(), flush=True)
    deployment = bench_api.Deployment("api", args.database_url, "warning", [])
    with tempfile.TemporaryDirectory(prefix="imagegate-profile-") as tmp:
        work = Path(tmp)
        try:
            text = profile(args, spy, deployment, work)
        finally:
            deployment.drop()
    print("\n" + text)
    if not args.no_write:
        harness.append_section(RESULTS, "Profiles of the API process", "profile_api.py", text)
        print(f"\nappended to {RESULTS}")


def profile(args: argparse.Namespace, spy: str, deployment: bench_api.Deployment,
            work: Path) -> str:
    data_dir = work / "data"
    if args.request == "bare":
        env, url, key = {}, "", ""
    else:
        env, url = deployment.env("profile")
        key = harness.create_key(data_dir, env)
    def start() -> harness.Server:
        if args.switch_interval is None and args.request != "status-db":
            return harness.start_imagegate(data_dir, env, process="api", name="imagegate api")
        cache = 0 if args.request == "status-db" else imagegate.app.tasks.FINISHED_CACHE
        return start_uncached(data_dir, env, cache=cache, switch_interval=args.switch_interval)

    if args.request == "bare":
        lua = bench_api.get_script(["/ok"], "not-checked")
        server = bench_api.start_bare(work)
    elif args.request == "submit":
        more = harness.create_keys(data_dir, env, args.keys - 1) if args.keys > 1 else []
        lua = bench_api.post_script(bench_api.SUBMIT_PATH, key, more)
        server = start()
    else:
        seeder = harness.start_imagegate(data_dir, env, process="api", name="imagegate api")
        worker = harness.start_worker(data_dir, env)
        try:
            ids = bench_api.seed_tasks(seeder, key, 256)
        finally:
            worker.stop()
            seeder.stop()
        lua = bench_api.get_script([bench_api.STATUS_PATH + i for i in ids], key)
        server = start()
    script = work / "load.lua"
    script.write_text(lua)
    raw = work / "stacks.txt"
    database = url.partition("?")[0].rpartition("/")[2] if url else ""
    load = bench_api.Load(args.seconds, args.warmup, args.threads, args.connections)
    try:
        bench_api.run_wrk(server.base_url + "/", script, args.warmup, load)
        result: list[bench_api.WrkResult] = []
        loader = threading.Thread(target=lambda: result.append(bench_api.run_wrk(
            server.base_url + "/", script, args.seconds + 2, load)), daemon=True)
        sampler = WaitSampler(url.partition("?")[0], database) if url else None
        loader.start()
        time.sleep(1.0)  # wrk connected and at full load
        cpu0 = sum(server.thread_cpu_s().values())
        switches0 = context_switches(server)
        pg0 = postgres_backends_cpu(database) if url else 0.0
        busy0, all0 = machine_jiffies()
        if sampler:
            sampler.start()
        subprocess.run([spy, "record", "--pid", str(server.proc.pid), "--subprocesses",
                        "--threads", "--nonblocking", "--rate", str(args.rate), "--duration",
                        str(int(args.seconds)), "--format", "raw", "--output", str(raw),
                        *(["--idle"] if args.every_thread else ["--gil"])],
                       check=True, capture_output=True)
        cpu = sum(server.thread_cpu_s().values()) - cpu0
        switches = context_switches(server) - switches0
        pg = (postgres_backends_cpu(database) - pg0) if url else 0.0
        busy1, all1 = machine_jiffies()
        if sampler:
            sampler.stop()
        loader.join()
    finally:
        server.stop()
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
        name = "-".join([args.request, deployment.database,
                         *([f"{args.keys}keys"] if args.keys > 1 else []),
                         *(["every-thread"] if args.every_thread else [])])
        shutil.copy(raw, Path(args.keep) / f"{name}.txt")
    wrk = result[0]
    requests = wrk.rps * args.seconds  # the recorded window, at the run's rate
    busy = (busy1 - busy0) / (all1 - all0)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = " ".join(["python", "bench/profile_api.py", *sys.argv[1:]])
    lines = [
        f"## {stamp}: "
        + ("bare Starlette app" if args.request == "bare" else
           f"{args.request} on {deployment.database}")
        + (f", {args.keys} keys" if args.request == "submit" and args.keys > 1 else "")
        + (f", GIL switch interval {args.switch_interval:g} s"
           if args.switch_interval is not None else ""), "",
        bench_api.machine(), "",
        f"Command: `{command}`; wrk -t{args.threads} -c{args.connections}; py-spy "
        f"{args.rate} Hz for {args.seconds:g} s, non-blocking, "
        f"{'every thread, idle included' if args.every_thread else 'GIL holder only'}, during "
        "the load", "",
        f"- Load: {wrk.rps:,.0f} req/s (py-spy's own sampling included), p50 {wrk.p50_ms:.2f} "
        f"ms, p99 {wrk.p99_ms:.2f} ms, non-200 + socket errors {wrk.bad}.",
        f"- CPU per request in the recorded window: "
        f"{'the bare app' if args.request == 'bare' else 'imagegate api'} "
        f"{cpu / requests * 1e6:,.0f} µs"
        + (f", PostgreSQL backends {pg / requests * 1e6:,.0f} µs" if url else "")
        + f"; the machine's {harness_cpus()} CPUs {busy:.0%} busy (wrk and py-spy included).",
        f"- Context switches of the server's threads: {switches / requests:.1f} per request.",
    ]
    if sampler is not None and sampler.samples:
        sessions = sum(sampler.counts.values()) / sampler.samples
        lines += ["", f"PostgreSQL sessions of this database: {sessions:.1f} on average, "
                  f"{sampler.samples:,} samples of pg_stat_activity:", "",
                  "| session state | share of session samples |", "|---|---|"]
        total = sum(sampler.counts.values())
        lines += [f"| {label} | {n / total:.1%} |" for label, n in sampler.counts.most_common()]
    stacks = read_stacks(raw)
    if not args.every_thread:
        held = sum(n for _, _, n in stacks) / (args.rate * args.seconds)
        lines.append(f"- GIL held {held:.0%} of the window by some thread of the server: "
                     f"{held / wrk.rps * 1e6:,.0f} µs per request.")
    lines += ["", summarise(stacks, args.every_thread)]
    return "\n".join(lines)


def harness_cpus() -> int:
    import os

    return os.cpu_count() or 1


if __name__ == "__main__":
    main()
