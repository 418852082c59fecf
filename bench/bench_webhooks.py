"""Measure callback delivery of a real ``imagegate serve`` to a local receiver on loopback:
deliveries per second while tasks are being rendered, deliveries per second when a backlog of
finished tasks is drained, and the delay from a task's completion to its first delivery.

Run: ``.venv/bin/python bench/bench_webhooks.py [--tasks 800]``. Prints a Markdown table and
appends it, dated, with the machine, to ``bench/results/webhooks.md``.

The receiver is this script started again as ``receiver``: a separate process running a bare
asyncio HTTP/1.1 server that records each request (receive time, headers, raw body) and answers
204 at once, or 503 while told to refuse. Signatures are checked after each phase with
``imagegate.signing.verify`` against the account's secret from ``GET /api/v1/webhooks/secret``,
each at the time the receiver got it, so the receiver's hot path does no HMAC work.

Phases, each server a subprocess in its own process group with its own data directory:

- receiver alone: ``wrk`` (or, without wrk, an httpx client) POSTs callback-shaped requests to
  the receiver, to show how far above the measured delivery rates it can go;
- live: ``--tasks`` callback tasks submitted by ``--submitters`` concurrent clients; the worker
  renders them in the server process while the dispatcher delivers;
- paced: ``--paced-tasks`` tasks submitted at ``--paced-rate`` per second, on the same server:
  the completion-to-delivery delay with nothing queued;
- backlog: on a fresh server the receiver refuses (503) until every task has succeeded and
  failed its first attempt; the server is stopped, the receiver accepts, and once every
  delivery's next attempt is due the server is started again: its dispatcher drains the
  backlog with no rendering beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness
import httpx
from harness import IMAGEGATE_CLI, Server, client_for, create_key, free_port, start_server

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "webhooks.md"
MODEL = "nano-banana-2"
SUBMIT_PATH = f"/api/v1/generateTask/{MODEL}"
HOOK_PATH = "/hook"
CONTROL = "/__control"


# The receiver (its own process) ---------------------------------------------------------------

NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"
REFUSED = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n"


def _answer(status: str, payload: Any) -> bytes:
    body = json.dumps(payload).encode()
    return (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode() + body


@dataclass
class ReceiverState:
    """What the receiver got: ``(unix seconds, status answered, webhook-id, timestamp,
    signature, body)`` per request, in arrival order."""

    accept: bool = True
    records: list[tuple[float, int, str, str, str, bytes]] = field(default_factory=list)
    accepted: int = 0
    refused: int = 0

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
        if target.startswith(CONTROL):
            return self.control(method, target.removeprefix(CONTROL))
        got = time.time()
        status = 204 if self.accept else 503
        self.records.append((got, status, headers.get("webhook-id", ""),
                             headers.get("webhook-timestamp", ""),
                             headers.get("webhook-signature", ""), body))
        if self.accept:
            self.accepted += 1
            return NO_CONTENT
        self.refused += 1
        return REFUSED

    def control(self, method: str, action: str) -> bytes:
        if action == "/accept":
            self.accept = True
        elif action == "/refuse":
            self.accept = False
        elif action == "/reset":
            self.records.clear()
            self.accepted = self.refused = 0
        elif action == "/records":
            return _answer("200 OK", [[t, s, i, ts, sig, base64.b64encode(b).decode()]
                                      for t, s, i, ts, sig, b in self.records])
        elif action != "/stats":
            return _answer("404 Not Found", {"error": action})
        return _answer("200 OK", {"accepted": self.accepted, "refused": self.refused,
                                  "accept": self.accept})


class ReceiverProtocol(asyncio.Protocol):
    """HTTP/1.1 with keep-alive and Content-Length bodies: all the dispatcher sends."""

    def __init__(self, state: ReceiverState) -> None:
        self.state = state
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            size = end + 4 + int(headers.get("content-length", "0"))
            if len(self.buffer) < size:
                return
            body = bytes(self.buffer[end + 4:size])
            del self.buffer[:size]
            assert self.transport is not None
            self.transport.write(self.state.handle(method, target, headers, body))


def receiver_main(port: int) -> None:
    async def serve() -> None:
        state = ReceiverState()
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: ReceiverProtocol(state), "127.0.0.1", port,
                                          backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


# Processes ----------------------------------------------------------------------------------


# Readiness of the receiver and of each server is polled every 50 ms (bench_api.py: 100 ms).
POLL_S = 0.05


class CpuMeter:
    """Wall time and CPU used from now on: the server's processes, its busiest thread (the
    event loop that runs the dispatcher), and the receiver's process."""

    def __init__(self, server: Server, receiver: Server) -> None:
        self.server, self.receiver = server, receiver
        self.start = time.monotonic()
        self.server0 = server.thread_cpu_s()
        self.receiver0 = sum(receiver.thread_cpu_s().values())

    def read(self) -> tuple[float, float, float, float]:
        """``(wall s, server CPU s, busiest server thread CPU s, receiver CPU s)``."""
        wall = time.monotonic() - self.start
        used = [cpu - self.server0.get(tid, 0.0)
                for tid, cpu in self.server.thread_cpu_s().items()]
        receiver = sum(self.receiver.thread_cpu_s().values()) - self.receiver0
        return wall, sum(used), max(used, default=0.0), receiver


