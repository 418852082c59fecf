"""The store seam: every durable read and write goes through ``Store``.

Implementations: ``store.sqlite.SqliteStore`` (embedded default); a PostgreSQL adapter implements
the same protocol. The contract-test suite in ``tests/integration/test_store_contract.py`` runs
against each implementation.

Rules every implementation keeps:
- ``insert_task`` takes the submit's token of the key's shared rate bucket (when given one),
  checks the key's unfinished-task limit, holds the money and stores the task in ONE
  transaction; it raises ``TooManyRequests`` or ``PaymentRequired`` and then stores nothing.
  A submit with an idempotency key stores the key's row in that transaction too, and a repeat
  of it is answered with the first task, charged once.
- Task transitions out of ``running`` are fenced on (id, attempt, state='running'), and for the
  sweeper on the lease still being expired; a call that loses the fence changes nothing and
  returns False.
- Settle and refund are conditional on ``charge_state='held'``, so each happens at most once.
- ``cancel_task`` cancels a queued task (refunded) guarded on ``state='queued'``, so it races a
  claim safely: exactly one of them changes the task; a running task is only marked.
- ``get_task`` and ``list_tasks`` take no lock and write nothing.
- ``prune_records`` deletes only finished tasks whose results are deleted and whose callbacks
  are delivered or given up; every ledger line stays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from imagegate.idempotency import Idempotency
from imagegate.task_list import TaskQuery
from imagegate.tasks import ResultFile, RouteAttempt, Task, TaskState


@dataclass(frozen=True)
class Account:
    id: str
    name: str
    balance_micros: int
    created_ms: int


@dataclass(frozen=True)
class ApiKey:
    id: str
    account_id: str
    name: str
    prefix: str
    created_ms: int
    revoked_ms: int | None = None
    submit_rate: float | None = None  # None: the configured default
    submit_burst: int | None = None
    max_concurrent_tasks: int | None = None
    models: tuple[str, ...] | None = None  # None: every model

    @property
    def active(self) -> bool:
        return self.revoked_ms is None


@dataclass(frozen=True)
class RateRequest:
    """A submit's request for a token of its key's bucket in the database, shared by every API
    process: ``rate`` tokens per second, at most ``burst``, asked at ``now_ms``."""

    rate: float
    burst: int
    now_ms: int


@dataclass(frozen=True)
class LedgerEntry:
    id: int
    account_id: str
    kind: str
    amount_micros: int
    balance_after_micros: int
    created_ms: int
    task_id: str | None = None
    note: str = ""


@dataclass(frozen=True)
class Finish:
    """A terminal outcome for a running task."""

    state: TaskState  # SUCCEEDED, FAILED or CANCELED
    now_ms: int
    results: tuple[ResultFile, ...] = ()
    expire_ms: int | None = None
    fail_code: str | None = None
    fail_msg: str | None = None
    route_attempts: tuple[RouteAttempt, ...] = ()
    notes: tuple[str, ...] = ()
    # Set by the sweeper: finish only if the lease is still expired at this time (a late
    # heartbeat means the attempt is alive after all).
    lease_expired_before_ms: int | None = None


class CancelOutcome(StrEnum):
    """What a client's cancel did to a task: ``canceled`` (it was queued: now canceled and
    refunded), ``requested`` (it runs: the request is recorded for its worker), ``finished``
    (it had already ended: nothing changed), ``missing`` (no such task)."""

    CANCELED = "canceled"
    REQUESTED = "requested"
    FINISHED = "finished"
    MISSING = "missing"


@dataclass(frozen=True)
class NewDelivery:
    """A callback to send: the exact body is fixed now, so every retry sends the same bytes."""

    id: str  # also the webhook-id, stable across retries
    task_id: str
    account_id: str
    url: str
    body: str
    created_ms: int


class DeliveryState(StrEnum):
    """A callback delivery: pending until an attempt is answered 2xx (delivered) or the last
    scheduled attempt fails (failed: given up). An operator's redelivery may still deliver a
    failed one; nothing else leaves delivered or failed."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"

    def can_become(self, new: DeliveryState) -> bool:
        return new in _DELIVERY_MOVES[self]


