"""A facade call whose task was stored before something failed (here the result storage,
which cannot give back the images of the finished task) answers in its format naming that
task, which goes on, and tells the openai SDKs not to retry: a retry would store and bill a
second task."""

from __future__ import annotations

import asyncio
from typing import Any

from harness import Harness, scenario

from imagegate.blobs.base import OpenBlob
from imagegate.blobs.memory import MemoryBlobStore


class ForgetfulBlobs(MemoryBlobStore):
    """Keeps every blob, and can give none back."""

    async def open(self, key: str, chunk_size: int = 1) -> OpenBlob | None:
        return None


async def answered_while_worked(h: Harness, call: Any) -> Any:
    started = asyncio.ensure_future(call)
    for _ in range(10_000):
        if h.api.seams.events.watching or started.done():
            break
        await asyncio.sleep(0)
    assert await h.work() == 1
    return await asyncio.wait_for(started, 30)


def test_openai_answer_names_the_stored_task_and_forbids_a_retry() -> None:
    @scenario(blobs=ForgetfulBlobs())
    async def _(h: Harness) -> None:
        new = await h.new_key()
        async with h.http(new.plain) as c:
            r = await answered_while_worked(h, c.post(
                "/v1/images/generations", json={"prompt": "a fox", "size": "1024x1024"}))
        task_id = r.headers["x-imagegate-task-id"]
        assert r.status_code == 503, r.text
        assert r.headers["x-should-retry"] == "false"
        assert f"task {task_id} was stored and goes on" in r.json()["error"]["message"]
        assert (await h.task(task_id)).state.value == "succeeded"


def test_gemini_answer_names_the_stored_task() -> None:
    @scenario(blobs=ForgetfulBlobs())
    async def _(h: Harness) -> None:
        new = await h.new_key()
        body = {"contents": [{"parts": [{"text": "a fox"}]}]}
        async with h.http() as c:
            r = await answered_while_worked(h, c.post(
                "/v1beta/models/nano-banana-2:generateContent", json=body,
                headers={"x-goog-api-key": new.plain}))
        task_id = r.headers["x-imagegate-task-id"]
        assert (r.status_code, r.json()["error"]["status"]) == (503, "UNAVAILABLE"), r.text
        assert task_id in r.json()["error"]["message"]