class Receiver:
    def __init__(self, work: Path) -> None:
        port = free_port()
        cmd = [sys.executable, __file__, "receiver", "--port", str(port)]
        self.proc = start_server(cmd, {}, port, CONTROL + "/stats", work / "receiver.log",
                                 name=f"{cmd[1:3]}", poll_s=POLL_S)
        self.url = self.proc.base_url + HOOK_PATH
        self.http = httpx.Client(base_url=self.proc.base_url, timeout=60)

    def control(self, action: str) -> Any:
        r = self.http.post(CONTROL + action)
        r.raise_for_status()
        return r.json()

    def stats(self) -> dict[str, int]:
        return dict(self.control("/stats"))

    def records(self) -> list[Received]:
        return [Received(t, s, i, ts, sig, base64.b64decode(b))
                for t, s, i, ts, sig, b in self.control("/records")]

    def wait_accepted(self, count: int, timeout_s: float) -> float:
        """Wait until ``count`` requests were answered 204; the time it took."""
        start = time.monotonic()
        while self.stats()["accepted"] < count:
            if time.monotonic() - start > timeout_s:
                raise SystemExit(f"receiver got {self.stats()} after {timeout_s:.0f}s; "
                                 f"{count} deliveries expected")
            time.sleep(0.05)
        return time.monotonic() - start

    def close(self) -> None:
        self.http.close()
        self.proc.stop()


@dataclass(frozen=True)
class Received:
    at: float  # Unix seconds, the receiver's clock
    status: int
    webhook_id: str
    timestamp: str
    signature: str
    body: bytes


def imagegate_env(log_level: str, **extra: str) -> dict[str, str]:
    """Loopback callbacks allowed, zero sandbox delay, limits far above the bench's reach."""
    return harness.imagegate_env(log_level, allow_http_callbacks="true",
                                 allow_private_networks="true", **extra)


def start_imagegate(data_dir: Path, env: dict[str, str]) -> Server:
    return harness.start_imagegate(data_dir, env, name=f"{list(IMAGEGATE_CLI[1:3])}",
                                   poll_s=POLL_S)


def signing_secrets(server: Server, key: str) -> list[str]:
    with client_for(server, key) as client:
        r = client.get("/api/v1/webhooks/secret")
        r.raise_for_status()
        return [s["secret"] for s in r.json()["data"]["secrets"]]