_DELIVERY_MOVES = {
    DeliveryState.PENDING: frozenset(DeliveryState),
    DeliveryState.FAILED: frozenset({DeliveryState.FAILED, DeliveryState.DELIVERED}),
    DeliveryState.DELIVERED: frozenset({DeliveryState.DELIVERED}),
}


@dataclass(frozen=True)
class Delivery:
    id: str
    task_id: str
    account_id: str
    url: str
    body: str
    state: DeliveryState
    attempts: int
    next_attempt_ms: int
    created_ms: int
    last_error: str | None = None
    last_status: int | None = None


@dataclass(frozen=True)
class DeliveryAttempt:
    delivery_id: str
    attempt: int
    started_ms: int
    duration_ms: int
    status: int | None  # HTTP status, None when no answer
    error: str | None  # why it is not a delivery, None when delivered


@dataclass(frozen=True)
class WebhookSecret:
    account_id: str
    secret: str
    created_ms: int
    expires_ms: int | None = None  # set while a rotation retires it


@dataclass(frozen=True)
class FleetStats:
    """The unfinished work of the whole fleet, as the database holds it at one instant:
    per model its queued tasks, the submit time of its oldest queued one and its running tasks
    (models with none are absent); the money held for unfinished tasks; the callback
    deliveries pending and the creation time of the oldest. Times in Unix ms."""

    queued: Mapping[str, int] = field(default_factory=dict)
    oldest_queued_ms: Mapping[str, int] = field(default_factory=dict)
    running: Mapping[str, int] = field(default_factory=dict)
    held_micros: int = 0
    pending_deliveries: int = 0
    oldest_pending_ms: int | None = None


