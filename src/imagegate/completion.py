"""Ending a task attempt: succeed, fail, or try again later. Used by the worker and the sweeper.

Every method is fenced on the task's attempt: a call for an attempt that lost its lease changes
nothing and returns False. Money moves inside the same transaction as the state (store rules).
Each task ended is counted in the process's metrics, once: by the call that won the fence.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets

from imagegate.clock import Clock
from imagegate.config import Settings
from imagegate.errors import FailCode, TaskError
from imagegate.events import TaskEvents
from imagegate.logs import task_fields
from imagegate.metrics import Metrics
from imagegate.money import ChargeState
from imagegate.store.base import CancelOutcome, Finish, NewDelivery, Store
from imagegate.tasks import (
    CANCELED_MESSAGE,
    ResultFile,
    RouteAttempt,
    Task,
    TaskState,
    envelope,
    render_status,
)

log = logging.getLogger("imagegate.tasks")


class Completion:
    def __init__(self, store: Store, settings: Settings, clock: Clock, events: TaskEvents, *,
                 metrics: Metrics | None = None) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.events = events
        self.metrics = metrics or Metrics()

    async def succeed(self, task: Task, results: tuple[ResultFile, ...],
                      attempts: tuple[RouteAttempt, ...], notes: tuple[str, ...] = ()) -> bool:
        now = self.clock.now_ms()
        finish = Finish(TaskState.SUCCEEDED, now, results=results, expire_ms=self._expiry(now),
                        route_attempts=attempts, notes=task.notes + notes)
        return await self._finish(task, finish)

    async def fail(self, task: Task, error: TaskError, attempts: tuple[RouteAttempt, ...], *,
                   lease_expired_before_ms: int | None = None) -> bool:
        now = self.clock.now_ms()
        # A failed task has no results to serve, but an abandoned attempt may have stored
        # files: the expiry lets the sweeper delete whatever is under the task's prefix.
        finish = Finish(TaskState.FAILED, now, fail_code=error.fail_code,
                        fail_msg=error.message, route_attempts=attempts, notes=task.notes,
                        expire_ms=self._expiry(now),
                        lease_expired_before_ms=lease_expired_before_ms)
        return await self._finish(task, finish)

    async def fail_queued(self, task: Task, error: TaskError) -> bool:
        """Fail a task no worker took (the sweeper, at its deadline): refunded, called back."""
        now = self.clock.now_ms()
        finish = Finish(TaskState.FAILED, now, fail_code=error.fail_code,
                        fail_msg=error.message, notes=task.notes, expire_ms=self._expiry(now))
        done = await self.store.fail_queued(task.id, finish, self._delivery(task, finish))
        if done:
            log.info("task %s failed while queued (%s: %s)", task.id, error.fail_code,
                     error.message, extra=task_fields(task))
            self.metrics.task_finished(task.model, finish.state.value, finish.fail_code)
            self.events.task_changed(task.id)
            self.events.delivery_queued()
        return done

    async def cancel(self, task: Task) -> CancelOutcome:
        """A client's cancel of ``task`` (``Store.cancel_task``). Every process hears of it
        (``task_changed``): a waiter of a task canceled here, the worker of one that runs."""
        finish = self._canceled(task)
        outcome = await self.store.cancel_task(task.id, finish, self._delivery(task, finish))
        if outcome is CancelOutcome.CANCELED:
            log.info("task %s canceled while queued", task.id, extra=task_fields(task))
            self.metrics.task_finished(task.model, finish.state.value, finish.fail_code)
            self.events.delivery_queued()
        elif outcome is CancelOutcome.REQUESTED:
            log.info("task %s: cancel requested while it runs", task.id, extra=task_fields(task))
        if outcome in (CancelOutcome.CANCELED, CancelOutcome.REQUESTED):
            self.events.task_changed(task.id)
        return outcome

    async def end_canceled(self, task: Task, attempts: tuple[RouteAttempt, ...], *,
                           lease_expired_before_ms: int | None = None) -> bool:
        """End the running ``task`` canceled at its client's request, refunded (fenced: False
        when the attempt has already ended)."""
        finish = dataclasses.replace(self._canceled(task, attempts),
                                     lease_expired_before_ms=lease_expired_before_ms)
        return await self._finish(task, finish)

    def _canceled(self, task: Task, attempts: tuple[RouteAttempt, ...] = ()) -> Finish:
        now = self.clock.now_ms()
        # As for a failure: an abandoned attempt may have stored files the sweeper deletes.
        return Finish(TaskState.CANCELED, now, fail_code=FailCode.CANCELED,
                      fail_msg=CANCELED_MESSAGE, route_attempts=attempts or task.route_attempts,
                      notes=task.notes, expire_ms=self._expiry(now))

    async def retry_later(self, task: Task, error: TaskError,
                          attempts: tuple[RouteAttempt, ...]) -> bool:
        delay = self.backoff_s(task.attempt, error.retry_after)
        not_before = self.clock.now_ms() + int(delay * 1000)
        note = f"attempt {task.attempt}: {error.fail_code}: {error.message}"[:500]
        done = await self.store.retry_later(task.id, task.attempt, not_before, attempts, note)
        if done:
            self.events.task_changed(task.id)
            log.info("task %s retrying in %.1fs after %s", task.id, delay, error.fail_code,
                     extra=task_fields(task))
        return done

    def _expiry(self, now_ms: int) -> int:
        return now_ms + int(self.settings.retention_days * 86_400_000)

    def backoff_s(self, attempt: int, retry_after: float | None) -> float:
        base: float = self.settings.worker_retry_backoff_seconds * 2.0 ** max(0, attempt - 1)
        return max(base, retry_after or 0.0)

    def may_retry(self, task: Task, error: TaskError) -> bool:
        if not error.retryable or task.attempt >= self.settings.worker_max_attempts:
            return False
        deadline = task.created_ms + int(self.settings.worker_task_deadline_seconds * 1000)
        ready_at = self.clock.now_ms() + int(self.backoff_s(task.attempt, error.retry_after) * 1000)
        return ready_at < deadline

    async def _finish(self, task: Task, finish: Finish) -> bool:
        delivery = self._delivery(task, finish)
        done = await self.store.finish_task(task.id, task.attempt, finish, delivery)
        if done:
            log.info("task %s %s%s", task.id, finish.state.value,
                     f" ({finish.fail_code}: {finish.fail_msg})" if finish.fail_code else "",
                     extra=task_fields(task))
            self.metrics.task_finished(task.model, finish.state.value, finish.fail_code)
            self.events.task_changed(task.id)
            if delivery is not None:
                self.events.delivery_queued()
        return done

    def _delivery(self, task: Task, finish: Finish) -> NewDelivery | None:
        if task.request_type != "callback" or not task.callback_url:
            return None
        final = final_task(task, finish)
        body = json.dumps(envelope(render_status(final, self.settings.base_url)),
                          separators=(",", ":"))
        return NewDelivery(id="msg_" + secrets.token_hex(12), task_id=task.id,
                           account_id=task.account_id, url=task.callback_url, body=body,
                           created_ms=finish.now_ms)


def final_task(task: Task, finish: Finish) -> Task:
    """The task as it reads once ``finish`` is stored."""
    charge = ChargeState.after(finish.state is TaskState.SUCCEEDED)
    return dataclasses.replace(
        task, state=finish.state, stage="done", complete_ms=finish.now_ms,
        expire_ms=finish.expire_ms, results=finish.results, fail_code=finish.fail_code,
        fail_msg=finish.fail_msg, route_attempts=finish.route_attempts, charge_state=charge,
        lease_until_ms=None)
