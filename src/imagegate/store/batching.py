"""Calls that arrive together, run together: a ``Batcher`` turns many concurrent calls of one
kind (submits, status reads, rate tokens) into one call of a batch function, so a burst costs
one transaction, one thread hop and one round trip to the database instead of one per call.

Nothing waits to fill a batch: a call that finds fewer than ``max_in_flight`` batches under way
starts one at the next turn of the event loop (taking every call queued by then); calls arriving
while the batches are busy queue and leave together as soon as one finishes. So a lone call
costs what it did, and under load the batches grow by themselves to match it.

The batch function answers each item on its own (a value, or the exception to raise for that
item alone); if it raises, every call of that batch raises the same error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["Batcher"]

I = TypeVar("I")  # noqa: E741 - an item
O = TypeVar("O")  # noqa: E741 - its answer


class Batcher(Generic[I, O]):
    def __init__(self, run: Callable[[Sequence[I]], Awaitable[Sequence[O | Exception]]], *,
                 max_size: int = 256, max_in_flight: int = 1) -> None:
        if max_size < 1 or max_in_flight < 1:
            raise ValueError("a batch holds at least one item, and one batch runs at a time "
                             "at least")
        self._run = run
        self._max_size = max_size
        self._max_in_flight = max_in_flight
        self._queued: list[tuple[I, asyncio.Future[O]]] = []
        self._flushes: set[asyncio.Task[None]] = set()

    async def __call__(self, item: I) -> O:
        """``item``'s answer, once the batch it joined has run."""
        future: asyncio.Future[O] = asyncio.get_running_loop().create_future()
        self._queued.append((item, future))
        if len(self._flushes) < self._max_in_flight:
            self._start()
        return await future

    async def drain(self) -> None:
        """Return once every call made so far has its answer."""
        while self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)

    def _start(self) -> None:
        flush = asyncio.get_running_loop().create_task(self._flush())
        self._flushes.add(flush)
        flush.add_done_callback(self._flushed)

    def _flushed(self, flush: asyncio.Task[None]) -> None:
        self._flushes.discard(flush)
        # A call made after the flush saw the queue empty, before this callback ran, found
        # the flush still counted as under way: start one for it now.
        if self._queued and len(self._flushes) < self._max_in_flight:
            self._start()

    async def _flush(self) -> None:
        # Takes what is queued when it first runs, not when it was started, so every call
        # queued in the meantime rides along; then goes on while calls keep coming.
        while self._queued:
            batch, self._queued = self._queued[:self._max_size], self._queued[self._max_size:]
            await self._answer(batch)

    async def _answer(self, batch: list[tuple[I, asyncio.Future[O]]]) -> None:
        try:
            outcomes = await self._run([item for item, _ in batch])
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        if len(outcomes) != len(batch):  # a bug of the batch function: fail loudly
            error = RuntimeError(f"a batch of {len(batch)} got {len(outcomes)} answers")
            outcomes = [error] * len(batch)
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():  # its caller gave up (a cancelled request)
                continue
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
