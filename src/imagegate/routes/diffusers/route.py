"""The ``diffusers`` route: open-weight models run in this worker process with Hugging Face
diffusers, jobs from concurrent tasks batched into one pipeline call.

``start`` (awaited by the worker before it claims tasks) loads the pipeline (``loading``) and
warms it up; ``generate`` turns a job into a batch request (seeds, rendered size, starting
image) and waits for its batch (``batcher``); batches run one at a time on the route's own
thread (``engine``), never on the event loop. Before a batch, the route recycles its pipelines
when ``recycle_after_tasks`` or ``recycle_memory_gib`` says so: the batcher holds new jobs
meanwhile, so no task is lost or failed; their leases are kept by the worker's heartbeats.

The seed of each image is the job's ``seed`` plus its index (a random one when the job has
none) and is reported on the task as a note (``image 0: seed 1234``).

Failures map to failCodes as docs/contract.md §7 says:

    a batch's pipeline call raised (not memory)          Unknown error (retry, failover); every
                                                         task of the batch fails, and route
                                                         health counts it once (one incident)
    out of memory for a batch                            none: the batch is split and run again
    out of memory for one job alone                      Unknown error, failover, no retry here
    image-to-image without a reference image             MissingParameter
    the route closed while the task waited               Unknown error (retry, failover)
    model not loadable, device missing, no image-to-     ConfigError at start: the worker
    image pipeline for a route that declares it          process stops with the option named
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from PIL import Image, ImageOps

from imagegate.config import Settings
from imagegate.errors import ConfigError, FailCode, RouteError
from imagegate.routes.base import Capabilities, GeneratedImage, Job, RouteCheck
from imagegate.routes.diffusers.batcher import Batcher, BatchKey, Outcome, Request
from imagegate.routes.diffusers.options import (
    DiffusersOptions,
    declared_capabilities,
    read_options,
)

if TYPE_CHECKING:
    from imagegate.routes.diffusers.engine import Engine

__all__ = ["DiffusersRoute"]

log = logging.getLogger("imagegate.routes.diffusers")

T = TypeVar("T")
EngineFactory = Callable[[str, DiffusersOptions], "Engine"]
_SEEDS = 2**32


def default_engine(name: str, opts: DiffusersOptions) -> Engine:
    """The engine over torch and diffusers (``ConfigError`` when they are not installed)."""
    try:  # torch: worker processes only
        from imagegate.routes.diffusers.engine import Engine
    except ImportError as exc:
        raise ConfigError(f"routes.{name}: a diffusers route needs torch, diffusers and "
                          f"transformers (pip install 'imagegate[diffusers]'): {exc}") from exc
    return Engine(name, opts)


class DiffusersRoute:
    """One pipeline, served to concurrent tasks in batches. ``engine`` builds the engine at
    ``start`` (tests give one with a fault seam)."""

    def __init__(self, name: str, opts: DiffusersOptions, *, capabilities: Capabilities,
                 engine: EngineFactory = default_engine) -> None:
        self.name = name
        self.opts = opts
        self.capabilities = capabilities
        self.upstream_model = opts.model
        self._make_engine = engine
        self._engine: Engine | None = None
        self._started = asyncio.Lock()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"diffusers-{name}")
        self._batcher = Batcher(self._run_batch, max_images=opts.max_batch_size,
                                max_wait_s=opts.max_wait_ms / 1000)
        self.recycled = 0

    def __repr__(self) -> str:
        return f"DiffusersRoute(name={self.name!r}, model={self.opts.model!r})"

    @staticmethod
    def declared_capabilities(name: str, options: Mapping[str, Any]) -> Capabilities:
        """What the route can do, from its table alone: nothing is imported or loaded."""
        return declared_capabilities(name, options)

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any], client: object,
                     settings: Settings) -> DiffusersRoute:
        """Build from a ``[routes.<name>]`` table (docs/routes-diffusers.md); loads nothing
        until ``start``."""
        return cls(name, read_options(name, options),
                   capabilities=declared_capabilities(name, options))

    async def start(self) -> None:
        """Load and warm up the pipelines (once; ``ConfigError`` when they cannot load)."""
        async with self._started:
            if self._engine is not None:
                return
            engine = self._make_engine(self.name, self.opts)
            await self._blocking(engine.load)
            self._engine = engine

    async def generate(self, job: Job) -> Sequence[GeneratedImage]:
        if self._engine is None:
            await self.start()
        key, request = await asyncio.to_thread(self.request_of, job)
        images = await self._batcher.submit(key, request)
        return [GeneratedImage(image, note=f"seed {seed}")
                for image, seed in zip(images, request.seeds, strict=True)]

    def request_of(self, job: Job) -> tuple[BatchKey, Request]:
        """The job's batch key and request: rendered size, seeds, starting image."""
        if job.mode == "image-to-image" and not self.opts.image_to_image:
            raise RouteError(FailCode.UNKNOWN, f"route {self.name} does not serve "
                             "image-to-image", failover=True)
        width, height = self.opts.render_size(job.width, job.height)
        key = BatchKey(self.opts.model, job.mode, width, height, self.opts.steps,
                       self.opts.guidance, self.opts.strength)
        base = job.seed if job.seed is not None else secrets.randbelow(_SEEDS)
        seeds = tuple((base + i) % _SEEDS for i in range(job.num_images))
        return key, Request(job.task_id, job.prompt, seeds, _init_image(job, width, height))

    async def _run_batch(self, key: BatchKey, requests: list[Request]) -> list[Outcome]:
        engine = self._engine
        assert engine is not None  # generate starts the route first
        reason = await self._blocking(engine.recycle_reason)
        if reason is not None:
            log.info("route %s: recycling its pipeline (%s)", self.name, reason)
            await self._blocking(engine.recycle)
            self.recycled += 1
        return await self._blocking(engine.run, key, requests)

    async def check(self) -> RouteCheck:
        """Loaded: available. Not loaded yet (``imagegate routes check``): whether the model
        can be found where ``start`` would look, without loading it."""
        if self._engine is not None and self._engine.pipelines is not None:
            return RouteCheck(True, f"{self.opts.model} loaded on {self.opts.device}")
        return await asyncio.to_thread(locate, self.opts)

    async def close(self) -> None:
        await self._batcher.close()
        if self._engine is not None:
            await self._blocking(self._engine.close)
        self._thread.shutdown(wait=False)

    async def _blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the route's pipeline thread (one at a time, off the event loop)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, functools.partial(fn, *args))


