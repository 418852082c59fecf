"""The store contract (store/base.py): every implementation must pass this file unchanged.

Runs against each real store: SQLite on a file, the in-memory store, and PostgreSQL in a fresh
database per test (``tests/postgres_db.py``). Money rules checked throughout: the sum of an
account's ledger amounts is its balance, settle and refund happen at most once, and a refused
submit stores nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from postgres_db import fresh_database

from imagegate.contract import SubmitInput
from imagegate.errors import Conflict, PaymentRequired, TooManyRequests, Unauthorized
from imagegate.idempotency import IDEMPOTENCY_TTL_MS, Idempotency
from imagegate.money import MAX_BALANCE_MICROS, ChargeState, LedgerKind
from imagegate.store.base import (
    ApiKey,
    CancelOutcome,
    DeliveryAttempt,
    DeliveryState,
    Finish,
    FleetStats,
    NewDelivery,
    RateRequest,
    Store,
)
from imagegate.store.memory import MemoryStore
from imagegate.store.postgres import PostgresStore
from imagegate.store.sqlite import SqliteStore
from imagegate.task_list import WIRE_STATES, TaskQuery
from imagegate.tasks import (
    ResultFile,
    RouteAttempt,
    Task,
    TaskState,
    envelope,
    new_task_id,
)

T = TypeVar("T")

NOW = 1_700_000_000_000
PRICE = 50_000
ACCOUNT = "acct_1"
KEY = "key_1"
LEASE_MS = 30_000
LOTS = 100_000_000  # $100


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@contextmanager
def open_store(kind: str, tmp_path: Path) -> Iterator[Store]:
    if kind == "sqlite":
        yield SqliteStore(tmp_path / "imagegate.db")
    elif kind == "memory":
        yield MemoryStore()
    elif kind == "postgres":
        with fresh_database() as url:
            yield PostgresStore(url, pool_size=4)
    else:
        raise AssertionError(f"no store of kind {kind}")


@pytest.fixture(params=["sqlite", "memory", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with open_store(request.param, tmp_path) as s:
        run(s.migrate())
        try:
            yield s
        finally:
            run(s.close())


# Builders and checks --------------------------------------------------------------------------


def make_input(**changes: Any) -> SubmitInput:
    base = SubmitInput(mode="text-to-image", prompt="a fox in watercolor style",
                       aspect_ratio="1:1", resolution="1k", output_format="png")
    return dataclasses.replace(base, **changes)


def make_task(*, created_ms: int = NOW, price: int = PRICE, account_id: str = ACCOUNT,
              key_id: str = KEY, **changes: Any) -> Task:
    task = Task(id=new_task_id(), account_id=account_id, key_id=key_id, model="nano-banana-2",
                input=make_input(), state=TaskState.QUEUED, created_ms=created_ms,
                price_micros=price, charge_state=ChargeState.HELD,
                result_token=secrets.token_urlsafe(16))
    return dataclasses.replace(task, **changes)


def succeeded(now_ms: int = NOW + 5_000, **changes: Any) -> Finish:
    result = ResultFile(key="r/0.png", name="0.png", content_type="image/png", size=1234,
                        width=1024, height=1024)
    finish = Finish(TaskState.SUCCEEDED, now_ms, results=(result,),
                    expire_ms=now_ms + 15 * 86_400_000,
                    route_attempts=(RouteAttempt(1, "sandbox", "success", 900),))
    return dataclasses.replace(finish, **changes)


def failed(now_ms: int = NOW + 5_000, code: str = "SensitiveContent") -> Finish:
    return Finish(TaskState.FAILED, now_ms, fail_code=code, fail_msg="refused as asked",
                  route_attempts=(RouteAttempt(1, "sandbox", code, 900),))


def new_delivery(task: Task, now_ms: int = NOW + 5_000, delivery_id: str = "msg_1",
                 ) -> NewDelivery:
    return NewDelivery(id=delivery_id, task_id=task.id, account_id=task.account_id,
                       url="https://hooks.example.com/x",
                       body=json.dumps(envelope({"taskId": task.id, "state": "success"})),
                       created_ms=now_ms)


async def open_account(store: Store, micros: int, account_id: str = ACCOUNT, *,
                       keys: tuple[str, ...] | None = None) -> None:
    """An account with ``micros`` of credit and the API keys tasks are submitted with (by
    default KEY and key_2 for ACCOUNT, none for other accounts)."""
    await store.create_account(account_id, f"account {account_id}", NOW)
    if keys is None:
        keys = (KEY, "key_2") if account_id == ACCOUNT else ()
    for key_id in keys:
        key = ApiKey(id=key_id, account_id=account_id, name=key_id, prefix=key_id,
                     created_ms=NOW)
        await store.create_key(key, f"hash-of-{key_id}-{account_id}")
    if micros:
        await store.credit(account_id, micros, NOW, "opening credit")


async def balance(store: Store, account_id: str = ACCOUNT) -> int:
    account = await store.get_account(account_id)
    assert account is not None
    return account.balance_micros


async def assert_ledger_explains_balance(store: Store, account_id: str = ACCOUNT) -> None:
    entries = await store.ledger(account_id)
    assert sum(e.amount_micros for e in entries) == await balance(store, account_id)
    running = 0
    for entry in entries:
        running += entry.amount_micros
        assert entry.balance_after_micros == running, entry
        assert entry.account_id == account_id


def refusals(tasks: list[Task], answers: list[str | BaseException]) -> list[object]:
    """Each submit's error, None for one stored (answered with its own task's id)."""
    for task, answer in zip(tasks, answers, strict=True):
        assert isinstance(answer, BaseException) or answer == task.id
    return [a if isinstance(a, BaseException) else None for a in answers]


async def submitted(store: Store, *tasks: Task, max_unfinished: int = 100) -> None:
    for task in tasks:
        assert await store.insert_task(task, max_unfinished) == task.id


async def claim_one(store: Store, now_ms: int = NOW, lease_ms: int = LEASE_MS) -> Task:
    claimed = await store.claim_tasks("worker-1", now_ms, lease_ms, 1)
    assert len(claimed) == 1
    return claimed[0]


async def running_task(store: Store, credit: int = LOTS, **changes: Any) -> Task:
    """An account with ``credit``, and one task of it submitted and claimed (attempt 1)."""
    await open_account(store, credit)
    await submitted(store, make_task(**changes))
    return await claim_one(store)


# Migrations -----------------------------------------------------------------------------------


def test_migrate_twice_is_harmless(store: Store) -> None:
    async def scenario() -> None:
        await store.migrate()
        await store.ping()
        assert await store.count_accounts() == 0

    run(scenario())


# Accounts, credit, ledger ---------------------------------------------------------------------


def test_new_account_starts_at_zero_with_an_empty_ledger(store: Store) -> None:
    async def scenario() -> None:
        created = await store.create_account(ACCOUNT, "Ada", NOW)
        assert (created.id, created.name, created.balance_micros, created.created_ms) == (
            ACCOUNT, "Ada", 0, NOW)
        assert await store.get_account(ACCOUNT) == created
        assert await store.ledger(ACCOUNT) == []
        assert await store.count_accounts() == 1
        assert await store.get_account("nobody") is None

    run(scenario())


def test_credit_adds_to_the_balance_and_writes_a_ledger_line(store: Store) -> None:
    async def scenario() -> None:
        await store.create_account(ACCOUNT, "Ada", NOW)
        assert await store.credit(ACCOUNT, 10_000_000, NOW + 1, "welcome") == 10_000_000
        assert await store.credit(ACCOUNT, 2_500_000, NOW + 2, "top-up") == 12_500_000
        assert await balance(store) == 12_500_000
        entries = await store.ledger(ACCOUNT)
        assert [(e.kind, e.amount_micros, e.balance_after_micros, e.note, e.created_ms)
                for e in entries] == [
            (LedgerKind.CREDIT, 10_000_000, 10_000_000, "welcome", NOW + 1),
            (LedgerKind.CREDIT, 2_500_000, 12_500_000, "top-up", NOW + 2)]
        assert all(e.task_id is None for e in entries)
        await assert_ledger_explains_balance(store)

    run(scenario())


def test_negative_credit_may_not_take_the_balance_below_zero(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, 1_000_000)
        assert await store.credit(ACCOUNT, -400_000, NOW, "correction") == 600_000
        with pytest.raises(PaymentRequired):
            await store.credit(ACCOUNT, -600_001, NOW, "too much")
        assert await balance(store) == 600_000
        assert len(await store.ledger(ACCOUNT)) == 2
        await assert_ledger_explains_balance(store)

    run(scenario())


def test_credit_may_not_take_the_balance_past_the_largest(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, MAX_BALANCE_MICROS - 1)
        with pytest.raises(PaymentRequired, match="above 1,000,000,000,000 USD"):
            await store.credit(ACCOUNT, 2, NOW, "one micro-dollar too many")
        assert await store.credit(ACCOUNT, 1, NOW, "exactly the largest") == MAX_BALANCE_MICROS
        await assert_ledger_explains_balance(store)

    run(scenario())


def test_credit_to_an_unknown_account_is_refused(store: Store) -> None:
    async def scenario() -> None:
        with pytest.raises(PaymentRequired):
            await store.credit("nobody", 1_000_000, NOW, "x")
        assert await store.get_account("nobody") is None

    run(scenario())


def test_ledgers_are_per_account(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, 1_000_000, "a")
        await open_account(store, 2_000_000, "b")
        assert [e.amount_micros for e in await store.ledger("a")] == [1_000_000]
        assert [e.amount_micros for e in await store.ledger("b")] == [2_000_000]
        assert await store.count_accounts() == 2

    run(scenario())


# API keys -------------------------------------------------------------------------------------


def make_key(key_id: str = "k1", created_ms: int = NOW, **changes: Any) -> ApiKey:
    key = ApiKey(id=key_id, account_id=ACCOUNT, name=f"key {key_id}", prefix=f"ig_{key_id}",
                 created_ms=created_ms)
    return dataclasses.replace(key, **changes)


async def take(store: Store, rate: float, burst: int, now_ms: int, key_id: str = KEY) -> float:
    """Submit a task with a token of the key's shared bucket: 0 when it was stored, else the
    wait its rate refusal says (and then nothing was stored)."""
    task = make_task(key_id=key_id)
    try:
        await store.insert_task(task, 1_000, RateRequest(rate, burst, now_ms))
    except TooManyRequests as refused:
        assert "rate limit" in refused.error
        assert await store.get_task(task.id) is None
        return refused.retry_after
    return 0.0


def test_a_keys_submit_bucket_refills_at_its_rate_up_to_its_burst(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, LOTS)
        takes = [await take(store, 1.0, 2, NOW) for _ in range(3)]
        assert takes[:2] == [0.0, 0.0] and takes[2] == pytest.approx(1.0)
        assert await take(store, 1.0, 2, NOW + 500) == pytest.approx(0.5)
        assert await take(store, 1.0, 2, NOW + 1000) == 0.0
        assert await take(store, 1.0, 2, NOW, key_id="key_2") == 0.0  # its own bucket
        # A long pause refills to the burst, no further.
        later = NOW + 3_600_000
        assert [await take(store, 1.0, 2, later) for _ in range(3)][2] > 0
        # Only the tasks that took a token were stored and held.
        assert await balance(store) == LOTS - 6 * PRICE
        await assert_ledger_explains_balance(store)

    run(scenario())


def test_concurrent_takes_of_one_bucket_get_exactly_its_burst(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, LOTS)
        waits = await asyncio.gather(*(take(store, 2.0, 5, NOW) for _ in range(12)))
        assert waits.count(0.0) == 5
        assert all(w == pytest.approx(0.5) for w in waits if w)
        # Half a second later one token is back, and only one.
        later = await asyncio.gather(*(take(store, 2.0, 5, NOW + 500) for _ in range(3)))
        assert sorted(later) == [0.0, pytest.approx(0.5), pytest.approx(0.5)]
        assert await balance(store) == LOTS - 6 * PRICE

    run(scenario())


def test_a_clock_behind_the_buckets_never_takes_tokens_back(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, LOTS)
        assert await take(store, 1.0, 1, NOW) == 0.0
        # Another process whose clock is a second behind: no token, and no debt either.
        assert await take(store, 1.0, 1, NOW - 1000) == pytest.approx(1.0)
        assert await take(store, 1.0, 1, NOW + 1000) == 0.0

    run(scenario())


def test_a_token_is_spent_even_when_the_task_is_then_refused(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, 0)  # nothing to pay with
        with pytest.raises(PaymentRequired):
            await store.insert_task(make_task(), 10, RateRequest(1.0, 1, NOW))
        assert await take(store, 1.0, 1, NOW) == pytest.approx(1.0)

    run(scenario())


def test_key_is_found_by_its_hash_and_id(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, 0)
        key = make_key("k1", submit_rate=2.5, submit_burst=5, max_concurrent_tasks=3,
                       models=("nano-banana-2", "other"))
        await store.create_key(key, "hash-1")
        assert await store.key_by_hash("hash-1") == key
        assert await store.get_key("k1") == key
        assert await store.key_by_hash("hash-2") is None
        assert await store.get_key("k2") is None

    run(scenario())


def test_key_limits_left_unset_read_back_as_none(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, 0, keys=())
        await store.create_key(make_key("k1"), "hash-1")
        found = await store.get_key("k1")
        assert found is not None
        assert found.active
        assert (found.submit_rate, found.submit_burst, found.max_concurrent_tasks,
                found.models) == (None, None, None, None)

    run(scenario())


def test_list_keys_returns_every_key_oldest_first(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, 0, keys=())
        await store.create_key(make_key("kb", NOW + 2), "hash-b")
        await store.create_key(make_key("ka", NOW + 1), "hash-a")
        await store.create_key(make_key("kc", NOW + 3), "hash-c")
        assert [k.id for k in await store.list_keys()] == ["ka", "kb", "kc"]

    run(scenario())


def test_revoke_key_happens_once_and_the_key_stays_findable_as_inactive(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, 0, keys=())
        await store.create_key(make_key("k1"), "hash-1")
        assert await store.revoke_key("k1", NOW + 10) is True
        assert await store.revoke_key("k1", NOW + 20) is False
        assert await store.revoke_key("nope", NOW) is False
        found = await store.key_by_hash("hash-1")
        assert found is not None
        assert found.revoked_ms == NOW + 10
        assert not found.active

    run(scenario())


def test_active_keys_names_those_not_revoked_among_the_ids_asked(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, 0, keys=())
        for key_id in ("k1", "k2", "k3"):
            await store.create_key(make_key(key_id), f"hash-{key_id}")
        await store.revoke_key("k2", NOW + 10)
        assert await store.active_keys(["k1", "k2", "nope"]) == {"k1"}
        assert await store.active_keys(["k3"]) == {"k3"}
        assert await store.active_keys([]) == set()

    run(scenario())


# Submit: hold and store in one transaction ----------------------------------------------------


def test_insert_task_holds_the_price_and_writes_a_hold_line(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, 1_000_000)
        task = make_task(price=120_000)
        await store.insert_task(task, 10)
        assert await balance(store) == 880_000
        hold = (await store.ledger(ACCOUNT))[-1]
        assert (hold.kind, hold.amount_micros, hold.balance_after_micros, hold.task_id,
                hold.created_ms) == (LedgerKind.HOLD, -120_000, 880_000, task.id, NOW)
        stored = await store.get_task(task.id)
        assert stored is not None
        assert stored.state is TaskState.QUEUED
        assert stored.charge_state == ChargeState.HELD
        await assert_ledger_explains_balance(store)

    run(scenario())


def test_balance_exactly_the_price_pays_for_the_task(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, PRICE)
        await store.insert_task(make_task(), 10)
        assert await balance(store) == 0
        await assert_ledger_explains_balance(store)

    run(scenario())


def test_insufficient_balance_raises_payment_required_and_stores_nothing(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, PRICE - 1)
        before = await store.ledger(ACCOUNT)
        task = make_task()
        with pytest.raises(PaymentRequired) as caught:
            await store.insert_task(task, 10)
        assert caught.value.status == 402
        assert await store.get_task(task.id) is None
        assert await store.ledger(ACCOUNT) == before
        assert await balance(store) == PRICE - 1

    run(scenario())


def test_task_of_an_unknown_account_is_refused_and_not_stored(store: Store) -> None:
    async def scenario() -> None:
        task = make_task(account_id="nobody", key_id="nobody's key")
        with pytest.raises((PaymentRequired, Unauthorized)):
            await store.insert_task(task, 10)
        assert await store.get_task(task.id) is None

    run(scenario())


def test_unfinished_task_limit_raises_too_many_requests_and_stores_nothing(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, LOTS)
        await submitted(store, make_task(), make_task(), max_unfinished=2)
        before_ledger = await store.ledger(ACCOUNT)
        before_balance = await balance(store)
        task = make_task()
        with pytest.raises(TooManyRequests) as caught:
            await store.insert_task(task, 2)
        assert caught.value.status == 429
        assert caught.value.retry_after > 0
        assert await store.get_task(task.id) is None
        assert await store.ledger(ACCOUNT) == before_ledger
        assert await balance(store) == before_balance

    run(scenario())


def test_unfinished_task_limit_counts_running_tasks_per_key_and_frees_on_finish(
        store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, LOTS)
        await submitted(store, make_task(), max_unfinished=1)
        claimed = await claim_one(store)  # running still counts
        with pytest.raises(TooManyRequests):
            await store.insert_task(make_task(), 1)
        await store.insert_task(make_task(key_id="key_2"), 1)  # another key has its own limit
        assert await store.finish_task(claimed.id, claimed.attempt, succeeded(), None)
        await store.insert_task(make_task(), 1)
        await assert_ledger_explains_balance(store)

    run(scenario())


def test_concurrent_submits_never_overdraw_the_balance(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, 17 * PRICE)
        tasks = [make_task(created_ms=NOW + i) for i in range(50)]
        outcomes = refusals(tasks, await asyncio.gather(
            *(store.insert_task(t, 1000) for t in tasks), return_exceptions=True))
        refused = [o for o in outcomes if o is not None]
        assert all(isinstance(o, PaymentRequired) for o in refused), refused
        assert len(refused) == 33
        stored = [await store.get_task(t.id) for t in tasks]
        assert sum(s is not None for s in stored) == 17
        for task, outcome, found in zip(tasks, outcomes, stored, strict=True):
            assert (found is not None) == (outcome is None), task.id
        assert await balance(store) == 0
        holds = [e for e in await store.ledger(ACCOUNT) if e.kind == LedgerKind.HOLD]
        assert len(holds) == 17
        assert {e.task_id for e in holds} == {t.id for t, o in zip(tasks, outcomes,
                                                                    strict=True) if o is None}
        await assert_ledger_explains_balance(store)

    run(scenario())


def test_concurrent_submits_never_exceed_the_unfinished_task_limit(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, LOTS)
        tasks = [make_task() for _ in range(20)]
        outcomes = refusals(tasks, await asyncio.gather(
            *(store.insert_task(t, 5) for t in tasks), return_exceptions=True))
        refused = [o for o in outcomes if o is not None]
        assert all(isinstance(o, TooManyRequests) for o in refused), refused
        assert len(refused) == 15
        assert await balance(store) == LOTS - 5 * PRICE
        await assert_ledger_explains_balance(store)

    run(scenario())


def test_concurrent_submits_of_several_accounts_are_held_each_to_its_own(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, 3 * PRICE)
        await open_account(store, 10 * PRICE, "acct_2", keys=("key_b",))
        tasks = [make_task(key_id=KEY if i % 2 else "key_b",
                           account_id=ACCOUNT if i % 2 else "acct_2") for i in range(16)]
        outcomes = refusals(tasks, await asyncio.gather(
            *(store.insert_task(t, 1000) for t in tasks), return_exceptions=True))
        by_account: dict[str, list[object]] = {}
        for task, outcome in zip(tasks, outcomes, strict=True):
            by_account.setdefault(task.account_id, []).append(outcome)
        assert by_account[ACCOUNT].count(None) == 3
        assert all(isinstance(o, PaymentRequired) for o in by_account[ACCOUNT] if o)
        assert by_account["acct_2"] == [None] * 8
        assert await balance(store) == 0
        assert await balance(store, "acct_2") == 2 * PRICE
        await assert_ledger_explains_balance(store)
        await assert_ledger_explains_balance(store, "acct_2")
        stored = await asyncio.gather(*(store.get_task(t.id) for t in tasks))
        assert [s is not None for s in stored] == [o is None for o in outcomes]
        assert all(s is None or s.id == t.id for s, t in zip(stored, tasks, strict=True))

    run(scenario())


def test_a_submit_for_a_key_that_does_not_exist_is_unauthorized(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, LOTS)
        tasks = [make_task(key_id="gone"), make_task()]
        outcomes = refusals(tasks, await asyncio.gather(
            *(store.insert_task(t, 10) for t in tasks), return_exceptions=True))
        assert isinstance(outcomes[0], Unauthorized) and outcomes[1] is None
        assert await balance(store) == LOTS - PRICE

    run(scenario())


# Claiming -------------------------------------------------------------------------------------


def test_claim_takes_the_oldest_first_and_starts_an_attempt_under_a_lease(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, LOTS)
        middle, newest, oldest = (make_task(created_ms=NOW + d) for d in (20, 30, 10))
        await submitted(store, middle, newest, oldest)
        claimed = await store.claim_tasks("worker-1", NOW + 100, LEASE_MS, 2)
        assert [t.id for t in claimed] == [oldest.id, middle.id]
        for task in claimed:
            assert task.state is TaskState.RUNNING
            assert task.stage == "running"
            assert task.attempt == 1
            assert task.lease_until_ms == NOW + 100 + LEASE_MS
            assert task.started_ms == NOW + 100
            assert await store.get_task(task.id) == task
        rest = await store.claim_tasks("worker-2", NOW + 200, LEASE_MS, 10)
        assert [t.id for t in rest] == [newest.id]
        assert await store.claim_tasks("worker-3", NOW + 300, LEASE_MS, 10) == []

    run(scenario())


def test_queue_positions_count_what_claims_take_first_of_every_model(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, LOTS)
        retried = make_task(created_ms=NOW)
        await submitted(store, retried)
        await claim_one(store, NOW + 1)
        assert await store.retry_later(retried.id, 1, NOW + 10_000, (), "wait")
        first, second = make_task(created_ms=NOW + 10), make_task(created_ms=NOW + 20)
        tied = sorted([make_task(created_ms=NOW + 30), make_task(created_ms=NOW + 30)],
                      key=lambda t: t.id)
        other_model = make_task(created_ms=NOW + 5, model="another-model")
        later = make_task(created_ms=NOW + 40)
        await submitted(store, later, *tied, second, other_model, first)
        ids = [retried.id, first.id, second.id, *(t.id for t in tied), other_model.id,
               later.id]
        # Before its retry is due the retried task is passed over (it stands first once due).
        assert await store.queue_positions(ids, NOW + 100) == {
            retried.id: 1, other_model.id: 1, first.id: 2, second.id: 3, tied[0].id: 4,
            tied[1].id: 5, later.id: 6}
        assert await store.queue_positions([later.id], NOW + 100) == {later.id: 6}
        assert await store.queue_positions([later.id], NOW + 10_000) == {later.id: 7}
        # From then on, position 1 is the task the next claim takes, whatever its model.
        for left in range(len(ids), 0, -1):
            positions = await store.queue_positions(ids, NOW + 10_000)
            assert sorted(positions.values()) == list(range(1, left + 1))
            claimed = await claim_one(store, NOW + 10_000)
            assert positions[claimed.id] == 1
        assert await store.queue_positions(ids, NOW + 10_000) == {}
        assert await store.queue_positions([first.id, "no-such-task"], NOW) == {}
        assert await store.queue_positions([], NOW) == {}

    run(scenario())


def test_claim_respects_not_before(store: Store) -> None:
    async def scenario() -> None:
        task = await running_task(store)
        assert await store.retry_later(task.id, 1, NOW + 10_000, (), "wait")
        assert await store.claim_tasks("w", NOW + 9_999, LEASE_MS, 10) == []
        again = await store.claim_tasks("w", NOW + 10_000, LEASE_MS, 10)
        assert [t.id for t in again] == [task.id]
        assert again[0].attempt == 2

    run(scenario())


def test_claim_can_be_limited_to_models(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, LOTS)
        banana, other = make_task(), make_task(model="other-model", created_ms=NOW - 1)
        await submitted(store, banana, other)
        claimed = await store.claim_tasks("w", NOW, LEASE_MS, 10, models=["nano-banana-2"])
        assert [t.id for t in claimed] == [banana.id]
        claimed = await store.claim_tasks("w", NOW, LEASE_MS, 10, models=["other-model"])
        assert [t.id for t in claimed] == [other.id]

    run(scenario())


def test_concurrent_claims_never_take_the_same_task_twice(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, LOTS)
        tasks = [make_task(created_ms=NOW + i) for i in range(12)]
        await submitted(store, *tasks)
        batches = await asyncio.gather(*(store.claim_tasks(f"w{i}", NOW, LEASE_MS, 3)
                                         for i in range(6)))
        ids = [t.id for batch in batches for t in batch]
        assert len(ids) == len(set(ids)) == 12
        assert all(len(batch) <= 3 for batch in batches)
        assert all(t.attempt == 1 for batch in batches for t in batch)

    run(scenario())


def test_renew_lease_is_fenced_on_the_attempt(store: Store) -> None:
    async def scenario() -> None:
        task = await running_task(store)
        assert await store.renew_lease(task.id, 1, NOW + 99_000, stage="storing")
        renewed = await store.get_task(task.id)
        assert renewed is not None
        assert (renewed.lease_until_ms, renewed.stage) == (NOW + 99_000, "storing")
        assert await store.renew_lease(task.id, 1, NOW + 100_000)  # stage kept when None
        renewed = await store.get_task(task.id)
        assert renewed is not None
        assert (renewed.lease_until_ms, renewed.stage) == (NOW + 100_000, "storing")
        assert not await store.renew_lease(task.id, 2, NOW + 200_000)
        assert not await store.renew_lease("no-such-task", 1, NOW + 200_000)
        assert await store.finish_task(task.id, 1, succeeded(), None)
        assert not await store.renew_lease(task.id, 1, NOW + 300_000)

    run(scenario())


# Finishing: money moves exactly once ----------------------------------------------------------


def test_success_settles_exactly_once(store: Store) -> None:
    async def scenario() -> None:
        task = await running_task(store)
        held = await balance(store)
        assert held == LOTS - PRICE
        assert await store.finish_task(task.id, 1, succeeded(), None) is True
        after = await store.get_task(task.id)
        assert after is not None
        assert after.state is TaskState.SUCCEEDED
        assert after.charge_state == ChargeState.SETTLED
        assert await balance(store) == held  # the hold became the charge
        ledger = await store.ledger(ACCOUNT)
        assert (ledger[-1].kind, ledger[-1].amount_micros, ledger[-1].task_id) == (
            LedgerKind.SETTLE, 0, task.id)
        assert await store.finish_task(task.id, 1, succeeded(NOW + 6_000), None) is False
        assert await store.finish_task(task.id, 1, failed(), None) is False
        assert await store.ledger(ACCOUNT) == ledger
        assert await balance(store) == held
        assert await store.get_task(task.id) == after
        await assert_ledger_explains_balance(store)

    run(scenario())


def test_failure_refunds_exactly_once(store: Store) -> None:
    async def scenario() -> None:
        task = await running_task(store)
        assert await store.finish_task(task.id, 1, failed(code="Timeout"), None) is True
        after = await store.get_task(task.id)
        assert after is not None
        assert (after.state, after.charge_state, after.fail_code, after.fail_msg) == (
            TaskState.FAILED, ChargeState.REFUNDED, "Timeout", "refused as asked")
        assert await balance(store) == LOTS
        ledger = await store.ledger(ACCOUNT)
        refunds = [e for e in ledger if e.kind == LedgerKind.REFUND]
        assert [(e.amount_micros, e.task_id) for e in refunds] == [(PRICE, task.id)]
        assert await store.finish_task(task.id, 1, failed(), None) is False
        assert await store.finish_task(task.id, 1, succeeded(), None) is False
        assert await store.ledger(ACCOUNT) == ledger
        assert await balance(store) == LOTS
        await assert_ledger_explains_balance(store)

    run(scenario())


def test_concurrent_finishes_of_one_attempt_move_money_once(store: Store) -> None:
    async def scenario() -> None:
        task = await running_task(store)
        outcomes = await asyncio.gather(
            *(store.finish_task(task.id, 1, failed(NOW + i), None) for i in range(8)))
        assert sorted(outcomes) == [False] * 7 + [True]
        assert await balance(store) == LOTS
        assert len([e for e in await store.ledger(ACCOUNT) if e.kind == LedgerKind.REFUND]) == 1
        await assert_ledger_explains_balance(store)

    run(scenario())


def test_finish_of_a_task_that_is_not_running_changes_nothing(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, LOTS)
        task = make_task()
        await submitted(store, task)
        assert await store.finish_task(task.id, 0, succeeded(), None) is False
        assert await store.finish_task(task.id, 1, failed(), new_delivery(task)) is False
        stored = await store.get_task(task.id)
        assert stored is not None
        assert stored.state is TaskState.QUEUED
        assert await store.deliveries_for_task(task.id) == []
        assert await store.finish_task("no-such-task", 1, succeeded(), None) is False
        await assert_ledger_explains_balance(store)

    run(scenario())


def test_stale_attempt_cannot_finish_after_a_retry_and_reclaim(store: Store) -> None:
    async def scenario() -> None:
        task = await running_task(store)
        assert await store.retry_later(task.id, 1, NOW + 1_000, (), "attempt 1: Timeout")
        second = await claim_one(store, NOW + 2_000)
        assert second.attempt == 2
        assert second.started_ms == NOW  # the first start is kept
        held = await balance(store)
        ledger = await store.ledger(ACCOUNT)
        assert await store.finish_task(task.id, 1, succeeded(), new_delivery(task)) is False
        assert await store.finish_task(task.id, 1, failed(), None) is False
        assert not await store.retry_later(task.id, 1, NOW + 9_000, (), "zombie")
        assert not await store.renew_lease(task.id, 1, NOW + 9_000)
        assert await balance(store) == held
        assert await store.ledger(ACCOUNT) == ledger
        assert await store.deliveries_for_task(task.id) == []
        assert await store.get_task(task.id) == second
        assert await store.finish_task(task.id, 2, succeeded(), None) is True
        await assert_ledger_explains_balance(store)

    run(scenario())


def test_finish_inserts_the_delivery_row_in_the_same_step(store: Store) -> None:
    async def scenario() -> None:
        task = await running_task(store, request_type="callback",
                                  callback_url="https://hooks.example.com/x")
        delivery = new_delivery(task, NOW + 5_000)
        assert await store.finish_task(task.id, 1, succeeded(NOW + 5_000), delivery)
        (found,) = await store.deliveries_for_task(task.id)
        assert (found.id, found.task_id, found.account_id, found.url, found.body) == (
            delivery.id, task.id, ACCOUNT, delivery.url, delivery.body)
        assert (found.state, found.attempts, found.next_attempt_ms, found.created_ms) == (
            "pending", 0, NOW + 5_000, NOW + 5_000)
        assert (found.last_error, found.last_status) == (None, None)
        assert await store.delivery_attempts(delivery.id) == []

    run(scenario())


# Retry, leases, expiry ------------------------------------------------------------------------


def test_retry_later_requeues_with_not_before_and_keeps_the_record(store: Store) -> None:
    async def scenario() -> None:
        task = await running_task(store, notes=())
        attempts = (RouteAttempt(1, "sandbox", "Timeout", 1500, "slow"),)
        assert await store.retry_later(task.id, 1, NOW + 4_000, attempts, "attempt 1: Timeout")
        after = await store.get_task(task.id)
        assert after == dataclasses.replace(
            task, state=TaskState.QUEUED, stage="retrying", lease_until_ms=None,
            not_before_ms=NOW + 4_000, route_attempts=attempts, notes=("attempt 1: Timeout",))
        assert await balance(store) == LOTS - PRICE  # still held
        second = await claim_one(store, NOW + 4_000)
        assert await store.retry_later(task.id, second.attempt, NOW + 9_000, attempts, "again")
        again = await store.get_task(task.id)
        assert again is not None
        assert again.notes == ("attempt 1: Timeout", "again")

    run(scenario())


def test_expired_leases_lists_running_tasks_whose_lease_ran_out(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, LOTS)
        short, long, queued = make_task(created_ms=NOW), make_task(created_ms=NOW + 1), \
            make_task(created_ms=NOW + 2)
        await submitted(store, short, long, queued)
        await store.claim_tasks("w", NOW, 1_000, 1)
        await store.claim_tasks("w", NOW, 5_000, 1)
        assert await store.expired_leases(NOW + 1_000, 10) == []
        assert [t.id for t in await store.expired_leases(NOW + 1_001, 10)] == [short.id]
        both = await store.expired_leases(NOW + 60_000, 10)
        assert [t.id for t in both] == [short.id, long.id]
        assert [t.id for t in await store.expired_leases(NOW + 60_000, 1)] == [short.id]
        assert await store.renew_lease(short.id, 1, NOW + 120_000)
        assert [t.id for t in await store.expired_leases(NOW + 60_000, 10)] == [long.id]

    run(scenario())


def test_expired_results_until_marked_deleted(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, LOTS)
        ok, bad, waiting = make_task(), make_task(created_ms=NOW + 1), \
            make_task(created_ms=NOW + 2)
        await submitted(store, ok, bad, waiting)
        await store.claim_tasks("w", NOW, LEASE_MS, 2)
        assert await store.finish_task(ok.id, 1, succeeded(NOW, expire_ms=NOW + 10_000), None)
        assert await store.finish_task(bad.id, 1, failed(NOW), None)
        assert await store.expired_results(NOW + 10_000, 10) == []
        assert [t.id for t in await store.expired_results(NOW + 10_001, 10)] == [ok.id]
        await store.mark_results_deleted(ok.id)
        assert await store.expired_results(NOW + 10**9, 10) == []
        still = await store.get_task(ok.id)
        assert still is not None
        assert still.state is TaskState.SUCCEEDED

    run(scenario())


# Callback deliveries --------------------------------------------------------------------------


async def finished_callback_task(store: Store, deliveries: int = 1) -> list[str]:
    """Finished callback tasks, each with its delivery row; returns the delivery ids."""
    await open_account(store, LOTS)
    ids = []
    for i in range(deliveries):
        task = make_task(created_ms=NOW + i, request_type="callback",
                         callback_url="https://hooks.example.com/x")
        await submitted(store, task)
        claimed = await claim_one(store)
        delivery = new_delivery(claimed, NOW + 5_000 + i, f"msg_{i}")
        assert await store.finish_task(claimed.id, 1, succeeded(NOW + 5_000 + i), delivery)
        ids.append(delivery.id)
    return ids


def test_claim_deliveries_leases_due_rows(store: Store) -> None:
    async def scenario() -> None:
        (delivery_id,) = await finished_callback_task(store)
        assert await store.claim_deliveries(NOW + 4_999, 120_000, 10) == []  # not due yet
        (claimed,) = await store.claim_deliveries(NOW + 5_000, 120_000, 10)
        assert claimed.id == delivery_id
        assert claimed.attempts == 0
        assert await store.claim_deliveries(NOW + 5_000, 120_000, 10) == []  # leased
        assert await store.claim_deliveries(NOW + 125_000, 120_000, 10) == []  # lease ends at
        again = await store.claim_deliveries(NOW + 125_001, 120_000, 10)
        assert [d.id for d in again] == [delivery_id]

    run(scenario())


def test_concurrent_delivery_claims_never_take_a_row_twice(store: Store) -> None:
    async def scenario() -> None:
        ids = await finished_callback_task(store, deliveries=5)
        batches = await asyncio.gather(*(store.claim_deliveries(NOW + 10_000, 120_000, 2)
                                         for _ in range(5)))
        claimed = [d.id for batch in batches for d in batch]
        assert sorted(claimed) == sorted(ids)
        assert all(len(batch) <= 2 for batch in batches)

    run(scenario())


def test_record_delivery_attempt_updates_the_row_and_appends_the_attempt(store: Store) -> None:
    async def scenario() -> None:
        (delivery_id,) = await finished_callback_task(store)
        (leased,) = await store.claim_deliveries(NOW + 5_000, 120_000, 10)
        task_id = leased.task_id
        first = DeliveryAttempt(delivery_id, 1, NOW + 5_000, 35, 500, "HTTP 500")
        await store.record_delivery_attempt(first, DeliveryState.PENDING, NOW + 65_000)
        (row,) = [d for d in await store.deliveries_for_task(task_id) if d.id == delivery_id]
        assert (row.state, row.attempts, row.next_attempt_ms, row.last_status,
                row.last_error) == ("pending", 1, NOW + 65_000, 500, "HTTP 500")
        assert await store.claim_deliveries(NOW + 64_999, 120_000, 10) == []
        (again,) = await store.claim_deliveries(NOW + 65_000, 120_000, 10)  # lease released
        assert again.attempts == 1
        second = DeliveryAttempt(delivery_id, 2, NOW + 65_000, 12, 204, None)
        await store.record_delivery_attempt(second, "delivered", NOW + 65_000)
        assert await store.delivery_attempts(delivery_id) == [first, second]
        (row,) = await store.deliveries_for_task(task_id)
        assert (row.state, row.attempts, row.last_status, row.last_error) == (
            "delivered", 2, 204, None)
        assert await store.claim_deliveries(NOW + 10**9, 120_000, 10) == []

    run(scenario())


def test_given_up_delivery_is_never_claimed_again(store: Store) -> None:
    async def scenario() -> None:
        (delivery_id,) = await finished_callback_task(store)
        await store.claim_deliveries(NOW + 5_000, 120_000, 10)
        attempt = DeliveryAttempt(delivery_id, 1, NOW + 5_000, 30_000, None, "no answer")
        await store.record_delivery_attempt(attempt, "failed", NOW + 5_000)
        assert await store.claim_deliveries(NOW + 10**9, 120_000, 10) == []
        assert await store.delivery_attempts(delivery_id) == [attempt]

    run(scenario())


# Record retention -----------------------------------------------------------------------------

DAY_MS = 86_400_000


async def ended(store: Store, finish: Finish, *, callback: str | None = None,
                results_deleted: bool = True) -> Task:
    """A task of ACCOUNT submitted, claimed and ended with ``finish`` (with its callback row,
    delivery id ``callback``, when given), its results deleted unless told otherwise."""
    task = make_task(request_type="callback" if callback else "async",
                     callback_url="https://hooks.example.com/x" if callback else None)
    await submitted(store, task)
    claimed = await claim_one(store)
    assert claimed.id == task.id
    delivery = new_delivery(claimed, finish.now_ms, callback) if callback else None
    assert await store.finish_task(task.id, 1, finish, delivery)
    if results_deleted:
        await store.mark_results_deleted(task.id)
    return task


async def answer_delivery(store: Store, delivery_id: str, state: DeliveryState) -> None:
    """Record the delivery's next attempt: delivered, or failed for good."""
    before = await store.get_delivery(delivery_id)
    assert before is not None
    attempt = DeliveryAttempt(delivery_id, before.attempts + 1, NOW + 6_000, 20,
                              204 if state is DeliveryState.DELIVERED else 500,
                              None if state is DeliveryState.DELIVERED else "HTTP 500")
    assert await store.record_delivery_attempt(attempt, state, NOW + 6_000)


