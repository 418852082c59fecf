"""Where queued tasks stand in the queue, for the streams that show it (``app/stream.py``).

One ``QueuePositions`` per process: each stream whose task is queued holds a ``Spot``; while
any does, a single loop reads the positions of all of them in one query
(``Store.queue_positions``), at most every ``interval_s`` seconds, and wakes the spots whose
position changed. So a thousand streams of queued tasks cost one query a second, not one each.
A spot that has no position yet is served within ``min_gap_s`` (spots that arrive together
share the read). A read that takes long spaces the next ones out: the next comes at least
``cost_factor`` times its duration later, so a huge backlog costs the database a bounded share
of one connection's time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from imagegate.clock import Clock
from imagegate.store.base import Store

__all__ = ["QueuePositions", "Spot"]

log = logging.getLogger("imagegate.stream")

INTERVAL_S = 1.0
MIN_GAP_S = 0.05
COST_FACTOR = 10.0


class Spot:
    """One stream's view of its task's place in the queue. ``position`` is 1 for the next task
    to be claimed (``Store.queue_positions``), None once the task is no longer queued;
    ``known`` whether it was read since the stream said the task is queued; ``moved`` is set
    whenever either changes (the stream clears it)."""

    __slots__ = ("_owner", "_queued", "known", "moved", "position", "task_id")

    def __init__(self, owner: QueuePositions, task_id: str) -> None:
        self._owner = owner
        self.task_id = task_id
        self._queued = False
        self.known = False
        self.position: int | None = None
        self.moved = asyncio.Event()

    @property
    def queued(self) -> bool:
        return self._queued

    def set_queued(self, queued: bool) -> None:
        """Say whether the stream's task is queued now (its position is then kept fresh)."""
        if queued == self._queued:
            return
        if not queued:
            self._owner._remove(self)
        self._queued = queued
        self.known, self.position = False, None
        self.moved.clear()
        if queued:
            self._owner._add(self)

    async def first(self, within_s: float) -> int | None:
        """The position, waiting up to ``within_s`` seconds for its first read (None when it
        is not known by then)."""
        if not self.known:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.moved.wait(), within_s)
        self.moved.clear()
        return self.position

    def _update(self, position: int | None) -> None:
        if self.known and position == self.position:
            return
        if not self.known:
            self._owner._unknown -= 1
        self.known, self.position = True, position
        self.moved.set()


class QueuePositions:
    def __init__(self, store: Store, clock: Clock, *, interval_s: float = INTERVAL_S,
                 min_gap_s: float = MIN_GAP_S, cost_factor: float = COST_FACTOR) -> None:
        self.store = store
        self.clock = clock
        self.interval_s = interval_s
        self.min_gap_s = min_gap_s
        self.cost_factor = cost_factor
        self.reads = 0  # queries made, for tests and benchmarks
        self._spots: dict[str, set[Spot]] = {}  # of queued tasks
        self._unknown = 0  # spots in _spots without a position read yet
        self._demand = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._gap_s = interval_s
        self._last = -float("inf")  # when the last read ended (loop time)

    @property
    def tracked(self) -> int:
        """How many streams of queued tasks are kept informed now."""
        return sum(len(spots) for spots in self._spots.values())

    @contextmanager
    def track(self, task_id: str) -> Iterator[Spot]:
        """A spot for a stream of ``task_id``, for the ``with`` block (however it ends)."""
        spot = Spot(self, task_id)
        try:
            yield spot
        finally:
            spot.set_queued(False)

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner

    def _add(self, spot: Spot) -> None:
        self._spots.setdefault(spot.task_id, set()).add(spot)
        self._unknown += 1
        self._demand.set()
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name="queue-positions")

    def _remove(self, spot: Spot) -> None:
        spots = self._spots.get(spot.task_id)
        if spots is None or spot not in spots:
            return
        spots.discard(spot)
        if not spots:
            del self._spots[spot.task_id]
        if not spot.known:
            self._unknown -= 1

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._spots:
                due = self._last + (self.min_gap_s if self._unknown else self._gap_s)
                if loop.time() < due:
                    self._demand.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._demand.wait(), due - loop.time())
                    continue
                await self._refresh(loop)
        finally:
            if self._runner is asyncio.current_task():
                self._runner = None

    async def _refresh(self, loop: asyncio.AbstractEventLoop) -> None:
        ids = list(self._spots)
        started = loop.time()
        self.reads += 1
        try:
            found = await self.store.queue_positions(ids, self.clock.now_ms())
        except Exception as exc:
            log.warning("reading queue positions failed (%s); trying again in %.0f s", exc,
                        self.interval_s)
            self._last, self._gap_s = loop.time() + self.interval_s, self.interval_s
            return
        self._last = loop.time()
        self._gap_s = max(self.interval_s, self.cost_factor * (self._last - started))
        for task_id in ids:
            for spot in list(self._spots.get(task_id, ())):
                spot._update(found.get(task_id))
