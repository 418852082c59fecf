"""Every read and write of the SQL stores, written once, as functions of an open transaction.

These are the money and queue rules (store/base.py lists them): the hold and the task in one
transaction, settle or refund at most once, a ledger line for every change of a balance, a
key's unfinished-task count kept by the transactions that change it, leases, the fence on
(id, attempt, state) for every move out of ``running``. A store runs each function in one
transaction of its database (``Tx``); it adds nothing to them and takes nothing away.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from collections.abc import Sequence

from imagegate.errors import ConfigError, PaymentRequired
from imagegate.idempotency import IDEMPOTENCY_TTL_MS
from imagegate.money import MAX_BALANCE_MICROS, ChargeState, LedgerKind
from imagegate.store import rows
from imagegate.store.admission import KeyCounts, Submit, admit, answers_of, idempotent
from imagegate.store.base import (
    Account,
    ApiKey,
    CancelOutcome,
    Delivery,
    DeliveryAttempt,
    Finish,
    FleetStats,
    LedgerEntry,
    NewDelivery,
    WebhookSecret,
)
from imagegate.store.sql import Row, Tx
from imagegate.task_list import TaskQuery
from imagegate.tasks import RouteAttempt, Task, TaskState

# A probe needs room to grow, more than a submit does: a submit that failed for want of space
# leaves the log pages it did write for the next write to reuse, so a smaller probe could fit
# in them and call the database writable while submits still fail (a submit changes about ten
# pages of rows and indexes; this is 64).
PROBE_BYTES = 256 * 1024

# Schema ---------------------------------------------------------------------------------------


def migrate(tx: Tx, now_ms: int) -> list[int]:
    """Apply the dialect's migrations this database lacks; the versions applied. Raises
    ``ConfigError`` for a database whose schema is newer than this code."""
    tx.run("lock_migrations")
    tx.run("create_versions")
    done = {int(r["version"]) for r in tx.run("versions").all()}
    known = tx.dialect.latest
    if done and max(done) > known:
        raise ConfigError(f"the database has schema version {max(done)}, newer than this "
                          f"imagegate knows ({known}): upgrade imagegate, or use another "
                          "database")
    applied = []
    for version, sql in tx.dialect.migrations:
        if version not in done:
            tx.script(sql)
            tx.run("record_version", (version, now_ms))
            applied.append(version)
    return applied


def schema_version(tx: Tx) -> tuple[int, int]:
    """(the database's schema version, 0 when it has none; the newest this code knows)."""
    row = tx.run("has_versions").one()
    if row is None or not int(row["n"]):
        return 0, tx.dialect.latest
    versions = [int(r["version"]) for r in tx.run("versions").all()]
    return max(versions, default=0), tx.dialect.latest


def probe(tx: Tx) -> None:
    """Write a row bigger than a page, of bytes no page compression shrinks, kept until the
    next probe replaces it: fails when the database cannot grow. (A row written and deleted in
    one transaction is no probe: SQLite need not log the pages of a row it freed again.)"""
    tx.run("write_probe", (secrets.token_hex(PROBE_BYTES // 2),))


# Accounts, keys, ledger -------------------------------------------------------------------------


def create_account(tx: Tx, account_id: str, name: str, now_ms: int) -> Account:
    tx.run("insert_account", (account_id, name, now_ms))
    return Account(account_id, name, 0, now_ms)


def get_account(tx: Tx, account_id: str) -> Account | None:
    row = tx.run("account", (account_id,)).one()
    return rows.account(row) if row else None


def count_accounts(tx: Tx) -> int:
    row = tx.run("count_accounts").one()
    return int(row["n"]) if row else 0


def credit(tx: Tx, account_id: str, micros: int, now_ms: int, note: str) -> int:
    """Add ``micros`` (negative to debit); the new balance. The balance stays within 0 and
    MAX_BALANCE_MICROS, else ``PaymentRequired`` and nothing changes."""
    changed = tx.run("credit_within", (micros, account_id, micros, MAX_BALANCE_MICROS))
    if changed.rowcount != 1:
        raise PaymentRequired("the account does not exist, or its balance would go below zero "
                              "or above 1,000,000,000,000 USD")
    return _ledger(tx, account_id, LedgerKind.CREDIT, micros, now_ms, None, note)


def ledger(tx: Tx, account_id: str) -> list[LedgerEntry]:
    return [rows.ledger_entry(r) for r in tx.run("ledger", (account_id,)).all()]


def task_ledger(tx: Tx, task_id: str) -> list[LedgerEntry]:
    return [rows.ledger_entry(r) for r in tx.run("task_ledger", (task_id,)).all()]


def create_key(tx: Tx, key: ApiKey, key_hash: str) -> None:
    tx.run("insert_key", (key.id, key.account_id, key_hash, key.name, key.prefix,
                          key.created_ms, key.submit_rate, key.submit_burst,
                          key.max_concurrent_tasks, rows.dump_models(key.models)))


def key_by_hash(tx: Tx, key_hash: str) -> ApiKey | None:
    row = tx.run("key_by_hash", (key_hash,)).one()
    return rows.api_key(row) if row else None


def get_key(tx: Tx, key_id: str) -> ApiKey | None:
    row = tx.run("key", (key_id,)).one()
    return rows.api_key(row) if row else None


def list_keys(tx: Tx) -> list[ApiKey]:
    return [rows.api_key(r) for r in tx.run("keys").all()]


def revoke_key(tx: Tx, key_id: str, now_ms: int) -> bool:
    return tx.run("revoke_key", (now_ms, key_id)).rowcount == 1


def _ledger(tx: Tx, account_id: str, kind: str, amount: int, now_ms: int,
            task_id: str | None, note: str) -> int:
    """Append the ledger line of a change just made to the balance; the balance after it."""
    row = tx.run("balance", (account_id,)).one()
    assert row is not None, account_id
    balance = int(row["balance_micros"])
    tx.run("insert_ledger", (account_id, kind, amount, balance, task_id, note, now_ms))
    return balance


# Tasks ------------------------------------------------------------------------------------------


def insert_tasks(tx: Tx, submits: Sequence[Submit]) -> list[str | Exception]:
    """Store each task that ``admit`` admits, with its hold, its ledger line, its key's
    unfinished-task slot and its idempotency key's row, and the keys' buckets as the batch
    leaves them; for each submit, the id of the task it is answered with or the error that
    refused it (a refused one stores nothing). A submit whose idempotency key names a request
    already stored (``idempotent``) is answered with that task and stores, holds and counts
    nothing. The accounts, then the keys, are locked in id order while this runs."""
    # Both locks are asked for before either answer is read, and nothing written is read back
    # until the end: a database that pipelines statements (PostgreSQL) answers a whole batch in
    # three round trips. The idempotency keys are read after the key locks are granted (in
    # PostgreSQL a statement reads what was committed when it starts): a submit of the same
    # key in another transaction has committed its row by then, or waits for this one.
    accounts = tx.run("lock_balances", (tx.array(sorted({s.task.account_id for s in submits})),))
    keys = tx.run("lock_keys", (tx.array(sorted({s.task.key_id for s in submits})),))
    named = [s for s in submits if s.idem is not None]
    found = tx.run("idempotency_keys", (
        tx.array(sorted({s.task.key_id for s in named})),
        tx.array(sorted({s.idem.key for s in named if s.idem is not None})))) if named else None
    balances = {r["id"]: int(r["balance_micros"]) for r in accounts.all()}
    before = {r["id"]: _key_counts(r) for r in keys.all()}
    answers = idempotent(submits, [] if found is None else found.all())
    fresh = [s for s, answer in zip(submits, answers, strict=True) if answer is None]
    admission = admit(fresh, before, balances)
    held = [(account_id, tx.run("hold", (micros, account_id, micros)))
            for account_id, micros in sorted(admission.held.items())]
    tx.many("update_key_counts", [
        (after.unfinished - before[key_id].unfinished,
         None if after.tokens == float("inf") else after.tokens,
         after.updated_ms or None, key_id)
        for key_id, after in sorted(admission.keys.items()) if after != before[key_id]])
    tx.many("insert_task", [rows.task_params(task) for task, _ in admission.lines])
    tx.many("insert_ledger", [(task.account_id, LedgerKind.HOLD, -task.price_micros, balance,
                               task.id, "", task.created_ms)
                              for task, balance in admission.lines])
    tx.many("insert_idempotency_key", [
        (s.task.key_id, s.idem.key, s.idem.request_hash, s.task.id, s.task.created_ms,
         s.task.created_ms - IDEMPOTENCY_TTL_MS)
        for s, outcome in zip(fresh, admission.outcomes, strict=True)
        if s.idem is not None and outcome is None])
    for account_id, hold in held:
        assert hold.rowcount == 1, account_id  # the balance was read under the lock
    return answers_of(submits, answers, iter(admission.outcomes))


def _key_counts(row: Row) -> KeyCounts:
    tokens, updated = row["rate_tokens"], row["rate_updated_ms"]
    return KeyCounts(int(row["unfinished_tasks"]),
                     float("inf") if tokens is None else float(tokens),
                     0 if updated is None else int(updated))


def get_task(tx: Tx, task_id: str) -> Task | None:
    row = tx.run("task", (task_id,)).one()
    return rows.task(row) if row else None


def get_tasks(tx: Tx, task_ids: Sequence[str]) -> list[Task | None]:
    """The tasks of ``task_ids``, in their order (None for an id no task has)."""
    found = {r["id"]: r for r in tx.run("tasks_by_ids", (tx.array(sorted(set(task_ids))),)).all()}
    return [rows.task(found[i]) if i in found else None for i in task_ids]


def list_tasks(tx: Tx, query: TaskQuery) -> list[Task]:
    """The key's tasks that ``query`` selects, newest first (``Store.list_tasks``)."""
    before_ms, before_id = query.upper_bound
    found = tx.run("tasks_of_key", {
        "key": query.key_id, "before_ms": before_ms, "before_id": before_id,
        "after_ms": query.created_after_ms, "states": tx.array([s.value for s in query.states]),
        "model": query.model, "limit": query.limit}).all()
    return [rows.task(r) for r in found]


def claim_tasks(tx: Tx, worker_id: str, now_ms: int, lease_ms: int, limit: int,
                models: Sequence[str] | None) -> list[Task]:
    """Up to ``limit`` ready queued tasks, oldest first, now running under this worker's lease
    (their attempt counted). Concurrent claims never take the same task."""
    found = tx.run("claim_tasks", {
        "lease_until": now_ms + lease_ms, "worker": worker_id, "now": now_ms,
        "models": None if models is None else tx.array(models), "limit": limit}).all()
    return sorted((rows.task(r) for r in found), key=lambda t: (t.created_ms, t.id))


def queue_positions(tx: Tx, task_ids: Sequence[str], now_ms: int) -> dict[str, int]:
    """The queue position of each of ``task_ids`` that is queued (``Store.queue_positions``)."""
    found = tx.run("queue_positions", {"ids": tx.array(task_ids), "now": now_ms}).all()
    return {r["id"]: int(r["position"]) for r in found}


def active_keys(tx: Tx, key_ids: Sequence[str]) -> set[str]:
    """Those of ``key_ids`` that name a key not revoked (``Store.active_keys``)."""
    return {r["id"] for r in tx.run("active_keys", {"ids": tx.array(key_ids)}).all()}


def renew_lease(tx: Tx, task_id: str, attempt: int, lease_until_ms: int,
                stage: str | None) -> bool:
    return tx.run("renew_lease", (lease_until_ms, stage, task_id, attempt)).rowcount == 1


def finish_task(tx: Tx, task_id: str, attempt: int, finish: Finish,
                delivery: NewDelivery | None) -> bool:
    """The fenced move to a terminal state, with the money and the callback row in the same
    transaction. False, changing nothing, when the fence does not hold."""
    assert TaskState.RUNNING.can_become(finish.state), finish.state
    fence = finish.lease_expired_before_ms
    row = tx.run("finish_task", (
        finish.state.value, finish.now_ms, finish.expire_ms,
        json.dumps([dataclasses.asdict(r) for r in finish.results]), finish.fail_code,
        finish.fail_msg, rows.dump_attempts(finish.route_attempts),
        json.dumps(list(finish.notes)), task_id, attempt, fence, fence)).one()
    if row is None:
        return False
    _ended(tx, task_id, row, finish, delivery)
    return True


def overdue_queued(tx: Tx, created_before_ms: int, limit: int) -> list[Task]:
    """Queued tasks submitted before ``created_before_ms``, oldest first."""
    return [rows.task(r) for r in tx.run("overdue_queued", (created_before_ms, limit)).all()]


def fail_queued(tx: Tx, task_id: str, finish: Finish, delivery: NewDelivery | None) -> bool:
    """Fail a task that is still queued (no worker took it in time), refunded, with its
    callback row. False, changing nothing, when it is no longer queued."""
    assert finish.state is TaskState.FAILED and TaskState.QUEUED.can_become(finish.state)
    row = tx.run("fail_queued", (finish.now_ms, finish.expire_ms, finish.fail_code,
                                 finish.fail_msg, json.dumps(list(finish.notes)),
                                 task_id)).one()
    if row is None:
        return False
    _ended(tx, task_id, row, finish, delivery)
    return True


def cancel_task(tx: Tx, task_id: str, finish: Finish,
                delivery: NewDelivery | None) -> CancelOutcome:
    """A client's cancel (``Store.cancel_task``). Each step is guarded on the state it
    changes: against a claim committed meanwhile, the queued step changes nothing and the
    running step marks the task the claim took."""
    assert finish.state is TaskState.CANCELED and TaskState.QUEUED.can_become(finish.state)
    row = tx.run("cancel_queued", (finish.now_ms, finish.expire_ms, finish.fail_code,
                                   finish.fail_msg, finish.now_ms, task_id)).one()
    if row is not None:
        _ended(tx, task_id, row, finish, delivery)
        return CancelOutcome.CANCELED
    if tx.run("request_cancel", (finish.now_ms, task_id)).rowcount == 1:
        return CancelOutcome.REQUESTED
    found = tx.run("task", (task_id,)).one()
    return CancelOutcome.MISSING if found is None else CancelOutcome.FINISHED


def _ended(tx: Tx, task_id: str, row: Row, finish: Finish, delivery: NewDelivery | None) -> None:
    """What every end of a task does in its transaction: the money, the key's unfinished
    count, the callback row."""
    _move_money(tx, task_id, str(row["account_id"]), int(row["price_micros"]), finish)
    tx.run("free_unfinished_slot", (row["key_id"],))
    if delivery is not None:
        tx.run("insert_delivery", rows.delivery_params(delivery))


def _move_money(tx: Tx, task_id: str, account_id: str, price: int, finish: Finish) -> None:
    """Settle or refund the task's hold; the guard on ``held`` makes each happen once."""
    new_state = ChargeState.after(finish.state is TaskState.SUCCEEDED)
    assert ChargeState.HELD.can_become(new_state)
    if tx.run("change_charge", (new_state, task_id, ChargeState.HELD)).rowcount != 1:
        return
    if new_state is ChargeState.SETTLED:
        _ledger(tx, account_id, LedgerKind.SETTLE, 0, finish.now_ms, task_id, "")
        return
    tx.run("give_back", (price, account_id))
    _ledger(tx, account_id, LedgerKind.REFUND, price, finish.now_ms, task_id,
            finish.fail_code or "")


def retry_later(tx: Tx, task_id: str, attempt: int, not_before_ms: int,
                route_attempts: tuple[RouteAttempt, ...], note: str,
                lease_expired_before_ms: int | None) -> bool:
    """The fenced move back to ``queued``, ready at ``not_before_ms``, with ``note`` added."""
    assert TaskState.RUNNING.can_become(TaskState.QUEUED)
    row = tx.run("task", (task_id,)).one()
    if row is None:
        return False
    notes = [*json.loads(row["notes_json"]), note]
    fence = lease_expired_before_ms
    return tx.run("requeue", (not_before_ms, rows.dump_attempts(route_attempts),
                              json.dumps(notes), task_id, attempt, fence, fence)).rowcount == 1


def expired_leases(tx: Tx, now_ms: int, limit: int) -> list[Task]:
    return [rows.task(r) for r in tx.run("expired_leases", (now_ms, limit)).all()]


def expired_results(tx: Tx, now_ms: int, limit: int) -> list[Task]:
    return [rows.task(r) for r in tx.run("expired_results", (now_ms, limit)).all()]


def mark_results_deleted(tx: Tx, task_id: str) -> None:
    tx.run("results_deleted", (task_id,))


def prune_records(tx: Tx, finished_before_ms: int, limit: int) -> int:
    """Delete up to ``limit`` task records, oldest first, of tasks that finished before
    ``finished_before_ms``, whose results are deleted and whose callbacks are no longer
    pending, with their deliveries and delivery attempts; how many tasks. The ledger keeps
    every line: a line names its task by id alone. Concurrent prunes take different tasks."""
    found = tx.run("prunable_tasks", (finished_before_ms, limit)).all()
    if not found:
        return 0
    ids = tx.array([str(r["id"]) for r in found])
    tx.run("prune_delivery_attempts", (ids,))
    tx.run("prune_deliveries", (ids,))
    return tx.run("prune_tasks", (ids,)).rowcount


def prune_idempotency_keys(tx: Tx, created_before_ms: int, limit: int) -> int:
    """Delete up to ``limit`` idempotency keys stored before ``created_before_ms``, oldest
    first; how many."""
    return tx.run("prune_idempotency_keys", (created_before_ms, limit)).rowcount


# Callback deliveries ----------------------------------------------------------------------------


def claim_deliveries(tx: Tx, now_ms: int, lease_ms: int, limit: int) -> list[Delivery]:
    found = tx.run("claim_deliveries", {"lease_until": now_ms + lease_ms, "now": now_ms,
                                        "limit": limit}).all()
    return [rows.delivery(r) for r in found]


def record_delivery_attempt(tx: Tx, attempt: DeliveryAttempt, state: str,
                            next_attempt_ms: int) -> bool:
    """Record attempt N; False (nothing written) unless the row has N-1 attempts."""
    changed = tx.run("record_delivery", (state, attempt.attempt, next_attempt_ms, attempt.status,
                                         attempt.error, attempt.delivery_id,
                                         attempt.attempt - 1))
    if changed.rowcount != 1:
        return False
    tx.run("insert_delivery_attempt", (attempt.delivery_id, attempt.attempt, attempt.started_ms,
                                       attempt.duration_ms, attempt.status, attempt.error))
    return True


def delivery_attempts(tx: Tx, delivery_id: str) -> list[DeliveryAttempt]:
    return [rows.delivery_attempt(r)
            for r in tx.run("delivery_attempts", (delivery_id,)).all()]


def get_delivery(tx: Tx, delivery_id: str) -> Delivery | None:
    row = tx.run("delivery", (delivery_id,)).one()
    return rows.delivery(row) if row else None


def deliveries_for_task(tx: Tx, task_id: str) -> list[Delivery]:
    return [rows.delivery(r) for r in tx.run("deliveries_of_task", (task_id,)).all()]


# Webhook signing secrets ------------------------------------------------------------------------


def live_secrets(tx: Tx, account_id: str, now_ms: int) -> list[WebhookSecret]:
    return [rows.webhook_secret(r)
            for r in tx.run("live_secrets", (account_id, now_ms)).all()]


def first_secret(tx: Tx, account_id: str, now_ms: int, secret: str) -> list[WebhookSecret]:
    """The live secrets, storing ``secret`` first when the account has none."""
    found = live_secrets(tx, account_id, now_ms)
    if found:
        return found
    tx.run("insert_secret", (account_id, secret, now_ms))
    return live_secrets(tx, account_id, now_ms)


def rotate_webhook_secret(tx: Tx, account_id: str, secret: str, now_ms: int,
                          overlap_ms: int) -> list[WebhookSecret]:
    tx.run("retire_secrets", (now_ms + overlap_ms, account_id, now_ms + overlap_ms))
    tx.run("insert_secret", (account_id, secret, now_ms))
    return live_secrets(tx, account_id, now_ms)


# Metrics ----------------------------------------------------------------------------------------


def fleet_stats(tx: Tx) -> FleetStats:
    """The fleet's unfinished work (``FleetStats``), from one statement."""
    queued: dict[str, int] = {}
    oldest: dict[str, int] = {}
    running: dict[str, int] = {}
    held, pending, oldest_pending = 0, 0, None
    for row in tx.run("fleet_stats").all():
        kind, count = row["kind"], int(row["n"])
        if kind == "delivery":
            pending = count
            oldest_pending = None if row["oldest_ms"] is None else int(row["oldest_ms"])
            continue
        held += int(row["held"] or 0)
        if kind == "queued":
            queued[row["model"]] = count
            oldest[row["model"]] = int(row["oldest_ms"])
        else:
            running[row["model"]] = count
    return FleetStats(queued, oldest, running, held, pending, oldest_pending)