def test_prune_deletes_old_finished_records_with_their_deliveries(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, LOTS)
        ok = await ended(store, succeeded(NOW + 5_000), callback="msg_ok")
        refused = await ended(store, failed(NOW + 6_000), callback="msg_refused")
        await answer_delivery(store, "msg_ok", DeliveryState.DELIVERED)
        await answer_delivery(store, "msg_refused", DeliveryState.FAILED)  # given up
        ledger = await store.ledger(ACCOUNT)
        assert await store.prune_records(NOW + 5_000, 10) == 0  # none ended before then
        assert await store.prune_records(NOW + DAY_MS, 10) == 2
        for task, delivery_id in ((ok, "msg_ok"), (refused, "msg_refused")):
            assert await store.get_task(task.id) is None
            assert await store.deliveries_for_task(task.id) == []
            assert await store.get_delivery(delivery_id) is None
            assert await store.delivery_attempts(delivery_id) == []
        # The money history is whole: every line, still naming its task.
        assert await store.ledger(ACCOUNT) == ledger
        assert [e.kind for e in await store.task_ledger(ok.id)] == [LedgerKind.HOLD,
                                                                     LedgerKind.SETTLE]
        assert [e.kind for e in await store.task_ledger(refused.id)] == [LedgerKind.HOLD,
                                                                          LedgerKind.REFUND]
        assert await store.task_ledger("0" * 32) == []
        assert await balance(store) == LOTS - PRICE
        await assert_ledger_explains_balance(store)
        assert await store.prune_records(NOW + DAY_MS, 10) == 0
        # Pruning frees no slot twice: the key's unfinished-task count is as it was.
        await submitted(store, make_task(), max_unfinished=1)
        with pytest.raises(TooManyRequests):
            await store.insert_task(make_task(), 1)

    run(scenario())


