"""The sweeper: requeues tasks whose worker stopped renewing the lease, fails (and refunds) a task
whose attempts are used up, deletes result files past their retention, and deletes the records
of finished tasks past the record retention.

In a fleet only ``imagegate sweeper`` runs it (``serve`` runs it in-process). Each round does a
bounded amount of work in short transactions, so none holds the database for long."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from imagegate.blobs.base import BlobStore, task_prefix
from imagegate.clock import Clock
from imagegate.completion import Completion
from imagegate.config import Settings
from imagegate.errors import FailCode, TaskError
from imagegate.events import TaskEvents
from imagegate.idempotency import IDEMPOTENCY_TTL_MS
from imagegate.logs import task_fields
from imagegate.store.base import Store

log = logging.getLogger("imagegate.sweeper")

BATCH = 200
# Task records deleted per transaction, and at most that many transactions per round: more
# than a round's results deletions (BATCH), so pruning keeps up with them.
PRUNE_BATCH = 100
PRUNE_BATCHES = 4


class Swept(NamedTuple):
    """What one round did."""

    leases: int  # running tasks whose lease had expired, requeued or failed
    results: int  # tasks whose result files were deleted
    records: int  # task records deleted
    idempotency_keys: int = 0  # idempotency keys past their 24 hours deleted


class Sweeper:
    def __init__(self, store: Store, blobs: BlobStore, completion: Completion,
                 settings: Settings, clock: Clock, events: TaskEvents) -> None:
        self.store = store
        self.blobs = blobs
        self.completion = completion
        self.settings = settings
        self.clock = clock
        self.events = events

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.sweep_once()
            except Exception:
                log.exception("sweep failed; trying again next interval")
            try:
                await asyncio.wait_for(stop.wait(), self.settings.sweeper_interval_seconds)
            except TimeoutError:
                pass

    async def sweep_once(self) -> Swept:
        """One round; also fails the queued tasks past their deadline."""
        leases = await self.recover_leases()
        await self.fail_overdue()
        results = await self.delete_expired_results()
        records = await self.prune_records()
        return Swept(leases, results, records, await self.prune_idempotency_keys())

    async def fail_overdue(self) -> int:
        """Fail and refund queued tasks past their deadline: no worker took them in time (none
        for their model may be alive), so waiting longer cannot help."""
        deadline_ms = int(self.settings.worker_task_deadline_seconds * 1000)
        overdue = await self.store.overdue_queued(self.clock.now_ms() - deadline_ms, BATCH)
        late = TaskError(FailCode.TIMEOUT, "no worker took the task before its deadline")
        failed = 0
        for task in overdue:
            failed += await self.completion.fail_queued(task, late)
        return failed

    async def recover_leases(self) -> int:
        """Requeue (or, attempts used up, fail and refund) running tasks whose lease expired;
        one its client asked to cancel ends canceled and refunded instead. Each change is
        fenced on the lease still being expired: a worker whose heartbeat came late keeps its
        task."""
        now = self.clock.now_ms()
        expired = await self.store.expired_leases(now, BATCH)
        for task in expired:
            if task.cancel_requested_ms is not None:
                await self.completion.end_canceled(task, task.route_attempts,
                                                   lease_expired_before_ms=now)
                continue
            if task.attempt >= self.settings.worker_max_attempts:
                error = TaskError(FailCode.UNKNOWN, f"the worker running this task stopped "
                                  f"responding, {task.attempt} times")
                await self.completion.fail(task, error, task.route_attempts,
                                           lease_expired_before_ms=now)
                continue
            requeued = await self.store.retry_later(
                task.id, task.attempt, now, task.route_attempts,
                f"attempt {task.attempt}: lease expired; requeued", lease_expired_before_ms=now)
            if requeued:
                self.events.task_changed(task.id)
                log.warning("task %s: lease of attempt %d expired; requeued",
                            task.id, task.attempt, extra=task_fields(task))
        if expired:
            self.events.work_available()
        return len(expired)

    async def delete_expired_results(self) -> int:
        expired = await self.store.expired_results(self.clock.now_ms(), BATCH)
        for task in expired:
            await self.blobs.delete_prefix(task_prefix(task.id))
            await self.store.mark_results_deleted(task.id)
        return len(expired)

    async def prune_idempotency_keys(self) -> int:
        """Delete idempotency keys older than their 24 hours (already treated as unused), in
        small batches; how many."""
        before = self.clock.now_ms() - IDEMPOTENCY_TTL_MS
        return await _in_batches(lambda: self.store.prune_idempotency_keys(before, PRUNE_BATCH))

    async def prune_records(self) -> int:
        """Delete the records of tasks that finished more than ``record_retention_days`` ago,
        whose results are deleted and whose callbacks are settled (delivered or given up);
        how many. The ledger keeps every line."""
        keep_ms = self.settings.record_retention_ms
        if keep_ms is None:
            return 0
        before = self.clock.now_ms() - keep_ms
        pruned = await _in_batches(lambda: self.store.prune_records(before, PRUNE_BATCH))
        if pruned:
            log.info("deleted the records of %d tasks finished before the record retention",
                     pruned)
        return pruned


async def _in_batches(prune: Callable[[], Awaitable[int]]) -> int:
    """Call ``prune`` (one transaction deleting up to ``PRUNE_BATCH`` rows) until it deletes
    fewer, at most ``PRUNE_BATCHES`` times; how many rows went."""
    pruned = 0
    for _ in range(PRUNE_BATCHES):
        batch = await prune()
        pruned += batch
        if batch < PRUNE_BATCH:
            break
    return pruned
