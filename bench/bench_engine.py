"""Plain diffusers against the diffusers route's batcher, on the same pipeline, in one run.

Run on a GPU: ``.venv/bin/python bench/bench_engine.py [--arch sdxl,flux] [--tasks 8]
[--steps 30] [--size 1024] [--compile]``; on any machine: ``... --smoke`` (toy sizes, CPU,
float32, 64x64, 2 steps: it proves the script works and measures nothing worth comparing).

For each architecture (SDXL's UNet and FLUX.1-dev's transformer at their real sizes, random
weights, bf16; ``engine_models.py`` builds them) ``--tasks`` text-to-image requests with distinct
prompts and seeds arrive together, and are served:

    (a) plain diffusers: one pipeline call per request, in arrival order;
    (b) the diffusers route: ``DiffusersRoute.generate`` for every request at once, so its
        batcher runs them in as few calls as ``max_batch_size`` allows, on its own thread.

Both are warmed up first (one short call; the route's own warm-up at batch 1 and at its largest
batch). Reported: images per second, p50 and p95 of the time from arrival to each request's
image, the pipeline calls (b) made, and achieved TFLOP/s: the FLOPs of one image (counted by
``torch.utils.flop_counter`` over a 1-step and a 2-step call: fixed work plus steps times the
per-step work) times the images, over the wall time, against the device's dense bf16 peak.
Prints a Markdown table and appends it, dated, with the device and versions, to
``bench/results/engine.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import diffusers
import engine_models
import torch
import transformers
from harness import append_section, source_version
from torch.utils.flop_counter import FlopCounterMode

from imagegate.routes.base import Capabilities, Job
from imagegate.routes.diffusers import DiffusersRoute
from imagegate.routes.diffusers.batcher import BatchKey, Outcome, Request
from imagegate.routes.diffusers.compiling import compile_denoiser
from imagegate.routes.diffusers.engine import Engine, call_pipeline
from imagegate.routes.diffusers.loading import Pipelines
from imagegate.routes.diffusers.options import DiffusersOptions, read_options

RESULTS = Path(__file__).parent / "results" / "engine.md"
PROMPTS = ("a lighthouse on a cliff at dusk", "a red fox in the snow at dawn",
           "a city street in the rain at night", "a watercolor of a river in a forest",
           "a portrait of a cat in gold light", "gulls over the sea long exposure",
           "a mountain over a blue glass lake", "a neon street photo film grain")
GUIDANCE = {"sdxl": 5.0, "flux": 3.5}
# Dense bf16 tensor TFLOP/s by device name (vendor data sheets; SXM parts unless named).
PEAK_BF16 = {"H200": 989.0, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 989.0,
             "H20": 148.0, "B200": 2250.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0,
             "RTX 4090": 165.0, "A10": 125.0}


@dataclass(frozen=True)
class Setup:
    arch: str
    device: torch.device
    dtype: torch.dtype
    size: int
    steps: int
    tasks: int
    max_batch: int
    compile: bool
    compile_mode: str
    smoke: bool

    @property
    def guidance(self) -> float:
        return GUIDANCE[self.arch]


@dataclass
class Result:
    scenario: str
    wall_s: float
    latencies_s: list[float]
    calls: list[int] = field(default_factory=list)  # images per pipeline call

    def images_per_s(self) -> float:
        return len(self.latencies_s) / self.wall_s

    def percentile(self, q: int) -> float:
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, max(0, -(-q * len(ordered) // 100) - 1))]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain_call(pipe: Any, setup: Setup, prompt: str, seed: int, steps: int) -> None:
    pipe(prompt=prompt, height=setup.size, width=setup.size, num_inference_steps=steps,
         guidance_scale=setup.guidance, generator=torch.Generator("cpu").manual_seed(seed))


def measure_plain(pipe: Any, setup: Setup) -> Result:
    plain_call(pipe, setup, PROMPTS[0], 0, 2)  # warm-up
    sync(setup.device)
    latencies = []
    start = time.perf_counter()
    for i in range(setup.tasks):
        plain_call(pipe, setup, PROMPTS[i % len(PROMPTS)], 1000 + i, setup.steps)
        sync(setup.device)
        latencies.append(time.perf_counter() - start)
    return Result("(a) plain diffusers, one call per request", latencies[-1], latencies,
                  [1] * setup.tasks)


def route_options(setup: Setup) -> DiffusersOptions:
    return read_options("bench", {
        "model": setup.arch, "device": str(setup.device), "steps": setup.steps,
        "dtype": str(setup.dtype).removeprefix("torch."), "guidance": setup.guidance,
        "max_batch_size": setup.max_batch, "max_wait_ms": 20, "warmup": True,
        "render_scale": setup.size / 1024, "size_multiple": 16, "compile": setup.compile,
        "compile_mode": setup.compile_mode})


def route_over(pipe: Any, setup: Setup, calls: list[int]) -> DiffusersRoute:
    """The route with ``pipe`` as its loaded pipeline; ``calls`` records each call's images."""
    def load(name: str, opts: DiffusersOptions) -> Pipelines:
        if opts.compile:
            compile_denoiser(pipe, opts.compile_mode, opts.compile_cache_dir)
        return Pipelines(pipe, None, setup.device)

    def call(pipes: Pipelines, key: BatchKey, requests: list[Request]) -> list[Outcome]:
        outcomes = call_pipeline(pipes, key, requests)
        sync(setup.device)
        calls.append(sum(r.images for r in requests))
        return outcomes

    return DiffusersRoute("bench", route_options(setup), capabilities=Capabilities(),
                          engine=lambda name, opts: Engine(name, opts, call=call, load=load))