def test_prune_spares_unfinished_tasks_live_results_and_pending_callbacks(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, LOTS)
        live = await ended(store, succeeded(NOW + 5_000), results_deleted=False)
        waiting = await ended(store, succeeded(NOW + 5_000), callback="msg_waiting")
        recent = await ended(store, failed(NOW + 2 * DAY_MS))
        old = await ended(store, failed(NOW + 5_000))
        running = make_task()
        await submitted(store, running)
        await claim_one(store)
        queued = make_task()
        await submitted(store, queued)
        assert await store.prune_records(NOW + DAY_MS, 100) == 1
        assert await store.get_task(old.id) is None
        for task in (live, waiting, recent, running, queued):
            assert await store.get_task(task.id) is not None, task.id
        (pending,) = await store.deliveries_for_task(waiting.id)
        assert pending.state is DeliveryState.PENDING
        # Once its callback is delivered, the task's record may go too; nothing else may.
        await answer_delivery(store, "msg_waiting", DeliveryState.DELIVERED)
        assert await store.prune_records(NOW + 10**12, 100) == 2
        assert await store.get_task(waiting.id) is None
        assert await store.get_task(recent.id) is None
        for task in (live, running, queued):
            assert await store.get_task(task.id) is not None, task.id
        await assert_ledger_explains_balance(store)

    run(scenario())


