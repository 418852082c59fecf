"""Generating in one call (app/generation.py), which the OpenAI Images and Gemini facades
answer from: an ordinary task, waited for, then read with its images."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest
from harness import Harness, scenario, t2i
from PIL import Image

from imagegate.errors import TooManyRequests
from imagegate.tasks import TaskState


async def started_waiting(h: Harness, waiting: asyncio.Future[object]) -> None:
    for _ in range(10_000):
        if h.api.seams.events.watching or waiting.done():
            break
        await asyncio.sleep(0)
    assert h.api.seams.events.watching == 1


def test_a_call_answers_the_finished_task_with_its_images_and_their_bytes() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        key = await h.key()
        gens = h.api.generations
        body = t2i()
        body["input"]["num_images"] = 2
        task_id = await gens.submit(key, "nano-banana-2", body)
        waiting = asyncio.ensure_future(gens.finish(key, "nano-banana-2", task_id,
                                                    with_bytes=True))
        await started_waiting(h, waiting)
        assert await h.work() == 1
        done = await waiting
        assert done.succeeded and done.finished and done.task.id == task_id
        assert len(done.images) == 2
        for image in done.images:
            assert image.data is not None and len(image.data) == image.file.size
            assert Image.open(io.BytesIO(image.data)).size == (1024, 1024)
            assert image.url.startswith(f"{h.api.settings.base_url}/files/{task_id}/")
        assert await h.balance(key) == 10_000_000 - 2 * 50_000  # billed as any task


def test_a_call_reads_its_task_once_before_it_finishes_and_once_after() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        key = await h.key()
        gens = h.api.generations
        task_id = await gens.submit(key, "nano-banana-2", t2i())
        reads: list[str] = []
        read = h.store.get_task

        async def counted(read_id: str) -> Any:
            reads.append(read_id)
            return await read(read_id)

        h.store.get_task = counted  # type: ignore[method-assign]
        waiting = asyncio.ensure_future(gens.finish(key, "nano-banana-2", task_id,
                                                    with_bytes=False))
        await started_waiting(h, waiting)
        assert await h.work() == 1  # claimed, generating, storing, succeeded
        done = await waiting
        assert done.succeeded and len(done.images) == 1
        assert reads == [task_id, task_id]


def test_without_bytes_only_the_urls_are_read() -> None:
    @scenario()
    async def _(h: Harness) -> None:
        key = await h.key()
        task_id = await h.api.generations.submit(key, "nano-banana-2", t2i())
        await h.work()
        done = await h.api.generations.finish(key, "nano-banana-2", task_id, with_bytes=False)
        assert [image.data for image in done.images] == [None]


def test_a_failed_task_is_answered_with_its_fail_code_and_refunded() -> None:
    @scenario(worker_max_attempts=1)
    async def _(h: Harness) -> None:
        key = await h.key()
        task_id = await h.api.generations.submit(
            key, "nano-banana-2", t2i("[sandbox:fail=SensitiveContent] a fox"))
        await h.work()
        done = await h.api.generations.finish(key, "nano-banana-2", task_id, with_bytes=True)
        assert done.finished and not done.succeeded and done.images == ()
        assert (done.task.state, done.task.fail_code) == (TaskState.FAILED, "SensitiveContent")
        assert await h.balance(key) == 10_000_000


def test_a_wait_that_runs_out_answers_the_task_unfinished() -> None:
    @scenario(facades_wait_seconds=0.05)
    async def _(h: Harness) -> None:
        key = await h.key()
        task_id = await h.api.generations.submit(key, "nano-banana-2", t2i())
        done = await h.api.generations.finish(key, "nano-banana-2", task_id, with_bytes=True)
        assert not done.finished and done.task.state is TaskState.QUEUED
        assert h.api.seams.events.watching == 0


def test_a_key_holding_all_its_waits_is_refused_before_anything_is_stored() -> None:
    @scenario(limits_max_concurrent_tasks=1)
    async def _(h: Harness) -> None:
        key = await h.key()
        gens = h.api.generations
        slots = [gens.slot(key) for _ in range(100)]  # MAX_WAITS_PER_KEY
        for slot in slots:
            slot.__enter__()
        with pytest.raises(TooManyRequests, match="calls waiting") as refused:
            gens.slot(key)
        assert refused.value.retry_after == 5.0
        for slot in slots:
            slot.__exit__(None, None, None)
        with gens.slot(key):
            pass