async def measure_route(pipe: Any, setup: Setup) -> Result:
    calls: list[int] = []
    route = route_over(pipe, setup, calls)
    await route.start()
    calls.clear()
    latencies: list[float] = []
    start = time.perf_counter()

    async def one(i: int) -> None:
        job = Job(task_id=f"t{i}", model=setup.arch, mode="text-to-image",
                  prompt=PROMPTS[i % len(PROMPTS)], aspect_ratio="1:1", resolution="1k",
                  width=1024, height=1024, output_format="png", seed=1000 + i)
        await route.generate(job)
        latencies.append(time.perf_counter() - start)

    try:
        await asyncio.gather(*(one(i) for i in range(setup.tasks)))
    finally:
        await route.close()
    name = "(b) diffusers route, batched" + (" + compile" if setup.compile else "")
    return Result(name, max(latencies), latencies, calls)


def flops_per_image(pipe: Any, setup: Setup) -> float:
    """FLOPs of one image at ``setup.steps``: a 1-step and a 2-step call give the fixed work
    (text encoders, VAE) and the work of one step."""
    counted = []
    for steps in (1, 2):
        with FlopCounterMode(display=False) as counter:
            plain_call(pipe, setup, PROMPTS[0], 0, steps)
        counted.append(counter.get_total_flops())
    per_step = counted[1] - counted[0]
    return float(counted[0] - per_step + per_step * setup.steps)


def peak_tflops(device: torch.device, given: float | None) -> float | None:
    if given is not None or device.type != "cuda":
        return given
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16.items() if key in name), None)


def row(setup: Setup, result: Result, flops: float, peak: float | None) -> str:
    tflops = flops * len(result.latencies_s) / result.wall_s / 1e12
    share = f"{100 * tflops / peak:.1f} %" if peak else "n/a"
    calls = " + ".join(str(n) for n in result.calls)
    return (f"| {setup.arch} | {result.scenario} | {len(result.latencies_s)} | "
            f"{result.wall_s:.2f} | {result.images_per_s():.3f} | {result.percentile(50):.2f} | "
            f"{result.percentile(95):.2f} | {calls} | {tflops:.3g} | {share} |")


def run_arch(setup: Setup, work: Path, peak: float | None) -> list[str]:
    sizes = engine_models.TINY if setup.smoke else engine_models.REAL
    pipe = engine_models.build(setup.arch, sizes, work, setup.device, setup.dtype)
    flops = flops_per_image(pipe, setup)
    plain = measure_plain(pipe, setup)
    batched = asyncio.run(measure_route(pipe, setup))
    gain = batched.images_per_s() / plain.images_per_s()
    lines = [row(setup, plain, flops, peak), row(setup, batched, flops, peak),
             f"| {setup.arch} | (b) / (a) images per second | | | {gain:.2f}x | | | | | |"]
    del pipe
    gc.collect()
    if setup.device.type == "cuda":
        torch.cuda.empty_cache()
    return lines


HEADER = ("| arch | scenario | images | wall s | images/s | p50 s | p95 s | images per call "
          "| TFLOP/s | of bf16 peak |\n|---|---|---|---|---|---|---|---|---|---|")


def describe(args: argparse.Namespace, device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    mode = "smoke run: toy sizes on the CPU, not a measurement" if args.smoke else \
        "real architectures, random weights"
    return (f"## {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC: {mode}\n\n"
            f"Device: {device.type} ({name or platform.machine()}); torch {torch.__version__}, "
            f"diffusers {diffusers.__version__}, transformers {transformers.__version__}, "
            f"Python {platform.python_version()}; {source_version()}.\n"
            f"{args.tasks} text-to-image requests arriving together, {args.size}x{args.size}, "
            f"{args.steps} steps, guidance 5 (SDXL) / 3.5 (FLUX.1, guidance-distilled), "
            f"route max_batch_size {args.max_batch}, max_wait_ms 20.\n")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="toy sizes on the CPU")
    parser.add_argument("--arch", default="sdxl,flux")
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--size", type=int)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--compile", action="store_true", help="compile the route's denoiser")
    parser.add_argument("--compile-mode", default="max-autotune-no-cudagraphs")
    parser.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    args.steps = args.steps or (2 if args.smoke else 30)
    args.size = args.size or (64 if args.smoke else 1024)
    return args


def main(argv: list[str]) -> int:
    args = parse(argv)
    device = torch.device("cpu" if args.smoke else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run with --smoke, or on a machine with an NVIDIA GPU")
        return 2
    dtype = torch.float32 if args.smoke else torch.bfloat16
    peak = peak_tflops(device, args.peak_tflops)
    lines = [describe(args, device), HEADER]
    with tempfile.TemporaryDirectory() as work:
        for arch in args.arch.split(","):
            setup = Setup(arch, device, dtype, args.size, args.steps, args.tasks,
                          args.max_batch, args.compile, args.compile_mode, args.smoke)
            lines.extend(run_arch(setup, Path(work), peak))
            print("\n".join(lines[-3:]), flush=True)
    text = "\n".join(lines)
    print("\n" + text)
    if not args.no_write:
        append_section(RESULTS, "Engine: plain diffusers against the diffusers route",
                       "bench_engine.py", text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