def test_prune_takes_at_most_its_limit_oldest_first(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, LOTS)
        tasks = [await ended(store, succeeded(NOW + 5_000 - i)) for i in range(5)]
        oldest_first = list(reversed(tasks))
        assert await store.prune_records(NOW + DAY_MS, 2) == 2
        remaining = [t for t in oldest_first if await store.get_task(t.id) is not None]
        assert remaining == oldest_first[2:]
        assert [await store.prune_records(NOW + DAY_MS, 2) for _ in range(3)] == [2, 1, 0]
        await assert_ledger_explains_balance(store)

    run(scenario())


def test_concurrent_prunes_delete_each_record_once(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, LOTS)
        tasks = [await ended(store, succeeded(NOW + 5_000 + i), callback=f"msg_{i}")
                 for i in range(7)]
        for i in range(7):
            await answer_delivery(store, f"msg_{i}", DeliveryState.DELIVERED)
        counts = await asyncio.gather(*(store.prune_records(NOW + DAY_MS, 3)
                                        for _ in range(4)))
        assert sum(counts) == 7 and max(counts) <= 3
        assert [await store.get_task(t.id) for t in tasks] == [None] * 7
        await assert_ledger_explains_balance(store)

    run(scenario())


# Fleet stats (metrics) --------------------------------------------------------------------------


