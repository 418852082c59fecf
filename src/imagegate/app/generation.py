"""Generating in one call, as the OpenAI Images and Gemini facades answer: an ordinary task
(stored with its hold, routed, retried, failed over, billed, listed, its callback sent), which
the call waits for and then answers with the task's images.

``submit`` stores the task exactly as a native submit does (``Tasks.submit``); ``finish``
waits for it (``Tasks.wait_task``: no query while nothing happens to it) for at most
``wait_s`` seconds and reads what it made. A call whose client goes away leaves its task
running, as a native client's would: it is billed when it succeeds, and can be read through the
native API (its id is in the facade's answer headers). A call that waits longer than ``wait_s``
answers ``Generation`` with the task unfinished: the facade says so, naming the task.

A key holds at most as many waiting calls in one process as it may hold waits
(``Tasks.wait_slot``): past that, ``TooManyRequests`` before anything is stored.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from imagegate.app.tasks import Tasks
from imagegate.blobs.base import BlobStore
from imagegate.errors import StorageUnavailable, TooManyRequests
from imagegate.idempotency import Idempotency
from imagegate.store.base import ApiKey, RateRequest
from imagegate.tasks import ResultFile, Task, TaskState, result_url

__all__ = ["GeneratedImage", "Generation", "Generations"]

# Seconds a client told "too many waiting calls" should wait before it calls again.
BUSY_RETRY_AFTER_S = 5.0


@dataclass(frozen=True)
class GeneratedImage:
    """One image of a succeeded task: its public URL (until the result's retention ends), its
    file, and its bytes when they were asked for."""

    url: str
    file: ResultFile
    data: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Generation:
    """What a facade call answers from: the task as read at the end of the wait (finished, or
    not when the wait ran out: ``finished`` False), and its images when it succeeded."""

    task: Task
    images: tuple[GeneratedImage, ...] = ()

    @property
    def finished(self) -> bool:
        return self.task.state.terminal

    @property
    def succeeded(self) -> bool:
        return self.task.state is TaskState.SUCCEEDED


class Generations:
    def __init__(self, tasks: Tasks, blobs: BlobStore, *, base_url: str, wait_s: float) -> None:
        self.tasks = tasks
        self.blobs = blobs
        self.base_url = base_url
        self.wait_s = wait_s

    def slot(self, key: ApiKey) -> AbstractContextManager[None]:
        """A place among the key's waiting calls, held for the ``with`` block around
        ``submit`` and ``finish``; ``TooManyRequests`` when the key holds as many as it may
        (checked before the task is stored, so a refused call costs nothing)."""
        slot = self.tasks.wait_slot(key)
        if slot is None:
            raise TooManyRequests("this API key has as many calls waiting for their images as "
                                  "it may; wait for one to finish",
                                  retry_after=BUSY_RETRY_AFTER_S, reason="waits")
        return slot

    async def submit(self, key: ApiKey, model_id: str, body: dict[str, Any],
                     rate: RateRequest | None = None, idem: Idempotency | None = None) -> str:
        """Store the task of ``body`` (a native submit body, docs/contract.md §4) exactly as
        a native submit does; its id. Raises what ``Tasks.submit`` raises."""
        return await self.tasks.submit(key, model_id, body, rate, idem)

    async def finish(self, key: ApiKey, model_id: str, task_id: str, *,
                     with_bytes: bool) -> Generation:
        """Wait for the key's task until it has finished or ``wait_s`` has passed, then read
        it, and, when it succeeded, its images (their bytes too ``with_bytes``; a result whose
        bytes are gone raises ``StorageUnavailable``)."""
        task = await self.tasks.wait_task(key, model_id, task_id, self.wait_s)
        if task.state is not TaskState.SUCCEEDED:
            return Generation(task)
        images = [GeneratedImage(result_url(self.base_url, task, file), file,
                                 await self._read(file) if with_bytes else None)
                  for file in task.results]
        return Generation(task, tuple(images))

    async def _read(self, file: ResultFile) -> bytes:
        blob = await self.blobs.open(file.key)
        if blob is None:
            raise StorageUnavailable(f"the stored image {file.name} cannot be read")
        parts = [chunk async for chunk in blob.chunks]
        return b"".join(parts)
