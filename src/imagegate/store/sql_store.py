"""``SqlStore``: the ``Store`` protocol once for every SQL database, each method one transaction
of ``transactions.py``. A subclass only says how a function runs in a write transaction
(``_write``) and in a read (``_read``) of its database, and which ``Dialect`` it speaks.

The calls a busy API makes most (the submit, the status read) are batched
(``batching.py``): those that arrive together run as one transaction of the batch form of their
rule, so under load a submit costs a share of one commit, not a commit of its own.

After a write fails for the database's sake (``StoreUnavailable``: a full disk, an I/O error),
``ping`` writes and deletes a scratch row, so readiness follows the database: not ready until a
write succeeds again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from imagegate.errors import StoreUnavailable
from imagegate.idempotency import Idempotency
from imagegate.store import transactions as tx
from imagegate.store.admission import Submit
from imagegate.store.base import (
    Account,
    ApiKey,
    CancelOutcome,
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    Finish,
    FleetStats,
    LedgerEntry,
    NewDelivery,
    RateRequest,
    WebhookSecret,
)
from imagegate.store.batching import Batcher
from imagegate.store.sql import Tx
from imagegate.task_list import TaskQuery
from imagegate.tasks import RouteAttempt, Task

T = TypeVar("T")


class SqlStore:
    """Subclasses implement ``_run_write`` (``fn`` in one write transaction, committed before it
    returns), ``_run_read``, ``_is_unavailable`` (whether a database error is the database's
    trouble: a full disk, a lost connection; not a bug such as a broken constraint) and
    ``_close`` (release the database once no call is under way)."""

    _write_trouble: str | None = None  # why a write failed, until a readiness probe succeeds

    def __init__(self, *, read_batches: int = 4) -> None:
        """``read_batches``: how many batches of status reads may run at once."""
        self._submits: Batcher[Submit, str] = Batcher(self._insert_tasks)
        self._task_reads: Batcher[str, Task | None] = Batcher(self._get_tasks,
                                                              max_in_flight=read_batches)

    async def _run_write(self, fn: Callable[[Tx], T]) -> T:
        raise NotImplementedError

    async def _run_read(self, fn: Callable[[Tx], T]) -> T:
        raise NotImplementedError

    def _is_unavailable(self, exc: Exception) -> bool:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        """Answer the calls under way, then close the database."""
        for batcher in (self._submits, self._task_reads):
            await batcher.drain()
        await self._close()

    async def _write(self, fn: Callable[[Tx], T]) -> T:
        try:
            result = await self._run_write(fn)
        except Exception as exc:
            if not self._is_unavailable(exc):
                raise
            self._write_trouble = str(exc) or type(exc).__name__
            raise _unavailable("written", exc) from exc
        return result

    async def _read(self, fn: Callable[[Tx], T]) -> T:
        try:
            return await self._run_read(fn)
        except Exception as exc:
            if not self._is_unavailable(exc):
                raise
            raise _unavailable("read", exc) from exc

    async def migrate(self) -> None:
        """Apply the migrations this database lacks (``ConfigError`` when it is newer)."""
        now = int(time.time() * 1000)
        await self._write(lambda t: tx.migrate(t, now))

    async def schema_version(self) -> tuple[int, int]:
        """(the database's schema version, 0 when it has none; the newest this code knows)."""
        return await self._read(tx.schema_version)

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the database answers, and, after a failed write,
        takes a write again."""
        await self._read(lambda t: t.run("ping").one())
        if self._write_trouble is not None:
            # Only the probe clears the trouble: a write that changed nothing (a sweep that
            # found nothing to do) commits on a full disk as well.
            await self._write(tx.probe)
            self._write_trouble = None

    # Accounts, keys, ledger -------------------------------------------------------------------

    async def create_account(self, account_id: str, name: str, now_ms: int) -> Account:
        return await self._write(lambda t: tx.create_account(t, account_id, name, now_ms))

    async def get_account(self, account_id: str) -> Account | None:
        return await self._read(lambda t: tx.get_account(t, account_id))

    async def count_accounts(self) -> int:
        return await self._read(tx.count_accounts)

    async def credit(self, account_id: str, micros: int, now_ms: int, note: str) -> int:
        return await self._write(lambda t: tx.credit(t, account_id, micros, now_ms, note))

    async def ledger(self, account_id: str) -> list[LedgerEntry]:
        return await self._read(lambda t: tx.ledger(t, account_id))

    async def task_ledger(self, task_id: str) -> list[LedgerEntry]:
        return await self._read(lambda t: tx.task_ledger(t, task_id))

    async def create_key(self, key: ApiKey, key_hash: str) -> None:
        await self._write(lambda t: tx.create_key(t, key, key_hash))

    async def key_by_hash(self, key_hash: str) -> ApiKey | None:
        return await self._read(lambda t: tx.key_by_hash(t, key_hash))

    async def get_key(self, key_id: str) -> ApiKey | None:
        return await self._read(lambda t: tx.get_key(t, key_id))

    async def list_keys(self) -> list[ApiKey]:
        return await self._read(tx.list_keys)

    async def revoke_key(self, key_id: str, now_ms: int) -> bool:
        return await self._write(lambda t: tx.revoke_key(t, key_id, now_ms))

    # Tasks ------------------------------------------------------------------------------------

    async def insert_task(self, task: Task, max_unfinished: int,
                          rate: RateRequest | None = None,
                          idem: Idempotency | None = None) -> str:
        return await self._submits(Submit(task, max_unfinished, rate, idem))

    async def _insert_tasks(self, submits: Sequence[Submit]) -> list[str | Exception]:
        return await self._write(lambda t: tx.insert_tasks(t, submits))

    async def get_task(self, task_id: str) -> Task | None:
        if "\0" in task_id:  # no task has it (PostgreSQL text cannot hold a NUL), and a read
            return None  # of it would fail the whole batch of reads it joined
        return await self._task_reads(task_id)

    async def _get_tasks(self, task_ids: Sequence[str]) -> list[Task | None]:
        if len(task_ids) == 1:  # the common case when idle: by primary key, no list
            return [await self._read(lambda t: tx.get_task(t, task_ids[0]))]
        return await self._read(lambda t: tx.get_tasks(t, task_ids))

    async def list_tasks(self, query: TaskQuery) -> list[Task]:
        return await self._read(lambda t: tx.list_tasks(t, query))

    async def claim_tasks(self, worker_id: str, now_ms: int, lease_ms: int, limit: int,
                          models: Sequence[str] | None = None) -> list[Task]:
        return await self._write(
            lambda t: tx.claim_tasks(t, worker_id, now_ms, lease_ms, limit, models))

    async def queue_positions(self, task_ids: Sequence[str], now_ms: int) -> dict[str, int]:
        if not task_ids:
            return {}
        return await self._read(lambda t: tx.queue_positions(t, task_ids, now_ms))

    async def active_keys(self, key_ids: Sequence[str]) -> set[str]:
        if not key_ids:
            return set()
        return await self._read(lambda t: tx.active_keys(t, key_ids))

    async def renew_lease(self, task_id: str, attempt: int, lease_until_ms: int,
                          stage: str | None = None) -> bool:
        return await self._write(
            lambda t: tx.renew_lease(t, task_id, attempt, lease_until_ms, stage))

    async def finish_task(self, task_id: str, attempt: int, finish: Finish,
                          delivery: NewDelivery | None) -> bool:
        return await self._write(lambda t: tx.finish_task(t, task_id, attempt, finish, delivery))

    async def retry_later(self, task_id: str, attempt: int, not_before_ms: int,
                          route_attempts: tuple[RouteAttempt, ...], note: str, *,
                          lease_expired_before_ms: int | None = None) -> bool:
        return await self._write(lambda t: tx.retry_later(
            t, task_id, attempt, not_before_ms, route_attempts, note, lease_expired_before_ms))

    async def overdue_queued(self, created_before_ms: int, limit: int) -> list[Task]:
        return await self._read(lambda t: tx.overdue_queued(t, created_before_ms, limit))

    async def fail_queued(self, task_id: str, finish: Finish,
                          delivery: NewDelivery | None) -> bool:
        return await self._write(lambda t: tx.fail_queued(t, task_id, finish, delivery))

    async def cancel_task(self, task_id: str, finish: Finish,
                          delivery: NewDelivery | None) -> CancelOutcome:
        return await self._write(lambda t: tx.cancel_task(t, task_id, finish, delivery))

    async def expired_leases(self, now_ms: int, limit: int) -> list[Task]:
        return await self._read(lambda t: tx.expired_leases(t, now_ms, limit))

    async def expired_results(self, now_ms: int, limit: int) -> list[Task]:
        return await self._read(lambda t: tx.expired_results(t, now_ms, limit))

    async def mark_results_deleted(self, task_id: str) -> None:
        await self._write(lambda t: tx.mark_results_deleted(t, task_id))

    async def prune_records(self, finished_before_ms: int, limit: int) -> int:
        return await self._write(lambda t: tx.prune_records(t, finished_before_ms, limit))

    async def prune_idempotency_keys(self, created_before_ms: int, limit: int) -> int:
        return await self._write(
            lambda t: tx.prune_idempotency_keys(t, created_before_ms, limit))

    # Callback deliveries ----------------------------------------------------------------------

    async def claim_deliveries(self, now_ms: int, lease_ms: int, limit: int) -> list[Delivery]:
        return await self._write(lambda t: tx.claim_deliveries(t, now_ms, lease_ms, limit))

    async def record_delivery_attempt(self, attempt: DeliveryAttempt, state: DeliveryState,
                                      next_attempt_ms: int) -> bool:
        return await self._write(
            lambda t: tx.record_delivery_attempt(t, attempt, state, next_attempt_ms))

    async def delivery_attempts(self, delivery_id: str) -> list[DeliveryAttempt]:
        return await self._read(lambda t: tx.delivery_attempts(t, delivery_id))

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        return await self._read(lambda t: tx.get_delivery(t, delivery_id))

    async def deliveries_for_task(self, task_id: str) -> list[Delivery]:
        return await self._read(lambda t: tx.deliveries_for_task(t, task_id))

    # Webhook signing secrets ------------------------------------------------------------------

    async def webhook_secrets(self, account_id: str, now_ms: int,
                              create: str | None = None) -> list[WebhookSecret]:
        if create is None:
            return await self._read(lambda t: tx.live_secrets(t, account_id, now_ms))
        return await self._write(lambda t: tx.first_secret(t, account_id, now_ms, create))

    async def rotate_webhook_secret(self, account_id: str, secret: str, now_ms: int,
                                    overlap_ms: int) -> list[WebhookSecret]:
        return await self._write(
            lambda t: tx.rotate_webhook_secret(t, account_id, secret, now_ms, overlap_ms))

    # Metrics ----------------------------------------------------------------------------------

    async def fleet_stats(self) -> FleetStats:
        return await self._read(tx.fleet_stats)


def _unavailable(done: str, exc: Exception) -> StoreUnavailable:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return StoreUnavailable(f"the database cannot be {done} now ({reason}); try again shortly")