def test_fleet_stats_of_an_empty_database_are_zero(store: Store) -> None:
    assert run(store.fleet_stats()) == FleetStats()


def test_fleet_stats_count_the_unfinished_work_and_the_money_it_holds(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, LOTS)
        done = make_task(created_ms=NOW, request_type="callback",
                         callback_url="https://hooks.example.com/x")
        running = make_task(created_ms=NOW + 1, model="nano-banana-pro", price=70_000)
        failing = make_task(created_ms=NOW + 2, price=20_000)
        queued = [make_task(created_ms=NOW + 10, price=30_000),
                  make_task(created_ms=NOW + 20, price=40_000),
                  make_task(created_ms=NOW + 30, model="nano-banana-pro", price=90_000)]
        await submitted(store, done, running, failing)
        claimed = await store.claim_tasks("w", NOW + 3, LEASE_MS, 3)
        by_id = {t.id: t for t in claimed}
        assert await store.finish_task(done.id, 1, succeeded(NOW + 4), new_delivery(
            by_id[done.id], NOW + 4, "msg_pending"))
        assert await store.finish_task(failing.id, 1, failed(NOW + 5), None)
        await submitted(store, *queued)
        stats = await store.fleet_stats()
        assert stats == FleetStats(
            queued={"nano-banana-2": 2, "nano-banana-pro": 1},
            oldest_queued_ms={"nano-banana-2": NOW + 10, "nano-banana-pro": NOW + 30},
            running={"nano-banana-pro": 1},
            held_micros=30_000 + 40_000 + 90_000 + 70_000,  # settled and refunded ones not
            pending_deliveries=1, oldest_pending_ms=NOW + 4)
        await store.claim_deliveries(NOW + 5_000, 120_000, 10)
        attempt = DeliveryAttempt("msg_pending", 1, NOW + 5_000, 5, 204, None)
        assert await store.record_delivery_attempt(attempt, DeliveryState.DELIVERED, NOW)
        after = await store.fleet_stats()
        assert (after.pending_deliveries, after.oldest_pending_ms) == (0, None)

    run(scenario())


