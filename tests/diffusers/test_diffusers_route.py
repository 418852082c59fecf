"""The diffusers route on the CPU with a tiny pipeline built and saved by the tests, loaded
back through the route's own ``from_pretrained`` code.

Batched and unbatched images are compared within one level of 255 per channel, not bit for
bit: each image's starting noise comes from its own seeded generator, so the inputs are equal,
but a batched matrix product may add in another order than a single one (last-bit float
differences, about 1e-6 here), which can move a pixel across a rounding edge.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionImg2ImgPipeline
from PIL import Image
from synchronously import synchronously
from torch._dynamo.utils import counters

from imagegate.catalogue import ModelConfig
from imagegate.contract import ModelLimits, SubmitInput
from imagegate.errors import ConfigError, FailCode, RouteError
from imagegate.fetch import FetchedImage
from imagegate.health import Circuit, HealthBook
from imagegate.router import Router
from imagegate.routes.base import GeneratedImage, Job
from imagegate.routes.diffusers import DiffusersRoute
from imagegate.routes.diffusers.batcher import BatchKey, Outcome, Request
from imagegate.routes.diffusers.engine import Engine, call_pipeline
from imagegate.routes.diffusers.loading import Pipelines, load_pipelines
from imagegate.routes.diffusers.options import (
    DiffusersOptions,
    declared_capabilities,
    read_options,
)
from imagegate.routing import Routing

# The device the route runs on: the CPU in CI; IMAGEGATE_TEST_DEVICE=cuda runs the same tests
# on a GPU.
DEVICE = os.environ.get("IMAGEGATE_TEST_DEVICE", "cpu")


def options(pipeline: Path, **extra: Any) -> dict[str, Any]:
    """A 1024x1024 job renders at 64x64, in 2 steps."""
    return {"model": str(pipeline), "device": DEVICE, "dtype": "float32", "steps": 2,
            "render_scale": 0.0625, "size_multiple": 8, "max_wait_ms": 100, "warmup": False,
            **extra}


class Calls:
    """The engine's fault seam: records each pipeline call's jobs, and runs out of memory
    above ``fits`` images when asked to."""

    def __init__(self, fits: int | None = None, fail: bool = False) -> None:
        self.fits = fits
        self.fail = fail
        self.batches: list[list[str]] = []

    def __call__(self, pipes: Pipelines, key: BatchKey, requests: list[Request],
                 ) -> list[Outcome]:
        self.batches.append([r.task_id for r in requests])
        if self.fits is not None and sum(r.images for r in requests) > self.fits:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        if self.fail:
            raise RuntimeError("expected all tensors to be on the same device")
        return call_pipeline(pipes, key, requests)


def route(pipeline: Path, calls: Calls | None = None, **extra: Any) -> DiffusersRoute:
    """The route as its table configures it, its pipeline calls through ``calls`` if given."""
    table = options(pipeline, **extra)
    return DiffusersRoute("tiny", read_options("tiny", table),
                          capabilities=declared_capabilities("tiny", table),
                          engine=lambda name, opts: Engine(name, opts,
                                                           call=calls or call_pipeline))


def job(task_id: str, prompt: str = "a red fox", seed: int | None = 7, num_images: int = 1,
        reference: Image.Image | None = None) -> Job:
    refs = (FetchedImage("http://refs.test/a.png", reference, "PNG", 1),) if reference else ()
    return Job(task_id=task_id, model="tiny-sd", mode="image-to-image" if reference else
               "text-to-image", prompt=prompt, aspect_ratio="1:1", resolution="1k",
               width=1024, height=1024, output_format="png", references=refs, seed=seed,
               num_images=num_images)


async def generate_all(r: DiffusersRoute, jobs: Sequence[Job],
                       ) -> list[Sequence[GeneratedImage] | BaseException]:
    await r.start()
    try:
        return await asyncio.gather(*(r.generate(j) for j in jobs), return_exceptions=True)
    finally:
        await r.close()


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def images_of(result: Sequence[GeneratedImage] | BaseException) -> list[Image.Image]:
    assert not isinstance(result, BaseException), result
    return [g.image for g in result]


@synchronously
async def test_text_to_image_renders_each_image_from_its_reported_seed(
        tiny_pipeline_dir: Path) -> None:
    first, again = await generate_all(route(tiny_pipeline_dir),
                                      [job("a", seed=5, num_images=2), job("b", seed=5)])
    assert not isinstance(first, BaseException) and not isinstance(again, BaseException)
    assert [g.note for g in first] == ["seed 5", "seed 6"]
    assert all(g.image.size == (64, 64) for g in first)
    assert np.abs(pixels(first[0].image) - pixels(again[0].image)).max() <= 1
    assert np.abs(pixels(first[0].image) - pixels(first[1].image)).max() > 10


@synchronously
async def test_a_job_without_a_seed_gets_one_and_reports_it(tiny_pipeline_dir: Path) -> None:
    (result,) = await generate_all(route(tiny_pipeline_dir), [job("a", seed=None)])
    assert not isinstance(result, BaseException)
    assert result[0].note.startswith("seed ") and result[0].note[5:].isdigit()


@synchronously
async def test_batched_images_equal_the_same_jobs_run_one_by_one(
        tiny_pipeline_dir: Path) -> None:
    jobs = [job(f"t{i}", prompt=p, seed=100 + i)
            for i, p in enumerate(["a red fox", "the blue sea", "a green tree", "a dog"])]
    calls = Calls()
    batched = await generate_all(route(tiny_pipeline_dir, calls, max_batch_size=4), jobs)
    assert calls.batches == [["t0", "t1", "t2", "t3"]]
    alone = Calls()
    single = await generate_all(route(tiny_pipeline_dir, alone, max_batch_size=1), jobs)
    assert len(alone.batches) == 4
    for together, apart in zip(batched, single, strict=True):
        diff = np.abs(pixels(images_of(together)[0]) - pixels(images_of(apart)[0]))
        assert diff.max() <= 1
    first, second = (pixels(images_of(r)[0]) for r in batched[:2])
    assert np.abs(first - second).max() > 10  # each job got its own prompt and seed


@synchronously
async def test_image_to_image_equals_diffusers_own_pipeline_on_the_reference(
        tiny_pipeline_dir: Path) -> None:
    red = Image.new("RGB", (100, 100), (220, 30, 30))
    blue = Image.new("RGB", (100, 100), (30, 30, 220))
    r = route(tiny_pipeline_dir, image_to_image=True, strength=0.5)
    from_red, from_blue = await generate_all(r, [job("r", reference=red),
                                                 job("b", reference=blue)])
    plain = StableDiffusionImg2ImgPipeline.from_pretrained(tiny_pipeline_dir).to(DEVICE)
    plain.set_progress_bar_config(disable=True)
    expected = plain("a red fox", image=red.resize((64, 64), Image.Resampling.LANCZOS),
                     strength=0.5, num_inference_steps=2, guidance_scale=5.0,
                     generator=torch.Generator("cpu").manual_seed(7)).images[0]
    assert np.abs(pixels(images_of(from_red)[0]) - pixels(expected)).max() <= 1
    assert np.abs(pixels(images_of(from_red)[0]) - pixels(images_of(from_blue)[0])).max() > 10


@synchronously
async def test_a_batch_out_of_memory_is_split_and_every_task_still_succeeds(
        tiny_pipeline_dir: Path) -> None:
    calls = Calls(fits=2)
    results = await generate_all(route(tiny_pipeline_dir, calls, max_batch_size=4),
                                 [job(f"t{i}", seed=i) for i in range(4)])
    assert calls.batches == [["t0", "t1", "t2", "t3"], ["t0", "t1"], ["t2", "t3"]]
    assert all(len(images_of(r)) == 1 for r in results)


@synchronously
async def test_a_job_that_cannot_fit_alone_fails_alone_and_the_route_goes_on(
        tiny_pipeline_dir: Path) -> None:
    r = route(tiny_pipeline_dir, Calls(fits=2), max_batch_size=4)
    big, small = await generate_all(r, [job("big", num_images=3), job("small")])
    assert isinstance(big, RouteError) and big.fail_code == FailCode.UNKNOWN
    assert "out of device memory: 3 image(s) at 64x64, 2 steps" in big.message
    assert len(images_of(small)) == 1


@synchronously
async def test_a_failed_pipeline_call_fails_its_batch_as_one_incident(
        tiny_pipeline_dir: Path) -> None:
    results = await generate_all(route(tiny_pipeline_dir, Calls(fail=True), max_batch_size=3),
                                 [job(f"t{i}") for i in range(3)])
    errors = [r for r in results if isinstance(r, RouteError)]
    assert len(errors) == 3 and len({e.incident for e in errors}) == 1
    assert "same device" in errors[0].message and errors[0].retryable


@synchronously
async def test_recycling_reloads_the_pipeline_between_batches_without_losing_a_task(
        tiny_pipeline_dir: Path) -> None:
    r = route(tiny_pipeline_dir, Calls(), max_batch_size=1, recycle_after_tasks=2)
    results = await generate_all(r, [job(f"t{i}", seed=3) for i in range(5)])
    assert r.recycled == 2  # after tasks 2 and 4
    images = [images_of(result)[0] for result in results]
    assert all(np.abs(pixels(im) - pixels(images[0])).max() <= 1 for im in images)


@synchronously
async def test_warm_up_at_start_finds_the_largest_batch_that_fits(tiny_pipeline_dir: Path) -> None:
    calls = Calls(fits=2)
    r = route(tiny_pipeline_dir, calls, warmup=True, max_batch_size=4)
    await generate_all(r, [job("a"), job("b"), job("c")])
    # one image, then the largest batch, which does not fit and is split: tasks come after,
    # already in batches that fit
    warm = "warm-up"
    assert calls.batches == [[warm], [warm] * 4, [warm] * 2, [warm] * 2, ["a", "b"], ["c"]]
    assert (await r.check()).available is True


@synchronously
async def test_image_to_image_on_a_text_to_image_route_is_refused(
        tiny_pipeline_dir: Path) -> None:
    r = route(tiny_pipeline_dir)
    assert r.capabilities.modes == ("text-to-image",) and r.capabilities.max_references == 0
    (result,) = await generate_all(r, [job("i", reference=Image.new("RGB", (8, 8)))])
    assert isinstance(result, RouteError) and "does not serve image-to-image" in result.message


@pytest.mark.parametrize("extra,named", [
    ({"model": "/nowhere/tiny-sd"}, "routes.tiny.model"),
    ({"model": "someone/not-in-the-cache"}, "allow_download is false"),
    ({"device": "cuda"}, "routes.tiny.device"),
])
# diffusers 0.42 passes huggingface_hub 2 an argument it has retired, which warns on a cache
# lookup; the lookup itself is what this test is about.
@pytest.mark.filterwarnings("ignore:The `local_dir_use_symlinks` argument:UserWarning")
@synchronously
async def test_a_route_that_cannot_load_stops_at_start_naming_the_option(
        tiny_pipeline_dir: Path, tmp_path: Path, extra: dict[str, Any], named: str) -> None:
    if extra.get("device") == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    r = route(tiny_pipeline_dir, cache_dir=str(tmp_path / "hf"), **extra)
    with pytest.raises(ConfigError, match=named):
        await r.start()
    await r.close()


@synchronously
async def test_the_router_counts_a_failed_batch_once_against_the_route(
        tiny_pipeline_dir: Path) -> None:
    r = route(tiny_pipeline_dir, Calls(fail=True), max_batch_size=4)
    model = ModelConfig("tiny-sd", ModelLimits(), {}, ("tiny",))
    router = Router(Routing({"tiny-sd": model}, {"tiny": r.capabilities}), {"tiny": r},
                    HealthBook(threshold=2))
    inp = SubmitInput("text-to-image", "a red fox", "1:1", "1k", "png")
    await r.start()
    try:
        outcomes = await asyncio.gather(*(router.run(job(f"t{i}"), inp, "auto")
                                          for i in range(4)))
    finally:
        await r.close()
    assert all(o.error is not None and o.error.fail_code == FailCode.UNKNOWN for o in outcomes)
    assert router.health.failures("tiny") == 1
    assert router.health.circuit("tiny") == Circuit.CLOSED


class Memory:
    """The engine's memory reading, scripted: ``levels`` GiB one after the other (the last
    repeats)."""

    def __init__(self, *levels: float) -> None:
        self.levels = list(levels)

    def __call__(self, pipelines: Pipelines | None) -> int:
        level = self.levels.pop(0) if len(self.levels) > 1 else self.levels[0]
        return int(level * 2**30)


def metered(pipeline: Path, memory: Memory, **extra: Any) -> DiffusersRoute:
    table = options(pipeline, **extra)
    return DiffusersRoute("tiny", read_options("tiny", table),
                          capabilities=declared_capabilities("tiny", table),
                          engine=lambda name, opts: Engine(name, opts, memory=memory))


@synchronously
async def test_recycling_on_memory_rebuilds_the_pipeline_once_memory_reaches_the_threshold(
        tiny_pipeline_dir: Path) -> None:
    # read after the load, before batch 2 (1 GiB), before batch 3 (5 GiB), after the reload,
    # before batch 4
    memory = Memory(1, 1, 5, 1, 1)
    r = metered(tiny_pipeline_dir, memory, max_batch_size=1, recycle_memory_gib=4)
    results = await generate_all(r, [job(f"t{i}") for i in range(4)])
    assert all(len(images_of(result)) == 1 for result in results)
    assert r.recycled == 1


@synchronously
async def test_a_memory_threshold_below_the_loaded_pipeline_turns_recycling_off(
        tiny_pipeline_dir: Path) -> None:
    r = metered(tiny_pipeline_dir, Memory(6), max_batch_size=1, recycle_memory_gib=4)
    await generate_all(r, [job(f"t{i}") for i in range(3)])
    assert r.recycled == 0


@pytest.mark.slow  # the first compilation takes a minute on a small CPU
@pytest.mark.timeout(600)
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
@synchronously
async def test_a_compiled_route_finds_its_compiled_code_on_disk_after_a_restart(
        tiny_pipeline_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TORCHINDUCTOR_CACHE_DIR", "TORCHINDUCTOR_FX_GRAPH_CACHE",
                 "TORCHINDUCTOR_AUTOGRAD_CACHE", "TRITON_CACHE_DIR"):
        monkeypatch.setenv(name, "")  # restored after the test; the route sets them
    cache = tmp_path / "compile"
    compiled = {"compile": True, "compile_cache_dir": str(cache)}
    (eager,) = await generate_all(route(tiny_pipeline_dir), [job("e")])
    (first,) = await generate_all(route(tiny_pipeline_dir, **compiled), [job("a")])
    assert any((cache / "inductor").rglob("*.py"))
    torch._dynamo.reset()  # as a new process: nothing compiled in memory
    counters.clear()
    (second,) = await generate_all(route(tiny_pipeline_dir, **compiled), [job("b")])
    assert counters["inductor"]["fxgraph_cache_hit"] >= 1
    assert counters["inductor"]["fxgraph_cache_miss"] == 0
    for result in (first, second):
        assert np.abs(pixels(images_of(result)[0]) - pixels(images_of(eager)[0])).max() <= 2


@synchronously
async def test_a_reload_that_fails_fails_its_batch_and_is_tried_again_before_the_next(
        tiny_pipeline_dir: Path) -> None:
    loads: list[str] = []

    def flaky(name: str, opts: DiffusersOptions) -> Pipelines:
        loads.append("load")
        if len(loads) == 2:
            raise ConfigError("routes.tiny.model: the disk went away")
        return load_pipelines(name, opts)

    table = options(tiny_pipeline_dir, max_batch_size=1, recycle_after_tasks=1)
    r = DiffusersRoute("tiny", read_options("tiny", table),
                       capabilities=declared_capabilities("tiny", table),
                       engine=lambda name, opts: Engine(name, opts, load=flaky))
    first, second, third = await generate_all(r, [job(f"t{i}") for i in range(3)])
    assert len(images_of(first)) == 1 and len(images_of(third)) == 1
    assert isinstance(second, RouteError) and second.retryable
    assert loads == ["load"] * 3


@pytest.mark.parametrize("model,available,detail", [
    (None, True, "a pipeline directory"),
    ("someone/not-cached", False, "not in the Hugging Face cache"),
    ("/nowhere/tiny-sd", False, "neither a directory nor a repo id"),
])
@synchronously
async def test_check_says_whether_the_model_can_be_found_before_it_is_loaded(
        tiny_pipeline_dir: Path, tmp_path: Path, model: str | None, available: bool,
        detail: str) -> None:
    table = {"model": model} if model else {}
    r = route(tiny_pipeline_dir, cache_dir=str(tmp_path / "hf"), **table)
    check = await r.check()
    await r.close()
    assert check.available is available and detail in check.detail
