"""The micro-batcher: jobs that can share one pipeline call wait a few milliseconds for each
other, then run together.

Compatible jobs have equal ``BatchKey``s (same model, mode, rendered size, steps, guidance and
strength). A group is run when it holds ``max_images`` images, or when its first job has waited
``max_wait_s``; groups are run one at a time (one pipeline, one device): of the groups ready to
run, the one whose first job arrived earliest first. A job larger than ``max_images`` runs
alone. Each job gets its own outcome (its images, or its own ``RouteError``); when the batch
call itself raises, every job of the batch fails with one error that names the same incident,
so route health counts it once.

This module imports neither torch nor diffusers: the batch is run by the ``run`` callable.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from PIL import Image

from imagegate.errors import FailCode, RouteError

__all__ = ["BatchKey", "Batcher", "Outcome", "Request", "RunBatch", "batch_error"]

log = logging.getLogger("imagegate.routes.diffusers")


@dataclass(frozen=True)
class BatchKey:
    """What jobs must share to run in one pipeline call. Sizes are the rendered size."""

    model: str
    mode: str
    width: int
    height: int
    steps: int
    guidance: float
    strength: float


@dataclass(frozen=True)
class Request:
    """One job's share of a batch: one image per seed, from ``prompt`` (and ``init_image``,
    already at the rendered size, for image-to-image)."""

    task_id: str
    prompt: str
    seeds: tuple[int, ...]
    init_image: Image.Image | None = None

    @property
    def images(self) -> int:
        return len(self.seeds)


Outcome = Sequence[Image.Image] | RouteError  # per request, in the order of the batch
RunBatch = Callable[[BatchKey, list[Request]], Awaitable[list[Outcome]]]


def batch_error(message: str, requests: int) -> list[Outcome]:
    """The outcomes of a batch that failed as a whole: one retryable error per request, all
    naming one incident."""
    incident = "batch-" + secrets.token_hex(6)
    return [RouteError(FailCode.UNKNOWN, message, retryable=True, failover=True,
                       incident=incident) for _ in range(requests)]


@dataclass
class _Waiting:
    request: Request
    future: asyncio.Future[Outcome]
    since: float


class Batcher:
    """Groups requests by key and runs each group with ``run`` (awaited: it should run the
    blocking call off the event loop). ``clock``: monotonic seconds."""

    def __init__(self, run: RunBatch, *, max_images: int, max_wait_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._run = run
        self.max_images = max_images
        self.max_wait_s = max_wait_s
        self._clock = clock
        self._groups: dict[BatchKey, deque[_Waiting]] = {}
        self._arrived = asyncio.Event()
        self._consumer: asyncio.Task[None] | None = None
        self._closed = False

    def waiting(self) -> int:
        """Requests waiting for a batch (not counting the batch running)."""
        return sum(len(group) for group in self._groups.values())

    async def submit(self, key: BatchKey, request: Request) -> Sequence[Image.Image]:
        """The request's images once its batch has run; raises its ``RouteError``. Cancelled
        while waiting, the request leaves its group; cancelled while its batch runs, its images
        are dropped."""
        if self._closed:
            raise RouteError(FailCode.UNKNOWN, "the route is closing", retryable=True,
                             failover=True)
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._groups.setdefault(key, deque()).append(_Waiting(request, future, self._clock()))
        self._arrived.set()
        if self._consumer is None:
            self._consumer = asyncio.create_task(self._consume(), name="diffusers-batcher")
        outcome = await future
        if isinstance(outcome, RouteError):
            raise outcome
        return outcome

    async def close(self) -> None:
        """Stop running batches; waiting requests fail with a retryable error."""
        self._closed = True
        if self._consumer is not None:
            self._consumer.cancel()
            await asyncio.gather(self._consumer, return_exceptions=True)
        for group in self._groups.values():
            _close(group)
        self._groups.clear()

    async def _consume(self) -> None:
        while True:
            key = await self._due()
            batch = self.take(key)
            if batch:
                await self._run_batch(key, batch)

    async def _due(self) -> BatchKey:
        """The key of the next group to run: of the groups that are full or whose first job
        has waited long enough, the one whose first job came first."""
        while True:
            self._drop_cancelled()
            now = self._clock()
            ready = [(group[0].since, key) for key, group in self._groups.items()
                     if now >= group[0].since + self.max_wait_s
                     or sum(w.request.images for w in group) >= self.max_images]
            if ready:
                return min(ready, key=lambda item: item[0])[1]
            self._arrived.clear()
            if not self._groups:
                await self._arrived.wait()
                continue
            first = min(group[0].since for group in self._groups.values())
            try:
                await asyncio.wait_for(self._arrived.wait(), first + self.max_wait_s - now)
            except TimeoutError:
                pass

    def take(self, key: BatchKey) -> list[_Waiting]:
        """Up to ``max_images`` images' worth of the group's requests, oldest first (at least
        one request, however large)."""
        group = self._groups.get(key)
        batch: list[_Waiting] = []
        images = 0
        while group and (not batch or images + group[0].request.images <= self.max_images):
            waiting = group.popleft()
            if waiting.future.done():
                continue
            batch.append(waiting)
            images += waiting.request.images
        if group is not None and not group:
            del self._groups[key]
        return batch

    def _drop_cancelled(self) -> None:
        for key in list(self._groups):
            group = deque(w for w in self._groups[key] if not w.future.done())
            if group:
                self._groups[key] = group
            else:
                del self._groups[key]

    async def _run_batch(self, key: BatchKey, batch: list[_Waiting]) -> None:
        requests = [waiting.request for waiting in batch]
        try:
            outcomes = await self._run(key, requests)
        except asyncio.CancelledError:
            _close(batch)
            raise
        except Exception as exc:  # the route's run translates; this is the last guard
            log.exception("a batch of %d tasks failed", len(batch))
            outcomes = batch_error(f"the batch failed: {type(exc).__name__}", len(batch))
        for waiting, outcome in zip(batch, outcomes, strict=True):
            if not waiting.future.done():
                waiting.future.set_result(outcome)


def _close(waiting: Sequence[_Waiting] | deque[_Waiting]) -> None:
    closing = RouteError(FailCode.UNKNOWN, "the route closed before the task ran",
                         retryable=True, failover=True)
    for each in waiting:
        if not each.future.done():
            each.future.set_result(closing)