def test_fleet_stats_follow_a_retry_back_to_the_queue(store: Store) -> None:
    async def scenario() -> None:
        task = await running_task(store, created_ms=NOW + 7)
        assert (await store.fleet_stats()).running == {"nano-banana-2": 1}
        assert await store.retry_later(task.id, 1, NOW + 60_000, (), "later")
        stats = await store.fleet_stats()
        assert (stats.queued, stats.oldest_queued_ms, stats.running, stats.held_micros) == (
            {"nano-banana-2": 1}, {"nano-banana-2": NOW + 7}, {}, PRICE)

    run(scenario())



# Round trip -----------------------------------------------------------------------------------


def test_get_task_round_trips_every_field(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, LOTS)
        task = make_task(
            price=4 * 120_000,
            input=make_input(
                mode="image-to-image",
                prompt='\U0001F98A a fox, "quoted", ünïcödé, \\ back\\slash\nnew line',
                aspect_ratio="auto", resolution="4k", output_format="jpg",
                image_urls=("https://a.example/1.png", "data:image/png;base64,iVBORw0KGgo="),
                google_search=True, seed=2**63 - 1, num_images=4),
            request_type="callback", callback_url="https://hooks.example.com/x?y=1",
            provider="official", source="my-app/1.0")
        await store.insert_task(task, 10)
        assert await store.get_task(task.id) == task

        claimed = await claim_one(store, NOW + 100)
        running = dataclasses.replace(task, state=TaskState.RUNNING, stage="running",
                                      attempt=1, lease_until_ms=NOW + 100 + LEASE_MS,
                                      started_ms=NOW + 100)
        assert claimed == running
        assert await store.get_task(task.id) == running

        results = tuple(ResultFile(key=f"{task.id}/{i}.jpg", name=f"{i}.jpg",
                                   content_type="image/jpeg", size=1000 + i, width=4096,
                                   height=4096) for i in range(4))
        attempts = (RouteAttempt(1, "gemini", "RateLimited", 120, "429"),
                    RouteAttempt(1, "sandbox", "success", 900, ""))
        finish = Finish(TaskState.SUCCEEDED, NOW + 9_000, results=results,
                        expire_ms=NOW + 9_000 + 15 * 86_400_000, route_attempts=attempts,
                        notes=("resized from 1024x1024", "failed over to sandbox"))
        assert await store.finish_task(task.id, 1, finish, None)
        assert await store.get_task(task.id) == dataclasses.replace(
            running, state=TaskState.SUCCEEDED, stage="done", lease_until_ms=None,
            complete_ms=NOW + 9_000, expire_ms=finish.expire_ms, results=results,
            route_attempts=attempts, notes=finish.notes, charge_state=ChargeState.SETTLED)

    run(scenario())


def test_get_task_round_trips_a_failed_task(store: Store) -> None:
    async def scenario() -> None:
        task = await running_task(store)
        finish = failed(NOW + 3_000, code="Unknown error")
        assert await store.finish_task(task.id, 1, finish, None)
        assert await store.get_task(task.id) == dataclasses.replace(
            task, state=TaskState.FAILED, stage="done", lease_until_ms=None,
            complete_ms=NOW + 3_000, fail_code="Unknown error", fail_msg="refused as asked",
            route_attempts=finish.route_attempts, charge_state=ChargeState.REFUNDED)

    run(scenario())


def test_get_task_of_an_unknown_id_is_none(store: Store) -> None:
    assert run(store.get_task("0" * 32)) is None


# Listing a key's tasks ----------------------------------------------------------------------------


async def listed(store: Store, key_id: str = KEY, **query: Any) -> list[str]:
    return [t.id for t in await store.list_tasks(TaskQuery(key_id, **query))]


def newest_first(tasks: list[Task]) -> list[str]:
    return [t.id for t in sorted(tasks, key=lambda t: (t.created_ms, t.id), reverse=True)]


