"""The engine: one route's loaded pipelines and the blocking work on them.

Every method blocks and runs on the route's own pipeline thread, never on the event loop. A
batch is one pipeline call: one prompt and one ``torch.Generator`` per image, seeded from the
job's seeds on the CPU, so an image depends on its seed alone, not on its batch or device. The
memory guard (``memory``) splits batches that run out of memory. ``recycle`` drops the
pipelines and loads them again, between batches. Imports torch: worker processes only.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Callable
from typing import Any

import torch

from imagegate.contract import output_size
from imagegate.errors import FailCode, RouteError
from imagegate.routes.diffusers.batcher import BatchKey, Outcome, Request, batch_error
from imagegate.routes.diffusers.loading import Pipelines, load_pipelines
from imagegate.routes.diffusers.memory import MemoryGuard
from imagegate.routes.diffusers.options import DiffusersOptions

__all__ = ["Engine", "PipelineCall", "call_pipeline", "is_out_of_memory", "memory_in_use"]

log = logging.getLogger("imagegate.routes.diffusers")

PipelineCall = Callable[[Pipelines, BatchKey, list[Request]], list[Outcome]]
Loader = Callable[[str, DiffusersOptions], Pipelines]


def call_pipeline(pipelines: Pipelines, key: BatchKey, requests: list[Request]) -> list[Outcome]:
    """Run ``requests`` as one pipeline call; their images, in order."""
    pipe = pipelines.image if key.mode == "image-to-image" else pipelines.text
    if pipe is None:
        return [RouteError(FailCode.UNKNOWN, "this route does not serve image-to-image",
                           failover=True) for _ in requests]
    kwargs: dict[str, Any] = {
        "prompt": [r.prompt for r in requests for _ in r.seeds],
        "generator": [torch.Generator("cpu").manual_seed(s) for r in requests for s in r.seeds],
        "height": key.height, "width": key.width, "num_inference_steps": key.steps,
        "guidance_scale": key.guidance, "output_type": "pil"}
    if key.mode == "image-to-image":
        kwargs["image"] = [r.init_image for r in requests for _ in r.seeds]
        kwargs["strength"] = key.strength
    with torch.inference_mode():
        images = list(pipe(**kwargs).images)
    outcomes: list[Outcome] = []
    for request in requests:
        outcomes.append(images[:request.images])
        images = images[request.images:]
    return outcomes


def is_out_of_memory(exc: BaseException) -> bool:
    """torch's out-of-memory error, or a backend's RuntimeError saying the same."""
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


class Engine:
    """``call`` runs one batch (the fault seam: tests wrap ``call_pipeline``); ``load`` builds
    the pipelines (``load_pipelines``)."""

    def __init__(self, name: str, opts: DiffusersOptions, *, call: PipelineCall = call_pipeline,
                 load: Loader = load_pipelines,
                 memory: Callable[[Pipelines | None], int] | None = None) -> None:
        self.name = name
        self.opts = opts
        self._call = call
        self._load = load
        self._memory = memory or memory_in_use
        self._recycle_on_memory = bool(opts.recycle_memory_bytes)
        self.guard = MemoryGuard(is_out_of_memory, self.release_memory)
        self.pipelines: Pipelines | None = None
        self.tasks_since_load = 0
        self.loads = 0

    def load(self) -> None:
        """Load the pipelines and, when the route asks, warm them up."""
        self.pipelines = self._load(self.name, self.opts)
        self.loads += 1
        self.tasks_since_load = 0
        if self.opts.warmup:
            self.warm_up()
        self._check_memory_threshold()

    def _check_memory_threshold(self) -> None:
        """A threshold the freshly loaded pipeline already reaches would rebuild it before
        every batch: recycling on memory is turned off instead, saying so."""
        if not self._recycle_on_memory:
            return
        loaded = self.memory_in_use()
        if loaded >= self.opts.recycle_memory_bytes:
            self._recycle_on_memory = False
            log.warning("route %s: the loaded pipeline already holds %.1f GiB, more than "
                        "recycle_memory_gib; recycling on memory is off", self.name,
                        loaded / 1024**3)

    def warm_up(self) -> None:
        """Two short generations at the 1k square size, one image and the largest batch, so
        the first tasks do not pay for lazy initialisation, kernel selection or compilation,
        and a largest batch that does not fit is found (and shrunk) before any task runs."""
        width, height = self.opts.render_size(*output_size("1:1", "1k"))
        key = BatchKey(self.opts.model, "text-to-image", width, height,
                       min(2, self.opts.steps), self.opts.guidance, self.opts.strength)
        sizes = (1, self.opts.max_batch_size)
        for size in dict.fromkeys(sizes):
            outcomes = self.run(key, [Request("warm-up", "warm-up", (seed,))
                                      for seed in range(size)])
            for outcome in outcomes:
                if isinstance(outcome, RouteError):
                    log.warning("route %s: warm-up at batch %d failed: %s", self.name, size,
                                outcome.message)
                    break
        self.tasks_since_load = 0

    def run(self, key: BatchKey, requests: list[Request]) -> list[Outcome]:
        """One outcome per request. A failure of the call itself (not memory) fails each
        request with one shared incident."""
        pipelines = self.pipelines
        if pipelines is None:
            raise RuntimeError("the engine runs before its pipelines are loaded")
        try:
            outcomes = self.guard.run(key, requests,
                                      lambda chunk: self._call(pipelines, key, chunk))
        except Exception as exc:
            log.exception("route %s: the pipeline failed on a batch of %d", self.name,
                          len(requests))
            outcomes = batch_error(f"the pipeline failed: {type(exc).__name__}: {exc}"[:500],
                                   len(requests))
        self.tasks_since_load += len(requests)
        return outcomes

    def recycle_reason(self) -> str | None:
        """Why the pipelines should be rebuilt now (None: they need not be)."""
        opts = self.opts
        if self.pipelines is None:
            return "the last load failed"
        if opts.recycle_after_tasks and self.tasks_since_load >= opts.recycle_after_tasks:
            return f"{self.tasks_since_load} tasks since it was loaded"
        if self._recycle_on_memory and self.tasks_since_load:
            in_use = self.memory_in_use()
            if in_use >= opts.recycle_memory_bytes:
                return f"{in_use / 1024**3:.1f} GiB in use"
        return None

    def recycle(self) -> None:
        """Drop the pipelines, free their memory and load them again."""
        self.pipelines = None
        gc.collect()
        self.release_memory()
        self.load()

    def release_memory(self) -> None:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def memory_in_use(self) -> int:
        return self._memory(self.pipelines)

    def close(self) -> None:
        self.pipelines = None
        self.release_memory()


def memory_in_use(pipelines: Pipelines | None) -> int:
    """Bytes: the device memory torch holds on a GPU, else the process's resident set."""
    device = pipelines.device if pipelines is not None else None
    if device is not None and device.type == "cuda":
        return int(torch.cuda.memory_reserved(device))
    return _resident_bytes()


def _resident_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
