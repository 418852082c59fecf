"""Measure what a call to the OpenAI Images or Gemini facade costs over the native path that
does the same work: submit with ``Prefer: wait`` (the task is waited for in the same call),
then, where the facade answers with the image's bytes, download the image.

Run: ``.venv/bin/python bench/bench_facades.py [--calls 40] [--seconds 8] [--connections 16]
[--rounds 3]``. Starts one ``imagegate serve`` (SQLite, sandbox route with zero delay, limits
lifted) and one key; every call generates one 1k 1:1 PNG. Pairs of paths that do the same
work:

- ``native+download``: ``POST /api/v1/generateTask`` with ``Prefer: wait=60``, then ``GET``
  the result URL, against ``openai b64_json`` (``POST /v1/images/generations``,
  ``response_format=b64_json``) and ``gemini`` (``POST
  /v1beta/models/nano-banana-2:generateContent``): each answers the bytes, in base64 inside
  JSON;
- ``native``: the submit with ``Prefer: wait=60`` alone, against ``openai url``
  (``response_format=url``): each answers the result's URL.

Two phases, each as ``--rounds`` rounds in which every path runs once, in turn (the machine is
noisy: alternating spreads its noise over every path alike): ``--calls`` calls one at a time
(latency of an unloaded call), then ``--connections`` clients calling for ``--seconds``
(calls per second, latency percentiles). The server's CPU per call is read from ``/proc``
around each run. The clients run on the same machine (they decode the answers too, which a
real client would). Prints a Markdown table and appends it, dated, to
``bench/results/facades.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import bench_api
import harness
import httpx
from harness import Server, create_key, imagegate_env, start_imagegate

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "facades.md"
MODEL = "nano-banana-2"
PROMPT = "a lighthouse on a cliff at dawn, watercolor"
NATIVE_BODY = {"input": {"mode": "text-to-image", "prompt": PROMPT, "aspect_ratio": "1:1",
                         "resolution": "1k"}}
OPENAI_BODY = {"model": MODEL, "prompt": PROMPT, "size": "1024x1024", "n": 1}
GEMINI_BODY = {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}],
               "generationConfig": {"responseModalities": ["IMAGE"],
                                    "imageConfig": {"aspectRatio": "1:1", "imageSize": "1K"}}}

Call = Callable[[httpx.AsyncClient], Awaitable[None]]


def ok(response: httpx.Response) -> httpx.Response:
    if response.status_code != 200:
        raise SystemExit(f"{response.request.url.path} answered {response.status_code}: "
                         f"{response.text[:300]}")
    return response


async def native(http: httpx.AsyncClient, download: bool) -> None:
    answer = ok(await http.post(f"/api/v1/generateTask/{MODEL}", json=NATIVE_BODY,
                                headers={"Prefer": "wait=60"})).json()["data"]
    if answer.get("state") != "success":
        raise SystemExit(f"the task did not finish within the wait: {answer}")
    if download:
        url = json.loads(answer["resultJson"])["resultUrls"][0]
        ok(await http.get(url))


async def native_only(http: httpx.AsyncClient) -> None:
    await native(http, download=False)


async def native_download(http: httpx.AsyncClient) -> None:
    await native(http, download=True)


async def openai(http: httpx.AsyncClient, response_format: str) -> None:
    data = ok(await http.post("/v1/images/generations",
                              json={**OPENAI_BODY, "response_format": response_format})).json()
    assert data["data"][0].get(response_format), data


async def openai_b64(http: httpx.AsyncClient) -> None:
    await openai(http, "b64_json")


async def openai_url(http: httpx.AsyncClient) -> None:
    await openai(http, "url")


async def gemini(http: httpx.AsyncClient) -> None:
    data = ok(await http.post(f"/v1beta/models/{MODEL}:generateContent",
                              json=GEMINI_BODY)).json()
    parts = data["candidates"][0]["content"]["parts"]
    assert any("inlineData" in p for p in parts), data


# (name, call, the native path it is compared with; None for a native path)
PATHS: list[tuple[str, Call, str | None]] = [
    ("native", native_only, None),
    ("openai url", openai_url, "native"),
    ("native+download", native_download, None),
    ("openai b64_json", openai_b64, "native+download"),
    ("gemini", gemini, "native+download"),
]


@dataclass
class Tally:
    """What one path did over every round of one phase."""

    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    server_cpu_s: float = 0.0

    @property
    def calls(self) -> int:
        return len(self.latencies_ms)

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms_per_call(self) -> float:
        return 1000 * self.server_cpu_s / self.calls if self.calls else 0.0


def server_cpu_s(server: Server) -> float:
    return sum(server.thread_cpu_s().values())


async def timed(http: httpx.AsyncClient, call: Call, tally: Tally) -> None:
    start = time.perf_counter()
    await call(http)
    tally.latencies_ms.append(1000 * (time.perf_counter() - start))


async def sequential(server: Server, http: httpx.AsyncClient, call: Call, calls: int,
                     tally: Tally) -> None:
    cpu, start = server_cpu_s(server), time.perf_counter()
    for _ in range(calls):
        await timed(http, call, tally)
    tally.seconds += time.perf_counter() - start
    tally.server_cpu_s += server_cpu_s(server) - cpu


async def loaded(server: Server, http: httpx.AsyncClient, call: Call, connections: int,
                 seconds: float, tally: Tally) -> None:
    cpu, start = server_cpu_s(server), time.perf_counter()
    end = start + seconds

    async def client() -> None:
        while time.perf_counter() < end:
            await timed(http, call, tally)

    await asyncio.gather(*(client() for _ in range(connections)))
    tally.seconds += time.perf_counter() - start
    tally.server_cpu_s += server_cpu_s(server) - cpu


async def run_phase(server: Server, key: str, args: argparse.Namespace,
                    loaded_phase: bool) -> dict[str, Tally]:
    tallies = {name: Tally() for name, _, _ in PATHS}
    limits = httpx.Limits(max_connections=args.connections + 4)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=120, limits=limits,
                                 headers={"Authorization": f"Bearer {key}"}) as http:
        for _name, call, _ in PATHS:  # warm-up: every path once
            await call(http)
        for round_no in range(args.rounds):
            order = PATHS if round_no % 2 == 0 else PATHS[::-1]
            for name, call, _ in order:
                if loaded_phase:
                    await loaded(server, http, call, args.connections, args.seconds,
                                 tallies[name])
                else:
                    await sequential(server, http, call, args.calls, tallies[name])
                print(f"  round {round_no + 1} {name}: {tallies[name].calls} calls so far",
                      flush=True)
    return tallies


def table(title: str, tallies: dict[str, Tally]) -> str:
    rows = [f"**{title}**", "",
            "| path | calls | calls/s | p50 ms | p99 ms | server CPU ms/call | "
            "vs its native path: p50 | CPU/call |",
            "|---|---|---|---|---|---|---|---|"]
    for name, _, base in PATHS:
        t = tallies[name]
        versus = "—", "—"
        if base is not None:
            b = tallies[base]
            versus = (f"{t.percentile(50) - b.percentile(50):+.1f} ms",
                      f"{t.cpu_ms_per_call - b.cpu_ms_per_call:+.1f} ms")
        rows.append(f"| {name} | {t.calls} | {t.rate:.1f} | {t.percentile(50):.1f} | "
                    f"{t.percentile(99):.1f} | {t.cpu_ms_per_call:.1f} | {versus[0]} | "
                    f"{versus[1]} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=40, help="calls per path per round, "
                        "one at a time")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per path per "
                        "round under load")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    harness.stop_on_sigterm()
    print(bench_api.machine(), flush=True)
    with tempfile.TemporaryDirectory(prefix="imagegate-bench-") as tmp:
        data_dir = Path(tmp) / "serve"
        env = imagegate_env("warning")
        key = create_key(data_dir, env)
        server = start_imagegate(data_dir, env)
        try:
            print("one call at a time", flush=True)
            unloaded = asyncio.run(run_phase(server, key, args, loaded_phase=False))
            print(f"{args.connections} clients", flush=True)
            busy = asyncio.run(run_phase(server, key, args, loaded_phase=True))
        finally:
            server.stop()
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = " ".join(["bench/bench_facades.py", *sys.argv[1:]])
    text = "\n\n".join([
        f"## {now}", bench_api.machine(),
        f"Command: `{command}`; {args.rounds} rounds, the paths alternated in each. One "
        "`imagegate serve` (SQLite, sandbox route with zero delay); every call makes one 1k "
        "1:1 PNG. The clients run on the same machine.",
        table(f"One call at a time ({args.calls} per path per round)", unloaded),
        table(f"{args.connections} clients, {args.seconds:g} s per path per round", busy)])
    print(text)
    harness.append_section(RESULTS, "Facade calls against the native path",
                           "bench_facades.py", text)


if __name__ == "__main__":
    main()