def task_body(callback_url: str, args: argparse.Namespace) -> dict[str, Any]:
    return {"request_type": "callback", "callback_url": callback_url, "input": {
        "mode": "text-to-image", "prompt": "a lighthouse on a cliff at dawn, watercolor",
        "aspect_ratio": "1:1", "resolution": "1k", "output_format": args.output_format}}


def submit_all(server: Server, key: str, body: dict[str, Any], count: int,
               concurrency: int) -> tuple[list[str], float]:
    """Submit ``count`` tasks from ``concurrency`` concurrent clients; ids and seconds taken."""
    async def run() -> list[str]:
        ids: list[str] = []
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60,
                                     headers={"Authorization": f"Bearer {key}"}) as client:
            async def submitter() -> None:
                while len(ids) < count:
                    ids.append("")  # claim a slot before awaiting
                    slot = len(ids) - 1
                    r = await client.post(SUBMIT_PATH, json=body)
                    r.raise_for_status()
                    ids[slot] = r.json()["data"]["taskId"]

            await asyncio.gather(*(submitter() for _ in range(concurrency)))
        return ids

    start = time.monotonic()
    ids = asyncio.run(run())
    return ids, time.monotonic() - start


def submit_paced(server: Server, key: str, body: dict[str, Any], count: int,
                 rate: float) -> list[str]:
    ids = []
    with client_for(server, key) as client:
        start = time.monotonic()
        for n in range(count):
            time.sleep(max(0.0, start + n / rate - time.monotonic()))
            r = client.post(SUBMIT_PATH, json=body)
            r.raise_for_status()
            ids.append(r.json()["data"]["taskId"])
    return ids


def db_query(data_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{data_dir / 'imagegate.db'}?mode=ro", uri=True,
                         timeout=30) as db:
        return db.execute(sql).fetchall()


def wait_until(what: str, check: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.2)


# Analysis -----------------------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile: the smallest value with ``pct`` % of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def steady_rate(times: Sequence[float], trim: float = 0.1) -> float:
    """Events per second between the ``trim`` and ``1 - trim`` quantiles of the event times
    (the ramp-up and the tail left out)."""
    ordered = sorted(times)
    lo, hi = int(trim * len(ordered)), math.ceil((1 - trim) * len(ordered)) - 1
    span = ordered[hi] - ordered[lo]
    return (hi - lo) / span if span > 0 else float("nan")


@dataclass
class Phase:
    """One phase's deliveries, checked."""

    name: str
    expected: int
    received: list[Received]
    delivered_at: list[float]  # first 204 per event, Unix seconds
    complete_at: list[float]  # the task's completeTime, Unix seconds, same order
    verify_failures: int
    duplicates: int
    wrong_bodies: int
    wall_s: float
    server_cpu_s: float
    loop_cpu_s: float
    receiver_cpu_s: float

    @property
    def delays_ms(self) -> list[float]:
        return [(d - c) * 1000 for d, c in zip(self.delivered_at, self.complete_at, strict=True)]


def check_phase(name: str, records: list[Received], task_ids: Sequence[str],
                secrets: list[str], cpu: tuple[float, float, float, float]) -> Phase:
    from imagegate.signing import WebhookVerificationError, verify

    wanted = set(task_ids)
    first: dict[str, tuple[float, float]] = {}
    failures = duplicates = wrong = 0
    for rec in records:
        headers = {"webhook-id": rec.webhook_id, "webhook-timestamp": rec.timestamp,
                   "webhook-signature": rec.signature}
        try:
            verify(headers, rec.body, secrets, now=rec.at)
        except WebhookVerificationError:
            failures += 1
        data = json.loads(rec.body)["data"]
        if data.get("taskId") not in wanted or data.get("state") != "success":
            wrong += 1
            continue
        if rec.status != 204:
            continue
        if rec.webhook_id in first:
            duplicates += 1
            continue
        first[rec.webhook_id] = (rec.at, data["completeTime"] / 1000)
    if len(first) != len(wanted):
        raise SystemExit(f"{name}: {len(first)} distinct deliveries for {len(wanted)} tasks")
    pairs = sorted(first.values())
    return Phase(name, len(wanted), records, [p[0] for p in pairs], [p[1] for p in pairs],
                 failures, duplicates, wrong, *cpu)