class Store(Protocol):
    async def migrate(self) -> None:
        """Apply the migrations the database lacks; ``ConfigError`` when it is newer."""
        ...

    async def schema_version(self) -> tuple[int, int]:
        """(the database's schema version, 0 when it has none; the newest this code knows)."""
        ...

    async def close(self) -> None: ...
    async def ping(self) -> None: ...

    # Accounts, keys, ledger
    async def create_account(self, account_id: str, name: str, now_ms: int) -> Account: ...
    async def get_account(self, account_id: str) -> Account | None: ...
    async def count_accounts(self) -> int: ...
    async def credit(self, account_id: str, micros: int, now_ms: int, note: str) -> int: ...
    async def ledger(self, account_id: str) -> list[LedgerEntry]: ...
    async def task_ledger(self, task_id: str) -> list[LedgerEntry]:
        """The ledger lines that name ``task_id``, oldest first (they outlive its record)."""
        ...

    async def create_key(self, key: ApiKey, key_hash: str) -> None: ...
    async def key_by_hash(self, key_hash: str) -> ApiKey | None: ...
    async def get_key(self, key_id: str) -> ApiKey | None: ...
    async def list_keys(self) -> list[ApiKey]: ...
    async def revoke_key(self, key_id: str, now_ms: int) -> bool: ...

    # Tasks
    async def insert_task(self, task: Task, max_unfinished: int,
                          rate: RateRequest | None = None,
                          idem: Idempotency | None = None) -> str:
        """Store ``task`` (the rules above); the id of the task the submit is answered with:
        ``task.id``, or, with ``idem``, the task the key stored under that idempotency key
        within ``IDEMPOTENCY_TTL_MS`` of ``task.created_ms`` for the same request (nothing is
        stored, held or counted). ``Conflict`` when that key names another request."""
        ...
    async def get_task(self, task_id: str) -> Task | None: ...
    async def list_tasks(self, query: TaskQuery) -> list[Task]:
        """At most ``query.limit`` tasks of ``query.key_id`` that match its filters, newest
        first: by (created_ms, id) descending, below ``query.upper_bound``. Read through an
        index of the key's tasks in that order, from the bound down: a page costs its size
        (and the key's tasks its filters pass over), never the table. A pruned task is simply
        not there."""
        ...

    async def claim_tasks(self, worker_id: str, now_ms: int, lease_ms: int, limit: int,
                          models: Sequence[str] | None = None) -> list[Task]: ...
    async def queue_positions(self, task_ids: Sequence[str], now_ms: int) -> dict[str, int]:
        """The queue position of each task of ``task_ids`` that is queued (the others are left
        out): 1 + how many queued tasks, of any model, a claim at ``now_ms`` would take before
        it, in the order workers claim them (``created_ms``, ties by id): those that come
        before it and are ready (``not_before_ms`` passed; a task waiting for its retry is
        counted once it is due). A task that itself waits for its retry is placed where it
        will stand when it is due. One statement for all of them, reading the queued tasks up
        to the latest of them through the index of queued tasks: its cost follows the queue
        ahead of the deepest one, never the history of finished tasks."""
        ...

    async def active_keys(self, key_ids: Sequence[str]) -> set[str]:
        """Those of ``key_ids`` that name a key that is not revoked, in one statement (the
        keys holding open streams, checked together)."""
        ...

    async def renew_lease(self, task_id: str, attempt: int, lease_until_ms: int,
                          stage: str | None = None) -> bool: ...
    async def finish_task(self, task_id: str, attempt: int, finish: Finish,
                          delivery: NewDelivery | None) -> bool: ...
    async def retry_later(self, task_id: str, attempt: int, not_before_ms: int,
                          route_attempts: tuple[RouteAttempt, ...], note: str, *,
                          lease_expired_before_ms: int | None = None) -> bool: ...
    async def overdue_queued(self, created_before_ms: int, limit: int) -> list[Task]:
        """Queued tasks submitted before ``created_before_ms``, oldest first."""
        ...

    async def fail_queued(self, task_id: str, finish: Finish,
                          delivery: NewDelivery | None) -> bool:
        """Fail a task still queued (refunded, with its callback row); False, changing
        nothing, when it is no longer queued."""
        ...

    async def cancel_task(self, task_id: str, finish: Finish,
                          delivery: NewDelivery | None) -> CancelOutcome:
        """A client's cancel, in one transaction: a queued task ends as ``finish`` says
        (CANCELED, refunded, with its callback row); a running one gets
        ``cancel_requested_ms`` (the first request's time stays); any other changes nothing."""
        ...

    async def expired_leases(self, now_ms: int, limit: int) -> list[Task]: ...
    async def expired_results(self, now_ms: int, limit: int) -> list[Task]: ...
    async def mark_results_deleted(self, task_id: str) -> None: ...
    async def prune_records(self, finished_before_ms: int, limit: int) -> int:
        """Delete the records of at most ``limit`` tasks, oldest first, that finished before
        ``finished_before_ms``, whose results are deleted and that have no callback delivery
        pending: each task with its deliveries and their attempts, in one transaction. The
        ledger is never touched. How many tasks were deleted."""
        ...

    async def prune_idempotency_keys(self, created_before_ms: int, limit: int) -> int:
        """Delete at most ``limit`` idempotency keys stored before ``created_before_ms`` (keys
        past their 24 hours, treated as unused already); how many."""
        ...

    # Callback deliveries
    async def claim_deliveries(self, now_ms: int, lease_ms: int, limit: int) -> list[Delivery]: ...
    async def record_delivery_attempt(self, attempt: DeliveryAttempt, state: DeliveryState,
                                      next_attempt_ms: int) -> bool:
        """Record attempt N; False (nothing written) unless the row has N-1 attempts."""
        ...
    async def delivery_attempts(self, delivery_id: str) -> list[DeliveryAttempt]: ...
    async def deliveries_for_task(self, task_id: str) -> list[Delivery]: ...
    async def get_delivery(self, delivery_id: str) -> Delivery | None: ...

    # Webhook signing secrets
    async def webhook_secrets(self, account_id: str, now_ms: int,
                              create: str | None = None) -> list[WebhookSecret]:
        """The account's live secrets, newest first. With ``create``, store that secret first
        when the account has none (in the same transaction)."""
        ...

    async def rotate_webhook_secret(self, account_id: str, secret: str, now_ms: int,
                                    overlap_ms: int) -> list[WebhookSecret]:
        """Add ``secret``; live secrets without an end now end ``overlap_ms`` from now."""
        ...

    # Metrics
    async def fleet_stats(self) -> FleetStats:
        """The fleet's unfinished work, read in one statement (a consistent snapshot) through
        the indexes of queued and running tasks and of pending deliveries: its cost follows
        the backlog, never the history of finished tasks."""
        ...
