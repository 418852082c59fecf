"""The micro-batcher's grouping rules, with a recording ``run`` in place of a pipeline."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

import pytest
from PIL import Image
from synchronously import synchronously

from imagegate.errors import FailCode, RouteError
from imagegate.routes.diffusers.batcher import Batcher, BatchKey, Outcome, Request

KEY = BatchKey("tiny", "text-to-image", 64, 64, 2, 5.0, 0.75)
GUARD_S = 10.0  # a test that would hang fails instead


class Recorder:
    """Runs each batch at once: one 1x1 image per seed, coloured by the seed."""

    def __init__(self, fail: bool = False) -> None:
        self.batches: list[tuple[BatchKey, list[str]]] = []
        self.fail = fail
        self.release = asyncio.Event()
        self.release.set()
        self.started = asyncio.Event()  # a batch began

    async def __call__(self, key: BatchKey, requests: list[Request]) -> list[Outcome]:
        self.batches.append((key, [r.task_id for r in requests]))
        self.started.set()
        await self.release.wait()
        if self.fail:
            raise RuntimeError("the device fell over")
        return [[Image.new("RGB", (1, 1), (s % 256, 0, 0)) for s in r.seeds] for r in requests]


def request(task_id: str, images: int = 1) -> Request:
    return Request(task_id, "a fox", tuple(range(images)))


async def run_all(batcher: Batcher, jobs: Sequence[tuple[BatchKey, Request]],
                  ) -> list[Sequence[Image.Image] | BaseException]:
    calls = [batcher.submit(key, req) for key, req in jobs]
    try:
        return await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), GUARD_S)
    finally:
        await batcher.close()


@synchronously
async def test_jobs_arriving_together_run_as_one_batch_up_to_the_limit() -> None:
    run = Recorder()
    batcher = Batcher(run, max_images=3, max_wait_s=0.05)
    results = await run_all(batcher, [(KEY, request(f"t{i}")) for i in range(5)])
    assert [ids for _, ids in run.batches] == [["t0", "t1", "t2"], ["t3", "t4"]]
    assert all(isinstance(r, list) and len(r) == 1 for r in results)


@pytest.mark.parametrize("field,value", [("width", 128), ("mode", "image-to-image"),
                                         ("steps", 30), ("guidance", 3.5), ("model", "other"),
                                         ("strength", 0.5)])
@synchronously
async def test_jobs_that_differ_in_a_key_field_run_apart(field: str, value: object) -> None:
    run = Recorder()
    other = replace(KEY, **{field: value})
    batcher = Batcher(run, max_images=8, max_wait_s=0.05)
    await run_all(batcher, [(KEY, request("a")), (other, request("b")), (KEY, request("c"))])
    assert sorted(ids for _, ids in run.batches) == [["a", "c"], ["b"]]
    assert {key for key, _ in run.batches} == {KEY, other}


@synchronously
async def test_a_full_group_runs_without_waiting_for_the_wait_time() -> None:
    run = Recorder()
    batcher = Batcher(run, max_images=2, max_wait_s=3600)  # never reached within GUARD_S
    await run_all(batcher, [(KEY, request("a")), (KEY, request("b"))])
    assert [ids for _, ids in run.batches] == [["a", "b"]]


@synchronously
async def test_a_lone_job_runs_once_it_has_waited_the_wait_time() -> None:
    run = Recorder()
    batcher = Batcher(run, max_images=8, max_wait_s=0.01)
    await run_all(batcher, [(KEY, request("alone"))])
    assert [ids for _, ids in run.batches] == [["alone"]]


@synchronously
async def test_images_not_jobs_fill_a_batch_and_a_job_over_the_limit_runs_alone() -> None:
    run = Recorder()
    batcher = Batcher(run, max_images=4, max_wait_s=0.05)
    results = await run_all(batcher, [(KEY, request("three", 3)), (KEY, request("two", 2)),
                                      (KEY, request("six", 6))])
    assert [ids for _, ids in run.batches] == [["three"], ["two"], ["six"]]
    assert [len(r) for r in results if isinstance(r, list)] == [3, 2, 6]


@synchronously
async def test_each_job_gets_the_images_of_its_own_seeds() -> None:
    batcher = Batcher(Recorder(), max_images=8, max_wait_s=0.05)
    results = await run_all(batcher, [(KEY, Request("a", "x", (7,))),
                                      (KEY, Request("b", "y", (9, 11)))])
    colours = [[im.getpixel((0, 0)) for im in r] for r in results if isinstance(r, list)]
    assert colours == [[(7, 0, 0)], [(9, 0, 0), (11, 0, 0)]]


@synchronously
async def test_the_group_whose_first_job_came_first_runs_first() -> None:
    run = Recorder()
    run.release.clear()  # the first batch holds the device while the others queue
    batcher = Batcher(run, max_images=8, max_wait_s=0.0)
    first = asyncio.create_task(batcher.submit(KEY, request("first")))
    await asyncio.wait_for(run.started.wait(), GUARD_S)
    later = replace(KEY, width=32)
    queued = [asyncio.create_task(batcher.submit(k, request(name)))
              for k, name in [(later, "b1"), (KEY, "a1"), (later, "b2")]]
    await asyncio.sleep(0)
    run.release.set()
    await asyncio.wait_for(asyncio.gather(first, *queued), GUARD_S)
    await batcher.close()
    assert [ids for _, ids in run.batches] == [["first"], ["b1", "b2"], ["a1"]]


@synchronously
async def test_a_job_cancelled_while_waiting_leaves_its_group() -> None:
    run = Recorder()
    batcher = Batcher(run, max_images=8, max_wait_s=0.2)
    gone = asyncio.create_task(batcher.submit(KEY, request("gone")))
    kept = asyncio.create_task(batcher.submit(KEY, request("kept")))
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.wait_for(kept, GUARD_S)
    await batcher.close()
    assert [ids for _, ids in run.batches] == [["kept"]]


@synchronously
async def test_a_failed_batch_fails_each_job_with_one_shared_incident() -> None:
    batcher = Batcher(Recorder(fail=True), max_images=8, max_wait_s=0.05)
    results = await run_all(batcher, [(KEY, request(f"t{i}")) for i in range(3)])
    assert all(isinstance(r, RouteError) for r in results)
    errors = [r for r in results if isinstance(r, RouteError)]
    assert {e.fail_code for e in errors} == {FailCode.UNKNOWN}
    assert all(e.retryable and e.failover for e in errors)
    assert len({e.incident for e in errors}) == 1 and errors[0].incident


@synchronously
async def test_jobs_waiting_when_the_route_closes_fail_retryably() -> None:
    run = Recorder()
    run.release.clear()
    batcher = Batcher(run, max_images=1, max_wait_s=0.0)
    jobs = [asyncio.create_task(batcher.submit(KEY, request(n))) for n in ("running", "queued")]
    await asyncio.wait_for(run.started.wait(), GUARD_S)
    await batcher.close()
    results = await asyncio.gather(*jobs, return_exceptions=True)
    assert all(isinstance(r, RouteError) and r.retryable for r in results)
    with pytest.raises(RouteError, match="closing"):
        await batcher.submit(KEY, request("late"))


@synchronously
async def test_a_full_group_does_not_wait_behind_an_older_group_that_is_still_waiting() -> None:
    run = Recorder()
    batcher = Batcher(run, max_images=2, max_wait_s=3600)  # the lone job would wait an hour
    lone = asyncio.create_task(batcher.submit(replace(KEY, width=32), request("lone")))
    await asyncio.sleep(0)
    full = [asyncio.create_task(batcher.submit(KEY, request(n))) for n in ("a", "b")]
    await asyncio.wait_for(asyncio.gather(*full), GUARD_S)
    assert [ids for _, ids in run.batches] == [["a", "b"]]
    await batcher.close()
    with pytest.raises(RouteError, match="closed before the task ran"):
        await lone