def show(phase: Phase) -> None:
    d = phase.delays_ms
    print(f"  {phase.name}: {len(phase.delivered_at)} deliveries, steady "
          f"{steady_rate(phase.delivered_at):,.0f}/s, completions steady "
          f"{steady_rate(phase.complete_at):,.0f}/s, delay p50 {percentile(d, 50):.1f} ms "
          f"p99 {percentile(d, 99):.1f} ms, verify failures {phase.verify_failures}, "
          f"duplicates {phase.duplicates}, server CPU {phase.server_cpu_s / phase.wall_s:.0%} "
          f"(busiest thread {phase.loop_cpu_s / phase.wall_s:.0%}), receiver CPU "
          f"{phase.receiver_cpu_s / phase.wall_s:.0%}", flush=True)


# Phases -------------------------------------------------------------------------------------


@dataclass
class Findings:
    check_rps: float = 0.0
    check_tool: str = ""
    check_requests: int = 0
    phases: dict[str, Phase] = field(default_factory=dict)
    submit_s: float = 0.0
    backlog_ready_to_last_s: float = 0.0
    backlog_before_ready: int = 0
    notes: list[str] = field(default_factory=list)


WRK_LUA = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["content-type"] = "application/json"
wrk.headers["webhook-id"] = "msg_0123456789abcdef01234567"
wrk.headers["webhook-timestamp"] = "1795503561"
wrk.headers["webhook-signature"] = "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4="
"""


def receiver_check(receiver: Receiver, work: Path, seconds: float, findings: Findings) -> None:
    """The receiver alone, under 16 keep-alive connections (the dispatcher's concurrency)."""
    body = json.dumps({"code": 200, "message": "success", "data": {
        "taskId": "x" * 32, "state": "success", "resultJson": "y" * 900}})
    if shutil.which("wrk"):
        script = work / "receiver.lua"
        script.write_text(WRK_LUA.format(body=json.dumps(body)))
        out = subprocess.run(["wrk", "-t1", "-c16", f"-d{seconds:g}s", "-s", str(script),
                              receiver.url], capture_output=True, text=True, check=True).stdout
        line = next(ln for ln in out.splitlines() if ln.startswith("Requests/sec:"))
        findings.check_rps = float(line.split()[1])
        findings.check_tool = "wrk -t1 -c16"
    else:
        async def load() -> float:
            deadline = time.monotonic() + seconds
            async with httpx.AsyncClient(timeout=10) as client:
                async def one() -> None:
                    while time.monotonic() < deadline:
                        (await client.post(receiver.url, content=body)).raise_for_status()

                start = time.monotonic()
                await asyncio.gather(*(one() for _ in range(16)))
                return time.monotonic() - start

        took = asyncio.run(load())
        findings.check_rps = receiver.stats()["accepted"] / took
        findings.check_tool = "httpx, 16 concurrent (a floor: the client is the slower side)"
    findings.check_requests = receiver.stats()["accepted"]
    receiver.control("/reset")
    print(f"  receiver alone: {findings.check_rps:,.0f} req/s ({findings.check_tool})",
          flush=True)


def live_phases(work: Path, receiver: Receiver, args: argparse.Namespace,
                findings: Findings) -> None:
    data_dir = work / "live"
    env = imagegate_env(args.log_level)
    key = create_key(data_dir, env)
    server = start_imagegate(data_dir, env)
    try:
        secrets = signing_secrets(server, key)
        body = task_body(receiver.url, args)
        warm, _ = submit_all(server, key, body, 10, 2)  # imports, connections, first renders
        receiver.wait_accepted(len(warm), 60)
        receiver.control("/reset")

        print(f"live: {args.tasks} callback tasks from {args.submitters} concurrent clients",
              flush=True)
        meter = CpuMeter(server, receiver.proc)
        ids, findings.submit_s = submit_all(server, key, body, args.tasks, args.submitters)
        receiver.wait_accepted(len(ids), 600)
        findings.phases["live"] = check_phase("live", receiver.records(), ids, secrets,
                                              meter.read())
        show(findings.phases["live"])
        receiver.control("/reset")

        print(f"paced: {args.paced_tasks} tasks at {args.paced_rate:g}/s", flush=True)
        meter = CpuMeter(server, receiver.proc)
        ids = submit_paced(server, key, body, args.paced_tasks, args.paced_rate)
        receiver.wait_accepted(len(ids), 120)
        findings.phases["paced"] = check_phase("paced", receiver.records(), ids, secrets,
                                               meter.read())
        show(findings.phases["paced"])
        receiver.control("/reset")
    finally:
        server.stop()


def backlog_phase(work: Path, receiver: Receiver, args: argparse.Namespace,
                  findings: Findings) -> None:
    data_dir = work / "backlog"
    # A short schedule so the pile-up ends soon; enough attempts that none is given up.
    env = imagegate_env(args.log_level, callbacks_retry_schedule=f"{args.retry_s:g}",
                        callbacks_max_attempts="1000")
    key = create_key(data_dir, env)
    server = start_imagegate(data_dir, env)
    count = args.backlog_tasks
    print(f"backlog: {count} tasks while the receiver refuses", flush=True)
    try:
        secrets = signing_secrets(server, key)
        receiver.control("/refuse")
        ids, _ = submit_all(server, key, task_body(receiver.url, args), count, args.submitters)
        wait_until("every task to succeed and fail its first delivery attempt", lambda: db_query(
            data_dir, "SELECT COUNT(*) FROM deliveries WHERE state = 'pending' AND attempts >= 1"
        )[0][0] == count, 600)
    finally:
        server.stop()
    states = dict(db_query(data_dir, "SELECT state, COUNT(*) FROM tasks GROUP BY state"))
    pending, due_ms = db_query(data_dir, "SELECT COUNT(*), MAX(next_attempt_ms) FROM deliveries "
                                         "WHERE state = 'pending'")[0]
    if states != {"succeeded": count} or pending != count:
        raise SystemExit(f"backlog: tasks {states}, {pending} deliveries pending")
    refused = receiver.stats()["refused"]
    receiver.control("/reset")
    receiver.control("/accept")
    time.sleep(max(0.0, due_ms / 1000 - time.time() + 0.2))  # every delivery due

    print(f"backlog: draining {count} due deliveries after a restart", flush=True)
    server = start_imagegate(data_dir, env)
    ready_at, meter = time.time(), CpuMeter(server, receiver.proc)
    profilers = start_py_spy(server, args.py_spy) if args.py_spy else []
    try:
        receiver.wait_accepted(count, 600)
        cpu = meter.read()
        stop_py_spy(profilers)
        records = receiver.records()
        findings.backlog_ready_to_last_s = max(r.at for r in records) - ready_at
        findings.backlog_before_ready = sum(1 for r in records if r.at < ready_at)
        findings.phases["backlog"] = check_phase("backlog", records, ids, secrets, cpu)
        show(findings.phases["backlog"])
    finally:
        server.stop()
    receiver.control("/reset")
    findings.notes.append(
        f"Backlog pile-up: the receiver answered {refused:,} attempts 503 (retry schedule "
        f"{args.retry_s:g} s) before the restart; the drain began with {count:,} tasks "
        "succeeded and every delivery pending and due.")


def start_py_spy(server: Server, out_dir: Path) -> list[subprocess.Popen[bytes]]:
    """``py-spy record`` (raw collapsed stacks, every thread) on each process of the server."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out_dir.mkdir(parents=True, exist_ok=True)
    started = []
    for pid in server.pids():
        started.append(subprocess.Popen(
            [spy, "record", "--pid", str(pid), "--rate", "250", "--format", "raw", "--threads",
             "--nonblocking", "-o", str(out_dir / f"backlog-{pid}.txt")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return started


def stop_py_spy(profilers: list[subprocess.Popen[bytes]]) -> None:
    import signal

    for spy in profilers:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
    for spy in profilers:
        spy.wait(30)


# Report -------------------------------------------------------------------------------------


def machine() -> str:
    def sh(*cmd: str) -> str:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()

    mem_kb = next(int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()
                  if ln.startswith("MemTotal:"))
    import importlib.metadata as meta
    import importlib.util

    # Without sniffio, httpcore retries a failing ``import sniffio`` several times per request.
    sniffio = "installed" if importlib.util.find_spec("sniffio") else "not installed"
    return (f"{sh('uname', '-m')}, {sh('nproc')} CPUs, {mem_kb / 2**20:.1f} GiB RAM, "
            f"Python {sys.version.split()[0]}, httpx {httpx.__version__}, httpcore "
            f"{meta.version('httpcore')}, sniffio {sniffio}")


def table(f: Findings) -> str:
    live, paced, backlog = f.phases["live"], f.phases["paced"], f.phases["backlog"]
    cols = (live, paced, backlog)

    def row(name: str, cells: Sequence[str]) -> str:
        return f"| {name} | " + " | ".join(cells) + " |"

    def rate(p: Phase) -> str:
        return f"{steady_rate(p.delivered_at):,.0f}"

    def delay(p: Phase, pct: float) -> str:
        return f"{percentile(p.delays_ms, pct):,.1f}" if p is not backlog else "-"

    rows = ["| measure | live (rendering) | paced | backlog drain |", "|---|---|---|---|",
            row("tasks / distinct deliveries", [f"{p.expected:,}" for p in cols]),
            row("deliveries/s, steady (10-90 % of arrivals)", [rate(p) for p in cols]),
            row("deliveries/s, first to last arrival", [
                f"{(len(p.delivered_at) - 1) / (p.delivered_at[-1] - p.delivered_at[0]):,.0f}"
                for p in cols]),
            row("task completions/s, steady (completeTime)", [
                f"{steady_rate(live.complete_at):,.0f}", f"{steady_rate(paced.complete_at):,.0f}",
                "- (finished before)"]),
            row("completion to first delivery p50 ms", [delay(p, 50) for p in cols]),
            row("completion to first delivery p99 ms", [delay(p, 99) for p in cols]),
            row("completion to first delivery max ms", [delay(p, 100) for p in cols]),
            row("signature verification failures", [f"{p.verify_failures}" for p in cols]),
            row("duplicate deliveries / wrong bodies", [f"{p.duplicates} / {p.wrong_bodies}"
                                                        for p in cols]),
            row("server CPU, % of one core", [f"{p.server_cpu_s / p.wall_s:.0%}" for p in cols]),
            row("busiest server thread (event loop) CPU", [f"{p.loop_cpu_s / p.wall_s:.0%}"
                                                           for p in cols]),
            row("receiver CPU, % of one core", [f"{p.receiver_cpu_s / p.wall_s:.0%}"
                                                for p in cols]),
            row("receiver alone, req/s", [f"{f.check_rps:,.0f}", "-", "-"])]
    return "\n".join(rows)


def report(args: argparse.Namespace, f: Findings) -> str:
    stamp = subprocess.run(["date", "-u", "+%Y-%m-%d %H:%M UTC"], capture_output=True,
                           text=True).stdout.strip()
    command = " ".join(["python", "bench/bench_webhooks.py", *sys.argv[1:]])
    live = f.phases["live"]
    notes = [
        f"Sandbox route, zero delay, {args.output_format} 1k 1:1 outputs; submit limits lifted; "
        f"log level {args.log_level}. The worker, sweeper and dispatcher (16 deliveries at "
        "once) run inside the server process; the receiver (bare asyncio, answers 204 at once) "
        "and the submitting clients run on the same machine.",
        f"Live: {live.expected:,} tasks submitted by {args.submitters} concurrent clients in "
        f"{f.submit_s:.1f} s ({live.expected / f.submit_s:,.0f}/s accepted); deliveries are "
        "counted as they reach the receiver while the worker is still rendering, so this "
        "column is bounded by the task rate (compare the completions row).",
        f"Paced: {args.paced_tasks} tasks submitted one at a time at {args.paced_rate:g}/s, "
        "nothing queued: the delay a lone task sees.",
        f"Backlog drain: {f.phases['backlog'].expected:,} due deliveries of finished tasks, "
        f"sent by a freshly started server with nothing else to do; last one "
        f"{f.backlog_ready_to_last_s:.1f} s after /readyz answered ({f.backlog_before_ready} "
        "arrived before it did). CPU shares from /readyz on.",
        "Delay = receiver's clock at the full request - the body's data.completeTime (both "
        "this machine's wall clock, ms resolution); completeTime is taken before the "
        "transaction that ends the task (and queues the delivery) is committed.",
        f"Receiver alone: {f.check_tool}, {f.check_requests:,} requests with a callback-sized "
        "body and the three webhook headers, recorded exactly as deliveries are.",
        "Every recorded request, 503s included, was checked with imagegate.signing.verify "
        "against the secret from GET /api/v1/webhooks/secret at its receive time.",
        *f.notes]
    return (f"## {stamp}\n\n{machine()}\n\nCommand: `{command}`\n\n{table(f)}\n\n"
            + "\n".join(f"- {n}" for n in notes))


def write_results(text: str) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    harness.append_section(RESULTS, "Webhook delivery benchmark", "bench_webhooks.py", text)


# Main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000, help="tasks in the live phase")
    parser.add_argument("--submitters", type=int, default=8, help="concurrent submit clients")
    parser.add_argument("--paced-tasks", type=int, default=100)
    parser.add_argument("--paced-rate", type=float, default=20.0, help="paced submits per s")
    parser.add_argument("--backlog-tasks", type=int, default=1000)
    parser.add_argument("--retry-s", type=float, default=5.0,
                        help="retry schedule while the backlog piles up")
    parser.add_argument("--check-seconds", type=float, default=3.0,
                        help="length of the receiver-alone check")
    parser.add_argument("--output-format", default="jpeg", choices=("jpeg", "png"))
    parser.add_argument("--log-level", default="info", help="imagegate's log level")
    parser.add_argument("--py-spy", type=Path, metavar="DIR",
                        help="record the backlog drain with py-spy (raw stacks) into DIR")
    parser.add_argument("--no-write", action="store_true", help="print only; keep no results")
    return parser.parse_args(argv)


def main() -> None:
    if sys.argv[1:2] == ["receiver"]:
        sub = argparse.ArgumentParser(prog="bench_webhooks.py receiver")
        sub.add_argument("--port", type=int, required=True)
        receiver_main(sub.parse_args(sys.argv[2:]).port)
        return
    args = parse_args(sys.argv[1:])
    findings = Findings()
    print(machine(), flush=True)
    with tempfile.TemporaryDirectory(prefix="imagegate-bench-hooks-") as tmp:
        work = Path(tmp)
        receiver = Receiver(work)
        try:
            receiver_check(receiver, work, args.check_seconds, findings)
            live_phases(work, receiver, args, findings)
            backlog_phase(work, receiver, args, findings)
        finally:
            receiver.close()
    text = report(args, findings)
    print("\n" + text)
    if not args.no_write:
        write_results(text)
        print(f"\nappended to {RESULTS}")


if __name__ == "__main__":
    main()