def locate(opts: DiffusersOptions) -> RouteCheck:
    """Whether ``opts.model`` is a pipeline directory or a repo in the Hugging Face cache (no
    verdict when it may be downloaded, or where huggingface_hub is not installed)."""
    if opts.local_dir is not None:
        found = (opts.local_dir / "model_index.json").is_file()
        return RouteCheck(found, f"{opts.model}: " + ("a pipeline directory" if found else
                                                      "no model_index.json in the directory"))
    if opts.allow_download:
        return RouteCheck(None, f"{opts.model} is downloaded at start when it is not cached")
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return RouteCheck(None, "huggingface_hub is not installed in this process")
    try:
        cached = try_to_load_from_cache(opts.model, "model_index.json",
                                        cache_dir=opts.cache_dir, revision=opts.revision)
    except ValueError:
        return RouteCheck(False, f"{opts.model} is neither a directory nor a repo id")
    if isinstance(cached, str):
        return RouteCheck(True, f"{opts.model} is in the Hugging Face cache")
    return RouteCheck(False, f"{opts.model} is not in the Hugging Face cache and "
                      "allow_download is false")


def _init_image(job: Job, width: int, height: int) -> Image.Image | None:
    """The first reference, cropped to the rendered ratio and resized to the rendered size."""
    if job.mode != "image-to-image":
        return None
    if not job.references:
        raise RouteError(FailCode.MISSING_PARAMETER, "image-to-image needs a reference image")
    image = job.references[0].image.convert("RGB")
    return ImageOps.fit(image, (width, height), Image.Resampling.LANCZOS)
