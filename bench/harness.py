"""Process plumbing shared by the benchmarks that drive real imagegate processes
(``bench_api.py``, ``bench_webhooks.py``, ``bench_status_scale.py``, ``bench_workers.py``): free
loopback ports, server subprocesses in their own process group polled until ready, background
processes (``imagegate worker``) started until they say they run, the imagegate environment with
limits lifted, a key with practically unlimited credit, scratch PostgreSQL databases, and the CPU
the processes of a group have used.

Not a benchmark: the scripts import it as ``harness`` (their own directory is on ``sys.path``
when they are run as ``python bench/<script>.py``).
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

UNLIMITED = "1000000000"
IMAGEGATE_CLI = (sys.executable, "-m", "imagegate.cli")
POSTGRES_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def stop_on_sigterm() -> None:
    """Make SIGTERM (and SIGINT, which a shell's background job ignores) end the benchmark as
    Ctrl-C does, so its ``finally`` blocks stop the servers it started and drop its scratch
    databases."""
    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def source_version() -> str:
    """The imagegate commit measured, and whether ``src/`` differs from it."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                              text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = " with uncommitted changes in src/" if git("status", "--porcelain", "src") else ""
    return f"imagegate at {commit}{dirty}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A server subprocess in its own process group, answering on ``base_url``."""

    proc: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def stop(self, grace_s: float = 40.0) -> None:
        """SIGTERM the whole group, then SIGKILL whatever is left after ``grace_s``."""
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(grace_s)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            print(f"  {self.base_url} did not stop in {grace_s:.0f}s; killing it", flush=True)
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def pids(self) -> list[int]:
        """Every live process of the group."""
        return sorted({pid for pid, _ in self._stats()})

    def thread_cpu_s(self) -> dict[int, float]:
        """CPU seconds (user + system) used so far by each live thread of the group."""
        return {tid: cpu for (_, tid), cpu in self._stats(threads=True).items()}

    def _stats(self, threads: bool = False) -> dict[tuple[int, int], float]:
        found = {}
        tick = os.sysconf("SC_CLK_TCK")
        for proc_stat in Path("/proc").glob("[0-9]*/stat"):
            pid = int(proc_stat.parent.name)
            try:
                if int(proc_stat.read_text().rsplit(")", 1)[1].split()[2]) != self.proc.pid:
                    continue  # not in the group
                tasks = list((proc_stat.parent / "task").glob("*/stat")) if threads else []
                for stat in tasks or [proc_stat]:
                    fields = stat.read_text().rsplit(")", 1)[1].split()
                    found[(pid, int(stat.parent.name))] = (int(fields[11]) + int(fields[12])) / tick
            except OSError:
                continue  # gone meanwhile
        return found


def start_server(cmd: Sequence[str], env: dict[str, str], port: int, ready_path: str,
                 log_path: Path, timeout_s: float = 60.0, *, name: str = "server",
                 poll_s: float = 0.1) -> Server:
    """Start ``cmd`` (``env`` over this process's environment) in a new session, its output
    appended to ``log_path``, and poll ``ready_path`` every ``poll_s`` until it answers 200.
    ``name`` is what the messages call it when it exits early or is not ready in time."""
    with log_path.open("ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, **env}, start_new_session=True)
    server = Server(proc, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited early:\n{log_path.read_text()}")
        try:
            if httpx.get(server.base_url + ready_path, timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(poll_s)
    server.stop()
    raise SystemExit(f"{name} not ready in {timeout_s:.0f}s:\n{log_path.read_text()}")


def imagegate_env(log_level: str, **extra: str) -> dict[str, str]:
    """Zero sandbox delay and limits far above anything a bench can reach (no 402/429), plus
    ``extra`` settings as ``IMAGEGATE_<NAME>`` variables."""
    env = {"IMAGEGATE_SANDBOX_DELAY_SECONDS": "0",
           "IMAGEGATE_LIMITS_SUBMIT_RATE": UNLIMITED,
           "IMAGEGATE_LIMITS_SUBMIT_BURST": UNLIMITED,
           "IMAGEGATE_LIMITS_MAX_CONCURRENT_TASKS": UNLIMITED,
           "IMAGEGATE_LOG_LEVEL": log_level}
    env.update({"IMAGEGATE_" + k.upper(): v for k, v in extra.items()})
    return env


def migrate(data_dir: Path, env: dict[str, str]) -> None:
    """``imagegate migrate``: the data directory and the database (SQLite in ``data_dir``, or
    ``IMAGEGATE_DATABASE_URL`` in ``env``) with the current schema."""
    subprocess.run([*IMAGEGATE_CLI, "migrate", "--data-dir", str(data_dir)], capture_output=True,
                   text=True, check=True, env={**os.environ, **env})


def create_key(data_dir: Path, env: dict[str, str]) -> str:
    """A key with (practically) endless credit in ``data_dir`` (and ``env``'s database),
    created by ``imagegate keys`` after ``imagegate migrate`` (``keys`` needs a database)."""
    migrate(data_dir, env)
    created = subprocess.run([*IMAGEGATE_CLI, "keys", "create", "--credit", UNLIMITED, "--name",
                              "bench", "--data-dir", str(data_dir)], capture_output=True,
                             text=True, check=True, env={**os.environ, **env})
    return created.stdout.strip().splitlines()[-1]


_CREATE_KEYS = """
import asyncio, sys
from imagegate import accounts
from imagegate.bootstrap import open_store
from imagegate.clock import SystemClock
from imagegate.config import Settings

async def main(count, data_dir, credit):
    store = open_store(Settings.load(None, data_dir=data_dir))
    try:
        for _ in range(count):
            new = await accounts.create_key(store, SystemClock(), credit_micros=credit,
                                            name="bench")
            print(new.plain)
    finally:
        await store.close()

asyncio.run(main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
"""


def create_keys(data_dir: Path, env: dict[str, str], count: int) -> list[str]:
    """``count`` more keys like ``create_key``'s, each on its own account, made by one process
    (the database must exist)."""
    made = subprocess.run([sys.executable, "-c", _CREATE_KEYS, str(count), str(data_dir),
                           str(int(UNLIMITED) * 1_000_000)], capture_output=True, text=True,
                          check=True, env={**os.environ, **env})
    return made.stdout.split()


def start_imagegate(data_dir: Path, env: dict[str, str], *, name: str = "server",
                    poll_s: float = 0.1, process: str = "serve") -> Server:
    """``imagegate serve`` (or ``process="api"``: ``imagegate api``, the API alone) on
    ``data_dir`` and a free port, logging to ``<process>.log`` there (``server.log`` for
    serve)."""
    port = free_port()
    log = data_dir / ("server.log" if process == "serve" else f"{process}.log")
    data_dir.mkdir(parents=True, exist_ok=True)
    return start_server([*IMAGEGATE_CLI, process, "--data-dir", str(data_dir), "--port",
                         str(port)], env, port, "/readyz", log, name=name, poll_s=poll_s)


def start_background(cmd: Sequence[str], env: dict[str, str], log_path: Path, ready_text: str,
                     timeout_s: float = 60.0, *, name: str = "process") -> Server:
    """Start ``cmd`` like ``start_server`` and wait until its log holds ``ready_text`` (for a
    process that serves no HTTP: ``imagegate worker``). Its ``base_url`` is empty."""
    with log_path.open("ab") as log:
        start = log.tell()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, **env}, start_new_session=True)
    server = Server(proc, "", log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited early:\n{log_path.read_text()}")
        with log_path.open("rb") as log:
            log.seek(start)
            if ready_text.encode() in log.read():
                return server
        time.sleep(0.05)
    server.stop()
    raise SystemExit(f"{name} not running in {timeout_s:.0f}s:\n{log_path.read_text()}")


def start_worker(data_dir: Path, env: dict[str, str], *, name: str = "worker",
                 extra: Sequence[str] = ()) -> Server:
    """``imagegate worker`` on ``data_dir`` (and ``env``'s database), logging to
    ``<name>.log`` there; returned once it says it runs."""
    return start_background([*IMAGEGATE_CLI, "worker", "--data-dir", str(data_dir), *extra],
                            env, data_dir / f"{name}.log", "imagegate worker running",
                            name=name)


# Scratch PostgreSQL databases ---------------------------------------------------------------


def append_section(results: Path, title: str, script: str, text: str) -> None:
    """Append ``text`` (a dated section) to the results file ``results``, which is created with
    its ``title`` and a line naming the ``script`` that writes it on first use."""
    if not results.exists():
        results.write_text(f"# {title}\n\nWritten by `bench/{script}`; each run appends a dated "
                           "section. See `bench/README.md`.\n")
    with results.open("a") as out:
        out.write("\n" + text + "\n")


def with_database(url: str, name: str) -> str:
    """``url`` (a PostgreSQL URL, query kept) naming database ``name`` instead."""
    head, sep, query = url.partition("?")
    base = head.rpartition("/")[0] if head.count("/") > 2 else head
    return f"{base}/{name}" + (sep + query if sep else "")


def create_scratch_database(server_url: str, tag: str) -> str:
    """A new empty database ``imagegate_bench_<pid>_<tag>`` on ``server_url``'s server (an
    older one of that name dropped first); its URL."""
    import psycopg

    name = f"imagegate_bench_{os.getpid()}_{tag}"
    admin_url = with_database(server_url.partition("?")[0], "postgres")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())
        admin.execute(f"CREATE DATABASE {name}".encode())
    return with_database(server_url, name)


def drop_scratch_database(url: str) -> None:
    import psycopg

    name = url.partition("?")[0].rpartition("/")[2]
    assert name.startswith("imagegate_bench_"), name  # never anything but a scratch database
    admin_url = with_database(url.partition("?")[0], "postgres")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql:", "postgres:"))


def task_states(data_dir: Path, database_url: str = "") -> dict[str, int]:
    """How many tasks are in each state, read straight from the database."""
    sql = "SELECT state, COUNT(*) FROM tasks GROUP BY state"
    if is_postgres(database_url):
        import psycopg

        with psycopg.connect(database_url.partition("?")[0]) as conn:
            return {str(s): int(n) for s, n in conn.execute(sql).fetchall()}
    import sqlite3

    with sqlite3.connect(f"file:{data_dir / 'imagegate.db'}?mode=ro", uri=True) as db:
        return dict(db.execute(sql).fetchall())


def client_for(server: Server, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, timeout=30,
                        headers={"Authorization": f"Bearer {key}"})


# Tasks in bulk: copies of a row the service wrote ---------------------------------------------

TASK_COLUMNS = ("id", "account_id", "key_id", "model", "input_json", "request_type",
                "callback_url", "provider", "source", "state", "stage", "attempt",
                "lease_until_ms", "worker_id", "not_before_ms", "created_ms", "started_ms",
                "complete_ms", "expire_ms", "price_micros", "charge_state", "result_token",
                "results_json", "results_deleted", "fail_code", "fail_msg", "attempts_json",
                "notes_json")
# Copy g of the template: its own id and token, every time ``g * step`` ms later (earlier when
# step is negative), and the template's id replaced by its own in the result keys; the rest as
# the service wrote it. {id} and {token} are the dialect's expressions of g.
_COPY_EXPRESSIONS = {"id": "{id}", "result_token": "{token}",
                     "results_json": "replace(results_json, t.id, {id})",
                     **{c: f"{c} + g * {{step}}"
                        for c in ("created_ms", "started_ms", "complete_ms", "expire_ms")}}


def copy_id(prefix: str, g: int) -> str:
    """The id of copy ``g``: 32 hex characters, as ``imagegate.tasks.new_task_id`` makes."""
    return hashlib.md5(f"{prefix}{g}".encode()).hexdigest()


def _copy_token(g: int) -> str:
    return hashlib.md5(f"token-{g}".encode()).hexdigest()[:24]


def copy_tasks(database: str, template_id: str, first: int, last: int, *, prefix: str,
               step_ms: int, overrides: dict[str, str] | None = None) -> None:
    """Insert copies ``first`` .. ``last`` of task ``template_id`` in one transaction.
    ``database``: a PostgreSQL URL, or the path of a SQLite database file; ``overrides``: SQL
    expressions for columns the copies do not take from the template."""
    step = str(int(step_ms))
    exprs = {**_COPY_EXPRESSIONS, **(overrides or {})}
    columns = ", ".join(TASK_COLUMNS)
    select_all = "SELECT " + ", ".join(exprs.get(c, c) for c in TASK_COLUMNS)
    if is_postgres(database):
        import psycopg

        select = select_all.format(id=f"md5('{prefix}' || g)", step=step,
                                   token="substr(md5('token-' || g), 1, 24)")
        sql = (f"INSERT INTO tasks ({columns}) {select} FROM tasks t, "
               f"generate_series(%s::bigint, %s::bigint) AS g WHERE t.id = %s")
        with psycopg.connect(database.partition("?")[0]) as conn:
            conn.execute(sql.encode(), (first, last, template_id))
        return
    import sqlite3

    select = select_all.format(id="bench_id(g)", token="bench_token(g)", step=step)
    sql = (f"WITH RECURSIVE seq(g) AS (SELECT ? UNION ALL SELECT g + 1 FROM seq WHERE g < ?) "
           f"INSERT INTO tasks ({columns}) {select} FROM tasks t, seq WHERE t.id = ?")
    db = sqlite3.connect(database, isolation_level=None, timeout=30)
    try:
        db.create_function("bench_id", 1, lambda g: copy_id(prefix, g), deterministic=True)
        db.create_function("bench_token", 1, _copy_token, deterministic=True)
        db.execute("BEGIN IMMEDIATE")
        db.execute(sql, (first, last, template_id))
        db.execute("COMMIT")
    finally:
        db.close()