def test_list_tasks_gives_the_keys_own_tasks_newest_first(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, LOTS)
        await open_account(store, LOTS, "acct_2", keys=("key_3",))
        mine = [make_task(created_ms=NOW + i // 2) for i in range(7)]  # pairs share a ms
        same_account = make_task(key_id="key_2", created_ms=NOW + 1)
        other_account = make_task(account_id="acct_2", key_id="key_3", created_ms=NOW + 1)
        await submitted(store, *mine, same_account, other_account)
        order = newest_first(mine)
        assert await listed(store) == order  # ties broken by id, descending
        assert await listed(store, limit=3) == order[:3]
        assert await listed(store, "key_2") == [same_account.id]
        assert await listed(store, "key_3") == [other_account.id]
        assert await listed(store, "no-such-key") == []
        # Each is the whole record, as get_task reads it.
        for task in await store.list_tasks(TaskQuery(KEY, limit=2)):
            assert task == await store.get_task(task.id)

    run(scenario())


def test_list_tasks_pages_neither_repeat_nor_skip_while_tasks_arrive(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, LOTS)
        first = [make_task(created_ms=NOW + i // 3) for i in range(20)]  # threes share a ms
        await submitted(store, *first)
        pages: list[list[str]] = []
        cursor = None
        newer: list[Task] = []
        while True:
            page = await store.list_tasks(TaskQuery(KEY, limit=6, cursor=cursor))
            pages.append([t.id for t in page])
            if len(page) < 6:
                break
            cursor = (page[-1].created_ms, page[-1].id)
            # Submits between two pages: newer tasks, one at the page's own last ms.
            arriving = [make_task(created_ms=NOW + 100 + len(newer)),
                        make_task(created_ms=cursor[0])]
            await submitted(store, *arriving)
            newer += arriving
        seen = [task_id for page in pages for task_id in page]
        assert len(seen) == len(set(seen))  # no task twice
        assert [i for i in seen if i not in {t.id for t in newer}] == newest_first(first)
        # A task that arrived newer than a page's end is on a fresh first page, not later ones.
        above = [t for t in newer if t.created_ms >= NOW + 100]
        assert not {t.id for t in above} & set(seen)
        assert await listed(store, limit=len(above)) == newest_first(above)

    run(scenario())


def test_list_tasks_filters_by_wire_state(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, LOTS)
        ok = await ended(store, succeeded(), results_deleted=False)
        refused = await ended(store, failed())
        running = make_task(created_ms=NOW + 1)
        await submitted(store, running)
        await claim_one(store)
        queued = make_task(created_ms=NOW + 2)
        await submitted(store, queued)
        processing = [queued.id, running.id]
        assert await listed(store, states=WIRE_STATES["processing"]) == processing
        assert await listed(store, states=WIRE_STATES["success"]) == [ok.id]
        assert await listed(store, states=WIRE_STATES["failed"]) == [refused.id]
        both = (*WIRE_STATES["success"], *WIRE_STATES["failed"])
        assert set(await listed(store, states=both)) == {ok.id, refused.id}
        assert len(await listed(store)) == 4

    run(scenario())


def test_list_tasks_filters_by_model_and_creation_time(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, LOTS)
        tasks = [make_task(created_ms=NOW + i, model=("nano-banana-2", "nano-banana-pro")[i % 2])
                 for i in range(6)]
        await submitted(store, *tasks)
        ids = [t.id for t in tasks]
        assert await listed(store, model="nano-banana-pro") == [ids[5], ids[3], ids[1]]
        assert await listed(store, model="not-a-model") == []
        # createdAfter is inclusive, createdBefore exclusive: windows tile.
        window = await listed(store, created_after_ms=NOW + 1, created_before_ms=NOW + 4)
        assert window == [ids[3], ids[2], ids[1]]
        assert await listed(store, created_after_ms=NOW + 4) == [ids[5], ids[4]]
        assert await listed(store, created_before_ms=NOW + 1) == [ids[0]]
        assert await listed(store, model="nano-banana-2", created_after_ms=NOW + 1,
                            created_before_ms=NOW + 4) == [ids[2]]
        # With a cursor, whichever of it and createdBefore is lower bounds the page.
        at_4 = (NOW + 4, ids[4])
        assert await listed(store, cursor=at_4, created_before_ms=NOW + 3) == ids[2::-1]
        assert await listed(store, cursor=at_4, created_before_ms=NOW + 5) == ids[3::-1]
        assert await listed(store, cursor=(NOW + 2, ids[2]), model="nano-banana-pro") == [ids[1]]

    run(scenario())


def test_list_tasks_leaves_out_pruned_records(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, LOTS)
        old = await ended(store, succeeded(NOW + 5_000))
        kept = await ended(store, failed(NOW + 2 * DAY_MS), results_deleted=False)
        assert set(await listed(store)) == {old.id, kept.id}
        assert await store.prune_records(NOW + DAY_MS, 10) == 1
        assert await listed(store) == [kept.id]

    run(scenario())



def test_delivery_attempt_from_a_dispatcher_that_lost_its_lease_is_not_recorded(
        store: Store) -> None:
    async def scenario() -> tuple[bool, bool, int]:
        await open_account(store, LOTS)
        await store.insert_task(make_task(), 10)
        [claimed] = await store.claim_tasks("w", NOW, LEASE_MS, 1)
        await store.finish_task(claimed.id, claimed.attempt, failed(),
                                new_delivery(claimed, delivery_id="msg_fence"))
        attempt = DeliveryAttempt("msg_fence", 1, NOW, 5, 500, "HTTP 500")
        first = await store.record_delivery_attempt(attempt, DeliveryState.PENDING, NOW + 1000)
        second = await store.record_delivery_attempt(attempt, DeliveryState.PENDING, NOW + 1000)
        return first, second, len(await store.delivery_attempts("msg_fence"))

    assert run(scenario()) == (True, False, 1)


def test_a_finished_task_frees_its_slot_under_the_unfinished_limit(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, LOTS)
        await store.insert_task(make_task(), 1)
        with pytest.raises(TooManyRequests):
            await store.insert_task(make_task(), 1)
        [claimed] = await store.claim_tasks("w", NOW, LEASE_MS, 1)
        assert await store.retry_later(claimed.id, claimed.attempt, NOW, (), "again")
        with pytest.raises(TooManyRequests):  # requeued is still unfinished
            await store.insert_task(make_task(), 1)
        [claimed] = await store.claim_tasks("w", NOW, LEASE_MS, 1)
        assert await store.finish_task(claimed.id, claimed.attempt, failed(), None)
        assert not await store.finish_task(claimed.id, claimed.attempt, failed(), None)
        await store.insert_task(make_task(), 1)  # the slot is free again, exactly once
        with pytest.raises(TooManyRequests):
            await store.insert_task(make_task(), 1)

    run(scenario())


def test_the_sweeper_fence_spares_a_task_whose_lease_was_renewed(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, LOTS)
        await store.insert_task(make_task(), 10)
        [claimed] = await store.claim_tasks("w", NOW, LEASE_MS, 1)
        sweep_at = NOW + LEASE_MS + 1  # the sweeper saw the lease expired...
        assert await store.renew_lease(claimed.id, claimed.attempt, sweep_at + LEASE_MS)
        # ...but the worker's heartbeat landed first: neither requeue nor fail may happen
        assert not await store.retry_later(claimed.id, claimed.attempt, sweep_at, (), "x",
                                           lease_expired_before_ms=sweep_at)
        late = dataclasses.replace(failed(), lease_expired_before_ms=sweep_at)
        assert not await store.finish_task(claimed.id, claimed.attempt, late, None)
        assert (await store.get_task(claimed.id)).state is TaskState.RUNNING  # type: ignore[union-attr]
        later = sweep_at + 2 * LEASE_MS
        assert await store.retry_later(claimed.id, claimed.attempt, later, (), "x",
                                       lease_expired_before_ms=later)

    run(scenario())


# A client's cancel --------------------------------------------------------------------------


def canceled(now_ms: int = NOW + 5_000) -> Finish:
    return Finish(TaskState.CANCELED, now_ms, fail_code="Canceled",
                  fail_msg="cancelled by the client", expire_ms=now_ms + 86_400_000)


def refunds(ledger: list[Any]) -> list[tuple[int, str | None, str]]:
    return [(e.amount_micros, e.task_id, e.note) for e in ledger if e.kind == LedgerKind.REFUND]


def test_cancel_of_a_queued_task_refunds_it_once_and_frees_its_slot(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, LOTS)
        task = make_task()
        await store.insert_task(task, 1)
        outcome = await store.cancel_task(task.id, canceled(), new_delivery(task))
        assert outcome is CancelOutcome.CANCELED
        after = await store.get_task(task.id)
        assert after is not None
        assert (after.state, after.charge_state, after.stage, after.complete_ms) == (
            TaskState.CANCELED, ChargeState.REFUNDED, "done", NOW + 5_000)
        assert (after.fail_code, after.fail_msg) == ("Canceled", "cancelled by the client")
        assert await balance(store) == LOTS
        assert refunds(await store.ledger(ACCOUNT)) == [(PRICE, task.id, "Canceled")]
        assert [d.id for d in await store.deliveries_for_task(task.id)] == ["msg_1"]
        again = await store.cancel_task(task.id, canceled(NOW + 6_000), new_delivery(task))
        assert again is CancelOutcome.FINISHED
        assert await store.get_task(task.id) == after
        assert len(refunds(await store.ledger(ACCOUNT))) == 1
        assert len(await store.deliveries_for_task(task.id)) == 1
        assert await store.claim_tasks("w", NOW, LEASE_MS, 10) == []
        await store.insert_task(make_task(), 1)  # its unfinished-task slot is free
        await assert_ledger_explains_balance(store)

    run(scenario())


def test_cancel_of_a_running_task_is_recorded_and_moves_no_money(store: Store) -> None:
    async def scenario() -> None:
        task = await running_task(store)
        assert await store.cancel_task(task.id, canceled(), None) is CancelOutcome.REQUESTED
        assert await store.cancel_task(task.id, canceled(NOW + 9_000), None) is \
            CancelOutcome.REQUESTED
        after = await store.get_task(task.id)
        assert after is not None
        assert (after.state, after.charge_state, after.cancel_requested_ms) == (
            TaskState.RUNNING, ChargeState.HELD, NOW + 5_000)  # the first request's time
        assert await balance(store) == LOTS - PRICE
        # its worker ends it canceled through the fenced finish, refunded once
        assert await store.finish_task(task.id, 1, canceled(NOW + 7_000), None)
        assert not await store.finish_task(task.id, 1, canceled(NOW + 8_000), None)
        ended = await store.get_task(task.id)
        assert ended is not None
        assert (ended.state, ended.charge_state) == (TaskState.CANCELED, ChargeState.REFUNDED)
        assert await balance(store) == LOTS
        assert refunds(await store.ledger(ACCOUNT)) == [(PRICE, task.id, "Canceled")]
        await assert_ledger_explains_balance(store)

    run(scenario())


def test_an_attempt_that_finishes_first_keeps_its_result_over_a_cancel(store: Store) -> None:
    async def scenario() -> None:
        task = await running_task(store)
        assert await store.cancel_task(task.id, canceled(), None) is CancelOutcome.REQUESTED
        assert await store.finish_task(task.id, 1, succeeded(), None)
        assert not await store.finish_task(task.id, 1, canceled(), None)
        after = await store.get_task(task.id)
        assert after is not None
        assert (after.state, after.charge_state) == (TaskState.SUCCEEDED, ChargeState.SETTLED)
        assert await balance(store) == LOTS - PRICE
        await assert_ledger_explains_balance(store)

    run(scenario())


def test_cancel_of_a_finished_or_unknown_task_changes_nothing(store: Store) -> None:
    async def scenario() -> None:
        task = await running_task(store)
        assert await store.finish_task(task.id, 1, failed(), None)
        before = (await store.get_task(task.id), await store.ledger(ACCOUNT))
        assert await store.cancel_task(task.id, canceled(), new_delivery(task)) is \
            CancelOutcome.FINISHED
        assert (await store.get_task(task.id), await store.ledger(ACCOUNT)) == before
        assert await store.deliveries_for_task(task.id) == []
        assert await store.cancel_task("no-such-task", canceled(), None) is \
            CancelOutcome.MISSING
        await assert_ledger_explains_balance(store)

    run(scenario())


def test_cancels_racing_claims_each_task_goes_exactly_one_way(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, LOTS)
        tasks = [make_task(created_ms=NOW + i) for i in range(12)]
        await submitted(store, *tasks)
        answers = await asyncio.gather(
            *(store.claim_tasks(f"w{i}", NOW, LEASE_MS, 2) for i in range(6)),
            *(store.cancel_task(t.id, canceled(), None) for t in tasks))
        claimed = {t.id for batch in answers[:6] for t in batch}  # type: ignore[union-attr]
        outcomes = dict(zip([t.id for t in tasks], answers[6:], strict=True))
        for task in tasks:
            after = await store.get_task(task.id)
            assert after is not None
            if task.id in claimed:
                assert outcomes[task.id] is CancelOutcome.REQUESTED
                assert (after.state, after.charge_state) == (TaskState.RUNNING, ChargeState.HELD)
                assert after.cancel_requested_ms is not None
            else:
                assert outcomes[task.id] is CancelOutcome.CANCELED
                assert (after.state, after.charge_state) == (
                    TaskState.CANCELED, ChargeState.REFUNDED)
        assert await balance(store) == LOTS - PRICE * len(claimed)
        assert len(refunds(await store.ledger(ACCOUNT))) == len(tasks) - len(claimed)
        await assert_ledger_explains_balance(store)

    run(scenario())


# Idempotency keys -------------------------------------------------------------------------------

IDEM = Idempotency("order-17", "a" * 64)
OTHER_BODY = Idempotency("order-17", "b" * 64)


async def holds(store: Store, account_id: str = ACCOUNT) -> list[str | None]:
    return [e.task_id for e in await store.ledger(account_id) if e.kind == LedgerKind.HOLD]


def test_a_repeated_idempotent_submit_answers_the_first_task_and_is_charged_once(
        store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, LOTS)
        first, again = make_task(), make_task(created_ms=NOW + 1_000)
        rate = RateRequest(0.001, 1, NOW)  # one token: a second one taken would be refused
        assert await store.insert_task(first, 1, rate, IDEM) == first.id
        # Past the unfinished limit (1) and the bucket: a replay takes neither.
        assert await store.insert_task(again, 1, rate, IDEM) == first.id
        assert await store.get_task(again.id) is None
        assert await balance(store) == LOTS - PRICE
        assert await holds(store) == [first.id]
        await assert_ledger_explains_balance(store)

    run(scenario())


def test_an_idempotency_key_reused_for_another_request_is_a_conflict(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, LOTS)
        first, other = make_task(), make_task(created_ms=NOW + 1)
        await store.insert_task(first, 10, None, IDEM)
        with pytest.raises(Conflict) as refused:
            await store.insert_task(other, 10, None, OTHER_BODY)
        assert refused.value.field == "Idempotency-Key"
        assert await store.get_task(other.id) is None
        assert await balance(store) == LOTS - PRICE

    run(scenario())


def test_the_same_idempotency_key_twice_in_one_batch_stores_one_task(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, LOTS)
        tasks = [make_task(created_ms=NOW + i) for i in range(4)]
        idems = [IDEM, IDEM, OTHER_BODY, Idempotency("order-18", "a" * 64)]
        answers = await asyncio.gather(
            *(store.insert_task(t, 10, None, i) for t, i in zip(tasks, idems, strict=True)),
            return_exceptions=True)
        assert answers[:2] == [tasks[0].id, tasks[0].id]
        assert isinstance(answers[2], Conflict)
        assert answers[3] == tasks[3].id
        stored = [await store.get_task(t.id) for t in tasks]
        assert [s is not None for s in stored] == [True, False, False, True]
        assert await holds(store) == [tasks[0].id, tasks[3].id]
        await assert_ledger_explains_balance(store)

    run(scenario())


def test_an_idempotency_key_belongs_to_its_api_key(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, LOTS)
        mine, theirs = make_task(), make_task(key_id="key_2")
        assert await store.insert_task(mine, 10, None, IDEM) == mine.id
        assert await store.insert_task(theirs, 10, None, IDEM) == theirs.id
        assert await store.insert_task(make_task(key_id="key_2"), 10, None, IDEM) == theirs.id
        assert await balance(store) == LOTS - 2 * PRICE

    run(scenario())


def test_an_idempotency_key_older_than_its_lifetime_is_unused(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, LOTS)
        first = make_task()
        await store.insert_task(first, 10, None, IDEM)
        last_moment = make_task(created_ms=NOW + IDEMPOTENCY_TTL_MS)
        assert await store.insert_task(last_moment, 10, None, IDEM) == first.id
        later = make_task(created_ms=NOW + IDEMPOTENCY_TTL_MS + 1)
        assert await store.insert_task(later, 10, None, OTHER_BODY) == later.id  # a new request
        repeat = make_task(created_ms=NOW + IDEMPOTENCY_TTL_MS + 2)
        assert await store.insert_task(repeat, 10, None, OTHER_BODY) == later.id
        assert await holds(store) == [first.id, later.id]

    run(scenario())


def test_prune_idempotency_keys_deletes_the_old_ones_in_batches(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, LOTS)
        tasks = [make_task(created_ms=NOW + i) for i in range(3)]
        for i, task in enumerate(tasks):
            await store.insert_task(task, 10, None, Idempotency(f"k{i}", "a" * 64))
        assert await store.prune_idempotency_keys(NOW + 2, 1) == 1
        assert await store.prune_idempotency_keys(NOW + 2, 10) == 1
        assert await store.prune_idempotency_keys(NOW + 2, 10) == 0
        # The pruned keys are unused now; the kept one still answers its task.
        again = make_task(created_ms=NOW + 10)
        assert await store.insert_task(again, 10, None, Idempotency("k0", "b" * 64)) == again.id
        kept = make_task(created_ms=NOW + 11)
        assert await store.insert_task(kept, 10, None, Idempotency("k2", "a" * 64)) == \
            tasks[2].id

    run(scenario())


def test_concurrent_identical_submits_store_exactly_one_task(store: Store) -> None:
    async def scenario() -> None:
        await open_account(store, LOTS)
        tasks = [make_task(created_ms=NOW + i) for i in range(12)]
        answers = await asyncio.gather(*(store.insert_task(t, 100, None, IDEM) for t in tasks))
        assert len(set(answers)) == 1
        stored = [await store.get_task(t.id) for t in tasks]
        assert [s.id for s in stored if s is not None] == answers[:1]
        assert await balance(store) == LOTS - PRICE

    run(scenario())
